"""The daphne server Realtime runs: a direct frame writer for sockets, and graceful shutdown.

``RealtimeServer.create_application`` (daphne's hook, where both the WebSocket protocol and the
scope are at hand) puts a ``FrameWriter`` into ``scope["extensions"]``. The consumer writes the
pre-framed bytes of an event with it: straight to the socket when Twisted holds nothing for it,
else behind Twisted's buffer so that order is kept. Without the extension (stock daphne, uvicorn,
``channels.testing``) the consumer falls back to ``websocket.send``. Measured in DESIGN §4.1.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from daphne.server import Server
from twisted.internet import reactor, tcp

from .background import spawn
from .conf import get_settings
from .consumers import WRITER_EXTENSION
from .node import get_node
from .protocol import errors

logger = logging.getLogger(__name__)


class FrameWriter:
    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._transport: Any = None

    def write(self, frame: bytes) -> None:
        protocol = self._protocol
        if protocol.state != WebSocketProtocol.STATE_OPEN:
            return
        transport = self._transport
        if transport is None:
            transport = self._transport = protocol.transport
        if (
            type(transport) is tcp.Server
            and not transport.dataBuffer
            and not transport._tempDataLen
            and not transport.disconnecting
        ):
            try:
                sent = transport.socket.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                return  # the connection is gone; Twisted reports it on its next read
            if sent == len(frame):
                return
            frame = frame[sent:]
        transport.write(frame)

    def buffered(self) -> int:
        transport = self._transport or self._protocol.transport
        return len(getattr(transport, "dataBuffer", b"")) + getattr(transport, "_tempDataLen", 0)


class RealtimeServer(Server):
    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        # daphne's serverClose drops the close reason; Pusher closes carry one (§1.5).
        if (
            message.get("type") == "websocket.close"
            and message.get("reason")
            and getattr(protocol, "state", None) == WebSocketProtocol.STATE_OPEN
            and not self.connections.get(protocol, {}).get("disconnected")
        ):
            protocol.sendClose(code=message.get("code") or 1000, reason=message["reason"][:120])
            return
        await super().handle_reply(protocol, message)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") == "websocket" and getattr(protocol, "_perMessageCompress", None) is None:
            scope.setdefault("extensions", {})[WRITER_EXTENSION] = FrameWriter(protocol)
        return super().create_application(protocol, scope)


def install_shutdown_handlers(server: Server) -> None:
    """SIGTERM/SIGINT: stop accepting, close every socket with 4200 over a jittered window, exit."""
    loop = asyncio.get_event_loop()
    state = {"stopping": False}

    def on_signal() -> None:
        if state["stopping"]:
            logger.warning("second signal: stopping now")
            reactor.stop()
            return
        state["stopping"] = True
        spawn(drain(server))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


async def drain(server: Server) -> None:
    conf = get_settings()
    node = get_node()
    node.accepting = False
    sockets = list(node.registry.sockets.values())
    logger.info("draining", extra={"sockets": len(sockets)})
    window = min(conf.SHUTDOWN_JITTER_SECONDS, conf.SHUTDOWN_GRACE_SECONDS / 2)
    loop = asyncio.get_running_loop()
    for socket in sockets:
        loop.call_later(
            random.uniform(0, window),  # noqa: S311 (jitter, not security)
            socket.terminate,
            errors.RECONNECT,
            "Server is shutting down, reconnect",
        )
    deadline = loop.time() + conf.SHUTDOWN_GRACE_SECONDS
    while node.registry.sockets and loop.time() < deadline:  # noqa: ASYNC110 (bounded, once per shutdown)
        await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(node.stop(), timeout=max(0.1, deadline - loop.time()))
    except Exception:
        logger.exception("node stop failed")
    logger.info("stopped", extra={"sockets_left": len(node.registry.sockets)})
    server.stop()
