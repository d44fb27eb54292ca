"""FrameWriter over a real connected socket pair and a real Twisted ``tcp.Server`` transport.

The reactor does not run: Twisted buffers what the kernel does not take and registers the
transport as a writer, and the tests drain that buffer by calling the transport's ``doWrite()``
as the reactor would once the socket is writable.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
from daphne import server as _daphne_server  # noqa: F401 (installs daphne's reactor first)
from twisted.internet import reactor, tcp

from realtime.daphne.protocol import RealtimeWebSocketProtocol
from realtime.daphne.writer import FrameWriter

FRAME_PAYLOAD = 16 * 1024


class OpenProtocol:
    """What FrameWriter reads of daphne's protocol: its WebSocket state and its transport."""

    frame_writer = None

    def __init__(self) -> None:
        self.state = WebSocketProtocol.STATE_OPEN
        self.transport: tcp.Server | None = None


@dataclass
class Pair:
    protocol: OpenProtocol
    transport: tcp.Server
    writer: FrameWriter
    peer: socket.socket
    # Every byte the peer has read so far, in order.
    received: bytearray

    def read_available(self) -> int:
        """Read what the peer's kernel buffer holds now (without blocking); bytes read."""
        count = 0
        while True:
            try:
                data = self.peer.recv(1 << 20)
            except BlockingIOError:
                return count
            if not data:
                return count
            self.received += data
            count += len(data)

    def writing(self) -> bool:
        return self.transport in reactor.getWriters()

    def drain(self, total: int) -> None:
        """Read until the peer has ``total`` bytes, handing Twisted's buffer to the kernel as the
        reactor would (``doWrite``) while any is left."""
        for _ in range(100_000):
            if self.read_available() == 0 and len(self.received) < total:
                if self.writer.buffered():
                    self.transport.doWrite()
                else:  # all in the kernel: wait for it to reach the peer
                    readable, _, _ = select.select([self.peer], [], [], 10)
                    assert readable, f"the peer got {len(self.received)} of {total} bytes"
            if len(self.received) >= total:
                return
        raise AssertionError(f"the peer got {len(self.received)} of {total} bytes")


def frame(number: int, size: int = FRAME_PAYLOAD) -> bytes:
    """A server text frame (unmasked, 64-bit length form) whose payload starts with its number."""
    payload = f"{number:08d}".encode().ljust(size, b".")
    return b"\x81\x7f" + struct.pack("!Q", len(payload)) + payload


def _socketpair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, _ = listener.accept()
    client.setblocking(True)
    return server, client


def _make_pair(connect: Callable[[], tuple[socket.socket, socket.socket]]) -> Iterator[Pair]:
    ours, peer = connect()
    peer.setblocking(False)
    protocol = OpenProtocol()
    transport = tcp.Server(ours, protocol, ("127.0.0.1", 40000), None, 1, reactor)
    protocol.transport = transport
    transport.repstr = "<test transport>"  # tcp.Server's repr reads its listening port's number
    pair = Pair(protocol, transport, FrameWriter(protocol), peer, bytearray())
    try:
        yield pair
    finally:
        transport.stopReading()
        transport.stopWriting()
        assert transport not in reactor.getReaders()
        assert transport not in reactor.getWriters()
        ours.close()
        peer.close()


@pytest.fixture
def unix_pair() -> Iterator[Pair]:
    """``socket.socketpair()``: what one end sends is in the other's receive buffer at once."""
    yield from _make_pair(_socketpair)


