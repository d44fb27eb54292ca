"""``RedisBroker``: one Redis pub/sub message per publish reaches every node, which fans it out locally.

All nodes of a prefix share one pub/sub channel (``{P}:bus``). A message carries the frame text
already encoded by the publisher, so a node does nothing per subscriber but hand the same
``Outbound`` to each local socket (``Registry.deliver``); never one Redis operation per subscriber.
The publishing node delivers to its own sockets directly and skips its own messages when they
come back from the bus.

Messages are short text records, fields separated by ``\\x1f`` (never in an app id, channel name or
socket id; a user id or the frame text is always the last field)::

    p  origin  app  except_socket  channel\\x1echannel...  text     an event for channels
    t  origin  app  user                                         terminate a user's connections
    w  origin  app  0|1  user                                     watchlist offline / online
    k  origin  app  socket  code  reason                          close one connection
    o  origin  json                                               the admin console (runtime/console.py)
    c  origin                                                     app credentials changed

Pub/sub is at most once: a node that loses its subscription loses messages silently, which is why
the backend closes every socket with 4200 when Redis goes away (docs/architecture.md, "Redis").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from ...protocol import errors
from ...stats import Stats
from ..base import TERMINATED_REASON
from ..registry import Outbound, Registry
from .state import shared_key

T = TypeVar("T")

logger = logging.getLogger(__name__)

SEP = "\x1f"
CHANNEL_SEP = "\x1e"


def bus_channel(prefix: str) -> str:
    """``{P}:bus``: the one pub/sub channel of every node sharing ``prefix``."""
    return shared_key(prefix, "bus")


def invalidation_message() -> str:
    """The bus message that makes every node drop its cached app credentials."""
    return SEP.join(("c", "-"))


class BusLink(Protocol):
    """What the broker needs from the backend: the client, the prefix, this process, a guarded call."""

    client: Any
    target: Any
    prefix: str
    instance: str

    def bus_alive(self) -> None:
        """Note that the bus connection just answered: a bus silent for too long counts as failed."""
        ...

    async def call(self, operation: str, command: Callable[[], Awaitable[T]]) -> T:
        """Run ``command`` (one Redis round trip), counted and timed under ``operation`` (a metric label).
        Raises ``StateUnavailable`` when the node is down or the command meets an outage.
        """
        ...


class RedisBroker:
    """``Broker`` over Redis pub/sub: one PUBLISH per event, delivered by every node (this one too)
    as it reads the bus; terminations and watchlist changes act on local sockets at once."""

    def __init__(
        self, backend: BusLink, registry: Registry, stats: Stats, on_invalidate: Callable[[], None]
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.stats = stats
        self.on_invalidate = on_invalidate
        self.channel = bus_channel(backend.prefix)
        self.origin = backend.instance
        # Given other nodes' console messages (origin, message); set by the runtime.
        self.on_console: Callable[[str, str], None] | None = None

    async def publish(
        self, app_id: str, channels: list[str], text: str, except_socket_id: str | None = None
    ) -> None:
        # Every node delivers from the bus, this one included: Redis puts all PUBLISHes to the bus
        # in one order and each node reads them in that order, so an event this node has
        # answered for is never overtaken by a later one published through another node. (This
        # node's sockets get it one Redis round trip later than a local-first delivery would.)
        fields = ("p", self.origin, app_id, except_socket_id or "", CHANNEL_SEP.join(channels), text)
        await self._send("publish", SEP.join(fields))

    async def terminate_user(self, app_id: str, user_id: str) -> None:
        self.registry.terminate_user(app_id, user_id, errors.UNAUTHORIZED, TERMINATED_REASON)
        await self._send("control", SEP.join(("t", self.origin, app_id, user_id)))

    async def watchlist_changed(self, app_id: str, user_id: str, online: bool) -> None:
        self.registry.watchlist_changed(app_id, user_id, online)
        await self._send("control", SEP.join(("w", self.origin, app_id, "1" if online else "0", user_id)))

    async def terminate_socket(self, app_id: str, socket_id: str, code: int, reason: str) -> None:
        if not self.registry.terminate_socket(app_id, socket_id, code, reason):
            await self._send("control", SEP.join(("k", self.origin, app_id, socket_id, str(code), reason)))

    async def console(self, message: str) -> None:
        """Send an admin console message (``runtime.console``) to the other nodes."""
        await self._send("console", SEP.join(("o", self.origin, message)))

    async def _send(self, operation: str, payload: str) -> None:
        client, target = self.backend.client, self.backend.target
        await self.backend.call(operation, lambda: target.publish(client, self.channel, payload))
        self.stats.observe("adapter_message_size", len(payload.encode()), (), unit="bytes")

    # Receiving

    async def read(self, pubsub: Any) -> None:
        """Dispatch bus messages until the connection fails (the exception ends the node's epoch)."""
        backend = self.backend
        while True:
            response = await pubsub.parse_response(block=True)
            # Any reply proves the connection alive, including the PONG of the heartbeat's PING
            # (under RESP3 a plain reply that ``listen()`` would swallow).
            backend.bus_alive()
            message = await pubsub.handle_message(response, ignore_subscribe_messages=True)
            if message is not None and message.get("type") in ("message", "smessage"):
                self.dispatch(message["data"])

    def dispatch(self, data: str) -> None:
        """Act on one bus message (``data``: a record as above): ``p`` delivers to local subscribers,
        ``t`` closes the user's local sockets with 4009, ``w`` tells local watchers, ``k`` closes one
        local socket, ``c`` drops cached credentials. Other kinds and this node's own ``t``/``w``/``k``
        are ignored; a malformed message or a failing socket is logged and counted
        (``adapter_errors``), never raised.
        """
        kind, _, rest = data.partition(SEP)
        origin, _, rest = rest.partition(SEP)
        if kind == "c":
            self.on_invalidate()
            return
        if origin == self.origin and kind != "p":
            return  # terminations and watchlist changes act on this node's sockets at once
        stats = self.stats
        stats.incr("adapter_operations", ("receive",))
        try:
            if kind == "o":
                if self.on_console is not None:
                    self.on_console(origin, rest)
                return
            if kind == "p":
                app_id, except_socket_id, channels, text = rest.split(SEP, 3)
                message = Outbound(text)
                deliver = self.registry.deliver
                for channel in channels.split(CHANNEL_SEP):
                    deliver(app_id, channel, message, except_socket_id or None)
            elif kind == "t":
                app_id, user_id = rest.split(SEP, 1)
                self.registry.terminate_user(app_id, user_id, errors.UNAUTHORIZED, TERMINATED_REASON)
            elif kind == "w":
                app_id, online, user_id = rest.split(SEP, 2)
                self.registry.watchlist_changed(app_id, user_id, online == "1")
            elif kind == "k":
                app_id, socket_id, code, reason = rest.split(SEP, 3)
                self.registry.terminate_socket(app_id, socket_id, int(code), reason)
        except Exception:
            # A malformed message or a failing socket must not stop the node's only reader.
            logger.exception("bus message dropped")
            stats.incr("adapter_errors", ("receive",))
