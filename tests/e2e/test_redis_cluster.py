"""realtime_serve on ``redis+cluster://``: how it lays itself out in a real 3-primary Redis Cluster
(apps on their own slots, spread over the shards; the bus one sharded channel).

The multi-node behaviours (events, presence, reaping, order, limits, app changes) run on a Redis
Cluster too: every test of ``test_multinode.py`` and ``test_ordering.py`` that does not stop Redis
itself is parametrized over ``redis`` and ``redis-cluster`` (``tests/e2e/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis

from tests.conftest import RedisClusterGroup, ServerProcess
from tests.e2e.nodes import node_env, wait_ready
from tests.pusher_client import PusherSocket


async def test_apps_spread_over_the_shards_and_the_bus_is_a_sharded_channel(
    start_server: Callable[..., ServerProcess], redis_cluster: RedisClusterGroup, tmp_path: Path
) -> None:
    env = node_env(redis_cluster.url, "e2e")
    a, b = (start_server(env=env, data_dir=tmp_path / "shared") for _ in range(2))
    for node in (a, b):
        wait_ready(node)
    client_cluster = redis.RedisCluster(
        host="127.0.0.1", port=redis_cluster.primaries[0].port, decode_responses=True
    )

    def shard_of(key: str) -> str:
        return client_cluster.get_node_from_key(key).name

    try:
        # A second app whose id hashes to another shard than the default app's.
        other_id = next(
            f"{700000 + n}"
            for n in range(100)
            if shard_of(f"{{{700000 + n}}}") != shard_of(f"{{{a.app_id}}}")
        )
        _, other_key, other_secret = a.create_app(id=other_id)
        other_sdk = a.pusher(app_id=other_id, key=other_key, secret=other_secret)
        async with (
            await PusherSocket.connect(b.ws_url()) as client,
            await PusherSocket.connect(a.ws_url(key=other_key)) as other,
        ):
            await client.subscribe("presence-layout", a.pusher(), {"user_id": "u"})
            await other.subscribe("presence-layout", other_sdk, {"user_id": "v"})
            other_sdk.trigger("presence-layout", "spread", {"n": 1})
            assert (await other.recv_event("spread"))["data"] == '{"n": 1}'
            keys = list(client_cluster.scan_iter(match="*e2e*", target_nodes="all"))
            by_app = {}
            for app_id in (a.app_id, other_id):
                tag = f"e2e:app:{{{app_id}}}:"
                by_app[app_id] = [key for key in keys if key.startswith(tag)]
                assert len(by_app[app_id]) >= 5, keys  # conns, sub, channels, presence, psock, indexes
                assert {client_cluster.keyslot(key) for key in by_app[app_id]} == {
                    client_cluster.keyslot(app_id)
                }
            assert shard_of(by_app[a.app_id][0]) != shard_of(by_app[other_id][0])
            shared = [key for key in keys if key.startswith("{e2e}:")]
            assert "{e2e}:nodes" in shared
            assert {client_cluster.keyslot(key) for key in shared} == {client_cluster.keyslot("e2e")}
            # The rest: each node's set of the apps it holds entries in.
            rest = set(keys) - set(by_app[a.app_id]) - set(by_app[other_id]) - set(shared)
            assert rest and all(key.startswith("e2e:node:") and key.endswith(":apps") for key in rest)
            owner = client_cluster.get_node_from_key("{e2e}:bus")
            shard = redis.Redis(host=owner.host, port=owner.port, decode_responses=True)
            try:
                assert shard.execute_command("PUBSUB", "SHARDNUMSUB", "{e2e}:bus")[1] == 2  # both nodes
                assert shard.pubsub_numsub("{e2e}:bus")[0][1] == 0  # not a plain channel
            finally:
                shard.close()
    finally:
        client_cluster.close()
