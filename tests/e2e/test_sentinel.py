"""Two realtime_serve nodes on ``redis+sentinel://``: a real primary, replica and Sentinel, and a
failover (the primary killed) that the nodes follow by themselves."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis
import websockets

from tests.conftest import SentinelGroup, ServerProcess
from tests.e2e.nodes import call, next_event, node_env, wait_ready
from tests.pusher_client import PusherSocket, until_closed

CHANNEL = "presence-failover"


def _primary_port(group: SentinelGroup) -> int:
    sentinel = redis.Redis(port=group.sentinel.port, decode_responses=True)
    try:
        return int(sentinel.sentinel_get_master_addr_by_name(group.service)[1])
    finally:
        sentinel.close()


async def test_nodes_follow_a_failover(
    start_server: Callable[..., ServerProcess], sentinel_group: SentinelGroup, tmp_path: Path
) -> None:
    env = node_env(sentinel_group.url, "sentinel")
    data_dir = tmp_path / "shared"
    a, b = (start_server(env=env, data_dir=data_dir) for _ in range(2))
    for node in (a, b):
        wait_ready(node)
    sdk = a.pusher()
    assert _primary_port(sentinel_group) == sentinel_group.primary.port

    async with await PusherSocket.connect(b.ws_url()) as before:
        await before.subscribe(CHANNEL, sdk, {"user_id": "before"})
        await call(sdk.trigger, CHANNEL, "news", {"n": 1})
        assert (await next_event(before, "news"))["data"] == '{"n": 1}'

        sentinel_group.primary.stop()  # SIGKILL: Sentinel promotes the replica
        _, code = await until_closed(before.ws, timeout=15)
        assert code == 4200

    for node in (a, b):
        wait_ready(node, timeout=30)
    deadline = time.monotonic() + 10
    while _primary_port(sentinel_group) != sentinel_group.replica.port:
        assert time.monotonic() < deadline, "Sentinel did not promote the replica"
        time.sleep(0.1)

    async with await PusherSocket.connect(b.ws_url()) as after:
        await after.subscribe(CHANNEL, sdk, {"user_id": "after"})
        await call(sdk.trigger, CHANNEL, "news", {"n": 2})
        assert (await next_event(after, "news"))["data"] == '{"n": 2}'
        # The promoted replica held the member of before the failover; it is gone, not stale.
        for node in (a, b):
            deadline = time.monotonic() + 10
            while True:
                users = await call(node.pusher().users_info, CHANNEL)
                if [u["id"] for u in users["users"]] == ["after"]:
                    break
                assert time.monotonic() < deadline, users
                time.sleep(0.2)
    async with websockets.connect(a.ws_url()) as ws:
        await ws.recv()  # connection_established: a serves again
