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
import os
import random
import signal
from collections import deque
from collections.abc import Callable
from functools import partial
from types import MappingProxyType
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol as DaphneWebSocketProtocol
from twisted.internet import reactor, tcp
from twisted.web.http import HTTPChannel

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


class SocketInbox:
    """One socket's ASGI ``receive`` queue: the part of ``asyncio.Queue`` daphne uses.

    ``asyncio.Queue`` allocates three deques and an ``Event`` (a fourth) up front, ~3.5 KiB per
    socket measured with tracemalloc; this holds a deque only while messages wait and a future
    only while the application waits.
    """

    __slots__ = ("_messages", "_waiters")

    def __init__(self) -> None:
        self._messages: deque[dict[str, Any]] | None = None
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, message: dict[str, Any]) -> None:
        messages = self._messages
        if messages is None:
            messages = self._messages = deque()
        messages.append(message)
        waiters = self._waiters
        if waiters is not None:
            # Wake every waiter (there is one in practice); each looks at the deque again.
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def get(self) -> dict[str, Any]:
        while not self._messages:
            waiter = asyncio.get_running_loop().create_future()
            waiters = self._waiters
            if waiters is None:
                self._waiters = [waiter]
            else:
                waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiters = self._waiters
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                raise
        messages = self._messages
        message = messages.popleft()
        if not messages:
            self._messages = None
        return message


