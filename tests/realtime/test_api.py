"""The HTTP API end to end: the official ``pusher`` SDK against a real ``realtime_serve``.

See https://pusher.com/docs/channels/library_auth_reference/rest-api/
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pusher.errors
import pytest

from .api_client import Api, connect


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def test_trigger_reaches_a_subscriber_with_data_as_published(server) -> None:
    channel = unique("news-")
    async with connect(server) as socket:
        await socket.subscribe(channel)
        result = await asyncio.to_thread(server.pusher().trigger, channel, "flash", {"n": 1, "s": "é"})
        assert result == {}
        frame = await socket.wait_for("flash", channel)
        assert isinstance(frame["data"], str)
        assert json.loads(frame["data"]) == {"n": 1, "s": "é"}
        assert "user_id" not in frame


async def test_string_data_is_not_re_encoded(server) -> None:
    channel = unique("news-")
    async with connect(server) as socket:
        await socket.subscribe(channel)
        await asyncio.to_thread(server.pusher().trigger, channel, "raw", "plain text")
        assert (await socket.wait_for("raw", channel))["data"] == "plain text"


async def test_trigger_to_many_channels(server) -> None:
    channels = [unique("multi-") for _ in range(3)]
    async with connect(server) as first, connect(server) as second:
        await first.subscribe(channels[0])
        await first.subscribe(channels[1])
        await second.subscribe(channels[2])
        await asyncio.to_thread(server.pusher().trigger, channels, "hello", "x")
        got = {(await first.wait_for("hello"))["channel"], (await first.wait_for("hello"))["channel"]}
        assert got == set(channels[:2])
        assert (await second.wait_for("hello"))["channel"] == channels[2]
        await first.nothing(0.3)


async def test_trigger_to_100_channels_is_allowed(server) -> None:
    channels = [unique("hundred-") for _ in range(100)]
    async with connect(server) as socket:
        await socket.subscribe(channels[-1])
        assert await asyncio.to_thread(server.pusher().trigger, channels, "e", "x") == {}
        assert (await socket.wait_for("e"))["channel"] == channels[-1]


async def test_socket_id_excludes_that_connection(server) -> None:
    channel = unique("excl-")
    async with connect(server) as sender, connect(server) as other:
        await sender.subscribe(channel)
        await other.subscribe(channel)
        await asyncio.to_thread(server.pusher().trigger, channel, "e", "x", sender.socket_id)
        assert (await other.wait_for("e"))["data"] == "x"
        await sender.nothing(0.3)


async def test_batch_events_arrive_in_order(server) -> None:
    first, second = unique("batch-"), unique("batch-")
    async with connect(server) as socket:
        await socket.subscribe(first)
        await socket.subscribe(second)
        batch = [{"channel": first, "name": f"e{i}", "data": {"i": i}} for i in range(5)]
        batch.append({"channel": second, "name": "last", "data": "done"})
        assert await asyncio.to_thread(server.pusher().trigger_batch, batch) == {}
        names = [(await socket.next())["event"] for _ in range(6)]
        assert names == ["e0", "e1", "e2", "e3", "e4", "last"]


def test_queries_on_an_empty_server(server) -> None:
    client = server.pusher()
    prefix = unique("empty-")
    assert client.channels_info(prefix_filter=prefix) == {"channels": {}}
    assert client.channel_info(prefix + "a") == {"occupied": False}
    assert client.channel_info("presence-" + prefix, ["user_count"]) == {"occupied": False, "user_count": 0}
    assert client.users_info("presence-" + prefix) == {"users": []}
    assert client.channels_info(prefix_filter="presence-" + prefix, attributes=["user_count"]) == {
        "channels": {}
    }


async def test_queries_reflect_subscribers(server) -> None:
    client = server.pusher()
    tag = unique()
    public, presence = f"q-{tag}", f"presence-q-{tag}"
    async with connect(server) as one, connect(server) as two, connect(server) as three:
        await one.subscribe(public)
        succeeded = await one.subscribe_presence(server, presence, "alice", {"name": "Alice"})
        assert json.loads(succeeded["data"])["presence"]["count"] == 1
        await two.subscribe_presence(server, presence, "bob")
        # A second connection of the same user counts once (PRES).
        await three.subscribe_presence(server, presence, "bob")

        info = await asyncio.to_thread(client.channels_info)
        assert {public, presence} <= set(info["channels"])
        assert await asyncio.to_thread(client.channels_info, f"q-{tag}") == {"channels": {public: {}}}
        counted = await asyncio.to_thread(client.channels_info, "presence-q-", ["user_count"])
        assert counted["channels"][presence] == {"user_count": 2}

        assert await asyncio.to_thread(client.channel_info, public) == {"occupied": True}
        assert await asyncio.to_thread(client.channel_info, presence, ["user_count"]) == {
            "occupied": True,
            "user_count": 2,
        }
        users = await asyncio.to_thread(client.users_info, presence)
        assert sorted(u["id"] for u in users["users"]) == ["alice", "bob"]

    # Everyone left: the channels are vacated.
    for _ in range(50):
        if (await asyncio.to_thread(client.channel_info, public))["occupied"] is False:
            break
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(client.channel_info, public) == {"occupied": False}
    assert await asyncio.to_thread(client.users_info, presence) == {"users": []}


def test_sdk_sees_400_for_attributes_that_do_not_apply(server) -> None:
    client = server.pusher()
    with pytest.raises(pusher.errors.PusherBadRequest):
        client.channel_info("public-" + unique(), ["user_count"])
    with pytest.raises(pusher.errors.PusherBadRequest):
        client.channels_info(attributes=["user_count"])
    with pytest.raises(pusher.errors.PusherBadRequest):
        client.users_info("private-" + unique())
    # The default app does not enable subscription counting.
    with pytest.raises(pusher.errors.PusherBadRequest):
        client.channel_info("public-" + unique(), ["subscription_count"])


async def test_subscription_count_when_the_app_enables_it(server) -> None:
    app_id, key, secret = await asyncio.to_thread(server.create_app, enable_subscription_count=True)
    client = server.pusher(app_id=app_id, key=key, secret=secret)
    channel = unique("counted-")
    async with connect(server, key) as one, connect(server, key) as two:
        await one.subscribe(channel)
        await two.subscribe(channel)
        info = await asyncio.to_thread(client.channel_info, channel, ["subscription_count"])
        assert info == {"occupied": True, "subscription_count": 2}


async def test_send_to_user_reaches_every_connection_of_that_user(server) -> None:
    user = unique("u")
    async with connect(server) as tab1, connect(server) as tab2, connect(server) as stranger:
        for socket in (tab1, tab2):
            await socket.sign_in(server, user)
            await socket.subscribe(f"#server-to-user-{user}")
        await stranger.sign_in(server, unique("other"))
        assert await asyncio.to_thread(server.pusher().send_to_user, user, "note", {"hi": 1}) == {}
        for socket in (tab1, tab2):
            frame = await socket.wait_for("note")
            assert frame["channel"] == f"#server-to-user-{user}"
            assert json.loads(frame["data"]) == {"hi": 1}
        await stranger.nothing(0.3)
        # Per-user channels are internal: the channel list never shows them.
        listed = await asyncio.to_thread(server.pusher().channels_info)
        assert not [c for c in listed["channels"] if c.startswith("#")]


async def _closed_code(socket, timeout: float = 5) -> int | None:
    import websockets

    try:
        while True:
            await socket.next(timeout)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def test_terminate_user_connections_unprefixed_route_of_the_python_sdk(server) -> None:
    user = unique("t")
    async with connect(server) as victim, connect(server) as bystander, connect(server) as other_user:
        await victim.sign_in(server, user)
        await other_user.sign_in(server, unique("t"))
        await victim.subscribe(unique("room-"))
        assert await asyncio.to_thread(server.pusher().terminate_user_connections, user) == {}
        assert await _closed_code(victim) == 4009
        await bystander.send("pusher:ping", {})
        assert (await bystander.next())["event"] == "pusher:pong"
        await other_user.send("pusher:ping", {})
        assert (await other_user.next())["event"] == "pusher:pong"


async def test_terminate_user_connections_prefixed_route(server) -> None:
    user = unique("t")
    api = Api(server)
    async with connect(server) as first, connect(server) as second:
        await first.sign_in(server, user)
        await second.sign_in(server, user)
        response = await asyncio.to_thread(
            api.request, "POST", api.app_path(f"/users/{user}/terminate_connections"), json_body={}
        )
        assert response.status_code == 200 and response.json() == {}
        assert await _closed_code(first) == 4009
        assert await _closed_code(second) == 4009


def test_terminate_for_a_user_with_no_connections_is_fine(server) -> None:
    assert server.pusher().terminate_user_connections(unique("nobody")) == {}


def test_keep_alive_serves_many_requests_over_one_connection(server) -> None:
    api = Api(server)
    for i in range(6):
        response = api.trigger({"name": "ka", "channel": "keep-alive", "data": str(i)})
        assert response.status_code == 200
        assert api.get("/channels").status_code == 200
    assert api.request("GET", api.app_path("/channels/nope"), content_type=None).json() == {"occupied": False}
    pools = api.session.get_adapter(server.url("/")).poolmanager.pools
    # urllib3 counts the TCP connections each pool opened: 13 requests, one connection.
    (only,) = pools.keys()
    assert (pools[only].num_connections, pools[only].num_requests) == (1, 13)


def test_the_secret_never_reaches_the_server_output(server) -> None:
    output = server.output()
    assert server.secret not in output
    assert "Traceback" not in output, output
