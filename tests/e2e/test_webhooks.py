"""Webhooks: signed deliveries of channel, member, client and cache events, delayed and retried."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.pusher_client import PusherSocket


class Receiver:
    def __init__(self, failures: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failures > 0:
                    receiver.failures -= 1
                    self.send_response(500)
                else:
                    receiver.requests.append((dict(self.headers), body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [event for _, body in self.requests for event in json.loads(body)["events"]]

    async def wait_for(self, name: str, timeout: float = 8) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events():
                    if event["name"] == name:
                        return event
                await asyncio.sleep(0.05)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def hooked_server(start_server, receiver: Receiver, **env: str):
    hooks = [
        {
            "url": receiver.url,
            "event_types": [
                "channel_occupied",
                "channel_vacated",
                "member_added",
                "member_removed",
                "client_event",
                "cache_miss",
            ],
        }
    ]
    return start_server({"DEFAULT_APP_WEBHOOKS": json.dumps(hooks), "WEBHOOK_DELAY_SECONDS": "0.5", **env})


async def test_signed_channel_and_member_events(start_server, receiver) -> None:
    server = hooked_server(start_server, receiver)
    sdk = server.pusher()
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.subscribe("presence-hooked", sdk, {"user_id": "u1"})
        occupied = await receiver.wait_for("channel_occupied")
        assert occupied == {"name": "channel_occupied", "channel": "presence-hooked"}
        added = await receiver.wait_for("member_added")
        assert added["user_id"] == "u1"
    removed = await receiver.wait_for("member_removed")
    assert removed == {"name": "member_removed", "channel": "presence-hooked", "user_id": "u1"}
    await receiver.wait_for("channel_vacated")
    for headers, body in receiver.requests:
        assert headers["X-Pusher-Key"] == server.key
        assert headers["Content-Type"] == "application/json"
        # The official SDK's verifier accepts exactly the bytes we sent.
        payload = sdk.validate_webhook(server.key, headers["X-Pusher-Signature"], body.decode())
        assert payload is not None
        assert isinstance(payload["time_ms"], int)


async def test_quick_reconnect_suppresses_vacated(start_server, receiver) -> None:
    server = hooked_server(start_server, receiver, WEBHOOK_DELAY_SECONDS="1")
    async with await PusherSocket.connect(server.ws_url()) as first:
        await first.subscribe("flaky")
        await receiver.wait_for("channel_occupied")
    async with await PusherSocket.connect(server.ws_url()) as second:
        await second.subscribe("flaky")
        await asyncio.sleep(1.5)
        assert [e["name"] for e in receiver.events()].count("channel_vacated") == 0


async def test_client_event_and_cache_miss(start_server, receiver) -> None:
    server = hooked_server(start_server, receiver)
    sdk = server.pusher()
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.subscribe("private-talk", sdk)
        await client.send("client-said", {"x": 1}, channel="private-talk")
        event = await receiver.wait_for("client_event")
        assert event["event"] == "client-said"
        assert json.loads(event["data"]) == {"x": 1}
        assert event["socket_id"] == client.socket_id
        await client.subscribe("cache-empty")
        assert (await receiver.wait_for("cache_miss"))["channel"] == "cache-empty"


async def test_failed_delivery_is_retried(start_server) -> None:
    receiver = Receiver(failures=1)
    try:
        server = hooked_server(start_server, receiver)
        async with await PusherSocket.connect(server.ws_url()) as client:
            await client.subscribe("retried")
            await receiver.wait_for("channel_occupied", timeout=10)
    finally:
        receiver.close()
