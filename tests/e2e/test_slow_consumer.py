"""A socket that stops reading is dropped as a slow consumer; a reading one on the same channel
gets every event, in order."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import struct
import threading
import time
from typing import Any

import pytest

from tests.conftest import WS_QUERY
from tests.metrics.conftest import scrape
from tests.pusher_client import PusherSocket

CHANNEL = "slow-consumers"
BOUND = 65536
EVENT_PAD = 6 * 1024  # each event several KB: a few dozen pass the bound
MAX_EVENTS = 5000  # give up (and fail) if the stalled socket is still not dropped by then
EVENTS_AFTER_DROP = 20
SLOW = {"name": "realtime_websocket_errors_total", "type": "slow_consumer"}


class RawWebSocket:
    """A WebSocket client on a plain socket: the handshake and frames by hand, so that it can
    stop reading altogether (its receive buffer kept small, so the server's fills soon)."""

    def __init__(self, host: str, port: int, path: str, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buffer += data

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._more()
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken

    def recv(self) -> dict[str, Any]:
        """The next text frame's JSON (server frames are unmasked)."""
        first, second = self._take(2)
        assert first == 0x81 and not second & 0x80, (first, second)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        return json.loads(self._take(length))

    def send(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def closed_by_server(self, timeout: float) -> bool:
        """Read (and discard) until the server closes the TCP connection; False on timeout."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(1)
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(1 << 20):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                continue
        return False

    def close(self) -> None:
        self.sock.close()


def _slow_consumers(server: Any) -> float:
    return scrape(server).value(SLOW["name"], type=SLOW["type"]) or 0


def _subscriptions(server: Any) -> int:
    info = server.pusher().channel_info(CHANNEL, ["subscription_count"])
    return info.get("subscription_count", 0)


@pytest.mark.timeout(300)
async def test_a_stalled_socket_is_dropped_and_a_reading_one_gets_everything(start_server) -> None:
    server = start_server(
        env={"MAX_SOCKET_BUFFER_BYTES": str(BOUND), "DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT": "true"}
    )
    stalled = await asyncio.to_thread(RawWebSocket, server.host, server.port, f"/app/{server.key}?{WS_QUERY}")
    established = await asyncio.to_thread(stalled.recv)
    assert established["event"] == "pusher:connection_established", established
    stalled.send({"event": "pusher:subscribe", "data": {"channel": CHANNEL}})
    while (await asyncio.to_thread(stalled.recv))["event"] != "pusher_internal:subscription_succeeded":
        pass
    # From here on the stalled client reads nothing.

    # No flow control on the reading client: it takes frames off its socket as they come.
    reader = await PusherSocket.connect(server.ws_url(), max_queue=None)
    received: list[int] = []

    async def read() -> None:
        while True:
            message = json.loads(await reader.ws.recv())
            if message["event"] == "tick":
                received.append(json.loads(message["data"])["n"])

    assert (await reader.subscribe(CHANNEL))["event"] == "pusher_internal:subscription_succeeded"
    reading = asyncio.create_task(read())
    try:
        assert await asyncio.to_thread(_subscriptions, server) == 2
        exposition = await asyncio.to_thread(scrape, server)
        assert exposition.value("realtime_active_connections", app_id=server.app_id) == 2
        assert (exposition.value(SLOW["name"], type=SLOW["type"]) or 0) == 0

        stop = threading.Event()

        def publish() -> int:
            """Publish until the stalled socket is dropped (and a few events more); the count."""
            sdk = server.pusher()
            pad = "x" * EVENT_PAD
            dropped_at = None
            for n in range(MAX_EVENTS):
                if stop.is_set():
                    break
                sdk.trigger(CHANNEL, "tick", json.dumps({"n": n, "pad": pad}))
                if dropped_at is None and n % 10 == 9 and _slow_consumers(server):
                    dropped_at = n
                if dropped_at is not None and n >= dropped_at + EVENTS_AFTER_DROP:
                    return n + 1
            raise AssertionError(f"the stalled socket was not dropped after {MAX_EVENTS} events")

        try:
            published = await asyncio.to_thread(publish)
        finally:
            stop.set()

        # The server closed the stalled socket (the TCP connection, not only the WebSocket).
        assert await asyncio.to_thread(stalled.closed_by_server, 60)
        assert await asyncio.to_thread(_subscriptions, server) == 1
        exposition = await asyncio.to_thread(scrape, server)
        assert exposition.value("realtime_active_connections", app_id=server.app_id) == 1
        assert exposition.value(SLOW["name"], type=SLOW["type"]) == 1

        # The reading client got every event, in order, the ones after the drop included.
        deadline = time.monotonic() + 60
        while len(received) < published and time.monotonic() < deadline and not reading.done():
            await asyncio.sleep(0.05)
        assert received == list(range(published))
        assert not reading.done()  # still connected
    finally:
        reading.cancel()
        await reader.close()
        stalled.close()
