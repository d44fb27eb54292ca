"""Subscriptions to every channel type, name rules, cache channels and subscription counting."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.pusher_client import PusherSocket


async def trigger(server, channels, event, data, **kwargs) -> dict:
    return await asyncio.to_thread(server.pusher().trigger, channels, event, data, **kwargs)


async def test_public_subscription(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        reply = await client.subscribe("public-1")
        assert reply == {
            "event": "pusher_internal:subscription_succeeded",
            "channel": "public-1",
            "data": {},
        }


async def test_double_subscription_gives_an_error_and_one_delivery(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.subscribe("twice")
        again = await client.subscribe("twice")
        assert again["event"] == "pusher:error"
        assert "Existing subscription" in again["data"]["message"]
        await trigger(server, "twice", "e", "x")
        await client.recv_event("e")
        await client.nothing()
        info = await asyncio.to_thread(server.pusher().channel_info, "twice")
        assert info["occupied"] is True


async def test_unsubscribe_stops_delivery(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.subscribe("leaving")
        await client.send("pusher:unsubscribe", {"channel": "leaving"})
        await client.send("pusher:ping")
        await client.recv_event("pusher:pong")
        await trigger(server, "leaving", "e", "x")
        await client.nothing()


async def test_private_channel_with_valid_auth(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        reply = await client.subscribe("private-room", server.pusher())
        assert reply["event"] == "pusher_internal:subscription_succeeded"


async def test_private_channel_with_bad_signature_keeps_the_connection(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        wrong = server.pusher(secret="not-the-secret")
        reply = await client.subscribe("private-room", wrong)
        assert reply["event"] == "pusher:subscription_error"
        assert reply["channel"] == "private-room"
        assert reply["data"]["status"] == 401
        assert (await client.subscribe("public-after-error"))["event"].endswith("subscription_succeeded")


async def test_signature_for_another_socket_is_rejected(server) -> None:
    async with (
        await PusherSocket.connect(server.ws_url()) as one,
        await PusherSocket.connect(server.ws_url()) as two,
    ):
        auth = server.pusher().authenticate("private-x", one.socket_id)
        await two.send("pusher:subscribe", {"channel": "private-x", **auth})
        reply = await two.recv()
        assert reply["event"] == "pusher:subscription_error"


async def test_private_subscription_without_auth_is_rejected(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        reply = await client.subscribe("private-noauth")
        assert reply["event"] == "pusher:subscription_error"
        assert reply["data"]["status"] == 401


async def test_encrypted_channel_relays_ciphertext(server) -> None:
    master = "dGhpcyBpcyBhIDMyIGJ5dGUgbWFzdGVyIGtleSEhISE="
    sdk = server.pusher(encryption_master_key_base64=master)
    async with await PusherSocket.connect(server.ws_url()) as client:
        reply = await client.subscribe("private-encrypted-vault", sdk)
        assert reply["event"] == "pusher_internal:subscription_succeeded"
        await asyncio.to_thread(sdk.trigger, "private-encrypted-vault", "secret", {"gold": 1})
        event = await client.recv_event("secret")
        payload = json.loads(event["data"])
        assert set(payload) == {"nonce", "ciphertext"}
        assert "gold" not in event["data"]


@pytest.mark.parametrize(
    "name",
    ["bad channel", "a" * 201, "private-ü", "has#hash", "", "tab\tname"],
)
async def test_invalid_channel_names_are_rejected_and_the_connection_stays(server, name: str) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        reply = await client.subscribe(name)
        assert reply["event"] == "pusher:error"
        await client.send("pusher:ping")
        await client.recv_event("pusher:pong")


async def test_longest_allowed_name(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        reply = await client.subscribe("a" * 200)
        assert reply["event"] == "pusher_internal:subscription_succeeded"


async def test_cache_channel_replays_last_event(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as first:
        reply = await first.subscribe("cache-prices")
        assert reply["event"] == "pusher_internal:subscription_succeeded"
        assert (await first.recv())["event"] == "pusher:cache_miss"
        await trigger(server, "cache-prices", "price", {"eur": 1})
        await trigger(server, "cache-prices", "price", {"eur": 2})
        await first.recv_event("price")
        await first.recv_event("price")
    async with await PusherSocket.connect(server.ws_url()) as late:
        await late.subscribe("cache-prices")
        cached = await late.recv_event("price")
        assert json.loads(cached["data"]) == {"eur": 2}
        assert cached["channel"] == "cache-prices"
    info = await asyncio.to_thread(server.pusher().channel_info, "cache-prices", ["cache"])
    assert json.loads(info["cache"]["data"]) == {"eur": 2}
    assert 0 < info["cache"]["ttl"] <= 1800


async def test_subscription_count_events(server) -> None:
    app_id, key, secret = server.create_app(enable_subscription_count=True)
    url = server.ws_url(key=key)
    async with await PusherSocket.connect(url) as one:
        await one.subscribe("counted")
        count = await one.recv_event("pusher_internal:subscription_count")
        assert count["data"] == {"subscription_count": 1}
        async with await PusherSocket.connect(url) as two:
            await two.subscribe("counted")
            assert (await one.recv_event("pusher_internal:subscription_count"))["data"] == {
                "subscription_count": 2
            }
            sdk = server.pusher(app_id=app_id, key=key, secret=secret)
            info = await asyncio.to_thread(sdk.channel_info, "counted", ["subscription_count"])
            assert info == {"occupied": True, "subscription_count": 2}
        assert (await one.recv_event("pusher_internal:subscription_count"))["data"] == {
            "subscription_count": 1
        }


async def test_socket_id_exclusion(server) -> None:
    async with (
        await PusherSocket.connect(server.ws_url()) as sender,
        await PusherSocket.connect(server.ws_url()) as other,
    ):
        await sender.subscribe("excl")
        await other.subscribe("excl")
        await trigger(server, "excl", "e", "x", socket_id=sender.socket_id)
        await other.recv_event("e")
        await sender.nothing()


async def test_channel_queries_follow_subscriptions(server) -> None:
    sdk = server.pusher()
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.subscribe("queried-1")
        await client.subscribe("queried-2")
        listing = await asyncio.to_thread(sdk.channels_info, "queried-")
        assert listing == {"channels": {"queried-1": {}, "queried-2": {}}}
    await asyncio.sleep(0.2)
    listing = await asyncio.to_thread(sdk.channels_info, "queried-")
    assert listing == {"channels": {}}
