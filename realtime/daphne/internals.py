"""The start-up check of every daphne, Twisted, autobahn and Channels internal Realtime relies on.

``realtime.daphne`` reaches behind public APIs for speed and memory (the frame writer reads
Twisted's transport buffer; the trimmed protocol drops autobahn's and daphne's handshake state;
``direct_application`` follows Channels' routers). A later release could rename any of them, and
the failure would be silent (a slow-consumer bound that never trips) or far from the cause. So
``realtime_serve`` checks each one before it listens and refuses to start, naming what is missing
and the versions it is tested with, instead of degrading.
"""

from __future__ import annotations

import inspect
import pprint
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

# The versions requirements.txt pins and the test suite runs.
TESTED = {"daphne": "4.2.3", "Twisted": "26.10.0", "autobahn": "26.10.2", "channels": "4.3.2"}


class UnsupportedInternals(Exception):
    """An internal of daphne, Twisted, autobahn or Channels that Realtime relies on is missing."""


def _stores(function: Callable[..., object], *names: str) -> bool:
    """Whether ``function``'s code refers to each attribute name (it sets or reads them)."""
    code_names = function.__code__.co_names
    return all(name in code_names for name in names)


def _parameters(function: Callable[..., object]) -> list[str]:
    return list(inspect.signature(function).parameters)


