"""Minimal Pusher protocol 7 client pieces for the load generator.

A WebSocket client written as a plain asyncio protocol (client frames masked, server
frames parsed in place, no task per socket), a keep-alive HTTP/1.1 client for the
HTTP API, and the HMAC signatures. Standalone on purpose: nothing here imports the
server under test, so the same tool can measure any Pusher-compatible server
(soketi, Realtime, ...).

Signatures: https://pusher.com/docs/channels/library_auth_reference/auth-signatures/
and https://pusher.com/docs/channels/library_auth_reference/rest-api/#authentication
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, cast

# A raw-message hook returns True when it consumed the frame; scenarios use it to
# skip JSON decoding of the benchmark events they account for themselves.
RawHook = Callable[["PusherSocket", bytes, float], bool]
EventHook = Callable[["PusherSocket", dict[str, Any], float], None]

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def channel_auth(key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """Return the `auth` token for a private or presence subscription.

    https://pusher.com/docs/channels/library_auth_reference/auth-signatures/
    """
    to_sign = f"{socket_id}:{channel}"
    if channel_data is not None:
        to_sign = f"{to_sign}:{channel_data}"
    digest = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{key}:{digest}"


def signed_query(
    method: str,
    path: str,
    key: str,
    secret: str,
    body: bytes = b"",
    params: dict[str, str] | None = None,
    timestamp: int | None = None,
) -> str:
    """Return the query string of a signed HTTP API request (REST "Authentication")."""
    query = dict(params or {})
    query["auth_key"] = key
    query["auth_timestamp"] = str(int(time.time()) if timestamp is None else timestamp)
    query["auth_version"] = "1.0"
    if body:
        query["body_md5"] = hashlib.md5(body).hexdigest()
    # The string to sign uses the parameters unescaped, sorted by lowercased key.
    canonical = "&".join(f"{k.lower()}={query[k]}" for k in sorted(query, key=str.lower))
    to_sign = f"{method.upper()}\n{path}\n{canonical}"
    query["auth_signature"] = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return "&".join(f"{k}={_escape(v)}" for k, v in query.items())


_SAFE = re.compile(r"[A-Za-z0-9._~-]*")


def _escape(value: str) -> str:
    # urlencode costs ~40 µs per request; signing values are almost always plain tokens.
    return value if _SAFE.fullmatch(value) else urllib.parse.quote(value, safe="")


def _mask(payload: bytes, key: bytes) -> bytes:
    # One big-integer XOR is far cheaper in CPython than a per-byte loop.
    n = len(payload)
    if n == 0:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def encode_client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """Encode one final, masked client frame (RFC 6455 §5.2, §5.3)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return header + key + _mask(payload, key)


_RECV = memoryview(bytearray(65536))


class _Receiver(asyncio.BufferedProtocol):
    """Receives into one shared buffer, then hands the bytes to `data_received`.

    asyncio's plain protocols recv() up to 256 KiB per read, and CPython serves an
    allocation that size from mmap: about 18 µs per read, which made the generator,
    not the server, the bottleneck at 20k deliveries/s. The event loop calls
    get_buffer, recv_into and buffer_updated back to back on one thread, so a single
    buffer shared by every connection is safe.
    """

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RECV

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_RECV[:nbytes]))

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError


class HandshakeError(Exception):
    """The server did not upgrade the connection or sent a malformed frame."""


