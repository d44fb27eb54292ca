"""daphne's WebSocket protocol trimmed for long-lived sockets, and a lighter receive queue.

Measured with 2,000 idle subscribed sockets (tracemalloc; docs/architecture.md, "Memory per
connection"): what a socket keeps after its handshake is mostly daphne's, autobahn's and
Twisted's. These classes drop what only the opening handshake needed and allocate queues only
while something waits in them.
"""

from __future__ import annotations

import asyncio
import pprint
from collections import deque
from collections.abc import Callable
from functools import partial
from types import MappingProxyType
from typing import Any

from autobahn.websocket import protocol as autobahn_protocol
from autobahn.websocket.types import ConnectionDeny
from daphne.ws_protocol import WebSocketProtocol as DaphneWebSocketProtocol
from twisted.internet import tcp
from twisted.web.http import HTTPChannel


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
_SWITCHING = b"HTTP/1.1 101 "


def _allowed_close_code(code: int) -> bool:
    """A close code a peer may send: one of RFC 6455's defined ones, or 3000-4999."""
    return code in DaphneWebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED or 3000 <= code <= 4999


def _decodable(request: Any) -> bool:
    """Whether daphne's ``onConnect`` can decode every part of an upgrade request."""
    if not request.path.isascii():
        return False
    for name, value in request.headers.items():
        if not name.isascii():
            return False
        try:
            value.encode("latin1")
        except UnicodeEncodeError:
            return False
        if name.lower() == "sec-websocket-protocol" and not value.isascii():
            return False
    return True


class _Lazy:
    """``function(*args, **kwargs)``'s text when formatted, and only then: a log argument that
    costs something to make and is needed only if its line is logged."""

    __slots__ = ("args", "function", "kwargs")

    def __init__(self, function: Callable[..., object], *args: object, **kwargs: object) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __str__(self) -> str:
        return str(self.function(*self.args, **self.kwargs))

    __repr__ = __str__


def _lazy_pformat(value: object) -> _Lazy:
    """``pprint.pformat(value)``, made when formatted."""
    return _Lazy(pprint.pformat, value)


def install_lazy_log_arguments() -> None:
    """autobahn highlights its debug lines' arguments (``hltype``, ``hlval``: qualified names and
    ANSI colours through click) on every read, send and handshake, whether or not debug logging
    is on: 3 % of a connection's CPU. Its two WebSocket modules get versions that make the text
    only when a line is formatted. Idempotent."""
    from autobahn import util
    from autobahn.twisted import websocket as autobahn_twisted

    for module in (autobahn_protocol, autobahn_twisted):
        module.hltype = partial(_Lazy, util.hltype)
        module.hlval = partial(_Lazy, util.hlval)


# autobahn's per-socket settings that an open socket still reads; each socket used to get its own
# copy of the factory's values (18 attributes).
_SETTINGS = tuple(
    name
    for name in (
        *autobahn_protocol.WebSocketProtocol.CONFIG_ATTRS_COMMON,
        "requireMaskedClientFrames",
        "maskServerFrames",
    )
    if name != "openHandshakeTimeout"
)

# State autobahn sets on every open socket that keeps this value until the socket closes (the
# close handshake, timeouts and auto-ping bookkeeping). An open socket drops its own copy while it
# equals the class-level value below; autobahn's writes on closing put it back.
_UNTIL_CLOSING: dict[str, Any] = {
    "wasMaxFramePayloadSizeExceeded": False,
    "wasMaxMessagePayloadSizeExceeded": False,
    "closedByMe": False,
    "failedByMe": False,
    "droppedByMe": False,
    "wasClean": False,
    "wasNotCleanReason": None,
    "wasServerConnectionDropTimeout": False,
    "wasOpenHandshakeTimeout": False,
    "wasCloseHandshakeTimeout": False,
    "localCloseCode": None,
    "localCloseReason": None,
    "remoteCloseCode": None,
    "remoteCloseReason": None,
    "closeHandshakeTimeoutCall": None,
    "autoPingTimeoutCall": None,
    "autoPingPending": None,
    "autoPingPendingCall": None,
    "autoPingPendingSent": None,
    "trackedTimings": None,
    "_perMessageCompress": None,
    "websocket_protocol_in_use": None,
    "triggered": False,
}


