"""RealtimeWebSocketProtocol: a real opening handshake over a fake transport, then the trimming."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from daphne.ws_protocol import WebSocketFactory
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from realtime.connection.consumer import WRITER_EXTENSION
from realtime.daphne.protocol import RealtimeWebSocketProtocol, SocketInbox
from realtime.daphne.server import RealtimeServer

UPGRADE = (
    b"GET /app/k1?protocol=7 HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nOrigin: https://example.test\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def _receive_forever(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        await receive()


def listening_server() -> RealtimeServer:
    """A RealtimeServer with its WebSocket factory set up as daphne's run() does, serving an
    application that takes every message and never answers."""
    server = RealtimeServer(application=_receive_forever, endpoints=["tcp:port=0"])
    server.connections = {}
    server.ws_factory = WebSocketFactory(server, server="realtime")
    server.ws_factory.setProtocolOptions(allowNullOrigin=True)
    return server


async def test_an_open_socket_keeps_no_handshake_data() -> None:
    scopes: list[dict[str, Any]] = []

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        while True:
            await receive()

    server = RealtimeServer(application=application, endpoints=["tcp:port=0"])
    server.connections = {}
    server.ws_factory = WebSocketFactory(server, server="realtime")  # as daphne's run() does
    server.ws_factory.setProtocolOptions(allowNullOrigin=True, openHandshakeTimeout=5)
    protocol = server.ws_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    assert isinstance(protocol, RealtimeWebSocketProtocol)
    protocol._raw_query_string = b"protocol=7"  # daphne's HTTP side sets this before the upgrade
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(UPGRADE)
    assert isinstance(protocol.application_queue, SocketInbox)
    try:
        await asyncio.sleep(0)
        (scope,) = scopes
        assert dict(scope["headers"])[b"origin"] == b"https://example.test"
        # The direct writer is for TCP transports only; this one falls back to websocket.send.
        assert WRITER_EXTENSION not in scope.get("extensions", {})
        protocol.serverAccept()

        assert transport.value().startswith(b"HTTP/1.1 101 ")
        assert protocol.state == protocol.STATE_OPEN
        attributes = vars(protocol)
        for name in ("http_headers", "http_request_data", "clean_headers", "versions", "send_queue"):
            assert name not in attributes
        # Fits a 64-slot dict table (docs/architecture.md, "Memory per connection"), with room.
        assert len(attributes) <= 38, sorted(attributes)
        # Settings are the factory's, read from the class; closing state from class defaults.
        for name in ("maskServerFrames", "autoPingInterval", "wasClean", "remoteCloseCode"):
            assert name not in attributes
        assert protocol.maxMessagePayloadSize == server.ws_factory.maxMessagePayloadSize
        assert protocol.wasClean is False and protocol.remoteCloseCode is None
        # Dropped attributes still read sensibly.
        assert protocol.http_headers == {}
        assert protocol.versions == server.ws_factory.versions
        assert protocol.openHandshakeTimeout == 5
        assert protocol.request.path == "/app/k1"
        assert protocol.send_queue == ()

        # Frames still flow both ways after the trim.
        protocol.sendMessage(b"hello")
        assert transport.value().endswith(b"\x81\x05hello")
        protocol.sendData(b"queued", sync=True)
        assert isinstance(protocol._send_queue, deque)
    finally:
        server.connections[protocol]["application_instance"].cancel()


def test_autobahns_settings_line_is_formatted_only_when_logged(monkeypatch) -> None:
    import pprint

    from autobahn.websocket import protocol as autobahn_protocol
    from twisted.logger import formatEvent

    from realtime.daphne.protocol import _lazy_pformat

    settings = [("openHandshakeTimeout", 5, "WebSocketServerFactory"), ("versions", [8, 13], "x")]
    # Logged: exactly the text autobahn would have made.
    assert formatEvent(
        {"log_format": "\n{attrs}", "attrs": _lazy_pformat(settings)}
    ) == "\n" + pprint.pformat(settings)
    # Not logged (debug off, the default): never pretty-printed.
    calls: list[object] = []
    monkeypatch.setattr(pprint, "pformat", lambda value, *a, **k: calls.append(value) or "")
    server = RealtimeServer(application=None, endpoints=["tcp:port=0"])
    server.connections = {}
    server.ws_factory = WebSocketFactory(server, server="realtime")
    protocol = server.ws_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    protocol.makeConnection(StringTransport())
    assert calls == []
    # And the module's own pformat is back once the connection is set up.
    monkeypatch.undo()
    assert autobahn_protocol.pformat is pprint.pformat


async def test_an_upgraded_connection_leaves_no_cycle_to_collect() -> None:
    import gc
    import weakref

    from daphne.http_protocol import HTTPFactory

    server = listening_server()
    server.http_factory = HTTPFactory(server)
    channel = server.http_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
    channel.makeConnection(transport)
    gc.disable()
    try:
        channel.dataReceived(UPGRADE)
        protocol = transport.protocol
        assert isinstance(protocol, RealtimeWebSocketProtocol)
        await asyncio.sleep(0)
        protocol.serverAccept()
        assert protocol.state == protocol.STATE_OPEN
        held = weakref.ref(channel)
        (upgrade,) = [weakref.ref(p) for p in server.connections if p is not protocol]
        del channel
        # daphne's application checker forgets a request marked disconnected on its next pass.
        assert server.connections[upgrade()].get("disconnected")
        del server.connections[upgrade()]
        # Then both are freed by reference counting alone, with no cycle left to collect.
        assert upgrade() is None
        assert held() is None
    finally:
        gc.enable()
        server.connections[protocol]["application_instance"].cancel()


async def test_autobahns_highlighted_log_arguments_are_made_only_when_logged(monkeypatch) -> None:
    from autobahn import util
    from autobahn.twisted import websocket as autobahn_twisted
    from autobahn.websocket import protocol as autobahn_protocol
    from twisted.logger import formatEvent

    from realtime.daphne.protocol import install_lazy_log_arguments

    monkeypatch.setattr(autobahn_protocol, "hltype", autobahn_protocol.hltype)
    monkeypatch.setattr(autobahn_protocol, "hlval", autobahn_protocol.hlval)
    monkeypatch.setattr(autobahn_twisted, "hltype", autobahn_twisted.hltype)
    monkeypatch.setattr(autobahn_twisted, "hlval", autobahn_twisted.hlval)
    install_lazy_log_arguments()
    # Logged: the same text autobahn's own functions make.
    event = {
        "log_format": "{func} {peer}",
        "func": autobahn_protocol.hltype(len),
        "peer": autobahn_twisted.hlval(7),
    }
    assert formatEvent(event) == f"{util.hltype(len)} {util.hlval(7)}"
    # Not logged (debug off): nothing highlighted through a whole handshake and a message.
    calls: list[object] = []
    monkeypatch.setattr(util, "hl", lambda text, *a, **k: calls.append(text) or "")

    server = listening_server()
    protocol = server.ws_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    protocol._raw_query_string = b"protocol=7"
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(UPGRADE)
    try:
        await asyncio.sleep(0)
        protocol.serverAccept()
        protocol.sendMessage(b"hello")
        assert protocol.state == protocol.STATE_OPEN
        assert calls == []
    finally:
        server.connections[protocol]["application_instance"].cancel()


async def test_a_handshake_never_answered_is_refused_by_daphnes_checker() -> None:
    # realtime_serve turns autobahn's per-socket open-handshake timer off and relies on this.
    import time

    server = listening_server()
    server.websocket_connect_timeout = 5
    server.ws_factory.setProtocolOptions(openHandshakeTimeout=0)
    protocol = server.ws_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    protocol._raw_query_string = b"protocol=7"
    transport = StringTransport()
    # As daphne's HTTP channel leaves on a real transport (autobahn unregisters it on a refusal).
    transport.registerProducer(_NoProducer(), streaming=True)
    protocol.makeConnection(transport)
    protocol.dataReceived(UPGRADE)
    try:
        await asyncio.sleep(0)
        assert protocol.openHandshakeTimeoutCall is None  # no per-socket timer
        protocol.check_timeouts()
        assert transport.value() == b""  # not yet
        protocol.socket_opened = time.time() - 6
        protocol.check_timeouts()
        assert transport.value().startswith(b"HTTP/1.1 403 ")
    finally:
        server.connections[protocol]["application_instance"].cancel()


class _NoProducer:
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass
