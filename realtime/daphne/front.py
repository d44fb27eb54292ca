"""The first reader of every connection on ``realtime_serve``'s public port.

Under daphne an HTTP API request went through Twisted's line-by-line HTTP parser, daphne's
request object, application instance and application checker, then Twisted's write buffer; a
WebSocket upgrade was parsed by Twisted, re-serialized by daphne and parsed again by autobahn
(docs/architecture.md, "The HTTP front"). This protocol reads each request's head itself with
``httptools`` (the parser uvicorn uses) and then:

- serves an HTTP API request (the application's ``route_api``) straight from its ASGI handler,
  and writes the answer in one send;
- hands a WebSocket upgrade, as received, to daphne's WebSocket protocol (autobahn);
- hands anything else, from that request's first byte on, to daphne's HTTP channel, which answers
  it and everything after it on that connection exactly as before (errors included).

Only plain requests take the fast path: HTTP/1.1, a head that httptools parses and daphne would
accept, a ``Content-Length`` body within the API's limit, none of ``Transfer-Encoding``,
``Expect``, ``HEAD`` or ``Daphne-Root-Path``. Keep-alive and pipelining hold: requests are read in
order and each is answered before the next one is looked at.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import httptools
from daphne.utils import HEADER_NAME_RE, INVALID_HEADER_VALUE_BYTES
from twisted.internet import reactor, tcp
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.http import RESPONSES

from ..api.asgi import MAX_BODY_BYTES
from .web import ROOT_PATH_HEADER, Limits
from .writer import unsent, write_now

logger = logging.getLogger(__name__)

# Twisted's bounds on a request head (16 KiB, 500 headers): a longer one goes to its channel,
# which refuses it.
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 500
# While an answer waits in Twisted's buffer (the client does not read), nothing more is read;
# this is how often the buffer is looked at again.
DRAIN_CHECK_SECONDS = 0.05
_ASGI_VERSION = {"version": "3.0"}
_NOT_FAST = frozenset({b"transfer-encoding", b"expect", ROOT_PATH_HEADER})


class _Head:
    """httptools' callbacks for one request head."""

    __slots__ = ("headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


class _Date:
    """The ``Date`` header's value, made once a second."""

    __slots__ = ("second", "value")

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.value = formatdate(second, usegmt=True).encode()
        return self.value


_date = _Date()


class FrontChannel(Protocol):
    """Reads requests off one connection; see the module docstring for where each goes.

    ``server``: the daphne server (its ``application``, ``ws_factory``, ``http_limits``);
    ``stock``: builds daphne's HTTP channel for this connection when a request is not ours.
    """

    def __init__(self, server: Any, route: Callable[[dict[str, Any]], Any], stock: Callable[[], Any]):
        self.server = server
        self.route = route
        self.stock = stock
        self.limits: Limits = server.http_limits
        # What was read and not yet answered: pieces joined only when a request is complete, so
        # a body arriving in many small reads is copied once.
        self.pieces: list[bytes] = []
        self.size = 0
        self.busy = False
        self.paused = False
        self.blocked = False
        self.nodelay = False
        self.needed = 0
        self.task: asyncio.Future[None] | None = None
        self.gone: asyncio.Future[None] | None = None
        self.lost = False
        self.deadline: Any = None
        self.idle: Any = None
        self.active = 0.0
        self.addresses: tuple[list[Any], list[Any]] | None = None

    def connectionMade(self) -> None:
        if type(self.transport) is not tcp.Server:
            self._hand_over(self.stock(), b"")  # TLS and other wrappers: daphne's own path
            return
        limits = self.limits
        if len(limits.pending) >= limits.max_pending:
            self.lost = True
            self.transport.abortConnection()
            return
        self.active = time.monotonic()
        self.idle = reactor.callLater(self.server.http_factory.timeOut, self._idle_check)

    def dataReceived(self, data: bytes) -> None:
        if self.lost:
            return
        self.active = time.monotonic()
        self.pieces.append(data)
        self.size += len(data)
        if self.busy or self.blocked:
            if self.size > MAX_BODY_BYTES + MAX_HEAD_BYTES and not self.paused:
                # Pipelined requests pile up behind a slow one: read no more until it is answered.
                self.paused = True
                self.transport.pauseProducing()
        elif self.size >= self.needed:
            self._next()

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True
        self._settled()
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        if self.gone is not None and not self.gone.done():
            self.gone.set_result(None)

    def _buffered(self) -> bytes:
        """Everything read and not yet answered, as one bytes object."""
        pieces = self.pieces
        if len(pieces) > 1:
            pieces[:] = [b"".join(pieces)]
        return pieces[0] if pieces else b""

    def _keep(self, rest: bytes) -> None:
        self.pieces = [rest] if rest else []
        self.size = len(rest)

    def _next(self) -> None:
        """Look at the request at the start of the buffer, if there is one."""
        data = self._buffered()
        if data.startswith(b"\r\n"):
            # Stray line ends between requests (after a body, say) are skipped, as Twisted does.
            data = data.lstrip(b"\r\n")
            self._keep(data)
        if not data:
            return
        end = data.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
        if end < 0:
            if len(data) >= MAX_HEAD_BYTES:
                self._hand_over(self.stock(), data)
            else:
                self._pending()
            return
        head_end = end + 4
        head = _Head()
        parser = httptools.HttpRequestParser(head)
        upgrade = False
        try:
            parser.feed_data(data[:head_end])
        except httptools.HttpParserUpgrade:
            upgrade = True
        except httptools.HttpParserError:
            self._hand_over(self.stock(), data)
            return
        request = self._request(parser, head, upgrade)
        if request is None:
            self._hand_over(self.stock(), data)
            return
        if request == "websocket":
            self._upgrade(data, head.url)
            return
        handler, scope, length, keep_alive = request
        if len(data) < head_end + length:
            self.needed = head_end + length  # the head is read again once the body is here
            self._pending()
            return
        self.needed = 0
        self._settled()
        body = data[head_end : head_end + length]
        self._keep(data[head_end + length :])
        self.busy = True
        self.task = asyncio.get_event_loop().create_task(self._serve(handler, scope, body, keep_alive))

    def _request(self, parser: Any, head: _Head, upgrade: bool) -> Any:
        """``(handler, scope, body length, keep-alive)`` for the fast path, ``"websocket"`` for
        an upgrade to hand to autobahn, None for daphne's HTTP channel."""
        if parser.get_http_version() != "1.1":
            return None
        url = head.url
        if not url.startswith(b"/") or not url.isascii() or len(head.headers) > MAX_HEADERS:
            return None
        headers = []
        length = 0
        websocket = False
        keep_alive = True
        for name, value in head.headers:
            if not HEADER_NAME_RE.fullmatch(name) or INVALID_HEADER_VALUE_BYTES.intersection(value):
                return None
            name = name.lower()
            if name in _NOT_FAST:
                return None
            if name == b"content-length":
                if length or not value.isdigit() or len(value) > 9:
                    return None
                length = int(value)
            elif name == b"connection":
                # llhttp forgets the head's flags once a message without a body is complete.
                if b"close" in [token.strip() for token in value.lower().split(b",")]:
                    keep_alive = False
            elif name == b"upgrade":
                if websocket or value.lower() != b"websocket":
                    return None
                websocket = True
            if b"_" not in name:  # as daphne drops them (CVE-2015-0219)
                headers.append((name, value))
        if upgrade or websocket:
            return "websocket" if upgrade and websocket else None
        if length > MAX_BODY_BYTES:
            return None
        method = parser.get_method()
        if method in (b"HEAD", b"CONNECT"):
            return None
        raw_path, _, query = url.partition(b"?")
        client, server = self._addresses()
        scope = {
            "type": "http",
            "asgi": _ASGI_VERSION,
            "http_version": "1.1",
            "method": method.decode("ascii"),
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "root_path": self.server.root_path,
            "scheme": "http",
            "query_string": query,
            "headers": headers,
            "client": client,
            "server": server,
        }
        routed = self.route(scope)
        if routed is None:
            return None
        handler, scope = routed
        return handler, scope, length, keep_alive

    def _addresses(self) -> tuple[list[Any], list[Any]]:
        addresses = self.addresses
        if addresses is None:
            peer, host = self.transport.getPeer(), self.transport.getHost()
            addresses = self.addresses = ([peer.host, peer.port], [host.host, host.port])
        return addresses

    async def _serve(self, handler: Any, scope: dict[str, Any], body: bytes, keep_alive: bool) -> None:
        answer = _Answer()

        async def receive() -> dict[str, Any]:
            nonlocal body
            if body is not None:
                message = {"type": "http.request", "body": body, "more_body": False}
                body = None
                return message
            if self.gone is None:
                self.gone = asyncio.get_running_loop().create_future()
            if not self.lost:
                await self.gone
            return {"type": "http.disconnect"}

        try:
            await handler(scope, receive, answer.send)
        except Exception:
            logger.exception("HTTP API request failed")
            answer.failed()
            keep_alive = False
        self.busy = False
        self.task = None
        if self.lost:
            return
        try:
            self._answer(answer, keep_alive)
        except Exception:
            logger.exception("HTTP API answer failed")
            self.lost = True
            self.transport.abortConnection()

    def _answer(self, answer: _Answer, keep_alive: bool) -> None:
        if not answer.complete:
            answer.failed()
            keep_alive = False
        transport = self.transport
        if not self.nodelay:
            # As Twisted's HTTP channel does: an answer is not held back waiting for an ACK.
            self.nodelay = True
            transport.setTcpNoDelay(True)
        write_now(transport, answer.encode(keep_alive, self.server.server_name))
        if not keep_alive:
            self.lost = True
            transport.loseConnection()
        elif unsent(transport):
            # The client is not reading its answers: read nothing more until it has them all,
            # so what a connection can make us hold stays one answer (Twisted's HTTP channel
            # stopped reading the same way).
            self.blocked = True
            if not self.paused:
                self.paused = True
                transport.pauseProducing()
            reactor.callLater(DRAIN_CHECK_SECONDS, self._drain_check)
        else:
            self._resume()

    def _resume(self) -> None:
        if self.paused:
            self.paused = False
            self.transport.resumeProducing()
        if self.pieces:
            self._next()

    def _drain_check(self) -> None:
        if self.lost:
            return
        if unsent(self.transport):
            reactor.callLater(DRAIN_CHECK_SECONDS, self._drain_check)
            return
        self.blocked = False
        self._resume()

    def _upgrade(self, data: bytes, url: bytes) -> None:
        protocol = self.server.ws_factory.buildProtocol(self.transport.getPeer())
        if protocol is None:
            self._hand_over(self.stock(), data)
            return
        # What daphne's HTTP side gives its WebSocket protocol before the upgrade.
        protocol._raw_query_string = url.partition(b"?")[2]
        self._hand_over(protocol, data)

    def _hand_over(self, protocol: Any, data: bytes) -> None:
        """Give the connection, and ``data`` (read but not answered), to ``protocol``."""
        self._settled()
        self.lost = True
        self._keep(b"")
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        transport = self.transport
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        if data:
            protocol.dataReceived(data)

    def _pending(self) -> None:
        """Part of a request is here: the rest must come within the request timeout."""
        if self.deadline is None:
            self.deadline = reactor.callLater(self.limits.request_timeout, self._expired)
            self.limits.pending.add(self)

    def _settled(self) -> None:
        deadline, self.deadline = self.deadline, None
        if deadline is not None:
            if deadline.active():
                deadline.cancel()
            self.limits.pending.discard(self)

    def _expired(self) -> None:
        self.deadline = None
        self.limits.pending.discard(self)
        self.lost = True
        self.transport.abortConnection()

    def _idle_check(self) -> None:
        # One timer per connection, moved on only when it fires: nothing to do per request.
        timeout = self.server.http_factory.timeOut
        quiet = time.monotonic() - self.active
        if self.busy or self.deadline is not None or quiet < timeout:
            self.idle = reactor.callLater(max(timeout - quiet, 1.0), self._idle_check)
            return
        self.idle = None
        self.lost = True
        if unsent(self.transport):
            self.transport.abortConnection()  # a close would wait for a client that never reads
        else:
            self.transport.loseConnection()


class _Answer:
    """One response as the ASGI handler sends it, encoded in one piece."""

    __slots__ = ("body", "complete", "headers", "status")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif kind == "http.response.body" and self.status:
            self.body.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True

    def failed(self) -> None:
        self.status = 500
        self.headers = [(b"content-type", b"application/json")]
        self.body = [b'{"error": "Internal server error"}']
        self.complete = True

    def encode(self, keep_alive: bool, server_name: str) -> bytes:
        """The response's bytes: status line, headers (``Content-Length``, ``Server`` and
        ``Date`` added when missing; ``Connection: close`` unless ``keep_alive``), body."""
        body = b"".join(self.body)
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, RESPONSES.get(self.status, b"Unknown"))]
        server_named = False
        length_given = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                length_given = True
            elif lowered == b"server":
                server_named = True
            lines.append(b"%s: %s\r\n" % (name, value))
        if not length_given:
            lines.append(b"content-length: %d\r\n" % len(body))
        if not server_named and server_name:
            lines.append(b"server: %s\r\n" % server_name.encode())
        lines.append(b"date: %s\r\n" % _date.now())
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)


def front_route(application: Any) -> Callable[[dict[str, Any]], Any] | None:
    """The ``route_api(scope)`` of the Realtime application ``application`` serves HTTP with,
    found through Channels' ``ProtocolTypeRouter``; None when HTTP goes anywhere else first
    (middleware, another router), so that every request keeps going through daphne."""
    from channels.routing import ProtocolTypeRouter

    app = application
    if type(app) is ProtocolTypeRouter:
        app = app.application_mapping.get("http")
    route = getattr(app, "route_api", None)
    return route if callable(route) else None