def _checks() -> list[tuple[str, Callable[[], bool]]]:
    from autobahn import util as autobahn_util
    from autobahn.twisted.websocket import WebSocketAdapterProtocol as AutobahnTwistedProtocol
    from autobahn.twisted.websocket import WebSocketServerFactory
    from autobahn.websocket import protocol as autobahn_protocol
    from autobahn.websocket.protocol import WebSocketProtocol, WebSocketServerProtocol
    from autobahn.websocket.types import ConnectionDeny
    from channels.consumer import AsyncConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from daphne import utils as daphne_utils
    from daphne.access import AccessLogGenerator
    from daphne.http_protocol import HTTPFactory, WebRequest
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol as DaphneWebSocketProtocol
    from twisted.internet import abstract, tcp
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor
    from twisted.web.http import HTTPChannel, Request

    return [
        # writer.FrameWriter
        ("autobahn WebSocketProtocol.STATE_OPEN", lambda: isinstance(WebSocketProtocol.STATE_OPEN, int)),
        ("Twisted tcp.Server is a FileDescriptor", lambda: issubclass(tcp.Server, abstract.FileDescriptor)),
        ("Twisted FileDescriptor.dataBuffer", lambda: isinstance(abstract.FileDescriptor.dataBuffer, bytes)),
        (
            "Twisted FileDescriptor._tempDataLen",
            lambda: _stores(abstract.FileDescriptor.__init__, "_tempDataLen"),
        ),
        ("Twisted FileDescriptor.offset", lambda: isinstance(abstract.FileDescriptor.offset, int)),
        ("Twisted FileDescriptor.disconnecting", lambda: hasattr(abstract.FileDescriptor, "disconnecting")),
        ("Twisted tcp.Connection.socket", lambda: _stores(tcp.Connection.__init__, "socket")),
        # protocol.RealtimeWebSocketProtocol
        (
            "daphne WebSocketProtocol is autobahn's server protocol",
            lambda: issubclass(DaphneWebSocketProtocol, WebSocketServerProtocol),
        ),
        (
            "autobahn WebSocketProtocol._connectionMade sets send_queue and _perMessageCompress",
            lambda: _stores(WebSocketProtocol._connectionMade, "send_queue", "_perMessageCompress"),
        ),
        (
            "autobahn WebSocketProtocol.sendData(data, sync, chopsize)",
            lambda: _parameters(WebSocketProtocol.sendData)[:4] == ["self", "data", "sync", "chopsize"],
        ),
        (
            "autobahn WebSocketProtocol.sendClose(code, reason)",
            lambda: _parameters(WebSocketProtocol.sendClose)[:3] == ["self", "code", "reason"],
        ),
        ("daphne WebSocketProtocol.onOpen", lambda: callable(DaphneWebSocketProtocol.onOpen)),
        (
            "autobahn WebSocketProtocol._connectionMade logs its settings through the module's pformat",
            lambda: (
                getattr(autobahn_protocol, "pformat", None) is pprint.pformat
                and "pformat" in WebSocketProtocol._connectionMade.__code__.co_names
            ),
        ),
        (
            "daphne WebSocketProtocol.onConnect keeps clean_headers and application_deferred",
            lambda: _stores(DaphneWebSocketProtocol.onConnect, "clean_headers", "application_deferred"),
        ),
        (
            "Twisted FileDescriptor.unregisterProducer",
            lambda: callable(abstract.FileDescriptor.unregisterProducer),
        ),
        ("Twisted twisted.web.http.HTTPChannel", lambda: isinstance(HTTPChannel, type)),
        (
            "daphne HTTPFactory.log(request), from Twisted",
            lambda: _parameters(HTTPFactory.log) == ["self", "request"],
        ),
        (
            "Twisted Request(parsePOSTFormSubmission=...)",
            lambda: "parsePOSTFormSubmission" in _parameters(Request.__init__),
        ),
        # server.RealtimeServer
        ("daphne Server.run builds ws_factory", lambda: _stores(Server.run, "ws_factory", "listen_error")),
        (
            "daphne Server.create_application(protocol, scope) with connections",
            lambda: (
                _parameters(Server.create_application) == ["self", "protocol", "scope"]
                and _stores(Server.create_application, "connections")
            ),
        ),
        (
            "daphne Server.handle_reply(protocol, message)",
            lambda: _parameters(Server.handle_reply) == ["self", "protocol", "message"],
        ),
        (
            "daphne Server.listen_success and stop",
            lambda: callable(Server.listen_success) and callable(Server.stop),
        ),
        # server.direct_application
        (
            "channels ProtocolTypeRouter.application_mapping",
            lambda: _stores(ProtocolTypeRouter.__init__, "application_mapping"),
        ),
        ("channels URLRouter.routes", lambda: _stores(URLRouter.__init__, "routes")),
        (
            "channels as_asgi sets consumer_class and consumer_initkwargs",
            lambda: _stores(AsyncConsumer.as_asgi.__func__, "consumer_class", "consumer_initkwargs"),
        ),
        # web.RealtimeHTTPChannel and RealtimeWebRequest
        ("daphne Server.run builds http_factory", lambda: _stores(Server.run, "http_factory")),
        (
            "daphne HTTPFactory.buildProtocol sets requestFactory",
            lambda: _stores(HTTPFactory.buildProtocol, "requestFactory"),
        ),
        ("Twisted HTTPChannel keeps the request's _path", lambda: _stores(HTTPChannel.lineReceived, "_path")),
        (
            "Twisted HTTPChannel._respondToBadRequestAndDisconnect",
            lambda: _stores(HTTPChannel.lineReceived, "_respondToBadRequestAndDisconnect"),
        ),
        (
            "Twisted HTTPChannel.allHeadersReceived reads length, allContentReceived clears _path",
            lambda: (
                _stores(HTTPChannel.allHeadersReceived, "length")
                and _stores(HTTPChannel.allContentReceived, "_path")
            ),
        ),
        ("daphne WebRequest.process and handleContentChunk", lambda: callable(WebRequest.handleContentChunk)),
        (
            "daphne WebRequest.basic_error(status, status_text, body)",
            lambda: _parameters(WebRequest.basic_error) == ["self", "status", "status_text", "body"],
        ),
        (
            "autobahn CLOSE_STATUS_CODES_ALLOWED, sendCloseFrame(code, isReply) and dropConnection(abort)",
            lambda: (
                1000 in WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED
                and {"code", "isReply"} <= set(_parameters(WebSocketProtocol.sendCloseFrame))
                and "abort" in _parameters(WebSocketProtocol.dropConnection)
            ),
        ),
        (
            "autobahn failByDrop and ConnectionDeny.BAD_REQUEST",
            lambda: (
                "failByDrop" in _parameters(WebSocketServerFactory.setProtocolOptions)
                and ConnectionDeny.BAD_REQUEST == 400
            ),
        ),
        (
            "autobahn's WebSocket modules highlight log arguments with util.hltype and util.hlval",
            lambda: (
                callable(autobahn_util.hltype)
                and callable(autobahn_util.hlval)
                and _stores(WebSocketProtocol.sendData, "hltype", "hlval")
                and _stores(AutobahnTwistedProtocol.dataReceived, "hltype", "hlval")
            ),
        ),
        (
            "autobahn copies CONFIG_ATTRS from the factory only when the protocol lacks them",
            lambda: (
                _stores(WebSocketProtocol._connectionMade, "CONFIG_ATTRS")
                and "hasattr" in WebSocketProtocol._connectionMade.__code__.co_names
            ),
        ),
        # serve: daphne's checker refuses sockets still connecting, in place of autobahn's timer
        (
            "daphne WebSocketProtocol.check_timeouts refuses after websocket_connect_timeout",
            lambda: (
                _stores(DaphneWebSocketProtocol.check_timeouts, "websocket_connect_timeout", "serverReject")
                and _stores(Server.__init__, "websocket_handshake_timeout")
            ),
        ),
        # front.FrontChannel
        (
            "daphne HEADER_NAME_RE and INVALID_HEADER_VALUE_BYTES, as WebRequest.process checks",
            lambda: (
                _stores(inspect.unwrap(WebRequest.process), "HEADER_NAME_RE", "INVALID_HEADER_VALUE_BYTES")
                and daphne_utils.HEADER_NAME_RE.fullmatch(b"content-type") is not None
                and 0x0B in daphne_utils.INVALID_HEADER_VALUE_BYTES
            ),
        ),
        (
            "daphne's upgrade gives the WebSocket protocol _raw_query_string and the transport",
            lambda: _stores(
                inspect.unwrap(WebRequest.process), "_raw_query_string", "ws_factory", "makeConnection"
            ),
        ),
        (
            "daphne Server root_path, server_name and proxy_forwarded_address_header",
            lambda: _stores(Server.__init__, "root_path", "server_name", "proxy_forwarded_address_header"),
        ),
        ("Twisted tcp.Connection.protocol", lambda: _stores(tcp.Connection.__init__, "protocol")),
        # reactor.DirectDispatchReactor
        (
            "Twisted AsyncioSelectorReactor registers sockets as _readOrWrite(selectable, read)",
            lambda: (
                _parameters(AsyncioSelectorReactor._readOrWrite) == ["self", "selectable", "read"]
                and _stores(AsyncioSelectorReactor.addReader, "_readers", "_continuousPolling")
                and _stores(AsyncioSelectorReactor.addWriter, "_writers", "_continuousPolling")
                and _stores(AsyncioSelectorReactor.__init__, "_asyncioEventloop")
                and callable(AsyncioSelectorReactor._unregisterFDInAsyncio)
            ),
        ),
        # access_log
        (
            "daphne AccessLogGenerator(protocol, action, details)",
            lambda: _parameters(AccessLogGenerator.__call__) == ["self", "protocol", "action", "details"],
        ),
    ]


def installed_versions() -> dict[str, str]:
    """The installed version of each package ``TESTED`` names ("missing" when not installed)."""
    found = {}
    for name in TESTED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def problems() -> list[str]:
    """What is missing, one description per internal (empty when everything is there)."""
    missing = []
    for description, check in _checks():
        try:
            ok = check()
        except Exception:
            ok = False
        if not ok:
            missing.append(description)
    return missing


def verify_internals() -> None:
    """Raise ``UnsupportedInternals`` naming each missing internal and the supported versions."""
    missing = problems()
    if not missing:
        return
    installed = ", ".join(f"{name} {found}" for name, found in installed_versions().items())
    tested = ", ".join(f"{name} {pinned}" for name, pinned in TESTED.items())
    raise UnsupportedInternals(
        f"realtime_serve cannot run on {installed}: missing {'; '.join(missing)}. "
        f"It supports {tested} (the versions requirements.txt pins). Install those, or serve the "
        "same application with daphne or uvicorn, which need none of these internals."
    )
