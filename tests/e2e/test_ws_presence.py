"""Presence channels: member lists, one member_added/removed per user, limits."""

from __future__ import annotations

import asyncio

from realtime.protocol.signatures import channel_auth
from tests.pusher_client import PusherSocket


async def test_members_include_the_subscriber(server) -> None:
    sdk = server.pusher()
    async with await PusherSocket.connect(server.ws_url()) as alice:
        reply = await alice.subscribe("presence-lobby", sdk, {"user_id": "alice", "user_info": {"n": "A"}})
        assert reply["event"] == "pusher_internal:subscription_succeeded"
        assert reply["data"]["presence"] == {"ids": ["alice"], "hash": {"alice": {"n": "A"}}, "count": 1}


async def test_numeric_user_id_is_a_string(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        reply = await client.subscribe("presence-numeric", server.pusher(), {"user_id": 42})
        assert reply["data"]["presence"]["ids"] == ["42"]


async def test_one_member_added_and_removed_per_user(server) -> None:
    sdk = server.pusher()
    channel = "presence-tabs"
    async with await PusherSocket.connect(server.ws_url()) as watcher:
        await watcher.subscribe(channel, sdk, {"user_id": "watcher"})
        tab1 = await PusherSocket.connect(server.ws_url())
        reply = await tab1.subscribe(channel, sdk, {"user_id": "bob"})
        assert reply["data"]["presence"]["count"] == 2
        added = await watcher.recv_event("pusher_internal:member_added")
        assert added["data"] == {"user_id": "bob"}
        await tab1.nothing()  # not sent to the joiner itself

        tab2 = await PusherSocket.connect(server.ws_url())
        reply = await tab2.subscribe(channel, sdk, {"user_id": "bob"})
        assert reply["data"]["presence"]["count"] == 2  # bob counted once
        await watcher.nothing()
        users = await asyncio.to_thread(sdk.users_info, channel)
        assert sorted(u["id"] for u in users["users"]) == ["bob", "watcher"]
        info = await asyncio.to_thread(sdk.channel_info, channel, ["user_count"])
        assert info == {"occupied": True, "user_count": 2}

        await tab1.close()
        await watcher.nothing(0.5)  # bob still has a connection
        await tab2.close()
        removed = await watcher.recv_event("pusher_internal:member_removed")
        assert removed["data"] == {"user_id": "bob"}


async def test_abrupt_disconnect_removes_the_member(server) -> None:
    sdk = server.pusher()
    async with await PusherSocket.connect(server.ws_url()) as watcher:
        await watcher.subscribe("presence-abrupt", sdk, {"user_id": "w"})
        dropper = await PusherSocket.connect(server.ws_url())
        await dropper.subscribe("presence-abrupt", sdk, {"user_id": "gone"})
        await watcher.recv_event("pusher_internal:member_added")
        dropper.ws.transport.abort()  # no close frame
        removed = await watcher.recv_event("pusher_internal:member_removed")
        assert removed["data"] == {"user_id": "gone"}
        info = await asyncio.to_thread(sdk.channel_info, "presence-abrupt", ["user_count"])
        assert info["user_count"] == 1


async def test_bad_channel_data_is_rejected(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        channel = "presence-bad"
        auth = server.pusher().authenticate(channel, client.socket_id, {"user_id": "x"})
        await client.send(
            "pusher:subscribe", {"channel": channel, "auth": auth["auth"], "channel_data": "not json"}
        )
        reply = await client.recv()
        assert reply["event"] == "pusher:subscription_error"  # signed over other channel_data
        sdk = server.pusher()
        token = channel_auth(server.key, server.secret, client.socket_id, channel, "not json")
        await client.send("pusher:subscribe", {"channel": channel, "auth": token, "channel_data": "not json"})
        reply = await client.recv()
        assert reply["event"] == "pusher:subscription_error"
        assert reply["data"]["status"] == 400
        assert (await client.subscribe(channel, sdk, {"user_id": "x"}))["event"].endswith("succeeded")


async def test_member_limit(server) -> None:
    app_id, key, secret = server.create_app(max_presence_members_per_channel=2)
    sdk = server.pusher(app_id=app_id, key=key, secret=secret)
    url = server.ws_url(key=key)
    async with (
        await PusherSocket.connect(url) as a,
        await PusherSocket.connect(url) as b,
        await PusherSocket.connect(url) as c,
        await PusherSocket.connect(url) as a2,
    ):
        assert (await a.subscribe("presence-small", sdk, {"user_id": "a"}))["event"].endswith("succeeded")
        assert (await b.subscribe("presence-small", sdk, {"user_id": "b"}))["event"].endswith("succeeded")
        full = await c.subscribe("presence-small", sdk, {"user_id": "c"})
        assert full["event"] == "pusher:subscription_error"
        assert full["data"]["status"] == 403
        # A second connection of an existing member is not a new member.
        assert (await a2.subscribe("presence-small", sdk, {"user_id": "a"}))["event"].endswith("succeeded")


async def test_member_size_limit(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        big = {"user_id": "big", "user_info": {"bio": "x" * 3000}}
        reply = await client.subscribe("presence-big", server.pusher(), big)
        assert reply["event"] == "pusher:subscription_error"
