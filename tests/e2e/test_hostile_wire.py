"""Hostile bytes on the wire against a real realtime_serve: the protocol's own answer every time.

WebSocket protocol violations end with RFC 6455's close code, not a dropped connection; upgrade
requests daphne cannot decode are a 400 without the exception's text; a body declared too large is
refused before it is sent; proxy headers count only from trusted proxies; a request that never
finishes is closed, and connections stuck in one are bounded.
"""

from __future__ import annotations

import contextlib
import struct
import time
from typing import Any

import pytest

from ..conftest import APP_ID
from ..wire import close_code, closed, frame, opened, raw, read_response, signed_query, upgrade

SERVER_ENV = {"REQUEST_TIMEOUT": "1", "MAX_PENDING_CONNECTIONS": "8", "LOG_LEVEL": "INFO"}


@pytest.fixture(scope="module")
def hostile_server(migrated_db, tmp_path_factory) -> Any:
    from ..conftest import start_server_process

    server = start_server_process(migrated_db, tmp_path_factory.mktemp("hostile"), SERVER_ENV)
    yield server
    server.kill()


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(0x1, b'{"event":"pusher:ping"}', rsv=4), 1002),  # RSV1 without an extension
        (frame(0x1, b'"\xff\xfe"'), 1007),  # text that is not UTF-8
        (frame(0x8, struct.pack("!H", 999)), 1002),  # a close code no one may send
        (frame(0x9, b"x" * 126), 1002),  # a control frame over 125 bytes
        (frame(0x3, b"x"), 1002),  # a reserved opcode
        (frame(0x1, b"x" * (300 * 1024)), 1009),  # over the largest message
    ],
)
def test_protocol_violations_close_with_rfc_6455_codes(hostile_server, bad: bytes, code: int) -> None:
    with opened(hostile_server) as sock:
        sock.sendall(bad)
        assert close_code(sock) == code


@pytest.mark.parametrize(
    "header",
    [b"Sec-WebSocket-Protocol: \xe9\r\n", b"X-Name\xe9: 1\r\n", b"Sec-WebSocket-Protocol: a,\xff\xfe\r\n"],
)
def test_undecodable_upgrade_headers_are_a_plain_400(hostile_server, header: bytes) -> None:
    with upgrade(hostile_server, header) as sock:
        head = read_response(sock)
    assert head.split(b"\r\n", 1)[0].split(b" ")[1] in {b"400"}, head
    assert b"codec" not in head and b"Traceback" not in head
    assert "Traceback" not in hostile_server.output()


@pytest.mark.parametrize(
    ("key", "version"), [(b"bad", b"13"), (b"dGhlIHNhbXBsZSBub25jZQ==", b"99")], ids=["key", "version"]
)
def test_handshakes_autobahn_refuses_are_a_400_and_log_no_error(hostile_server, key, version) -> None:
    with raw(hostile_server) as sock:
        sock.sendall(
            b"GET /app/" + hostile_server.key.encode() + b"?protocol=7 HTTP/1.1\r\nHost: localhost\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: " + version + b"\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
        )
        head = read_response(sock)
    assert head.startswith(b"HTTP/1.1 400"), head
    # Its close reaches daphne's protocol, which never saw a handshake: nothing to clean up.
    time.sleep(0.2)
    assert "Traceback" not in hostile_server.output()


def test_a_body_declared_too_large_is_refused_before_it_is_sent(hostile_server) -> None:
    with raw(hostile_server) as sock:
        sock.sendall(
            f"POST /apps/{APP_ID}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 10485760\r\n\r\n".encode()
        )
        head = read_response(sock)  # not one byte of the body was sent
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b'{"error": "Request body too large"}' in head


def test_a_chunked_body_is_cut_off_at_the_limit(hostile_server) -> None:
    with raw(hostile_server, timeout=10) as sock:
        sock.sendall(
            f"POST /apps/{APP_ID}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"x" * 65536
        answer = b""
        try:
            for _ in range(64):  # 4 MiB, well past the 1 MiB limit
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def _channels(server: Any, root_path: str | None) -> bytes:
    # Signed over the path below a root path: it matches only if the root path is honoured.
    query = signed_query("/channels", "GET")
    header = f"Daphne-Root-Path: {root_path}\r\n" if root_path else ""
    with raw(server) as sock:
        sock.sendall(f"GET /apps/{APP_ID}/channels?{query} HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
        return read_response(sock)


def test_a_root_path_header_from_an_untrusted_peer_is_ignored(hostile_server) -> None:
    assert _channels(hostile_server, f"/apps/{APP_ID}").startswith(b"HTTP/1.1 401")


def test_a_root_path_header_from_a_trusted_proxy_counts(start_server) -> None:
    server = start_server(env={"TRUSTED_PROXIES": "127.0.0.0/8, ::1"})
    assert _channels(server, f"/apps/{APP_ID}").startswith(b"HTTP/1.1 200")


def test_requests_that_never_finish_are_closed_and_bounded(hostile_server) -> None:
    with contextlib.ExitStack() as stack:
        stalled = []
        for _ in range(8):  # MAX_PENDING_CONNECTIONS
            sock = stack.enter_context(raw(hostile_server, timeout=10))
            sock.sendall(b"GET /ready HT")  # a request begun, never finished
            stalled.append(sock)
        time.sleep(0.3)
        started = time.monotonic()
        try:
            extra = raw(hostile_server)
        except ConnectionResetError:
            pass  # refused so fast that connect() saw the reset (a loaded machine)
        else:
            with extra:
                assert closed(extra)  # refused at once while 8 are pending
        assert time.monotonic() - started < 5
        # Each is closed once REQUEST_TIMEOUT (1 s) has passed.
        assert all(closed(sock) for sock in stalled)
    with raw(hostile_server) as sock:  # and the server serves again
        sock.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")


def test_a_slow_request_is_closed_at_its_deadline(hostile_server) -> None:
    with raw(hostile_server, timeout=10) as sock:
        started = time.monotonic()
        try:
            for byte in b"GET /ready HTTP/1.1\r\nHost: x\r\n":
                sock.sendall(bytes([byte]))
                time.sleep(0.2)  # one byte every 0.2 s keeps an idle timeout from ever firing
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed(sock)
        assert time.monotonic() - started < 5


def test_a_malformed_form_body_is_the_applications_to_judge(hostile_server) -> None:
    # Twisted would parse a multipart body itself (and answer one without a boundary with a 400 and
    # a hang-up); daphne hands bodies to the application, so the API answers, and the connection
    # stays usable.
    body = b"--x\r\nnot a part at all"
    path = f"/apps/{APP_ID}/events"
    request = (
        f"POST {path}?{signed_query(path, body=body)} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: multipart/form-data\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with raw(hostile_server) as sock:
        sock.sendall(request)
        first = read_response(sock)
        sock.sendall(request)
        second = read_response(sock)
    for answer in (first, second):
        assert answer.startswith(b"HTTP/1.1 415"), answer[:200]  # the API takes JSON bodies only
        assert b'{"error": ' in answer
