"""The daphne ``Server`` that ``realtime_serve`` runs.

Compared with stock daphne: sockets are dispatched without Twisted's legacy log context
(``reactor``), a WebSocket's scope carries a ``FrameWriter`` (the consumer writes
pre-framed events with it), its consumer starts directly (``direct_application``) with a light
receive queue, its protocol drops handshake-only state once open, close frames keep their
reason, and a port that cannot be bound is reported to the caller instead of only logged.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from daphne.server import Server
from twisted.internet import tcp

try:
    from twisted.protocols.tls import TLSMemoryBIOProtocol
except ImportError:  # no pyOpenSSL (Twisted's tls extra): no TLS listener either
    TLSMemoryBIOProtocol = None

from ..conf import get_settings
from ..connection.consumer import WRITER_EXTENSION
from .front import FrontChannel, front_route
from .protocol import RealtimeWebSocketProtocol, SocketInbox, install_lazy_log_arguments
from .reactor import direct_dispatch
from .web import Limits, RealtimeHTTPChannel, RealtimeWebRequest
from .writer import FrameWriter, TLSFrameWriter

# Shared by every WebSocket scope instead of one dict per socket; nothing writes to it.
_ASGI_VERSION = {"version": "3.0"}
# A keep-alive connection idle this long between requests is closed (nginx's default).
IDLE_TIMEOUT_SECONDS = 75
# Pusher's close reasons are short; a close frame's payload is at most 125 bytes (RFC 6455 §5.5).
MAX_CLOSE_REASON = 120


# autobahn's default is 1 s: a client that answers later (a slow link, a busy device) got a TCP
# reset that could overtake the close frame, losing the pusher:error and the close code (4200
# "reconnect", 4009 "do not") it was meant to read. Seen as flaky 4200/4009 tests under load.
CLOSE_HANDSHAKE_SECONDS = 5


class RealtimeServer(Server):
    """daphne's server with Realtime's WebSocket fast path (see the module docstring).

    ``listen_failures`` collects ``(endpoint, error)`` for each endpoint that could not be bound.
    """

    def __init__(self, *args: Any, http_limits: Limits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http_limits = http_limits or Limits.from_settings(get_settings())
        self.listen_failures: list[tuple[str, str]] = []
        self._listen_results = 0

    def run(self) -> None:
        from twisted.internet import reactor

        # Before anything listens, so the listening port and every socket are registered directly.
        direct_dispatch(reactor)
        super().run()

    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # daphne builds its WebSocket factory inside run(); this is where its protocol is chosen.
        factory.protocol = RealtimeWebSocketProtocol
        install_lazy_log_arguments()
        # A protocol violation (bad framing, invalid UTF-8, a message over the limit) ends with a
        # close frame carrying RFC 6455's code (1002, 1007, 1009), not a dropped TCP connection
        # the client cannot tell from a network fault. A close the server starts waits
        # CLOSE_HANDSHAKE_SECONDS for the client's reply before the TCP connection is reset.
        factory.setProtocolOptions(failByDrop=False, closeHandshakeTimeout=CLOSE_HANDSHAKE_SECONDS)
        self._ws_factory = factory

    @property
    def http_factory(self) -> Any:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: Any) -> None:
        # Built inside run() too: Realtime's channel and request (realtime.daphne.web).
        factory.protocol = RealtimeHTTPChannel
        factory.timeOut = IDLE_TIMEOUT_SECONDS
        build = factory.buildProtocol
        # The front reads every connection first (realtime.daphne.front), unless daphne takes
        # client addresses from a proxy header or the application's HTTP side is not Realtime's.
        route = None if self.proxy_forwarded_address_header else front_route(self.application)

        def stock(address: Any) -> Any:
            channel = build(address)
            if channel is not None:
                channel.requestFactory = RealtimeWebRequest
            return channel

        def build_protocol(address: Any) -> Any:
            if route is None:
                return stock(address)
            front = FrontChannel(self, route, partial(stock, address))
            front.factory = factory
            return front

        factory.buildProtocol = build_protocol
        # Twisted formats a combined-log line for every request into its legacy log (3 % of an API
        # request), which nobody reads: the access log is daphne's (realtime.daphne.access_log).
        factory.log = _no_twisted_access_log
        self._http_factory = factory

    def listen_success(self, port: Any) -> None:
        self._listen_results += 1
        super().listen_success(port)

    def listen_error(self, failure: Any) -> None:
        # daphne logs the failure and stops, and its run() then returns as if all went well.
        endpoint = (
            str(self.endpoints[self._listen_results]) if self._listen_results < len(self.endpoints) else "?"
        )
        self._listen_results += 1
        self.listen_failures.append((endpoint, failure.getErrorMessage()))
        self.stop()

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        # daphne's serverClose drops the close reason; Pusher closes carry one.
        if (
            message.get("type") == "websocket.close"
            and message.get("reason")
            and getattr(protocol, "state", None) == WebSocketProtocol.STATE_OPEN
            and not self.connections.get(protocol, {}).get("disconnected")
        ):
            reason = message["reason"][:MAX_CLOSE_REASON]
            protocol.sendClose(code=message.get("code") or 1000, reason=reason)
            return
        await super().handle_reply(protocol, message)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") != "websocket":
            return super().create_application(protocol, scope)
        transport = protocol.transport
        if protocol._perMessageCompress is None and type(transport) is tcp.Server:
            writer = protocol.frame_writer = FrameWriter(protocol)
            scope.setdefault("extensions", {})[WRITER_EXTENSION] = writer
        elif (
            protocol._perMessageCompress is None
            and TLSMemoryBIOProtocol is not None
            and isinstance(transport, TLSMemoryBIOProtocol)
            and type(transport.transport) is tcp.Server
        ):
            scope.setdefault("extensions", {})[WRITER_EXTENSION] = TLSFrameWriter(protocol)
        # daphne's create_application, with a SocketInbox in place of its asyncio.Queue.
        details = self.connections.get(protocol)
        if details is None:
            return None  # the socket closed before its application could start
        if "application_instance" in details:
            raise RuntimeError(f"Protocol {protocol!r} already has an application")
        inbox = SocketInbox()
        scope.setdefault("asgi", _ASGI_VERSION)
        application, scope = direct_application(self.application, scope)
        instance = application(scope=scope, receive=inbox.get, send=partial(self.handle_reply, protocol))
        details["application_instance"] = asyncio.ensure_future(instance, loop=asyncio.get_event_loop())
        return inbox


def direct_application(application: Any, scope: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The application a WebSocket scope ends up at, and the scope it gets there, found without
    running the routers in between.

    Every router layer is a coroutine frame that lives as long as the connection (Realtime's
    router, ProtocolTypeRouter, URLRouter and ``as_asgi``'s wrapper: ~1.5 KiB per socket
    measured). This follows the layers it knows to be pure routing (Channels' ProtocolTypeRouter
    and URLRouter, anything with ``route_scope(scope) -> (application, scope)``, ``as_asgi``
    consumers) and stops at the first it does not know (middleware, other routers), which then
    runs as usual with the scope it would have received. When the route does not resolve, the
    whole application runs as usual.
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
            following, routed = app.route_scope(routed)
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


def _no_twisted_access_log(request: Any) -> None:
    return None
