"""realtime_serve on ``redis+cluster://``: how it lays itself out in a real 3-primary Redis Cluster.

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


async def test_an_apps_keys_share_its_slot_and_the_bus_is_a_sharded_channel(
    start_server: Callable[..., ServerProcess], redis_cluster: RedisClusterGroup, tmp_path: Path
) -> None:
    env = node_env(redis_cluster.url, "e2e")
    a, b = (start_server(env=env, data_dir=tmp_path / "shared") for _ in range(2))
    for node in (a, b):
        wait_ready(node)
    sdk = a.pusher()
    async with await PusherSocket.connect(b.ws_url()) as client:
        await client.subscribe("presence-layout", sdk, {"user_id": "u"})
        client_cluster = redis.RedisCluster(
            host="127.0.0.1", port=redis_cluster.primaries[0].port, decode_responses=True
        )
        try:
            keys = list(client_cluster.scan_iter(match="*e2e*", target_nodes="all"))
            app_tag = f"e2e:app:{{{a.app_id}}}:"
            app_keys = [key for key in keys if key.startswith(app_tag)]
            assert len(app_keys) >= 5, keys  # conns, sub, channels, presence, psock, node indexes
            assert {client_cluster.keyslot(key) for key in app_keys} == {client_cluster.keyslot(a.app_id)}
            shared = [key for key in keys if key.startswith("{e2e}:")]
            assert "{e2e}:nodes" in shared
            assert {client_cluster.keyslot(key) for key in shared} == {client_cluster.keyslot("e2e")}
            # The rest: each node's set of the apps it holds entries in.
            rest = set(keys) - set(app_keys) - set(shared)
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
