"""Gauge drift: levels read from live state return exactly to where they were; counters move exactly.

N clients connect, subscribe to a public, a private and a presence channel, then leave three ways:
a clean close, an abrupt TCP abort, and server-side termination through the HTTP API
(``terminate_connections`` for a signed-in user). Every gauge of ours must then read exactly what it
read before, and each counter must have moved by exactly what the clients did.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import PREFIX, Client, ascrape, connect, wait_for

# Client i joins presence as USERS[i]: two share "a", two are the user terminated through the API.
USERS = ["a", "a", "b", "c", "term", "term"]
N = len(USERS)


async def _join(server, client: Client, user: str, pusher) -> None:
    await client.send("pusher:subscribe", {"channel": "drift-public"})
    await client.expect("pusher_internal:subscription_succeeded")
    auth = pusher.authenticate("private-drift", client.socket_id)
    await client.send("pusher:subscribe", {"channel": "private-drift", **auth})
    await client.expect("pusher_internal:subscription_succeeded")
    member = {"user_id": user, "user_info": {"name": user}}
    auth = pusher.authenticate("presence-drift", client.socket_id, member)
    await client.send("pusher:subscribe", {"channel": "presence-drift", **auth})
    await client.expect("pusher_internal:subscription_succeeded")
    if user == "term":
        signed = pusher.authenticate_user(client.socket_id, {"id": user})
        await client.send("pusher:signin", signed)
        await client.expect("pusher:signin_success")


@pytest.mark.timeout(120)
async def test_gauges_return_and_counters_move_exactly(start_server) -> None:
    server = start_server()
    pusher = server.pusher()
    app = {"app_id": server.app_id}
    warm = await connect(server)  # the app is now known: its zero-valued series exist
    await warm.ws.close()
    before = await wait_for(server, lambda e: e.value(PREFIX + "active_connections", **app) == 0)
    assert before.value(PREFIX + "active_connections", **app) == 0

    clients = [await connect(server) for _ in USERS]
    for client, user in zip(clients, USERS, strict=True):
        await _join(server, client, user, pusher)

    during = await ascrape(server)
    assert during.value(PREFIX + "active_connections", **app) == N
    for channel_type in ("public", "private", "presence"):
        assert during.value(PREFIX + "active_channels", channel_type=channel_type, **app) == 1
    assert during.value(PREFIX + "presence_members", **app) == len(set(USERS))

    # Leave: two clean closes, two aborted TCP connections, two terminated by the server.
    await clients[0].ws.close()
    await clients[1].ws.close()
    clients[2].ws.transport.abort()
    clients[3].ws.transport.abort()
    await asyncio.to_thread(pusher.terminate_user_connections, "term")
    for client in clients[4:]:
        data = (await client.expect("pusher:error"))["data"]
        assert (json.loads(data) if isinstance(data, str) else data)["code"] == 4009
        await client.ws.wait_closed()

    after = await wait_for(server, lambda e: e.gauges() == before.gauges())
    assert after.gauges() == before.gauges()

    def moved(name: str, **labels: str) -> float:
        return after.total(PREFIX + name, **labels) - before.total(PREFIX + name, **labels)

    assert moved("connection_established_total", **app) == N
    assert moved("connection_closed_total", code="1000", **app) == 2
    assert moved("connection_closed_total", code="1006", **app) == 2
    assert moved("connection_closed_total", code="4009", **app) == 2
    assert moved("connection_closed_total") == N
    for channel_type in ("public", "private", "presence"):
        assert moved("channel_subscriptions_total", channel_type=channel_type, **app) == N
        assert moved("channel_unsubscriptions_total", channel_type=channel_type, **app) == N
    assert moved("presence_events_total", event="member_added", **app) == len(set(USERS))
    assert moved("presence_events_total", event="member_removed", **app) == len(set(USERS))
    frames = sum(c.sent_frames for c in clients)
    assert moved("messages_received_total", **app) == frames
    assert moved("socket_received_bytes_total", **app) == sum(c.sent_bytes for c in clients)
    assert moved("message_size_bytes_count", direction="in") == frames
    assert moved("message_processing_duration_seconds_count", kind="frame") == frames
    assert moved("authentication_failures_total") == 0
    assert moved("connection_errors_total") == 0
    assert moved("errors_total") == 0
    assert moved("http_requests_total", endpoint="terminate_connections", status="200") == 1


async def test_heartbeat_rtt_is_observed_once_per_pong(start_server) -> None:
    server = start_server(env={"ACTIVITY_TIMEOUT": "1", "PONG_TIMEOUT": "5"})
    before = await ascrape(server)
    client = await connect(server)
    await client.expect("pusher:ping", timeout=10)
    await client.send("pusher:pong", {})
    after = await wait_for(
        server,
        lambda e: (
            e.value(PREFIX + "heartbeat_rtt_seconds_count")
            != before.value(PREFIX + "heartbeat_rtt_seconds_count")
        ),
    )
    await client.ws.close()
    assert (
        after.value(PREFIX + "heartbeat_rtt_seconds_count")
        == before.value(PREFIX + "heartbeat_rtt_seconds_count") + 1
    )
    rtt = after.value(PREFIX + "heartbeat_rtt_seconds_sum") - before.value(
        PREFIX + "heartbeat_rtt_seconds_sum"
    )
    assert 0 < rtt < 5
