"""A loopback webhook endpoint for the tests: what Realtime delivered, when, and how often.

``Receiver`` listens on a port it chose up front, so it can start down (nothing listening), come up
later on the same port and go down again, as an app's endpoint might. Every request is recorded as a
``Hit`` (arrival time, headers, body, then the status answered and when) and answered by the next
``Answer`` of its ``script``, then by its ``default``: 200 at once unless told otherwise, or a 500, or
a 200 too late for the sender's timeout. The ``receivers`` fixture (tests/conftest.py) makes them and
shuts them down after the test.

``hooks`` is the DEFAULT_APP_WEBHOOKS setting pointing at a receiver; ``assert_signed`` and
``assert_one_delivery_per_event`` check what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pusher

from realtime.models import WEBHOOK_EVENT_TYPES
from realtime.webhooks.delivery import DELIVERY_ID_HEADER
from tests.conftest import free_port

# Every event type but subscription_count (which only counting channels send).
EVENT_TYPES = [name for name in WEBHOOK_EVENT_TYPES if name != "subscription_count"]


@dataclass
class Hit:
    """One request the receiver got: when its headers arrived (monotonic), what it carried, and what
    was answered when (None until then)."""

    at: float
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    answered: float | None = None

    @property
    def delivery_id(self) -> str:
        """The batch's id, the same on every attempt to deliver it."""
        return self.headers[DELIVERY_ID_HEADER]

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.payload["events"]

    @property
    def accepted(self) -> bool:
        """Answered with a 2xx: delivered, as far as the sender is concerned."""
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Answer:
    """How to answer one request: wait ``delay`` seconds, then send ``status``."""

    status: int = 200
    delay: float = 0.0


class Receiver:
    """A webhook endpoint on a fixed loopback port: ``up()`` and ``down()`` at will (same port),
    answering each request by the next of ``script``, then by ``default`` (both may be changed at
    any time). Thread-safe: requests are served on threads of their own."""

    def __init__(
        self, *, up: bool = True, default: Answer | None = None, script: Iterable[Answer] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.hits: list[Hit] = []
        self.script: list[Answer] = list(script)
        self.default = default or Answer()
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        if up:
            self.up()

    def up(self) -> None:
        """Listen on ``port`` (waiting up to 10 s for it to be free again after a ``down()``)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.monotonic()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hit = Hit(at, dict(self.headers), body)
                with receiver.lock:
                    receiver.hits.append(hit)
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                if answer.delay:
                    time.sleep(answer.delay)
                with receiver.lock:
                    hit.status, hit.answered = answer.status, time.monotonic()
                # The sender may have given up meanwhile (a timeout): nobody to answer then.
                with contextlib.suppress(OSError):
                    self.send_response(answer.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            block_on_close = False

        deadline = time.monotonic() + 10
        while True:
            try:
                self.httpd = Server(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: a request now finds nothing there (connection refused)."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def snapshot(self) -> list[Hit]:
        """The requests so far, in order of arrival."""
        with self.lock:
            return sorted(self.hits, key=lambda hit: hit.at)

    def events(self, accepted_only: bool = False) -> list[tuple[Hit, dict[str, Any]]]:
        """Every event received (only those of 2xx-answered requests if ``accepted_only``), with its
        request, ordered by (request arrival, position in body)."""
        return [
            (hit, event)
            for hit in self.snapshot()
            if not accepted_only or hit.accepted
            for event in hit.events
        ]

    def named(self, name: str, channel_prefix: str = "", accepted_only: bool = False) -> list[dict[str, Any]]:
        """The events ``name`` of channels starting with ``channel_prefix``, in order received."""
        return [
            event
            for _, event in self.events(accepted_only)
            if event["name"] == name and event["channel"].startswith(channel_prefix)
        ]

    async def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
        """Until ``predicate()`` holds; an AssertionError naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {[e for _, e in self.events()]}")
            await asyncio.sleep(0.05)

    async def wait_channels(self, name: str, channels: set[str], timeout: float = 15) -> None:
        """Until an event ``name`` has arrived for every one of ``channels``."""
        await self.wait(
            lambda: channels <= {e["channel"] for _, e in self.events() if e["name"] == name},
            f"{name} of {len(channels)} channels",
            timeout,
        )

    async def wait_for(self, name: str, timeout: float = 8) -> dict[str, Any]:
        """The first event ``name`` of a request answered with a 2xx, once there is one."""
        await self.wait(lambda: bool(self.named(name, accepted_only=True)), f"an accepted {name}", timeout)
        return self.named(name, accepted_only=True)[0]


def hooks(url: str, event_types: list[str] | None = None) -> str:
    """DEFAULT_APP_WEBHOOKS: one webhook to ``url`` for ``event_types`` (default ``EVENT_TYPES``)."""
    return json.dumps([{"url": url, "event_types": event_types or EVENT_TYPES}])


def assert_signed(hits: list[Hit], key: str, sdk: pusher.Pusher) -> None:
    """Every request is signed by the app ``key`` (``sdk``'s) over its exact body (the official
    SDK's check)."""
    for hit in hits:
        assert hit.headers["X-Pusher-Key"] == key
        payload = sdk.validate_webhook(key, hit.headers["X-Pusher-Signature"], hit.body.decode())
        assert payload is not None, hit
        assert isinstance(payload["time_ms"], int)


def assert_one_delivery_per_event(receiver: Receiver, name: str) -> dict[str, str]:
    """Each ``name`` event (by channel) arrived under one delivery id however often it arrived, and
    every attempt of a delivery id carried the same body; returns channel -> delivery id."""
    bodies: dict[str, bytes] = {}
    ids: dict[str, set[str]] = {}
    for hit in receiver.snapshot():
        assert bodies.setdefault(hit.delivery_id, hit.body) == hit.body, "a retry changed the body"
        for event in hit.events:
            if event["name"] == name:
                ids.setdefault(event["channel"], set()).add(hit.delivery_id)
    doubled = {channel: found for channel, found in ids.items() if len(found) > 1}
    assert not doubled, f"events sent under several delivery ids: {doubled}"
    return {channel: found.pop() for channel, found in ids.items()}
