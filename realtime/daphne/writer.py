"""The direct frame writer: a server frame's bytes straight to the socket, in order.

A frame to many subscribers is built once (``cluster.registry.Outbound``); writing it through
ASGI's ``websocket.send`` would cost daphne's dispatch, autobahn's framing and a wait for
Twisted's next reactor pass per subscriber (docs/architecture.md, "The fast path under daphne").
``FrameWriter.write`` sends the bytes at once when Twisted holds nothing for the socket, else
appends them behind Twisted's buffer so that order is kept. Only plain TCP transports get one
(``server.RealtimeServer.create_application``); a TLS transport gets a ``TLSFrameWriter`` (the
frame through TLS's own write, the slow-consumer bound on the TCP buffer under it); others use
``websocket.send``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet import tcp


def write_now(transport: tcp.Server, data: bytes) -> None:
    """Send ``data`` on a TCP transport at once when Twisted holds nothing for it, else queue it
    behind what Twisted holds (order kept). Twisted's own ``write`` waits for the reactor's next
    pass, and registers and unregisters the socket for writing around it."""
    if not transport.dataBuffer and not transport._tempDataLen and not transport.disconnecting:
        try:
            sent = transport.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the connection is gone; Twisted reports it on its next read
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


class FrameWriter:
    """Writes pre-framed WebSocket messages to one daphne WebSocket protocol's TCP transport.

    It also carries the opening handshake's response (``hold``): the consumer's first frame
    (``pusher:connection_established``) follows it in the same reactor pass, so the two go out in
    one send instead of the response waiting for Twisted's next write pass.
    """

    __slots__ = ("_held", "_protocol", "_transport")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._transport: tcp.Server = protocol.transport
        self._held: bytes | None = None

    def hold(self, response: bytes) -> None:
        """Keep ``response`` (the opening handshake's) to go out ahead of the first frame written,
        or on the event loop's next pass if no frame comes first."""
        self._held = response
        asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Send what ``hold`` kept, if anything, and let go of the protocol's reference to this
        writer (kept only until then, so the two do not form a cycle)."""
        held = self._held
        if held is None:
            return
        self._held = None
        self._protocol.__dict__.pop("frame_writer", None)
        if self._transport.connected:
            write_now(self._transport, held)

    def write(self, frame: bytes) -> None:
        """Send ``frame`` (a complete WebSocket frame); nothing once the socket is not open."""
        protocol = self._protocol
        if protocol.state != WebSocketProtocol.STATE_OPEN:
            return
        held = self._held
        if held is not None:
            self._held = None
            protocol.__dict__.pop("frame_writer", None)
            frame = held + frame
        write_now(self._transport, frame)

    def buffered(self) -> int:
        """Bytes written but not yet handed to the kernel (Twisted's buffer of this socket)."""
        return unsent(self._transport)


class TLSFrameWriter:
    """``FrameWriter``'s ``write`` and ``buffered`` for a TLS connection (``SSL_CERT``): a frame is
    encrypted and handed to TCP by Twisted's TLS protocol at once, and what waits is the encrypted
    bytes in the TCP transport's buffer under it, which the slow-consumer bound reads."""

    __slots__ = ("_protocol", "_tls")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._tls = protocol.transport

    def write(self, frame: bytes) -> None:
        """Send ``frame`` (a complete WebSocket frame); nothing once the socket is not open."""
        if self._protocol.state == WebSocketProtocol.STATE_OPEN:
            self._tls.write(frame)

    def buffered(self) -> int:
        """Encrypted bytes written but not yet handed to the kernel."""
        return unsent(self._tls.transport)


def unsent(transport: tcp.Server) -> int:
    """Bytes written to ``transport`` that Twisted holds, not yet handed to the kernel."""
    # dataBuffer keeps what doWrite already sent until all of it is sent; offset counts that.
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
