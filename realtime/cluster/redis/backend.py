"""Several nodes sharing Redis: the connection and its health, the heartbeat, and reaping dead nodes.

``RedisCluster`` owns the Redis clients and runs one supervisor task per process. While Redis
answers, the node is *up*: it heartbeats, reads the pub/sub bus and reaps nodes whose heartbeat
stopped. When Redis fails (a command, the bus connection, or the heartbeat finding this node gone),
the node goes *down* at once: ``/ready`` answers 503, every socket is closed with 4200 (pub/sub is
at most once, so clients must resubscribe to resync), new sockets are refused with 4100 (pusher-js
backs off), state calls fail fast with ``StateUnavailable`` (HTTP API 503) and the supervisor
retries with backoff. Each up period writes under a fresh node id, and the ids of earlier periods
are reaped on recovery like a dead node's, so nothing a closed socket held can linger.

Dead nodes: a node's heartbeat is a score (Redis' clock, so node clocks may differ) in ``{P}:nodes``.
A survivor that finds a score older than ``DEAD_NODE_TIMEOUT`` moves it to ``{P}:reaping`` with a
lease in one script, so one node claims it; if that node dies mid-way the lease runs out and
another resumes. ``RedisState.reap`` makes each removal (and its member_removed) happen once; what
follows a removal (events, webhooks, counts) is the runtime's ``RemovalHandler``, the same code
as for a local disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from redis.asyncio import Redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ...protocol import errors
from ...stats import Stats
from ...tasks import TaskSet
from ..base import RemovalHandler, StateUnavailable
from ..registry import Registry
from .broker import RedisBroker, bus_channel, invalidation_message
from .connect import RedisTarget
from .state import RedisState, shared_key

if TYPE_CHECKING:
    from ...conf import RealtimeSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that mean "Redis is not there": the node goes down. A replica promoted during a failover
# answers READONLY to writes until clients reconnect, which is the same situation.
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)

_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '1' or redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  return 1
end
return 0
"""

_CLAIM_DEAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local claimed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
for _, node in ipairs(claimed) do
  redis.call('ZREM', KEYS[1], node)
end
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  table.insert(claimed, node)
end
for _, node in ipairs(claimed) do
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), node)
end
return claimed
"""

REFUSED = "Service temporarily unavailable, reconnect later"
CLOSED = "Service temporarily unavailable, reconnect"


class LostRegistration(Exception):
    """This node's heartbeat entry is gone: it was reaped as dead, or Redis lost its data."""


