"""Webhooks: signed deliveries of channel, member, client and cache events, delayed and retried."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from tests.pusher_client import PusherSocket
from tests.webhook_receiver import Answer, Receiver, assert_signed, hooks


@pytest.fixture
def receiver(receivers: Callable[..., Receiver]) -> Receiver:
    return receivers()


def hooked_server(start_server, receiver: Receiver, **env: str):
    """A server with the default app's webhooks (every event type) to ``receiver``."""
    return start_server({"DEFAULT_APP_WEBHOOKS": hooks(receiver.url), "WEBHOOK_DELAY_SECONDS": "0.5", **env})


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
    hits = receiver.snapshot()
    assert all(hit.headers["Content-Type"] == "application/json" for hit in hits)
    # The official SDK's verifier accepts exactly the bytes we sent.
    assert_signed(hits, server.key, sdk)


async def test_quick_reconnect_suppresses_vacated(start_server, receiver) -> None:
    server = hooked_server(start_server, receiver, WEBHOOK_DELAY_SECONDS="1")
    async with await PusherSocket.connect(server.ws_url()) as first:
        await first.subscribe("flaky")
        await receiver.wait_for("channel_occupied")
    async with await PusherSocket.connect(server.ws_url()) as second:
        await second.subscribe("flaky")
        await asyncio.sleep(1.5)
        assert receiver.named("channel_vacated") == []


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


async def test_failed_delivery_is_retried(start_server, receivers) -> None:
    receiver = receivers(script=[Answer(500)])
    server = hooked_server(start_server, receiver)
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.subscribe("retried")
        await receiver.wait_for("channel_occupied", timeout=10)
