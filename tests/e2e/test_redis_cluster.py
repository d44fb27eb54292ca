"""Several realtime_serve nodes on ``redis+cluster://``: a real 3-primary Redis Cluster on loopback.

The multi-node behaviours that matter most, against the cluster: events and presence across
nodes, a killed node reaped by the survivors, one publisher's order, rate limits for the sum.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pusher
import pytest
import redis

from tests.conftest import RedisClusterGroup, ServerProcess
from tests.e2e.nodes import DEAD_NODE_TIMEOUT, call, next_event, node_env, wait_ready
from tests.pusher_client import PusherSocket


@pytest.fixture
def cluster_nodes(
    start_server: Callable[..., ServerProcess], redis_cluster: RedisClusterGroup, tmp_path: Path
) -> Iterator[Callable[..., list[ServerProcess]]]:
    def start(n: int = 2, **env: str) -> list[ServerProcess]:
        options = node_env(redis_cluster.url, "e2e-cluster", **env)
        nodes = [start_server(env=options, data_dir=tmp_path / "shared") for _ in range(n)]
        for node in nodes:
            wait_ready(node)
        return nodes

    yield start


async def test_events_presence_and_reaping_across_nodes(cluster_nodes, redis_cluster) -> None:
    a, b, c = cluster_nodes(3)
    sdk = a.pusher()
    channel = "presence-cluster"
    async with await PusherSocket.connect(a.ws_url()) as watcher:
        await watcher.subscribe(channel, sdk, {"user_id": "watcher"})
        visitor = await PusherSocket.connect(b.ws_url())
        reply = await visitor.subscribe(channel, sdk, {"user_id": "visitor"})
        if reply["event"] == "pusher_internal:member_added":
            reply = await next_event(visitor, "pusher_internal:subscription_succeeded")
        assert reply["data"]["presence"]["count"] == 2
        assert (await next_event(watcher, "pusher_internal:member_added"))["data"]["user_id"] == "visitor"
        await call(c.pusher().trigger, channel, "hello", {"n": 1})
        for client in (watcher, visitor):
            assert (await next_event(client, "hello"))["data"] == json.dumps({"n": 1})
        users = await call(c.pusher().users_info, channel)
        assert sorted(u["id"] for u in users["users"]) == ["visitor", "watcher"]

        b.kill()
        removed = await next_event(watcher, "pusher_internal:member_removed", timeout=DEAD_NODE_TIMEOUT + 5)
        assert removed["data"] == {"user_id": "visitor"}
        users = await call(c.pusher().users_info, channel)
        assert [u["id"] for u in users["users"]] == ["watcher"]
    # Everything lives under one hash tag, so every script's keys share a slot (and a shard).
    primary = redis_cluster.primaries[0]
    client = redis.RedisCluster(host="127.0.0.1", port=primary.port, decode_responses=True)
    try:
        slots = {client.keyslot(key) for key in client.scan_iter(match="{e2e-cluster}*", target_nodes="all")}
    finally:
        client.close()
    assert len(slots) == 1, slots


async def test_one_publishers_order_and_the_rate_limit_sum(cluster_nodes) -> None:
    a, b = cluster_nodes(2, DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND="1000")
    async with (
        await PusherSocket.connect(a.ws_url()) as on_a,
        await PusherSocket.connect(b.ws_url()) as on_b,
    ):
        for client in (on_a, on_b):
            await client.subscribe("ordered")

        def publish() -> None:
            for n in range(0, 100, 10):
                batch = [{"channel": "ordered", "name": "seq", "data": str(i)} for i in range(n, n + 10)]
                (a, b)[n // 10 % 2].pusher().trigger_batch(batch)

        await call(publish)
        for client in (on_a, on_b):
            received = [int((await next_event(client, "seq"))["data"]) for _ in range(100)]
            assert received == list(range(100))
    a2, b2 = cluster_nodes(2, DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND="10")
    for _ in range(5):
        time.sleep(1.02 - time.time() % 1)
        started = time.monotonic()
        batch = [{"channel": "c", "name": "e", "data": str(n)} for n in range(10)]
        await call(a2.pusher().trigger_batch, batch)
        with pytest.raises(pusher.errors.PusherBadStatus, match=r"^429"):
            await call(b2.pusher().trigger, "c", "e", "one more")
        if time.monotonic() - started < 0.8:
            break