class RealtimeWebSocketProtocol(DaphneWebSocketProtocol):
    """daphne's WebSocket protocol, minus what only the opening handshake needed.

    Measured with 2,000 idle subscribed sockets (tracemalloc): the protocol's
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

    # The socket's FrameWriter, from the application's start until the handshake's response
    # has been sent through it.
    frame_writer: Any = None

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        writer = self.frame_writer
        if writer is not None:
            if self.state == self.STATE_CONNECTING and data.startswith(_SWITCHING) and not (sync or chopsize):
                # The 101 goes out with the consumer's first frame (writer.FrameWriter.hold).
                self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)
                writer.hold(data)
                return
            writer.flush()  # anything else goes after it
        if (sync or chopsize) and self._send_queue is None:
            self._send_queue = deque()
        super().sendData(data, sync, chopsize)

    def _connectionMade(self) -> None:
        if type(self) is RealtimeWebSocketProtocol:
            # autobahn copies each setting onto the socket unless the socket already has it: a
            # class holding this factory's values as class attributes (made once per factory)
            # gives every socket them without a copy, read as fast as its own.
            self.__class__ = _with_settings(self.factory)
        # autobahn pretty-prints its 40-odd settings for a debug line on every connection, whether
        # or not debug logging is on: a fifth of a connection's CPU. For the length of the call
        # the module's pformat is a lazy one (the reactor runs one call at a time), so the text is
        # made only if the line is logged.
        eager = autobahn_protocol.pformat
        autobahn_protocol.pformat = _lazy_pformat
        try:
            super()._connectionMade()
        finally:
            autobahn_protocol.pformat = eager

    def onConnect(self, request: Any) -> Any:
        # daphne decodes the path and every header name as ASCII, each value as latin-1 and the
        # subprotocols as ASCII, and answers any failure with a 500 carrying the exception's text.
        # A request it cannot decode is a bad request: 400, nothing else said.
        if not _decodable(request):
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "Bad request")
        return super().onConnect(request)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # A handshake refused before daphne's onConnect ran (by autobahn, or by the check above)
        # has nothing of daphne's to clean up, and daphne's onClose would raise on the server,
        # request and client address it never set.
        if "server" not in self.__dict__:
            return
        super().onClose(wasClean, code, reason)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        # A close frame with a code no endpoint may send is a protocol violation (RFC 6455
        # §7.4): autobahn answers 1002 but takes that frame as the reply to its own close and
        # aborts the TCP connection, which discards the 1002 it just queued. Answer, then close
        # the connection gently so the 1002 arrives.
        if code is not None and self.state == self.STATE_OPEN and not _allowed_close_code(code):
            self.sendCloseFrame(code=self.CLOSE_STATUS_CODE_PROTOCOL_ERROR, isReply=False)
            self.dropConnection(abort=False)
            return True
        return super().onCloseFrame(code, reasonRaw)

    def onOpen(self) -> None:
        super().onOpen()
        attributes = self.__dict__
        for name in self._HANDSHAKE_ONLY:
            attributes.pop(name, None)
        for name, value in _UNTIL_CLOSING.items():
            if name in attributes and attributes[name] is value:
                del attributes[name]
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


for _name, _value in _UNTIL_CLOSING.items():
    setattr(RealtimeWebSocketProtocol, _name, _value)


def _with_settings(factory: Any) -> type[RealtimeWebSocketProtocol]:
    """``RealtimeWebSocketProtocol`` with ``factory``'s settings as class attributes, made on the
    factory's first connection (daphne sets its options after building the factory) and kept on
    the factory."""
    made = factory.__dict__.get("_realtime_protocol_class")
    if made is None:
        settings = {name: getattr(factory, name) for name in _SETTINGS}
        made = type("RealtimeWebSocketProtocol", (RealtimeWebSocketProtocol,), settings)
        factory._realtime_protocol_class = made
    return made
