"""The webhook story a receiver sees: occupied/vacated and member_added/member_removed strictly
alternate per channel (and user), across the vacate delay and across nodes, and a cache channel's
miss is reported once per empty spell however many sockets find it empty at once.

Events are ordered as a receiver would order them: by request arrival, then position in the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import RedisProcess, ServerProcess
from tests.pusher_client import PusherSocket
from tests.webhook_receiver import Receiver

from .test_webhook_outbox import hooked_env, wait_ready

DELAY = 1.0  # WEBHOOK_DELAY_SECONDS


def story(receiver: Receiver, channel: str) -> list[str]:
    """The names of ``channel``'s events in the order received, member events with their user."""
    return [
        event["name"] + (f":{event['user_id']}" if "user_id" in event else "")
        for _, event in receiver.events()
        if event["channel"] == channel
    ]


def assert_alternates(names: list[str]) -> None:
    """Never two occupied (vacated, added, removed of one user) in a row."""
    last: dict[str, str] = {}
    for name in names:
        kind, _, user = name.partition(":")
        pair = "channel" if kind.startswith("channel_") else f"member {user}"
        assert last.get(pair) != kind, f"{kind} twice in a row: {names}"
        last[pair] = kind


async def subscribed(client: PusherSocket, channel: str, server: ServerProcess, user: str | None = None):
    sdk = server.pusher()
    if user is None and not channel.startswith(("private-", "presence-")):
        reply = await client.subscribe(channel)
    else:
        reply = await client.subscribe(channel, sdk, {"user_id": user} if user else None)
    assert reply["event"] == "pusher_internal:subscription_succeeded", reply
    return reply


def hooked_cluster(
    start_server: Callable[..., ServerProcess], redis: RedisProcess, data_dir: Path, receiver: Receiver
) -> tuple[ServerProcess, ServerProcess]:
    """Two nodes sharing ``redis`` and one database, with the default app's webhooks to ``receiver``."""
    env = hooked_env(
        receiver,
        REDIS_URL=redis.url,
        REDIS_PREFIX="story",
        WEBHOOK_DELAY_SECONDS=str(DELAY),
    )
    a = start_server(env, data_dir=data_dir)
    b = start_server(env, data_dir=data_dir)
    wait_ready(a)
    wait_ready(b)
    return a, b


async def test_reconnect_within_the_delay_keeps_the_story_single_node(start_server, receivers) -> None:
    receiver = receivers()
    server = start_server(hooked_env(receiver, WEBHOOK_DELAY_SECONDS=str(DELAY)))
    channels = ["story-plain", "presence-story"]
    first = await PusherSocket.connect(server.ws_url())
    await subscribed(first, "story-plain", server)
    await subscribed(first, "presence-story", server, "u1")
    await receiver.wait(lambda: len(receiver.events()) >= 3, "occupied (twice) and member_added", timeout=5)
    await first.close()
    await asyncio.sleep(0.2)  # well within the delay
    async with await PusherSocket.connect(server.ws_url()) as second:
        await subscribed(second, "story-plain", server)
        await subscribed(second, "presence-story", server, "u1")
        await asyncio.sleep(DELAY + 0.7)
        assert story(receiver, "story-plain") == ["channel_occupied"]
        assert story(receiver, "presence-story") == ["channel_occupied", "member_added:u1"]
    await receiver.wait(
        lambda: all(story(receiver, c)[-1] == "channel_vacated" for c in channels), "vacated", timeout=8
    )
    await asyncio.sleep(DELAY + 0.5)  # nothing more comes
    assert story(receiver, "story-plain") == ["channel_occupied", "channel_vacated"]
    assert story(receiver, "presence-story") == [
        "channel_occupied",
        "member_added:u1",
        "member_removed:u1",
        "channel_vacated",
    ]


async def test_reconnect_to_another_node_keeps_the_story(
    start_server, receivers, redis_server: RedisProcess, tmp_path: Path
) -> None:
    receiver = receivers()
    a, b = hooked_cluster(start_server, redis_server, tmp_path / "shared", receiver)
    channel = "presence-roaming"
    on_a = await PusherSocket.connect(a.ws_url())
    await subscribed(on_a, channel, a, "u1")
    await receiver.wait(lambda: len(story(receiver, channel)) >= 2, "occupied and member_added", timeout=5)
    await on_a.close()
    await asyncio.sleep(0.2)
    async with await PusherSocket.connect(b.ws_url()) as on_b:
        await subscribed(on_b, channel, b, "u1")
        await asyncio.sleep(DELAY + 0.7)
        assert story(receiver, channel) == ["channel_occupied", "member_added:u1"]
    await receiver.wait(
        lambda: story(receiver, channel)[-1:] == ["channel_vacated"], "channel_vacated", timeout=8
    )
    await asyncio.sleep(DELAY + 0.5)
    names = story(receiver, channel)
    assert_alternates(names)
    assert names == ["channel_occupied", "member_added:u1", "member_removed:u1", "channel_vacated"]


async def cache_miss_burst(sockets: list[tuple[PusherSocket, ServerProcess]], channel: str) -> None:
    """Subscribe every socket to the cache ``channel`` at once; each must be told of the miss."""

    async def one(client: PusherSocket) -> dict[str, Any]:
        await client.send("pusher:subscribe", {"channel": channel})
        frames = [await client.recv(5), await client.recv(5)]
        return {frame["event"]: frame for frame in frames}

    replies = await asyncio.gather(*(one(client) for client, _ in sockets))
    for reply in replies:
        assert set(reply) == {"pusher_internal:subscription_succeeded", "pusher:cache_miss"}, reply
        assert reply["pusher:cache_miss"]["channel"] == channel


async def test_one_cache_miss_webhook_for_a_burst_of_subscribers(start_server, receivers) -> None:
    receiver = receivers()
    server = start_server(hooked_env(receiver))
    channel = "cache-empty-1"
    sockets = [(await PusherSocket.connect(server.ws_url()), server) for _ in range(5)]
    try:
        await cache_miss_burst(sockets, channel)
        await receiver.wait(lambda: "cache_miss" in story(receiver, channel), "cache_miss", timeout=5)
        await asyncio.sleep(1.5)
        assert story(receiver, channel).count("cache_miss") == 1
        assert story(receiver, channel).count("channel_occupied") == 1
        # Once the channel holds an event, a newcomer gets it: no miss, no webhook.
        await asyncio.to_thread(server.pusher().trigger, channel, "filled", {"n": 1})
        async with await PusherSocket.connect(server.ws_url()) as late:
            await subscribed(late, channel, server)
            replayed = await late.recv(5)
            assert replayed["event"] == "filled", replayed
        await asyncio.sleep(0.5)
        assert story(receiver, channel).count("cache_miss") == 1
    finally:
        for client, _ in sockets:
            await client.close()


async def test_one_cache_miss_webhook_across_nodes(
    start_server, receivers, redis_server: RedisProcess, tmp_path: Path
) -> None:
    receiver = receivers()
    a, b = hooked_cluster(start_server, redis_server, tmp_path / "shared", receiver)
    channel = "cache-empty-2"
    sockets = [(await PusherSocket.connect(node.ws_url()), node) for node in (a, a, a, b, b, b)]
    try:
        await cache_miss_burst(sockets, channel)
        await receiver.wait(lambda: "cache_miss" in story(receiver, channel), "cache_miss", timeout=5)
        await asyncio.sleep(1.5)
        assert story(receiver, channel).count("cache_miss") == 1
        assert story(receiver, channel).count("channel_occupied") == 1
    finally:
        for client, _ in sockets:
            await client.close()
