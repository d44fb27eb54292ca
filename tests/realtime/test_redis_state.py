"""RedisState, RedisBroker and the node lifecycle against a private redis-server, several nodes at once.

Each node is a whole runtime (its own registry, credentials cache and counters) whose cluster
backend is Redis; the tests drive the backend (``runtime.cluster``) directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.cluster.base import StateUnavailable
from realtime.cluster.redis.backend import RedisCluster
from realtime.cluster.redis.state import SEP
from realtime.cluster.registry import Outbound
from realtime.conf import RealtimeSettings
from realtime.models import App
from realtime.protocol import errors
from realtime.runtime import Runtime

APP = "7001"
DEAD_NODE_TIMEOUT = 1.0

# Reaping looks apps up (for webhooks and app flags) through each runtime's credentials cache.
pytestmark = pytest.mark.django_db(transaction=True)


class FakeSocket:
    def __init__(self, socket_id: str, app_id: str = APP) -> None:
        self.socket_id = socket_id
        self.app_id = app_id
        self.received: list[str] = []
        self.terminated: list[int] = []

    def deliver(self, message: Outbound) -> None:
        self.received.append(message.text)

    def terminate(self, code: int, reason: str) -> None:
        self.terminated.append(code)

    def watchlist_changed(self, user_id: str, online: bool) -> None:
        self.received.append(json.dumps({"watchlist": user_id, "online": online}))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.received]


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def settings_for(url: str, **overrides: Any) -> RealtimeSettings:
    options: dict[str, Any] = {
        "STATE_BACKEND": "redis",
        "REDIS_URL": url,
        "REDIS_PREFIX": "test",
        "REDIS_SOCKET_TIMEOUT": 1.0,
        "DEAD_NODE_TIMEOUT": DEAD_NODE_TIMEOUT,
        "NODE_HEARTBEAT_SECONDS": 0.1,
    }
    options.update(overrides)
    return RealtimeSettings(**options)


async def crash(backend: RedisCluster) -> None:
    """Stop a node as SIGKILL would: no cleanup in Redis, the heartbeat just stops."""
    backend._stopping = True
    backend.up = False
    assert backend._task is not None
    backend._task.cancel()
    with contextlib.suppress(BaseException):
        await backend._task
    await backend._close_bus()
    for client in (backend.client, backend._bus_client):
        await client.aclose()
        await client.connection_pool.disconnect()


RUNTIMES: dict[int, Runtime] = {}


def runtime_of(backend: RedisCluster) -> Runtime:
    return RUNTIMES[id(backend)]


@pytest.fixture
async def nodes(redis_server) -> AsyncIterator[Callable[..., Any]]:
    started: list[RedisCluster] = []

    async def start(**overrides: Any) -> RedisCluster:
        runtime = Runtime(settings_for(redis_server.url, **overrides))
        backend = runtime.cluster
        assert isinstance(backend, RedisCluster)
        RUNTIMES[id(backend)] = runtime
        await backend.start()
        await wait_for(lambda: backend.up)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        if not backend._stopping:
            await backend.stop()
        RUNTIMES.pop(id(backend), None)


async def test_subscriptions_are_counted_across_nodes(nodes) -> None:
    a, b = await nodes(), await nodes()
    assert await a.state.subscribe(APP, "news", "1.1") == 1
    assert await b.state.subscribe(APP, "news", "2.1") == 2
    assert await b.state.subscribe(APP, "private-x", "2.1") == 1
    assert await a.state.subscription_count(APP, "news") == 2
    assert await a.state.channels(APP) == {"news": 2, "private-x": 1}
    assert await b.state.channels(APP, "priv") == {"private-x": 1}
    assert await b.state.channels("other") == {}
    assert await a.state.unsubscribe(APP, "news", "9.9") is None
    assert await b.state.unsubscribe(APP, "news", "1.1") is None  # a's socket: only a removes it
    assert await a.state.unsubscribe(APP, "news", "1.1") == 1
    assert await b.state.unsubscribe(APP, "news", "2.1") == 0
    assert await b.state.unsubscribe(APP, "news", "2.1") is None
    assert await b.state.channels(APP) == {"private-x": 1}


async def test_presence_member_added_once_per_user_across_nodes(nodes) -> None:
    a, b = await nodes(), await nodes()
    channel = "presence-room"
    assert await a.state.add_member(APP, channel, "1.1", "u1", {"name": "Ann"}) is True
    assert await b.state.add_member(APP, channel, "2.1", "u1", {"name": "Ann"}) is False
    assert await b.state.add_member(APP, channel, "2.2", "u2", None) is True
    assert await a.state.members(APP, channel) == {"u1": {"name": "Ann"}, "u2": None}
    assert await b.state.member_count(APP, channel) == 2
    assert await a.state.remove_member(APP, channel, "1.1", "u1") is False
    assert await a.state.remove_member(APP, channel, "1.1", "u1") is False
    assert await b.state.remove_member(APP, channel, "2.1", "u1") is True
    assert await a.state.members(APP, channel) == {"u2": None}


async def test_concurrent_first_member_is_decided_once(nodes) -> None:
    a, b = await nodes(), await nodes()
    results = await asyncio.gather(
        *(
            (a if i % 2 else b).state.add_member(APP, "presence-busy", f"{i}.{i}", "same", {"i": i})
            for i in range(40)
        )
    )
    assert results.count(True) == 1
    removals = await asyncio.gather(
        *(
            (a if i % 2 else b).state.remove_member(APP, "presence-busy", f"{i}.{i}", "same")
            for i in range(40)
        )
    )
    assert removals.count(True) == 1
    assert await a.state.member_count(APP, "presence-busy") == 0


async def test_users_and_connections_across_nodes(nodes) -> None:
    a, b = await nodes(), await nodes()
    assert await a.state.add_connection(APP, "1.1") == 1
    assert await b.state.add_connection(APP, "2.1") == 2
    assert await a.state.connection_count(APP) == 2
    await a.state.remove_connection(APP, "1.1")
    await a.state.remove_connection(APP, "1.1")
    assert await b.state.connection_count(APP) == 1

    assert await a.state.user_connected(APP, "u1", "1.1") == (1, [])  # the first
    assert await b.state.user_connected(APP, "u1", "2.1") == (2, [])
    assert await b.state.online_users(APP, ["u1", "u2"]) == {"u1"}
    assert await a.state.user_disconnected(APP, "u1", "1.1") is False
    assert await a.state.user_disconnected(APP, "u1", "1.1") is False
    assert await a.state.user_disconnected(APP, "u1", "2.1") is False  # b's socket: only b removes it
    assert await b.state.user_disconnected(APP, "u1", "2.1") is True
    assert await a.state.online_users(APP, ["u1"]) == set()


async def test_cache_channel_expires(nodes) -> None:
    a, b = await nodes(), await nodes()
    assert await b.state.cache_get(APP, "cache-x") is None
    await a.state.cache_set(APP, "cache-x", '{"event":"e"}', 0.3)
    frame, ttl = await b.state.cache_get(APP, "cache-x")  # type: ignore[misc]
    assert frame == '{"event":"e"}'
    assert 0 < ttl <= 0.3
    await asyncio.sleep(0.4)
    assert await b.state.cache_get(APP, "cache-x") is None


async def test_publish_reaches_every_node_once(nodes) -> None:
    a, b, c = await nodes(), await nodes(), await nodes()
    sockets = {}
    for name, node in (("a", a), ("b", b), ("c", c)):
        sockets[name] = FakeSocket(f"{name}.1")
        node.registry.add(sockets[name])
        node.registry.subscribe(sockets[name], "news")
        node.registry.acknowledge(sockets[name], "news")
    sender = FakeSocket("b.2")
    b.registry.add(sender)
    b.registry.subscribe(sender, "news")
    b.registry.acknowledge(sender, "news")
    await b.broker.publish(APP, ["news", "other"], '{"event":"x"}', "b.2")
    await wait_for(lambda: all(s.received for s in sockets.values()))
    await asyncio.sleep(0.1)
    assert {name: s.received for name, s in sockets.items()} == {n: ['{"event":"x"}'] for n in "abc"}
    assert sender.received == []


async def test_a_publishers_order_holds_when_it_switches_nodes(nodes) -> None:
    a, b = await nodes(), await nodes()
    watchers = {}
    for name, node in (("a", a), ("b", b)):
        watchers[name] = FakeSocket(f"{name}.1")
        node.registry.add(watchers[name])
        node.registry.subscribe(watchers[name], "news")
        node.registry.acknowledge(watchers[name], "news")
    # Each publish answered before the next, alternating nodes: what a backend behind a load
    # balancer does. The answer from one node comes before the other has read the bus.
    for n in range(20):
        await (a, b)[n % 2].broker.publish(APP, ["news"], str(n))
    expected = [str(n) for n in range(20)]
    await wait_for(lambda: all(len(w.received) == 20 for w in watchers.values()))
    assert {name: w.received for name, w in watchers.items()} == {"a": expected, "b": expected}


async def test_control_messages_reach_every_node(nodes) -> None:
    a, b = await nodes(), await nodes()
    on_a, on_b = FakeSocket("1.1"), FakeSocket("2.1")
    a.registry.add(on_a)
    a.registry.sign_in(on_a, "u1", ("u9",))
    b.registry.add(on_b)
    b.registry.sign_in(on_b, "u1", ())
    await a.broker.terminate_user(APP, "u1")
    await wait_for(lambda: on_b.terminated == [4009])
    assert on_a.terminated == [4009]
    await b.broker.watchlist_changed(APP, "u9", True)
    await wait_for(lambda: on_a.received == [json.dumps({"watchlist": "u9", "online": True})])


async def test_credentials_invalidation_reaches_every_node(nodes) -> None:
    a, b = await nodes(), await nodes()
    for node in (a, b):
        runtime_of(node).credentials._by_id["x"] = object()  # type: ignore[assignment]
    # Sync, as a model signal calls it (from a thread in an async server).
    await asyncio.to_thread(a.invalidate_credentials)
    await wait_for(lambda: all("x" not in runtime_of(n).credentials._by_id for n in (a, b)))


async def test_dead_node_is_reaped_once_with_member_removed(nodes) -> None:
    await asyncio.to_thread(
        App.objects.create, id=APP, key="k-7001", secret="s-7001", name="t", enable_watchlist_events=True
    )
    a, b, c = await nodes(), await nodes(), await nodes()
    watchers = []
    for node in (a, b):
        watcher = FakeSocket(f"w.{len(watchers)}")
        node.registry.add(watcher)
        node.registry.subscribe(watcher, "presence-room")
        node.registry.acknowledge(watcher, "presence-room")
        node.registry.sign_in(watcher, "watcher", ("gone",))
        watchers.append(watcher)
    await a.state.subscribe(APP, "presence-room", "w.0")
    await a.state.add_member(APP, "presence-room", "w.0", "stay", None)
    # c holds: a member also connected through a (stays), and one only on c (removed).
    await c.state.add_connection(APP, "c.1")
    await c.state.subscribe(APP, "presence-room", "c.1")
    await c.state.add_member(APP, "presence-room", "c.1", "gone", None)
    await c.state.user_connected(APP, "gone", "c.1")
    await c.state.subscribe(APP, "presence-room", "c.2")
    await c.state.add_member(APP, "presence-room", "c.2", "stay", None)
    await c.state.subscribe(APP, "lonely", "c.1")
    dead_node = c.node_id
    await crash(c)
    started = time.monotonic()
    await wait_for(lambda: all(len(w.events()) >= 2 for w in watchers), timeout=5)
    elapsed = time.monotonic() - started
    assert elapsed < DEAD_NODE_TIMEOUT + 1.0
    await asyncio.sleep(0.5)
    for watcher in watchers:
        assert sorted(watcher.received) == sorted(
            [
                json.dumps({"watchlist": "gone", "online": False}),
                '{"event":"pusher_internal:member_removed","channel":"presence-room","data":"{\\"user_id\\":\\"gone\\"}"}',
            ]
        ), watcher.received
    assert await a.state.members(APP, "presence-room") == {"stay": None}
    assert await b.state.subscription_count(APP, "presence-room") == 1
    assert await b.state.channels(APP) == {"presence-room": 1}
    assert await a.state.connection_count(APP) == 0
    assert not await a.client.exists(f"test:node:{dead_node}:apps", f"test:app:{{{APP}}}:node:{dead_node}")
    assert await a.client.zscore("{test}:nodes", dead_node) is None
    assert not await a.client.zrange("{test}:reaping", 0, -1)


async def test_stop_removes_own_entries(nodes) -> None:
    a, b = await nodes(), await nodes()
    watcher = FakeSocket("w.1")
    a.registry.add(watcher)
    a.registry.subscribe(watcher, "presence-room")
    a.registry.acknowledge(watcher, "presence-room")
    await b.state.subscribe(APP, "presence-room", "b.1")
    await b.state.add_member(APP, "presence-room", "b.1", "u", None)
    await b.state.add_connection(APP, "b.1")
    await b.stop()
    assert await a.state.channels(APP) == {}
    assert await a.state.connection_count(APP) == 0
    assert await a.client.zscore("{test}:nodes", b.node_id) is None


async def test_redis_outage_closes_sockets_and_recovers(nodes, redis_server) -> None:
    a = await nodes()
    local = FakeSocket("1.1")
    a.registry.add(local)
    await a.state.subscribe(APP, "news", "1.1")
    first_id = a.node_id
    redis_server.stop()
    await wait_for(lambda: not a.up)
    assert a.problem == "redis unavailable"
    await wait_for(lambda: local.terminated == [errors.RECONNECT])
    with pytest.raises(StateUnavailable) as refused:
        await a.state.add_connection(APP, "1.2")
    assert refused.value.code == errors.OVER_CAPACITY
    assert await a.state.unsubscribe(APP, "news", "1.1") is None
    a.registry.remove(local)
    redis_server.start()
    await wait_for(lambda: a.up, timeout=10)
    assert a.node_id != first_id
    assert await a.state.add_connection(APP, "1.3") == 1
    other = FakeSocket("1.4")
    a.registry.add(other)
    a.registry.subscribe(other, "news")
    a.registry.acknowledge(other, "news")
    b = await nodes()
    await b.broker.publish(APP, ["news"], "after")
    await wait_for(lambda: other.received == ["after"])


async def test_lost_bus_connection_retires_the_node_id(nodes, redis_server) -> None:
    a, b = await nodes(), await nodes()
    local = FakeSocket("1.1")
    a.registry.add(local)
    await a.state.subscribe(APP, "news", "1.1")
    old_id = a.node_id
    # Only a's bus connection drops and Redis keeps its data: a must close its sockets (messages
    # may have been lost) and remove what it held under the old id itself.
    admin = redis.Redis.from_url(redis_server.url, decode_responses=True)
    killed = [c for c in admin.client_list() if c.get("name") == f"realtime-bus:{a.instance}"]
    assert len(killed) == 1
    admin.client_kill_filter(_id=killed[0]["id"])
    admin.close()
    await wait_for(lambda: local.terminated[:1] == [errors.RECONNECT])
    await wait_for(lambda: a.up and a.node_id != old_id)
    a.registry.remove(local)
    deadline = time.monotonic() + 5
    while await b.state.subscription_count(APP, "news") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await b.state.channels(APP) == {}
    # The old id's heartbeat entry goes last, once everything it held is removed.
    while await b.client.zscore("{test}:nodes", old_id) is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await b.client.zscore("{test}:nodes", old_id) is None
    assert b.up


async def test_an_error_from_before_a_reconnect_does_not_end_the_new_period(nodes, redis_server) -> None:
    a = await nodes()
    release = asyncio.Event()

    async def command_of_the_old_period() -> None:
        await release.wait()
        raise RedisConnectionError("Connection closed by server.")

    pending = asyncio.ensure_future(a.call("publish", command_of_the_old_period))
    await asyncio.sleep(0.05)
    old_id = a.node_id
    admin = redis.Redis.from_url(redis_server.url, decode_responses=True)
    bus = [c for c in admin.client_list() if c.get("name") == f"realtime-bus:{a.instance}"]
    admin.client_kill_filter(_id=bus[0]["id"])
    admin.close()
    await wait_for(lambda: a.up and a.node_id != old_id)
    # A socket that arrives in the new period, then the old command's failure comes in.
    fresh = FakeSocket("1.9")
    a.registry.add(fresh)
    release.set()
    with pytest.raises(StateUnavailable):
        await pending
    await asyncio.sleep(0.3)
    assert a.up
    assert fresh.terminated == []
    assert a.problem is None


async def test_rate_limits_count_every_node(nodes) -> None:
    a, b = await nodes(), await nodes()
    for _ in range(5):
        started = time.time()
        results = [
            await a.state.allow_rate(APP, "x", 5, 2),  # 2 of 5
            await b.state.allow_rate(APP, "x", 5, 3),  # 5 of 5: the last allowed
            await a.state.allow_rate(APP, "x", 5, 1),  # over
            await b.state.allow_rate("other", "x", 5, 5),  # another app's own window
        ]
        if int(time.time()) == int(started):  # all in one second of Redis' (and our) clock
            break
        await asyncio.sleep(0.05)
    assert results == [True, True, False, True]


async def test_adapter_metrics_are_counted(nodes) -> None:
    a = await nodes()
    stats = a.stats
    before = stats.counters["adapter_operations"][("subscribe",)]
    await a.state.subscribe(APP, "news", "1.1")
    await a.broker.publish(APP, ["news"], "x" * 300)
    assert stats.counters["adapter_operations"][("subscribe",)] == before + 1
    assert stats.histograms["adapter_latency"][("publish",)].count >= 1
    assert stats.histograms["adapter_message_size"][()].count >= 1


async def test_reaping_an_id_never_removes_another_ids_entries(nodes) -> None:
    a, b = await nodes(), await nodes()
    await a.state.add_connection(APP, "a.1")
    await a.state.subscribe(APP, "news", "a.1")
    await a.state.add_member(APP, "presence-room", "a.1", "u", None)
    await a.state.user_connected(APP, "u", "a.1")
    # b's index names a's entries (as if written under b's id), then b's id is reaped: the scripts
    # find them held by a's id and leave them.
    await b.state.add_connection(APP, "b.1")
    foreign = [SEP.join(("c", APP, "a.1")), SEP.join(("s", APP, "news", "a.1"))]
    foreign += [SEP.join(("m", APP, "presence-room", "a.1", "u")), SEP.join(("u", APP, "a.1", "u"))]
    await b.client.sadd(f"test:app:{{{APP}}}:node:{b.node_id}", *foreign)
    removed = [entry for batch in [batch async for batch in b.state.reap(b.node_id)] for entry in batch]
    results = sorted((entry.kind, entry.result) for entry in removed)
    assert results == [("c", -1), ("c", 1), ("m", 0), ("s", -1), ("u", 0)]
    assert await a.state.connection_count(APP) == 1
    assert await a.state.subscription_count(APP, "news") == 1
    assert await a.state.members(APP, "presence-room") == {"u": None}
    assert await a.state.online_users(APP, ["u"]) == {"u"}
    # A removal that names the wrong holder leaves the entry to its holder's own removal or reaping.
    assert await b.state.unsubscribe(APP, "news", "a.1") is None
    assert await a.state.unsubscribe(APP, "news", "a.1") == 0


async def test_every_script_key_is_in_its_apps_slot(nodes) -> None:
    a = await nodes()
    await a.state.add_connection(APP, "a.1")
    await a.state.subscribe(APP, "presence-room", "a.1")
    await a.state.add_member(APP, "presence-room", "a.1", "u", None)
    await a.state.user_connected(APP, "u", "a.1")
    keys = await a.client.keys("test:*")
    app_keys = [key for key in keys if key.startswith(f"test:app:{{{APP}}}:")]
    assert set(keys) - set(app_keys) == {f"test:node:{a.node_id}:apps"}
    assert await a.client.smembers(f"test:node:{a.node_id}:apps") == {APP}
    assert f"test:app:{{{APP}}}:node:{a.node_id}" in app_keys


async def test_sign_in_order_for_a_close_oldest_cap(nodes) -> None:
    a, b = await nodes(), await nodes()
    assert await a.state.user_connected(APP, "u", "a.1", keep=2) == (1, [])
    await asyncio.sleep(0.002)  # sign-in times are Redis milliseconds
    assert await b.state.user_connected(APP, "u", "b.1", keep=2) == (2, [])
    await asyncio.sleep(0.002)
    assert await a.state.user_connected(APP, "u", "a.2", keep=2) == (3, ["a.1"])
    await a.state.user_disconnected(APP, "u", "a.1")
    await asyncio.sleep(0.002)
    assert await b.state.user_connected(APP, "u", "b.2", keep=1) == (3, ["b.1", "a.2"])
    # The order forgets gone sockets; a connection it lost (the key expired) counts as the oldest.
    order = f"test:app:{{{APP}}}:usersince:u"
    assert await a.client.zrange(order, 0, -1) == ["b.1", "a.2", "b.2"]
    await a.client.delete(order)
    assert await a.state.user_connected(APP, "u", "a.3", keep=3) == (4, ["a.2"])  # score 0, then by id
    # Without the policy, a plain count.
    assert await a.state.user_connected(APP, "v", "a.9") == (1, [])


async def test_an_id_reaped_while_its_node_still_wrote_leaves_nothing_behind(nodes) -> None:
    # A node stalled past DEAD_NODE_TIMEOUT is reaped (its app set deleted) while it still holds
    # the id; it writes once more before it notices, then reaps its own earlier id.
    a, b = await nodes(), await nodes()
    stale_id = a.node_id
    await a.state.add_connection(APP, "a.1")
    [_ async for _ in b.state.reap(stale_id)]
    await a.state.subscribe(APP, "late", "a.1")  # same id, the app already known: no new SADD
    assert not await a.client.exists(f"test:node:{stale_id}:apps")
    a.node_id = a._next_node_id()  # what noticing the lost registration does
    removed = [entry for batch in [batch async for batch in a.state.reap(stale_id)] for entry in batch]
    assert [(entry.kind, entry.channel) for entry in removed] == [("s", "late")]
    assert await b.state.channels(APP) == {}