class PusherSocket(_Receiver):
    """One client connection: WebSocket handshake, frame parsing, Pusher system events."""

    def __init__(self, host: str, path: str) -> None:
        self._host = host
        self._path = path
        self._key = base64.b64encode(os.urandom(16))
        self._pending = b""
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.established: asyncio.Future[str] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self._waiters: dict[tuple[str, str | None], asyncio.Future[dict[str, Any]]] = {}
        self.socket_id = ""
        self.raw_hook: RawHook | None = None
        self.event_hook: EventHook | None = None
        self.errors: list[dict[str, Any]] = []
        self.tag: Any = None

    # asyncio protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        request = (
            f"GET {self._path} HTTP/1.1\r\n"
            f"Host: {self._host}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self._transport.write(request.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.established.done():
            self.established.set_exception(exc or HandshakeError("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection closed"))
        self._waiters.clear()

    def data_received(self, data: bytes) -> None:
        # One clock reading per read: every frame in it arrived at the same moment.
        now = time.perf_counter()
        if self._pending:
            data = self._pending + data
            self._pending = b""
        if not self._upgraded:
            data = self._finish_handshake(data)
            if not data:
                return
        self._parse_frames(data, now)

    # Sending ----------------------------------------------------------------------

    def send_text(self, text: str | bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        payload = text.encode() if isinstance(text, str) else text
        self._transport.write(encode_client_frame(payload))

    def send_event(self, event: str, data: Any, channel: str | None = None) -> None:
        message: dict[str, Any] = {"event": event, "data": data}
        if channel is not None:
            message["channel"] = channel
        self.send_text(json.dumps(message, separators=(",", ":")))

    def subscribe(
        self, channel: str, auth: str | None = None, channel_data: str | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """Send pusher:subscribe; the future resolves on subscription_succeeded."""
        waiter = self.expect("pusher_internal:subscription_succeeded", channel)
        data: dict[str, str] = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send_event("pusher:subscribe", data)
        return waiter

    def unsubscribe(self, channel: str) -> None:
        self.send_event("pusher:unsubscribe", {"channel": channel})

    def expect(self, event: str, channel: str | None = None) -> asyncio.Future[dict[str, Any]]:
        """Return a future for the next `event` on `channel` (or a subscription error)."""
        waiter = self._waiters.get((event, channel))
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[(event, channel)] = waiter
        return waiter

    def close(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(encode_client_frame((1000).to_bytes(2, "big"), 0x8))
        self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # Parsing ----------------------------------------------------------------------

    def _finish_handshake(self, data: bytes) -> bytes:
        """Consume the 101 response; return the bytes after it (frames may follow)."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > 65536:
                self._fail(HandshakeError("oversized handshake response"))
            else:
                self._pending = data
            return b""
        head = data[:end].decode("latin-1")
        status_line, _, rest = head.partition("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            self._fail(HandshakeError(f"upgrade refused: {status_line}"))
            return b""
        accept = base64.b64encode(hashlib.sha1(self._key + _WS_GUID).digest()).decode()
        headers = {}
        for line in rest.split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept:
            self._fail(HandshakeError("bad Sec-WebSocket-Accept"))
            return b""
        self._upgraded = True
        return data[end + 4 :]

    def _fail(self, exc: Exception) -> None:
        if not self.established.done():
            self.established.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    def _parse_frames(self, data: bytes, now: float) -> None:
        pos = 0
        size = len(data)
        while size - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80:
                # Servers must not mask (RFC 6455 §5.1).
                self._fail(HandshakeError("masked server frame"))
                return
            end = pos + head + length
            if end > size:
                break
            payload = data[pos + head : end]
            pos = end
            if b0 == 0x81 and not self._fragments:
                # The common case, a whole text frame, skips the general dispatch.
                hook = self.raw_hook
                if hook is None or not hook(self, payload, now):
                    self._on_message(payload, now)
            else:
                self._on_frame(b0 & 0x80, b0 & 0x0F, payload, now)
        if pos < size:
            self._pending = data[pos:]

    def _on_frame(self, fin: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 0x1 or opcode == 0x0:
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                self._fragments.append(payload)
                payload = b"".join(self._fragments)
                self._fragments = []
            hook = self.raw_hook
            if hook is None or not hook(self, payload, now):
                self._on_message(payload, now)
        elif opcode == 0x9 and self._transport is not None:
            self._transport.write(encode_client_frame(payload, 0xA))
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            if not self.closed.done():
                self.closed.set_result(code)
            if self._transport is not None:
                self._transport.close()

    def _on_message(self, payload: bytes, now: float) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            self.errors.append({"message": "undecodable frame"})
            return
        event = message.get("event")
        if event == "pusher:connection_established":
            data = json.loads(message["data"])
            self.socket_id = data["socket_id"]
            if not self.established.done():
                self.established.set_result(self.socket_id)
            return
        if event == "pusher:ping":
            self.send_event("pusher:pong", {})
            return
        channel = message.get("channel")
        if event in ("pusher:error", "pusher:subscription_error"):
            self.errors.append(message)
            # A refused subscription must not leave its waiter hanging until timeout.
            waiter = self._waiters.pop(("pusher_internal:subscription_succeeded", channel), None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(RuntimeError(f"{event}: {message.get('data')}"))
        waiter = self._waiters.pop((event, channel), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
        if self.event_hook is not None:
            self.event_hook(self, message, now)


async def open_socket(host: str, port: int, key: str, timeout: float = 10.0) -> PusherSocket:
    """Connect, upgrade and wait for pusher:connection_established."""
    loop = asyncio.get_running_loop()
    path = f"/app/{key}?protocol=7&client=bench&version=1.0"
    _, sock = await asyncio.wait_for(
        loop.create_connection(lambda: PusherSocket(f"{host}:{port}", path), host, port),
        timeout,
    )
    try:
        await asyncio.wait_for(sock.established, timeout)
    except BaseException:
        sock.abort()
        raise
    return sock


class HttpError(Exception):
    """The HTTP API answered with a malformed response."""


class _HttpProtocol(_Receiver):
    """Reads HTTP/1.1 responses (Content-Length, chunked or close-delimited)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False
        self._head: tuple[int, dict[str, str]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            head = self._head
            if head is not None and "content-length" not in head[1] and not _chunked(head[1]):
                self.waiter.set_result((head[0], bytes(self.buffer)))
            else:
                self.waiter.set_exception(ConnectionError("connection closed mid-response"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            response = self._parse()
        except (ValueError, HttpError) as exc:
            self.waiter.set_exception(HttpError(str(exc)))
            return
        if response is not None:
            self.waiter.set_result(response)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise HttpError(f"bad status line {lines[0]!r}")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            self._head = (int(parts[1]), headers)
        status, headers = self._head
        if _chunked(headers):
            body, pos = bytearray(), 0
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
                if len(buf) < eol + 2 + size + 2:
                    return None
                body += buf[eol + 2 : eol + 2 + size]
                pos = eol + 2 + size + 2
                if size == 0:
                    break
            del buf[:pos]
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if len(buf) < length:
                return None
            body = buf[:length]
            del buf[:length]
        else:
            return None
        self._head = None
        if headers.get("connection") == "close" and self.transport is not None:
            self.transport.close()
        return status, bytes(body)


def _chunked(headers: dict[str, str]) -> bool:
    return headers.get("transfer-encoding") == "chunked"


class HttpClient:
    """One HTTP/1.1 connection, kept alive when the server allows; requests are sequential.

    A plain asyncio protocol rather than streams: the publisher has to stay far cheaper
    than the server it loads, and servers that close after every response (soketi
    does) make it reconnect for each request.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._proto: _HttpProtocol | None = None
        self._host_header = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n"
        self.connects = 0

    async def request(
        self, method: str, target: str, body: bytes = b"", timeout: float = 10.0
    ) -> tuple[int, bytes]:
        """Send one request and return (status, body); retries once on a stale connection."""
        message = (
            f"{method} {target} HTTP/1.1\r\n{self._host_header}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        loop = asyncio.get_running_loop()
        for attempt in (0, 1):
            # asyncio.timeout is a timer on the current task; wait_for would add a task.
            async with asyncio.timeout(timeout):
                proto = self._proto
                fresh = proto is None or proto.lost or proto.transport is None
                if fresh or proto.transport.is_closing():
                    _, proto = await loop.create_connection(_HttpProtocol, self.host, self.port)
                    self._proto = proto
                    self.connects += 1
                    fresh = True
                proto.buffer.clear()
                proto.waiter = loop.create_future()
                proto.transport.write(message)
                try:
                    return await proto.waiter
                except ConnectionError:
                    self.close()
                    # A kept-alive connection the server closed meanwhile: retry once.
                    if attempt or fresh:
                        raise
        raise ConnectionError("unreachable")

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None


class Publisher:
    """Signs and sends HTTP API `POST /apps/{id}/events` over one keep-alive connection."""

    def __init__(self, host: str, port: int, app_id: str, key: str, secret: str) -> None:
        self.http = HttpClient(host, port)
        self.app_id = app_id
        self.key = key
        self.secret = secret
        self.path = f"/apps/{app_id}/events"

    async def trigger(
        self, channels: list[str], name: str, data: str, socket_id: str | None = None
    ) -> tuple[int, bytes]:
        payload: dict[str, Any] = {"name": name, "data": data}
        if len(channels) == 1:
            payload["channel"] = channels[0]
        else:
            payload["channels"] = channels
        if socket_id is not None:
            payload["socket_id"] = socket_id
        body = json.dumps(payload, separators=(",", ":")).encode()
        query = signed_query("POST", self.path, self.key, self.secret, body)
        return await self.http.request("POST", f"{self.path}?{query}", body)

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        full = f"/apps/{self.app_id}{path}"
        query = signed_query("GET", full, self.key, self.secret, b"", params)
        return await self.http.request("GET", f"{full}?{query}")

    def close(self) -> None:
        self.http.close()
