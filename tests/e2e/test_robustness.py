"""A robustness campaign against a real realtime_serve: generated hostile frames, upgrades and
requests, with well-behaved clients on the same server the whole time.

Asserted throughout: no "Internal error", no 5xx, no traceback in the server's log, every error
under the API's prefixes is JSON with an ``error``, every protocol violation closes with RFC
6455's code, a subscriber receives every event published meanwhile in order, and no metric label
takes a value the attacker chose. The default run is a quick sample of every kind; the long
campaign runs with ``-m campaign`` (it is deselected otherwise) and prints its figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest
import websockets

from ..pusher_client import PusherSocket
from ..wire import close_code, frame, opened, raw, read_response

# Every string the campaign makes up carries this, so a metric label taken from input shows.
MARK = "zqx"
SIZES = {"quick": 60, "campaign": 3000}
VIOLATIONS = {  # frame maker -> the close code it must get
    "rsv1": (lambda: frame(0x1, b"{}", rsv=4), 1002),
    "utf8": (lambda: frame(0x1, bytes([0xFF, 0xFE, random.randrange(256)])), 1007),
    "close_code": (lambda: frame(0x8, random.choice([999, 1004, 1005, 2999, 5000]).to_bytes(2, "big")), 1002),
    "long_ping": (lambda: frame(0x9, b"x" * random.randint(126, 400)), 1002),
    "opcode": (lambda: frame(random.choice([0x3, 0x4, 0x5, 0xB, 0xF]), b"x"), 1002),
    "fragmented_control": (lambda: frame(0x9, b"x", fin=False), 1002),
    "too_big": (lambda: frame(0x1, b"x" * (300 * 1024)), 1009),
}


def token(rng: random.Random, size: int = 12) -> str:
    alphabet = string.printable + "éß中\u2028\U0001f600\x00\ud7ff"
    return MARK + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, size)))


def json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**63, 1.5, 10**300])
    if kind in (2, 3, 4):
        return token(rng, 30)
    if kind in (5, 6):
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {token(rng, 8): json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def hostile_text(rng: random.Random, key: str) -> str:
    """One frame's text: broken JSON, JSON that is not JSON, and Pusher events with wrong parts."""
    kind = rng.randrange(12)
    if kind == 0:
        return token(rng, 200)
    if kind == 1:
        return rng.choice(["NaN", "[Infinity]", '{"event":"pusher:ping","data":-Infinity}', "1e999"])
    if kind == 2:
        depth = rng.choice([65, 500, 1200, 5000])
        return '{"event":"client-x","channel":"private-a","data":' + "[" * depth + "]" * depth + "}"
    events = ["pusher:subscribe", "pusher:unsubscribe", "pusher:signin", "pusher:ping", "pusher:pong"]
    event = rng.choice([*events, "client-x", token(rng, 20), "pusher:" + token(rng, 10)])
    data: Any = json_value(rng)
    if event in ("pusher:subscribe", "pusher:signin") and rng.random() < 0.7:
        data = {
            "channel": rng.choice(["private-", "presence-", "private-encrypted-", "#server-to-user-", ""])
            + token(rng, 30),
            "auth": f"{rng.choice([key, token(rng)])}:{token(rng, 70)}",
            "channel_data": rng.choice([token(rng, 50), json.dumps({"user_id": json_value(rng)})]),
            "user_data": rng.choice([token(rng, 50), json.dumps({"id": json_value(rng)})]),
        }
    message: dict[str, Any] = {"event": event, "data": data}
    if rng.random() < 0.5:
        message["channel"] = rng.choice([token(rng, 30), "private-a", json_value(rng)])
    return json.dumps(message)