class RedisCluster:
    """``Cluster`` over one Redis primary: state, bus, heartbeat, outage handling and reaping.

    ``on_removed`` gets what reaping removed (a dead node's sockets, this node's leftovers after
    an outage or at stop); ``on_invalidate`` runs when another node says app credentials changed.
    """

    def __init__(
        self,
        conf: RealtimeSettings,
        registry: Registry,
        stats: Stats,
        on_removed: RemovalHandler,
        on_invalidate: Callable[[], None],
    ) -> None:
        self.registry = registry
        self.stats = stats
        self.on_removed = on_removed
        # Constant for the process: the origin of bus messages. node_id changes per up period.
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._epoch = 0
        self.node_id = self._next_node_id()
        self.dead_after = conf.DEAD_NODE_TIMEOUT
        self.heartbeat_interval = max(0.05, min(conf.NODE_HEARTBEAT_SECONDS, conf.DEAD_NODE_TIMEOUT / 3))
        timeout = self.socket_timeout = conf.REDIS_SOCKET_TIMEOUT
        # The asyncio pool of redis-py 8 raises at once when full (redis-py#2517); the blocking
        # pool waits up to ``timeout`` for a free connection instead, so a burst of subscribes
        # queues rather than fails (docs/architecture.md, "Redis").
        self.target = RedisTarget.parse(conf.REDIS_URL)
        self.prefix = conf.REDIS_PREFIX
        self.client: Redis = self.target.pooled(
            conf.REDIS_MAX_CONNECTIONS,
            timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 1),
            decode_responses=True,
        )
        # The bus connection never retries: redis-py would reconnect and resubscribe silently,
        # and the messages published meanwhile would be lost without anyone knowing.
        self._bus_client: Redis = self.target.single(
            max_connections=2,
            socket_connect_timeout=timeout,
            client_name=f"realtime-bus:{self.instance}",
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self.up = False
        self.problem: str | None = "starting"
        # Set once Redis is first reached: sockets that arrive while the node starts wait for it.
        self.started = asyncio.Event()
        self._failed: asyncio.Event | None = None
        self._task: asyncio.Future[None] | None = None
        self._stopping = False
        self._previous: list[str] = []
        self._pubsub: Any = None
        self._bus_own: Any = None
        self._bus_seen = time.monotonic()
        self._background = TaskSet()
        self.state = RedisState(self)
        self.broker = RedisBroker(self, registry, stats, on_invalidate)
        self._heartbeat = self.client.register_script(_HEARTBEAT)
        self._claim_dead = self.client.register_script(_CLAIM_DEAD)
        self.nodes_key = shared_key(self.prefix, "nodes")
        self.reaping_key = shared_key(self.prefix, "reaping")

    def _next_node_id(self) -> str:
        self._epoch += 1
        return f"{self.instance}:{self._epoch}"

    # Guarded calls (the state's and broker's only way to Redis)

    async def call(self, operation: str, command: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis command for ``operation`` (a metric label); ``StateUnavailable`` if down."""
        stats = self.stats
        stats.incr("adapter_operations", (operation,))
        if not self.up:
            stats.incr("adapter_errors", (operation,))
            raise StateUnavailable(REFUSED, errors.OVER_CAPACITY)
        epoch = self._epoch
        started = time.perf_counter()
        try:
            result = await command()
        except MaxConnectionsError as exc:
            stats.incr("adapter_errors", (operation,))
            raise StateUnavailable(REFUSED, errors.OVER_CAPACITY) from exc
        except OUTAGE_ERRORS as exc:
            stats.incr("adapter_errors", (operation,))
            self.failed(f"{operation} failed: {exc.__class__.__name__}", epoch)
            raise StateUnavailable(CLOSED, errors.RECONNECT) from exc
        stats.observe("adapter_latency", time.perf_counter() - started, (operation,))
        return result

    async def call_removal(self, operation: str, command: Callable[[], Awaitable[T]], default: T) -> T:
        # A removal that cannot reach Redis is not lost: everything this node id held is reaped
        # when Redis is back (the id is retired as the node goes down).
        try:
            return await self.call(operation, command)
        except StateUnavailable:
            return default

    # Lifecycle

    async def start(self) -> None:
        """Start the supervisor, which connects (and reconnects) in the background."""
        if self._task is None:
            self._failed = asyncio.Event()
            self._task = asyncio.ensure_future(self._supervise())

    async def stop(self, before_close: Callable[[], Awaitable[None]] | None = None) -> None:
        """Leave the cluster: remove what this node still holds (with member_removed), await
        ``before_close`` while Redis can still be asked, then close."""
        self._stopping = True
        if self.up:
            try:
                await self._reap(self.node_id)
                await self.client.zrem(self.nodes_key, self.node_id)
            except Exception:
                logger.warning("could not remove this node's entries from redis on stop", exc_info=True)
        if before_close is not None:
            try:
                await before_close()
            except Exception:
                logger.exception("leaving the cluster: the last decisions failed")
        self.up = False
        self.problem = "stopped"
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self._background.cancel()
        await self._close_bus()
        for client in (self.client, self._bus_client):
            with contextlib.suppress(Exception):
                await client.aclose()
            with contextlib.suppress(Exception):
                await client.connection_pool.disconnect()

    async def wait_started(self) -> None:
        await self.started.wait()

    def readiness_problem(self) -> str | None:
        return self.problem

    def invalidate_credentials(self) -> None:
        """Tell every node that app credentials changed (sync: called from a model signal)."""
        try:
            self.target.publish_once(bus_channel(self.prefix), invalidation_message(), 2.0)
        except (RedisError, OSError):
            logger.warning("could not tell the other nodes that app credentials changed")

    def failed(self, reason: str, epoch: int | None = None) -> None:
        """Go down now; the supervisor reconnects. Idempotent. ``epoch``: the up period the failure
        belongs to (a command's, when it started); a failure from an earlier period, which arrives
        after the reconnect, says nothing about the new one and is ignored."""
        if not self.up or (epoch is not None and epoch != self._epoch):
            return
        self.up = False
        self.problem = "redis unavailable"
        logger.warning("redis unavailable, closing sockets", extra={"reason": reason, "node": self.node_id})
        self.stats.incr("errors", ("redis_outage",))
        if self._failed is not None:
            self._failed.set()
        self._close_sockets()

    def bus_alive(self) -> None:
        self._bus_seen = time.monotonic()

    def _close_sockets(self) -> None:
        for local in list(self.registry.sockets.values()):
            local.terminate(errors.RECONNECT, CLOSED)

    async def _supervise(self) -> None:
        delay = 0.1
        logged_at = 0.0
        while not self._stopping:
            try:
                pubsub = await self._connect()
            except (RedisError, OSError) as exc:
                if time.monotonic() - logged_at > 30:
                    logged_at = time.monotonic()
                    logger.warning("redis unreachable, retrying", extra={"error": exc.__class__.__name__})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            reason = await self._serve(pubsub)
            self.failed(reason)
            await self._close_bus()
            # What the closed sockets held is reaped with this id once Redis is back.
            self._previous.append(self.node_id)
            self.node_id = self._next_node_id()

    async def _connect(self) -> Any:
        assert self._failed is not None
        await self.client.ping()
        await self._heartbeat(keys=[self.nodes_key], args=[self.node_id, "1"])
        await self.state.load_scripts()
        options = {
            "socket_connect_timeout": self.socket_timeout,
            "decode_responses": True,
            "client_name": f"realtime-bus:{self.instance}",
            "retry": Retry(NoBackoff(), 0),
        }
        pubsub, self._bus_own = await self.target.bus(self._bus_client, bus_channel(self.prefix), **options)
        self._pubsub = pubsub
        # A socket that got into the registry while Redis was away holds nothing under this id.
        self._close_sockets()
        self._failed.clear()
        self._bus_seen = time.monotonic()
        self.up = True
        self.problem = None
        self.started.set()
        logger.info("redis connected", extra={"node": self.node_id})
        for previous in self._previous:
            self._background.spawn(self._reap_claimed(previous, owned=True))
        self._previous.clear()
        return pubsub

    async def _serve(self, pubsub: Any) -> str:
        """Run the bus reader and the heartbeat until one fails; return why."""
        assert self._failed is not None
        reader = asyncio.ensure_future(self.broker.read(pubsub))
        beat = asyncio.ensure_future(self._beat_forever(pubsub))
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            done, _ = await asyncio.wait({reader, beat, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, beat, failed):
                task.cancel()
            await asyncio.gather(reader, beat, failed, return_exceptions=True)
        for task in done:
            if task is not failed and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                if not isinstance(exc, (*OUTAGE_ERRORS, LostRegistration)):
                    logger.error("redis supervisor task failed", exc_info=exc)
                return f"{exc.__class__.__name__}: {exc}"
        return "redis bus closed" if reader in done else "a redis call failed"

    async def _close_bus(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), 1.0)
        own, self._bus_own = self._bus_own, None
        if own is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(own.aclose(), 1.0)

    # Heartbeat and dead nodes

    async def _beat_forever(self, pubsub: Any) -> None:
        interval = self.heartbeat_interval
        while True:
            started = time.perf_counter()
            alive = await self._heartbeat(keys=[self.nodes_key], args=[self.node_id, "0"])
            self.stats.incr("adapter_operations", ("heartbeat",))
            self.stats.observe("adapter_latency", time.perf_counter() - started, ("heartbeat",))
            if not alive:
                raise LostRegistration("this node's heartbeat entry is gone")
            # A PING on the bus connection comes back through the reader; silence means the
            # connection is dead without having been closed (a partition, not a crash).
            await pubsub.ping()
            if time.monotonic() - self._bus_seen > max(3 * interval, 2.0) + self.socket_timeout:
                raise RedisTimeoutError("the redis bus connection stopped answering")
            await self._reap_dead()
            await asyncio.sleep(interval)

    async def _reap_dead(self) -> None:
        lease = max(60.0, 4 * self.dead_after)
        claimed = await self._claim_dead(
            keys=[self.nodes_key, self.reaping_key], args=[int(self.dead_after * 1000), int(lease * 1000)]
        )
        for node_id in claimed:
            if node_id != self.node_id:
                self._background.spawn(self._reap_claimed(node_id, owned=False))

    async def _reap_claimed(self, node_id: str, *, owned: bool) -> None:
        try:
            removed = await self._reap(node_id)
            await self.client.zrem(self.reaping_key, node_id)
            if owned:
                await self.client.zrem(self.nodes_key, node_id)
        except (RedisError, OSError, StateUnavailable) as exc:
            # The lease runs out and a node reaps it again; removals already done are not repeated.
            logger.warning("reaping a node was interrupted", extra={"node": node_id, "error": repr(exc)})
            return
        except Exception:
            logger.exception("reaping a node failed; it is tried again when its lease runs out")
            return
        if removed or not owned:
            logger.info("reaped node", extra={"node": node_id, "entries": removed, "own": owned})

    async def _reap(self, node_id: str) -> int:
        started = time.perf_counter()
        total = 0
        async for batch in self.state.reap(node_id):
            total += len(batch)
            await self.on_removed(batch)
        self.stats.incr("adapter_operations", ("reap",))
        self.stats.observe("adapter_latency", time.perf_counter() - started, ("reap",))
        return total
