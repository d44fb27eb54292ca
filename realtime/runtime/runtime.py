"""The runtime: the one owner of a process' Realtime state, and its start, drain and stop.

A process serving Realtime has exactly one ``Runtime``: the registry of its sockets, the cluster
backend (state and broker, in memory or in Redis), webhook delivery, the liveness sweep, the
credentials cache, rate limiters and counters. Realtime's ASGI application creates it on first
use and starts it on first use or at ASGI lifespan startup, whichever comes first, so the same
product runs under ``realtime_serve``, ``runserver``, ``daphne`` and ``uvicorn``; a drain stops
it: lifespan shutdown, ``realtime_serve``'s SIGTERM handler, or the stock daphne reactor's
shutdown (``realtime.daphne.stock``). Nothing is built at import time or in
``AppConfig.ready()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.dispatch import Signal

from ..cluster.base import Broker, Cluster, Removed, State
from ..cluster.memory import MemoryCluster
from ..cluster.registry import Registry
from ..conf import RealtimeSettings, get_settings
from ..credentials import CredentialsCache
from ..errorlog import ErrorLog
from ..protocol import errors
from ..provisioning import apply_default_app
from ..stats import Stats
from ..tasks import TaskSet
from ..webhooks.dispatcher import Webhooks
from . import changes
from .addresslimits import AddressLimits
from .console import STATS_SECONDS, ConsoleHub
from .counts import SubscriptionCounts
from .memorygate import MemoryGate

logger = logging.getLogger(__name__)

# Sent (sender=Runtime, runtime=...) as a runtime starts and before it stops: the metrics app
# serves its private site for that time. A receiver that raises makes the start fail.
runtime_started = Signal()
runtime_stopping = Signal()

SHUTDOWN_REASON = "Server is shutting down, reconnect"
# A failed start (an invalid default app, a database not migrated) is not tried again sooner:
# every request would otherwise write the default app and log the same traceback.
RESTART_AFTER_SECONDS = 5.0
# How often the memory gate reads RSS (one small /proc read).
MEMORY_CHECK_SECONDS = 1.0
# What a drain keeps of SHUTDOWN_GRACE_SECONDS (at most half of it) for leaving the cluster.
STOP_RESERVE_SECONDS = 2.0


class Runtime:
    """Everything Realtime keeps per process. Build it with ``get_runtime()``, not directly."""

    def __init__(self, conf: RealtimeSettings | None = None) -> None:
        conf = self.conf = conf or get_settings()
        self.stats = Stats()
        # Errors a client can cause repeatedly are logged through this, once per interval.
        self.errors = ErrorLog()
        self.credentials = CredentialsCache(conf.CREDENTIALS_NEGATIVE_TTL)
        self.tasks = TaskSet()
        self.registry = Registry(self.stats)
        self.cluster: Cluster = self._build_cluster()
        self.webhooks = Webhooks(
            conf, self.cluster.state, self.stats, self.credentials, self.cluster.instance
        )
        self.counts = SubscriptionCounts(self)
        # False once draining: new sockets are refused with 4200, /ready answers 503.
        self.accepting = True
        # Closed past MEMORY_LIMIT_MB: new sockets are refused with 4100, /ready answers 503.
        self.memory = MemoryGate.from_megabytes(conf.MEMORY_LIMIT_MB, conf.MEMORY_RESUME_MB)
        self.address_limits = AddressLimits(self)
        self.console = ConsoleHub(self.stats, self.cluster.instance)
        if conf.STATE_BACKEND == "redis":
            broker: Any = self.cluster.broker
            self.console.send = broker.console
            broker.on_console = self.console.received
        console = self.console
        self.webhooks.deliverer.on_attempt = lambda app_id, fields: console.record(
            app_id, "webhook", **fields
        )
        # Where each site listens: "public" (recorded by realtime_serve as it binds, else from the
        # first request's scope), "metrics" (by the metrics app's listener).
        self.listening: dict[str, tuple[str, int]] = {}
        # What the serving command was asked for, for other parts to read: "server" (which
        # command drains this runtime), the metrics site's options ("metrics", "metrics_host",
        # "metrics_port", "metrics_port_offset"). Empty: their settings decide.
        self.serve_options: dict[str, Any] = {}
        # realtime_serve applies the default app before it listens, to fail early and say so.
        self.default_app_ready = False
        self._start: asyncio.Future[None] | None = None
        self._failed_at = 0.0
        # runtime_started was sent: runtime_stopping must be, exactly once.
        self._announced = False
        self._draining = False
        self._stopped = False
        self._stop_deadline: float | None = None
        # The loop the runtime started on: app changes seen on other threads are handed to it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refresh: asyncio.Future[None] | None = None
        self._refresh_again = False

    def _build_cluster(self) -> Cluster:
        conf = self.conf
        if conf.STATE_BACKEND == "redis":
            from ..cluster.redis.backend import RedisCluster

            return RedisCluster(conf, self.registry, self.stats, self._removed, self.apps_changed)
        return MemoryCluster(self.registry)

    @property
    def state(self) -> State:
        return self.cluster.state

    @property
    def broker(self) -> Broker:
        return self.cluster.broker

    @property
    def started(self) -> bool:
        start = self._start
        return start is not None and start.done() and not start.cancelled() and start.exception() is None

    # Lifecycle

    async def start(self) -> None:
        """Start once (concurrent callers wait for the same start); cheap once started.

        Applies the default app (``DEFAULT_APP``), sends ``runtime_started``, starts the cluster
        backend (with Redis it keeps connecting in the background: see ``wait_started``) and the
        liveness sweep. A failed start is logged and raised; it is tried again by a call at least
        ``RESTART_AFTER_SECONDS`` later (earlier calls raise the same error). Once draining or
        stopped, nothing is started.
        """
        if self._draining or self._stopped:
            return
        start = self._start
        if start is None or (
            start.done()
            and (start.cancelled() or start.exception() is not None)
            and time.monotonic() - self._failed_at >= RESTART_AFTER_SECONDS
        ):
            start = self._start = asyncio.ensure_future(self._do_start())
        await asyncio.shield(start)

    async def _do_start(self) -> None:
        try:
            if self.conf.DEFAULT_APP and not self.default_app_ready:
                await sync_to_async(apply_default_app, thread_sensitive=True)(self.conf.DEFAULT_APP)
                self.default_app_ready = True
            # Receivers (the metrics site's listener) first: if one fails, nothing was started
            # that a retry would start twice.
            runtime_started.send(sender=Runtime, runtime=self)
        except OSError as exc:
            self._failed_at = time.monotonic()
            # A port that cannot be bound (the metrics site's) and the like: the message says it
            # all, a traceback would bury it.
            logger.error("realtime could not start: %s", exc)
            logger.debug("realtime could not start", exc_info=True)
            raise
        except Exception:
            self._failed_at = time.monotonic()
            logger.exception("realtime could not start")
            raise
        self._announced = True
        self._loop = asyncio.get_running_loop()
        await self.cluster.start()
        self.webhooks.start()
        self.tasks.spawn(self._sweep_forever())
        self.tasks.spawn(self._refresh_forever())
        if self.memory.enabled:
            self.check_memory()
            self.tasks.spawn(self._watch_memory_forever())
        self.tasks.spawn(self._console_forever())

    async def wait_started(self) -> None:
        """Until the cluster backend has been reached once (at once for the in-process one)."""
        await self.cluster.wait_started()

    def readiness_problem(self) -> str | None:
        """Why this node should get no traffic now (draining, Redis down, ...), or None."""
        if not self.accepting:
            return "draining"
        if not self.started:
            return "starting"
        if self.memory.closed:
            return "memory"
        return self.cluster.readiness_problem()

    async def drain(self) -> None:
        """Stop accepting, close every socket with 4200 over a jittered window, then ``stop()``.

        Sockets get ``SHUTDOWN_JITTER_SECONDS`` (at most half of ``SHUTDOWN_GRACE_SECONDS``) so
        that clients do not all reconnect in the same instant; the sockets get the grace period
        but the part kept for ``stop()`` (leaving the cluster), and the whole drain takes at most
        ``SHUTDOWN_GRACE_SECONDS``. A socket that opened meanwhile is closed too.
        """
        if self._draining:
            return
        self._draining = True
        conf = self.conf
        self.accepting = False
        logger.info("draining", extra={"sockets": len(self.registry.sockets)})
        window = min(conf.SHUTDOWN_JITTER_SECONDS, conf.SHUTDOWN_GRACE_SECONDS / 2)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + conf.SHUTDOWN_GRACE_SECONDS
        reserve = min(STOP_RESERVE_SECONDS, conf.SHUTDOWN_GRACE_SECONDS / 2)
        told: set[str] = set()
        while self.registry.sockets and loop.time() < deadline - reserve:
            for socket_id, socket in list(self.registry.sockets.items()):
                if socket_id not in told:
                    told.add(socket_id)
                    delay = random.uniform(0, window)  # noqa: S311 (jitter, not security)
                    loop.call_later(delay, socket.terminate, errors.RECONNECT, SHUTDOWN_REASON)
            await asyncio.sleep(0.05)
        # What stop() may give webhook deliveries in flight, on the monotonic clock it uses.
        self._stop_deadline = time.monotonic() + (deadline - loop.time())
        try:
            # In this task, not a new one: stop() cancels the runtime's tasks but the caller's.
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                await self.stop()
        except Exception:
            logger.exception("runtime stop failed")
        logger.info("stopped", extra={"sockets_left": len(self.registry.sockets)})

    async def stop(self) -> None:
        """Leave the cluster, then stop every background task. Idempotent.

        Leaving the cluster removes what this node still holds, and what follows (member_removed,
        webhooks, counts) still runs; only then are the background tasks cancelled.
        """
        if self._stopped:
            return
        self._stopped = True
        self.accepting = False
        start = self._start
        if start is not None and not start.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(start)
        if self._announced:
            runtime_stopping.send(sender=Runtime, runtime=self)
        # Delayed webhooks of the sockets this node removes are decided before its state closes.
        self.webhooks.begin_stop()
        try:
            await self.cluster.stop(before_close=self.webhooks.decide_delayed)
        finally:
            self.counts.cancel()
            await self.tasks.cancel()
            # Leave a moment of the drain's window for the rest of the shutdown.
            deadline = None if self._stop_deadline is None else self._stop_deadline - 0.2
            await self.webhooks.stop(deadline)

    # The liveness sweep

    def sweep_interval(self) -> float:
        """Seconds between sweeps: a quarter of the shortest deadline, between 0.05 and 1.25 s."""
        conf = self.conf
        return max(0.05, min(conf.ACTIVITY_TIMEOUT, conf.PONG_TIMEOUT, 5.0) / 4)

    def sweep(self, now: float | None = None) -> None:
        """One liveness pass over the open sockets (``now``: monotonic seconds)."""
        now = time.monotonic() if now is None else now
        for socket in list(self.registry.sockets.values()):
            try:
                socket.sweep(now)
            except Exception:
                logger.exception("liveness check failed")
                self.stats.incr("errors", ("liveness",))

    async def _sweep_forever(self) -> None:
        # One periodic pass over every socket costs far less than a timer per socket that is
        # rescheduled on every frame.
        interval = self.sweep_interval()
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    # The memory gate

    def check_memory(self) -> None:
        """Read this process' RSS and open or close the memory gate, logging a change."""
        changed = self.memory.check()
        if changed is None:
            return
        rss_mib = round(self.memory.rss / 2**20, 1)
        if changed:
            logger.warning("memory limit reached: refusing new sockets", extra={"rss_mib": rss_mib})
        else:
            logger.info("memory below the resume level: accepting new sockets", extra={"rss_mib": rss_mib})

    async def _watch_memory_forever(self) -> None:
        while True:
            await asyncio.sleep(MEMORY_CHECK_SECONDS)
            try:
                self.check_memory()
            except Exception:
                self.errors.exception(logger, "memory", "reading this process' memory failed")

    async def _console_forever(self) -> None:
        while True:
            await asyncio.sleep(STATS_SECONDS)
            try:
                await self.console.tick()
            except Exception:
                self.errors.exception(logger, "console", "the console's periodic report failed")

    # App changes

    def apps_changed(self) -> None:
        """An app or webhook changed (a model signal in this process, another node's bus message):
        forget the cached apps now, and bring this node's open sockets up to date on the loop
        (``refresh_apps``). Callable from any thread."""
        self.credentials.invalidate()
        loop = self._loop
        if loop is None or loop.is_closed() or self._stopped:
            return
        # In a context of its own: the caller's (a database thread's, say) must not follow the
        # refresh into its own database calls.
        loop.call_soon_threadsafe(self._schedule_refresh, context=contextvars.Context())

    def _schedule_refresh(self) -> None:
        # Changes that arrive while a refresh runs are picked up by one more refresh after it.
        if self._refresh is not None and not self._refresh.done():
            self._refresh_again = True
            return
        self._refresh = self.tasks.spawn(self._refresh_until_settled())

    async def _refresh_until_settled(self) -> None:
        self._refresh_again = True
        while self._refresh_again:
            self._refresh_again = False
            await self._refresh_logged()

    async def refresh_apps(self) -> None:
        """Read again every app this process holds (cached, or with sockets open here) and hand
        each open socket its app's snapshot when it changed: deleted or disabled apps' sockets
        close, new limits and flags apply. Raises what the database raises."""
        fresh = await self.credentials.reload({socket.app_id for socket in self.registry.sockets.values()})
        for socket in list(self.registry.sockets.values()):
            if socket.app_id in fresh:
                try:
                    socket.app_changed(fresh[socket.app_id])
                except Exception:
                    logger.exception("applying an app change to a socket failed")

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh_apps()
        except Exception:
            self.errors.exception(logger, "apps", "reading the apps again failed")

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.conf.CREDENTIALS_TTL)
            await self._refresh_logged()

    # What the cluster backend removed on its own

    async def _removed(self, removals: Iterable[Removed]) -> None:
        await changes.after_removals(self, removals)


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process' runtime, created on first use (not started: see ``Runtime.start``)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime()
    return _runtime


def reset_runtime() -> None:
    """Forget the whole process state (tests): the next ``get_runtime()`` builds a fresh one."""
    global _runtime
    _runtime = None
