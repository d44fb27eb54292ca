"""Client events: only client- names, only on private/presence channels the sender joined, rate-limited."""

from __future__ import annotations

import asyncio

from tests.pusher_client import PusherSocket


async def pair(server, channel: str, **users):
    sdk = server.pusher()
    one = await PusherSocket.connect(server.ws_url())
    two = await PusherSocket.connect(server.ws_url())
    await one.subscribe(channel, sdk, users.get("one"))
    await two.subscribe(channel, sdk, users.get("two"))
    return one, two


async def test_relayed_to_others_not_echoed(server) -> None:
    one, two = await pair(server, "private-chat")
    async with one, two:
        await one.send("client-typing", {"who": "one"}, channel="private-chat")
        relayed = await two.recv_event("client-typing")
        assert relayed == {"event": "client-typing", "channel": "private-chat", "data": {"who": "one"}}
        await one.nothing()


async def test_presence_relay_carries_user_id(server) -> None:
    one, two = await pair(server, "presence-chat", one={"user_id": "u1"}, two={"user_id": "u2"})
    async with one, two:
        await one.recv_event("pusher_internal:member_added")
        await one.send("client-hi", "plain string", channel="presence-chat")
        relayed = await two.recv_event("client-hi")
        assert relayed["user_id"] == "u1"
        assert relayed["data"] == "plain string"


async def expect_4301(client: PusherSocket) -> dict:
    error = await client.recv_event("pusher:error")
    assert error["data"]["code"] == 4301, error
    return error


async def test_rejected_on_public_channels(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.subscribe("public-chat")
        await client.send("client-x", {}, channel="public-chat")
        await expect_4301(client)


async def test_rejected_when_not_subscribed(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.send("client-x", {}, channel="private-elsewhere")
        await expect_4301(client)


async def test_rejected_on_encrypted_channels(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        sdk = server.pusher(encryption_master_key_base64="dGhpcyBpcyBhIDMyIGJ5dGUgbWFzdGVyIGtleSEhISE=")
        await client.subscribe("private-encrypted-x", sdk)
        await client.send("client-x", {}, channel="private-encrypted-x")
        await expect_4301(client)


async def test_rejected_when_the_app_disables_them(server) -> None:
    app_id, key, secret = server.create_app()
    sdk = server.pusher(app_id=app_id, key=key, secret=secret)
    async with await PusherSocket.connect(server.ws_url(key=key)) as client:
        await client.subscribe("private-off", sdk)
        await client.send("client-x", {}, channel="private-off")
        await expect_4301(client)


async def test_rate_limit_is_4301_without_closing(server) -> None:
    one, two = await pair(server, "private-flood")
    async with one, two:
        for i in range(11):
            await one.send("client-n", {"i": i}, channel="private-flood")
        error = await expect_4301(one)
        assert "rate limit" in error["data"]["message"]
        received = [await two.recv_event("client-n") for _ in range(10)]
        assert [m["data"]["i"] for m in received] == list(range(10))
        await two.nothing()
        await asyncio.sleep(1.1)
        await one.send("client-n", {"i": 99}, channel="private-flood")
        assert (await two.recv_event("client-n"))["data"] == {"i": 99}


async def test_payload_limit(server) -> None:
    one, two = await pair(server, "private-big")
    async with one, two:
        await one.send("client-big", {"x": "y" * 11000}, channel="private-big")
        await expect_4301(one)
        await two.nothing()