def direct_application(application: Any, scope: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The application a WebSocket scope ends up at, and the scope it gets there, found without
    running the routers in between.

    Every router layer is a coroutine frame that lives as long as the connection (SiteRouter,
    ProtocolTypeRouter, URLRouter and ``as_asgi``'s wrapper: ~1.5 KiB per socket measured). This
    follows the layers it knows to be pure routing (Channels' ProtocolTypeRouter and URLRouter,
    anything with ``route_scope(scope)``, ``as_asgi`` consumers) and stops at the first it does
    not know (middleware, other routers), which then runs as usual with the scope it would have
    received. When the route does not resolve, the whole application runs as usual.
    """
    from channels.routing import ProtocolTypeRouter, URLRouter

    app, routed = application, scope
    for _ in range(32):
        # Exact types: a subclass may add behaviour to __call__.
        if type(app) is ProtocolTypeRouter:
            following = app.application_mapping.get(routed["type"])
        elif type(app) is URLRouter:
            match = _url_route(app, routed)
            if match is None:
                return application, scope
            following, routed = match
        elif callable(getattr(app, "route_scope", None)):
            following = app.route_scope(routed)
        else:
            break
        if following is None:
            break
        app = following
    consumer_class = getattr(app, "consumer_class", None)
    # as_asgi's wrapper has __wrapped__ set to the class; a function merely decorated with
    # functools.wraps(that wrapper) copies consumer_class too, but not that __wrapped__.
    if isinstance(consumer_class, type) and getattr(app, "__wrapped__", None) is consumer_class:
        try:
            app = consumer_class(**app.consumer_initkwargs)
        except Exception:
            return application, scope  # let the error surface where Channels would raise it
    return app, routed


def _url_route(router: Any, scope: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """Channels' URLRouter matching (channels.routing.URLRouter.__call__), without the call."""
    from django.urls.exceptions import Resolver404

    path = scope.get("path_remaining", scope.get("path"))
    if path is None:
        return None
    if "path_remaining" not in scope:
        root_path = scope.get("root_path", "")
        if root_path and not path.startswith(root_path):
            return None
        path = path[len(root_path) :]
    path = path.lstrip("/")
    for route in router.routes:
        try:
            match = route.pattern.match(path)
        except Resolver404:
            continue
        if match:
            new_path, args, kwargs = match
            kwargs.update(route.default_args)
            outer = scope.get("url_route", {})
            url_route = {
                "args": outer.get("args", ()) + args,
                "kwargs": {**outer.get("kwargs", {}), **kwargs},
            }
            return route.callback, dict(scope, path_remaining=new_path, url_route=url_route)
    return None


# Shared by every WebSocket scope instead of one dict per socket; nothing writes to it.
_ASGI_VERSION = {"version": "3.0"}


class _FromFactory:
    """A protocol setting autobahn copies from the factory, read from the factory again once the
    per-connection copy is dropped (a non-data descriptor: the instance's own value still wins)."""

    __slots__ = ("name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return getattr(instance.factory, self.name)


class _OpenedRequest:
    """What daphne still reads of autobahn's ConnectionRequest once the socket is open."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_NO_MAPPING: MappingProxyType[str, Any] = MappingProxyType({})


class RealtimeWebSocketProtocol(DaphneWebSocketProtocol):
    """daphne's WebSocket protocol, minus what only the opening handshake needed.

    Measured with 2,000 idle subscribed sockets (tracemalloc, DESIGN §4.1): the protocol's
    ``__dict__`` alone was 3.3 KiB (108 attributes, past the size where Python shares keys), and
    it kept the request's parsed headers twice (autobahn's ``http_headers`` and daphne's
    ``clean_headers``), the raw request and response, the query parameters and per-socket copies
    of handshake-only factory settings. ``onOpen`` drops them and rebuilds the dict at its new
    size. A dropped attribute reads as the class-level value below: the factory's setting, or an
    empty value for request data (which nothing reads after the handshake).
    """

    # Handshake-only settings autobahn copies from the factory into every protocol.
    versions = _FromFactory()
    webStatus = _FromFactory()
    perMessageCompressionAccept = _FromFactory()
    serveFlashSocketPolicy = _FromFactory()
    flashSocketPolicy = _FromFactory()
    allowedOrigins = _FromFactory()
    allowedOriginsPatterns = _FromFactory()
    allowNullOrigin = _FromFactory()
    maxConnections = _FromFactory()
    trustXForwardedFor = _FromFactory()
    openHandshakeTimeout = _FromFactory()

    # Opening-handshake data (autobahn, then daphne).
    http_request_data = b""
    http_status_line = ""
    http_headers = _NO_MAPPING
    http_request_uri = ""
    http_request_path = ""
    http_request_params = _NO_MAPPING
    http_request_host = ""
    http_response_data = ""
    websocket_origin = None
    websocket_protocols: tuple[str, ...] = ()
    websocket_extensions: tuple[Any, ...] = ()
    _wskey = ""
    openHandshakeTimeoutCall = None
    wasServingFlashSocketPolicyFile = False
    clean_headers: tuple[tuple[bytes, bytes], ...] = ()
    _raw_query_string = b""
    protocol_to_accept = None
    application_deferred = None

    _HANDSHAKE_ONLY = (
        "versions",
        "webStatus",
        "perMessageCompressionAccept",
        "serveFlashSocketPolicy",
        "flashSocketPolicy",
        "allowedOrigins",
        "allowedOriginsPatterns",
        "allowNullOrigin",
        "maxConnections",
        "trustXForwardedFor",
        "openHandshakeTimeout",
        "http_request_data",
        "http_status_line",
        "http_headers",
        "http_request_uri",
        "http_request_path",
        "http_request_params",
        "http_request_host",
        "http_response_data",
        "websocket_origin",
        "websocket_protocols",
        "websocket_extensions",
        "_wskey",
        "openHandshakeTimeoutCall",
        "wasServingFlashSocketPolicyFile",
        "clean_headers",
        "_raw_query_string",
        "protocol_to_accept",
        "application_deferred",
    )

    # autobahn queues a write only for sync=True or chopped sends (sendData), which nothing here
    # asks for, yet every protocol gets an empty deque (0.7 KiB). Reads see an empty tuple until
    # sendData is asked for one of those; then a real deque is made, before autobahn appends.
    _send_queue: deque[tuple[bytes, bool]] | None = None

    @property
    def send_queue(self) -> Any:
        queue = self._send_queue
        return () if queue is None else queue

    @send_queue.setter
    def send_queue(self, queue: deque[tuple[bytes, bool]]) -> None:
        self._send_queue = queue if queue else None

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if (sync or chopsize) and self._send_queue is None:
            self._send_queue = deque()
        super().sendData(data, sync, chopsize)

    def onOpen(self) -> None:
        super().onOpen()
        attributes = self.__dict__
        for name in self._HANDSHAKE_ONLY:
            attributes.pop(name, None)
        request = attributes.get("request")
        if request is not None:
            attributes["request"] = _OpenedRequest(request.path)
        # Deleting keys never shrinks a dict; a copy is sized for what is left (~1.6 KiB saved).
        self.__dict__ = dict(attributes)
        # daphne's upgrade leaves Twisted's HTTPChannel registered as the transport's producer,
        # and through it the upgrade request, its headers and body buffer. The request never
        # finishes, so the channel's pause/resume are no-ops for this socket: release it.
        transport = self.transport
        if isinstance(getattr(transport, "producer", None), HTTPChannel):
            transport.unregisterProducer()
        if type(transport) is tcp.Server:
            # Its 17 attributes were added one by one, which grew the dict to 64 slots; a copy
            # is sized for them (0.8 -> 0.4 KiB measured).
            transport.__dict__ = dict(transport.__dict__)


class RealtimeServer(Server):
    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # daphne builds its WebSocket factory inside run(); this is where its protocol is chosen.
        factory.protocol = RealtimeWebSocketProtocol
        self._ws_factory = factory

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
        if scope.get("type") != "websocket":
            return super().create_application(protocol, scope)
        if getattr(protocol, "_perMessageCompress", None) is None:
            scope.setdefault("extensions", {})[WRITER_EXTENSION] = FrameWriter(protocol)
        # daphne's create_application, with a SocketInbox in place of its asyncio.Queue.
        details = self.connections.get(protocol)
        if details is None:
            return None  # the socket closed before its application could start
        assert "application_instance" not in details
        inbox = SocketInbox()
        scope.setdefault("asgi", _ASGI_VERSION)
        application, scope = direct_application(self.application, scope)
        instance = application(scope=scope, receive=inbox.get, send=partial(self.handle_reply, protocol))
        details["application_instance"] = asyncio.ensure_future(instance, loop=asyncio.get_event_loop())
        return inbox


def install_shutdown_handlers(server: Server) -> Callable[[], None]:
    """SIGTERM/SIGINT: stop accepting, close every socket with 4200 over a jittered window, exit.

    Returns the function that starts that shutdown, for other triggers (a worker's parent dying).
    """
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
    return on_signal


async def exit_with_parent(shutdown: Callable[[], None], parent: int, interval: float = 1.0) -> None:
    """A worker drains and exits when its supervisor is gone (killed without forwarding a signal).

    ``parent`` comes from the supervisor itself: reading our parent pid here instead would race
    with a supervisor that dies while this worker starts (we would read init's pid).
    """
    while os.getppid() == parent:  # noqa: ASYNC110 (no event exists for a parent exiting)
        await asyncio.sleep(interval)
    logger.warning("supervisor gone, shutting down")
    shutdown()


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