class Campaign:
    def __init__(self, server: Any, size: int, seed: int) -> None:
        self.server = server
        self.size = size
        self.rng = random.Random(seed)
        self.tried: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.problems: list[str] = []

    def note(self, kind: str, answer: str) -> None:
        self.tried[kind] += 1
        self.answers[f"{kind}:{answer}"] += 1

    async def frames(self) -> None:
        """Hostile text and binary frames over a few connections, reconnecting when one is closed."""
        url = self.server.ws_url()
        sent = 0
        while sent < self.size:
            async with websockets.connect(url, max_size=None) as ws:
                json.loads(await ws.recv())
                while sent < self.size:
                    sent += 1
                    if self.rng.random() < 0.05:
                        await ws.send(bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 40))))
                    else:
                        await ws.send(hostile_text(self.rng, self.server.key))
                    try:
                        while True:  # every answer this frame caused
                            answer = json.loads(await asyncio.wait_for(ws.recv(), 0.1))
                            self.check_frame_answer(answer)
                    except TimeoutError:
                        self.note("frame", "no answer")
                    except websockets.ConnectionClosed as closed:
                        code = closed.rcvd.code if closed.rcvd else None
                        self.note("frame", f"closed {code}")
                        if code not in (4009,):  # a bad sign-in signature closes with 4009
                            self.problems.append(f"frame closed the connection with {code}")
                        break

    def check_frame_answer(self, answer: dict[str, Any]) -> None:
        event = answer.get("event")
        data = answer.get("data")
        if isinstance(data, str) and event in ("pusher:error", "pusher:subscription_error"):
            data = json.loads(data)
        if event == "pusher:error":
            code = data.get("code")
            self.note("frame", f"pusher:error {code}")
            if data.get("message") == "Internal error":
                self.problems.append(f"Internal error for a frame: {answer}")
        else:
            self.note("frame", str(event))

    def violations(self) -> None:
        for _ in range(max(1, self.size // 20)):
            name = self.rng.choice(sorted(VIOLATIONS))
            make, expected = VIOLATIONS[name]
            with opened(self.server) as sock:
                sock.sendall(make())
                code = close_code(sock)
            self.note("violation", f"{name} {code}")
            if code != expected:
                self.problems.append(f"{name}: closed with {code}, not {expected}")

    def upgrades(self) -> None:
        for _ in range(max(1, self.size // 6)):
            path = self.rng.choice(["/app/", "/app/" + self.server.key, "/", "/apps/x"])
            path += "".join(self.rng.choice("?=&%/\x7f" + string.ascii_letters) for _ in range(8))
            header = self.random_header()
            with raw(self.server) as sock:
                sock.sendall(
                    b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + header + b"\r\n"
                )
                head = read_response(sock)
            status = head.split(b" ", 2)[1].decode() if head.count(b" ") >= 2 else "none"
            self.note("upgrade", status)
            if status.startswith("5") or b"Traceback" in head or b"codec" in head:
                self.problems.append(f"upgrade answered {head[:200]!r}")

    def random_header(self) -> bytes:
        name = self.rng.choice(
            [b"Sec-WebSocket-Protocol", b"Origin", b"X-" + MARK.encode(), b"Daphne-Root-Path"]
        )
        value = bytes(self.rng.randrange(32, 256) for _ in range(self.rng.randint(0, 20)))
        return name + b": " + value + b"\r\n"

    def requests(self) -> None:
        for _ in range(max(1, self.size // 3)):
            method = self.rng.choice([b"GET", b"POST", b"PUT", b"BREW", b"DELETE"])
            prefix = self.rng.choice(["/apps/", "/users/", f"/apps/{self.server.app_id}/"])
            rest = "".join(
                self.rng.choice(string.printable[:94] + "é") for _ in range(self.rng.randint(0, 30))
            )
            target = (prefix + rest).replace(" ", "%20").encode("utf-8")
            body = json.dumps(json_value(self.rng)).encode() if self.rng.random() < 0.5 else b""
            with raw(self.server) as sock:
                sock.sendall(
                    method
                    + b" "
                    + target
                    + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + self.random_header()
                    + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                    + body
                )
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            head, _, content = answer.partition(b"\r\n\r\n")
            status = head.split(b" ", 2)[1].decode() if head.count(b" ") >= 2 else "none"
            self.note("request", status)
            if status.startswith("5"):
                self.problems.append(f"{method!r} {target[:80]!r} answered {head[:100]!r}")
            elif status.startswith("4"):
                try:
                    error = json.loads(content).get("error")
                except ValueError:
                    error = None
                if not isinstance(error, str):
                    self.problems.append(f"{method!r} {target[:80]!r}: {answer[:300]!r} is not a JSON error")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def metrics_text(server: Any) -> str:
    with urllib.request.urlopen(server.metrics_url(), timeout=10) as response:
        return response.read().decode()


async def steady_traffic(server: Any, stop: threading.Event) -> tuple[list[int], list[int]]:
    """A subscriber and a publisher going on as usual; what was published and what arrived."""
    sdk = server.pusher()
    published: list[int] = []
    received: list[int] = []
    async with await PusherSocket.connect(server.ws_url()) as subscriber:
        await subscriber.send("pusher:subscribe", {"channel": "steady"})
        await subscriber.recv_event("pusher_internal:subscription_succeeded")

        async def listen() -> None:
            while True:
                message = await subscriber.recv(300)
                if message.get("event") == "tick":
                    received.append(json.loads(message["data"])["n"])
                elif message.get("event") == "pusher:ping":  # as every Pusher client does
                    await subscriber.send("pusher:pong")

        listener = asyncio.ensure_future(listen())
        n = 0
        while not stop.is_set():
            n += 1
            await asyncio.to_thread(sdk.trigger, "steady", "tick", {"n": n})
            published.append(n)
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 10
        while received[-1:] != published[-1:] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        listener.cancel()
    return published, received


def run_campaign(server: Any, size: int) -> Campaign:
    campaign = Campaign(server, size, seed=size)
    stop = threading.Event()
    before = rss_kib(server.process.pid)

    async def main() -> tuple[list[int], list[int]]:
        steady = asyncio.ensure_future(steady_traffic(server, stop))
        try:
            await campaign.frames()
            await asyncio.to_thread(campaign.violations)
            await asyncio.to_thread(campaign.upgrades)
            await asyncio.to_thread(campaign.requests)
        finally:
            stop.set()
        return await steady

    published, received = asyncio.run(main())
    after = rss_kib(server.process.pid)
    output = server.output()
    print(
        json.dumps(
            {"tried": campaign.tried, "answers": campaign.answers, "rss_kib": [before, after],
             "tracebacks": output.count("Traceback"), "published": len(published)},
            default=dict, indent=1, sort_keys=True,
        )
    )  # fmt: skip
    assert campaign.problems == [], campaign.problems[:20]
    assert received == published, (len(published), len(received))
    assert "Traceback" not in output and "Internal error" not in output, output[-3000:]
    assert MARK not in metrics_text(server)  # no label value came from the campaign's strings
    return campaign


@pytest.fixture(scope="module")
def target(migrated_db, tmp_path_factory) -> Any:
    from ..conftest import start_server_process

    env = {
        "DEFAULT_APP_ENABLE_USER_AUTHENTICATION": "true",
        "DEFAULT_APP_USER_AUTHENTICATION_TIMEOUT": "0",
        "DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND": "-1",
        "REQUEST_TIMEOUT": "5",
    }
    server = start_server_process(migrated_db, tmp_path_factory.mktemp("robustness"), env)
    yield server
    server.kill()


@pytest.mark.timeout(240)
def test_quick_sample_of_every_kind(target: Any) -> None:
    campaign = run_campaign(target, SIZES["quick"])
    assert set(campaign.tried) == {"frame", "violation", "upgrade", "request"}


@pytest.mark.campaign
@pytest.mark.timeout(3600)
def test_long_campaign(target: Any) -> None:
    run_campaign(target, SIZES["campaign"])