@pytest.fixture(params=["socketpair", "tcp"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    yield from _make_pair(_socketpair if request.param == "socketpair" else _tcp_pair)


def _fill_kernel(pair: Pair) -> list[bytes]:
    """Write frames until the kernel takes no more and Twisted buffers the rest; the frames."""
    frames = []
    for number in range(100_000):
        frames.append(frame(number))
        pair.writer.write(frames[-1])
        if pair.writer.buffered():
            return frames
    raise AssertionError("the kernel never stopped taking bytes")


def test_a_frame_is_written_straight_to_the_socket(pair: Pair) -> None:
    sent = frame(1, size=300)
    pair.writer.write(sent)

    assert pair.writer.buffered() == 0
    assert not pair.transport.dataBuffer and not pair.transport._tempDataBuffer
    assert not pair.writing()  # nothing left for the reactor to do
    pair.drain(len(sent))
    assert bytes(pair.received) == sent


def test_a_full_kernel_buffer_queues_behind_twisted_in_order(pair: Pair) -> None:
    frames = _fill_kernel(pair)
    first_buffered = pair.writer.buffered()
    assert 0 < first_buffered <= len(frames[-1])  # the tail of the frame the kernel did not take
    assert pair.writing()  # Twisted waits for the socket to become writable

    # Later frames go behind Twisted's buffer, not straight to the socket.
    later = [frame(len(frames) + i) for i in range(20)]
    for sent in later:
        pair.writer.write(sent)
    frames += later
    assert pair.writer.buffered() == first_buffered + sum(map(len, later))

    expected = b"".join(frames)
    pair.drain(len(expected))
    assert pair.writer.buffered() == 0
    assert bytes(pair.received) == expected
    assert not pair.writing()

    # With Twisted's buffer empty again, a frame goes straight through.
    after = frame(len(frames))
    pair.writer.write(after)
    assert pair.writer.buffered() == 0
    pair.drain(len(expected) + len(after))
    assert bytes(pair.received) == expected + after


def test_buffered_counts_only_bytes_not_yet_sent(unix_pair: Pair) -> None:
    # A socketpair delivers what is sent to the peer's buffer at once, so every byte written is
    # either read by the peer, waiting in the peer's buffer, or still in Twisted's buffer.
    pair = unix_pair
    frames = _fill_kernel(pair)
    frames += [frame(len(frames) + i) for i in range(40)]
    for sent in frames[-40:]:
        pair.writer.write(sent)
    total = sum(map(len, frames))
    before = pair.writer.buffered()

    pair.read_available()
    pair.transport.doWrite()  # hands part of Twisted's buffer (at most SEND_LIMIT) to the kernel
    pair.read_available()
    assert pair.writer.buffered() < before
    assert pair.writer.buffered() == total - len(pair.received)

    while pair.writer.buffered():
        pair.transport.doWrite()
        pair.read_available()
        assert pair.writer.buffered() == total - len(pair.received)
    assert bytes(pair.received) == b"".join(frames)


@pytest.mark.parametrize(
    "state",
    [WebSocketProtocol.STATE_CONNECTING, WebSocketProtocol.STATE_CLOSING, WebSocketProtocol.STATE_CLOSED],
)
def test_nothing_is_written_once_the_socket_is_not_open(pair: Pair, state: int) -> None:
    pair.protocol.state = state
    pair.writer.write(frame(1))

    assert pair.writer.buffered() == 0
    assert not pair.writing()
    assert pair.read_available() == 0


def test_a_closed_peer_does_not_raise(pair: Pair) -> None:
    pair.peer.close()
    for number in range(50):  # the first send may still succeed; later ones fail (EPIPE/ECONNRESET)
        pair.writer.write(frame(number))


def test_a_peer_closed_while_twisted_buffers_does_not_raise(pair: Pair) -> None:
    _fill_kernel(pair)
    pair.peer.close()
    for number in range(10):
        pair.writer.write(frame(number))
    assert pair.writer.buffered() > 0
    # The reactor's next write finds the connection gone and reports it (not an exception).
    for _ in range(100):
        result = pair.transport.doWrite()
        if result is not None:
            break
    assert result is not None


RESPONSE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n"


async def test_the_handshake_response_goes_out_with_the_first_frame(unix_pair: Pair) -> None:
    unix_pair.protocol.frame_writer = unix_pair.writer
    unix_pair.writer.hold(RESPONSE)
    assert unix_pair.read_available() == 0  # held, not sent
    first = frame(1, size=100)
    unix_pair.writer.write(first)
    assert unix_pair.read_available() == len(RESPONSE) + len(first)
    assert bytes(unix_pair.received) == RESPONSE + first
    # The protocol's reference goes with the held bytes: no cycle with the writer for life.
    assert "frame_writer" not in unix_pair.protocol.__dict__
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert unix_pair.read_available() == 0


async def test_a_held_response_goes_out_on_the_next_pass_without_a_frame(unix_pair: Pair) -> None:
    unix_pair.protocol.frame_writer = unix_pair.writer
    unix_pair.writer.hold(RESPONSE)
    await asyncio.sleep(0)
    assert unix_pair.read_available() == len(RESPONSE)
    assert "frame_writer" not in unix_pair.protocol.__dict__


def _connecting_protocol(pair: Pair) -> RealtimeWebSocketProtocol:
    """The protocol as autobahn's handshake leaves it before the 101: connecting, with its writer."""
    protocol = RealtimeWebSocketProtocol.__new__(RealtimeWebSocketProtocol)
    protocol.state = WebSocketProtocol.STATE_CONNECTING
    protocol.transport = pair.transport
    protocol.trafficStats = TrafficStats()
    protocol.logOctets = False
    protocol.frame_writer = FrameWriter(protocol)
    return protocol


async def test_the_protocols_own_writes_go_after_a_held_response(unix_pair: Pair) -> None:
    # autobahn's path (a close frame, a ping, websocket.send) writes through sendData.
    protocol = _connecting_protocol(unix_pair)
    protocol.sendData(RESPONSE)  # succeedHandshake's write: held
    assert unix_pair.read_available() == 0
    protocol.state = WebSocketProtocol.STATE_OPEN
    close = b"\x88\x02\x03\xe8"
    protocol.sendData(close)
    unix_pair.drain(len(RESPONSE) + len(close))
    assert bytes(unix_pair.received) == RESPONSE + close
    assert protocol.frame_writer is None


async def test_a_refusal_is_not_held(unix_pair: Pair) -> None:
    protocol = _connecting_protocol(unix_pair)
    refusal = b"HTTP/1.1 403 Forbidden\r\n\r\n"
    protocol.sendData(refusal)  # written as autobahn writes it, before it drops the connection
    unix_pair.drain(len(refusal))
    assert bytes(unix_pair.received) == refusal
