"""Raw sockets for end-to-end tests that must send what no well-behaved client library would:
hand-made HTTP requests, WebSocket upgrades and frames (RFC 6455 §5.2), and reading answers."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from typing import Any


def raw(server: Any, timeout: float = 5) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    return sock


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def upgrade(server: Any, extra: bytes = b"") -> socket.socket:
    sock = raw(server)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /app/" + server.key.encode() + b"?protocol=7 HTTP/1.1\r\nHost: localhost\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n" + extra + b"\r\n"
    )
    return sock


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def close_code(sock: socket.socket) -> int | None:
    """Read server frames until a close frame; its code, or None when the connection just dropped."""
    buffer = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            offset = 2
            if length == 126:
                length, offset = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < offset + length:
                break
            opcode, payload = buffer[0] & 0x0F, buffer[offset : offset + length]
            buffer = buffer[offset + length :]
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return None
        if not chunk:
            return None
        buffer += chunk
    return None


def opened(server: Any) -> socket.socket:
    sock = upgrade(server)
    head = read_response(sock)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def closed(sock: socket.socket) -> bool:
    """Whether the server closed (or reset) the connection, waiting for it as long as the timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def signed_query(path: str, method: str = "POST", body: bytes = b"") -> str:
    """The query string that signs an HTTP API request to ``path`` for the test app."""
    from realtime.protocol.signatures import api_signature

    from .conftest import APP_KEY, APP_SECRET

    params = {
        "auth_key": APP_KEY,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(body).hexdigest(),
    }
    params["auth_signature"] = api_signature(APP_SECRET, method, path, params)
    return "&".join(f"{k}={v}" for k, v in params.items())
