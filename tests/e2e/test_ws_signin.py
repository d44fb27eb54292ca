"""User authentication: sign-in, server-to-user events, terminate, watchlist, sign-in deadline."""

from __future__ import annotations

import asyncio

from tests.pusher_client import PusherSocket


async def test_signin_success_and_server_to_user(server) -> None:
    sdk = server.pusher()
    async with (
        await PusherSocket.connect(server.ws_url()) as tab1,
        await PusherSocket.connect(server.ws_url()) as tab2,
    ):
        for tab in (tab1, tab2):
            reply = await tab.signin(sdk, {"id": "ann"})
            assert reply["event"] == "pusher:signin_success"
            assert reply["data"]["user_data"] == '{"id": "ann"}'
            joined = await tab.subscribe("#server-to-user-ann")
            assert joined["event"] == "pusher_internal:subscription_succeeded"
        await asyncio.to_thread(sdk.send_to_user, "ann", "notice", {"msg": "hi"})
        for tab in (tab1, tab2):
            event = await tab.recv_event("notice")
            assert event["channel"] == "#server-to-user-ann"


async def test_server_to_user_events_reach_signed_in_connections_that_did_not_subscribe(server) -> None:
    sdk = server.pusher()
    async with (
        await PusherSocket.connect(server.ws_url()) as subscribed,
        await PusherSocket.connect(server.ws_url()) as signed_in_only,
        await PusherSocket.connect(server.ws_url()) as someone_else,
    ):
        for tab in (subscribed, signed_in_only):
            await tab.signin(sdk, {"id": "ann"})
        await subscribed.subscribe("#server-to-user-ann")
        await someone_else.signin(sdk, {"id": "bob"})
        await asyncio.to_thread(sdk.send_to_user, "ann", "notice", {"n": 1})
        await asyncio.to_thread(sdk.send_to_user, "ann", "notice", {"n": 2})
        for tab in (subscribed, signed_in_only):
            received = [await tab.recv_event("notice") for _ in range(2)]
            assert [event["data"] for event in received] == ['{"n": 1}', '{"n": 2}']
            assert {event["channel"] for event in received} == {"#server-to-user-ann"}
            await tab.nothing()  # once per connection, not once per route
        await someone_else.nothing()


async def test_server_to_user_channel_only_for_that_user(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        reply = await client.subscribe("#server-to-user-ann")
        assert reply["event"] == "pusher:subscription_error"
        await client.signin(server.pusher(), {"id": "bob"})
        reply = await client.subscribe("#server-to-user-ann")
        assert reply["event"] == "pusher:subscription_error"


async def test_bad_signin_signature_closes_with_4009(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        reply = await client.signin(server.pusher(secret="wrong"), {"id": "eve"})
        assert reply["event"] == "pusher:error"
        assert reply["data"]["code"] == 4009
        assert await client.closed() == 4009


async def test_signin_as_another_user_is_refused(server) -> None:
    sdk = server.pusher()
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.signin(sdk, {"id": "first"})
        reply = await client.signin(sdk, {"id": "second"})
        assert reply["data"]["code"] == 4009


async def test_terminate_closes_every_connection_of_the_user(server) -> None:
    sdk = server.pusher()
    async with (
        await PusherSocket.connect(server.ws_url()) as tab1,
        await PusherSocket.connect(server.ws_url()) as tab2,
        await PusherSocket.connect(server.ws_url()) as bystander,
    ):
        await tab1.signin(sdk, {"id": "kicked"})
        await tab2.signin(sdk, {"id": "kicked"})
        await bystander.signin(sdk, {"id": "stays"})
        await asyncio.to_thread(sdk.terminate_user_connections, "kicked")
        assert await tab1.closed() == 4009
        assert await tab2.closed() == 4009
        await bystander.send("pusher:ping")
        await bystander.recv_event("pusher:pong")


async def test_watchlist_online_offline(server) -> None:
    app_id, key, secret = server.create_app(enable_watchlist_events=True)
    sdk = server.pusher(app_id=app_id, key=key, secret=secret)
    url = server.ws_url(key=key)
    async with await PusherSocket.connect(url) as watcher:
        await watcher.signin(sdk, {"id": "w", "watchlist": ["friend", "other"]})
        first = await watcher.recv_event("pusher_internal:watchlist_events")
        assert first["data"] == {"events": [{"name": "offline", "user_ids": ["friend", "other"]}]}
        friend = await PusherSocket.connect(url)
        await friend.signin(sdk, {"id": "friend"})
        online = await watcher.recv_event("pusher_internal:watchlist_events")
        assert online["data"] == {"events": [{"name": "online", "user_ids": ["friend"]}]}
        await friend.close()
        offline = await watcher.recv_event("pusher_internal:watchlist_events")
        assert offline["data"] == {"events": [{"name": "offline", "user_ids": ["friend"]}]}


async def test_watchlist_over_100_is_4302_and_signin_succeeds(server) -> None:
    app_id, key, secret = server.create_app(enable_watchlist_events=True)
    sdk = server.pusher(app_id=app_id, key=key, secret=secret)
    async with await PusherSocket.connect(server.ws_url(key=key)) as client:
        reply = await client.signin(sdk, {"id": "many", "watchlist": [f"u{i}" for i in range(101)]})
        assert reply["event"] == "pusher:signin_success"
        error = await client.recv_event("pusher:error")
        assert error["data"]["code"] == 4302
        events = await client.recv_event("pusher_internal:watchlist_events")
        assert len(events["data"]["events"][0]["user_ids"]) == 100


async def test_signin_deadline_closes_with_4009(start_server) -> None:
    strict = start_server(
        {
            "DEFAULT_APP_ENABLE_USER_AUTHENTICATION": "true",
            "DEFAULT_APP_USER_AUTHENTICATION_TIMEOUT": "1",
        }
    )
    sdk = strict.pusher()
    async with (
        await PusherSocket.connect(strict.ws_url()) as lazy,
        await PusherSocket.connect(strict.ws_url()) as diligent,
    ):
        await diligent.signin(sdk, {"id": "ok"})
        assert await lazy.closed(timeout=5) == 4009
        await diligent.send("pusher:ping")
        await diligent.recv_event("pusher:pong")
