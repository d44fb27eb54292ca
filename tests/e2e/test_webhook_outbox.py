"""The webhook outbox end to end: batches committed, then delivered at least once, whatever happens.

A loopback ``Receiver`` (tests/webhook_receiver.py) that can be down (nothing listening) and come up
on the same port, answer 500, time out or be slow stands in for the app's endpoint. Asserted: a node
killed with SIGKILL loses nothing (its restart, or another node sharing the database, delivers once
the dead leases run out), every attempt of a batch carries the same ``X-Realtime-Delivery-Id``,
retries back off and end as ``failed`` (in the table and the metrics), events are batched (at most
``WEBHOOK_BATCH_SIZE`` per request), apps never share a request, and a slow URL holds up no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pusher
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RedisProcess, ServerProcess
from tests.pusher_client import PusherSocket
from tests.webhook_receiver import (
    EVENT_TYPES,
    Answer,
    Receiver,
    assert_one_delivery_per_event,
    assert_signed,
    hooks,
)


def hooked_env(receiver: Receiver, **env: str) -> dict[str, str]:
    return {"DEFAULT_APP_WEBHOOKS": hooks(receiver.url), "WEBHOOK_DELAY_SECONDS": "0.5", **env}


async def subscribe_all(client: PusherSocket, channels: list[str]) -> None:
    """Subscribe to ``channels`` in one burst, then read every subscription_succeeded."""
    for channel in channels:
        await client.send("pusher:subscribe", {"channel": channel})
    succeeded = set()
    while len(succeeded) < len(channels):
        frame = await client.recv(10)
        if frame["event"] == "pusher_internal:subscription_succeeded":
            succeeded.add(frame["channel"])
    assert succeeded == set(channels)


def db_rows(data_dir: Path) -> list[dict[str, Any]]:
    """The outbox table, read straight from the server's SQLite file."""
    with contextlib.closing(sqlite3.connect(data_dir / "db.sqlite3", timeout=10)) as db:
        db.row_factory = sqlite3.Row
        query = (
            "SELECT id, status, attempts, last_status, last_error, event_count, body, lease_owner"
            " FROM realtime_webhookdelivery"
        )
        return [dict(row) for row in db.execute(query)]


async def wait_rows(data_dir: Path, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        rows = await asyncio.to_thread(db_rows, data_dir)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox rows never as expected: {rows}")
        await asyncio.sleep(0.1)


def wait_ready(node: ServerProcess, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(node.url("/ready"), timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"/ready never answered 200:\n{node.output()[-3000:]}")


def counters(server: ServerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the server's /metrics, by (name, labels)."""
    with urllib.request.urlopen(server.metrics_url(), timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def wait_counters(
    server: ServerProcess, predicate: Callable[[dict[tuple[str, frozenset[tuple[str, str]]], float]], bool]
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Scrape until ``predicate`` holds (counters follow the row's update by a moment); the last
    scrape either way, for the caller to assert on."""
    deadline = time.monotonic() + 5
    while True:
        samples = await asyncio.to_thread(counters, server)
        if predicate(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def create_app(server: ServerProcess, app_id: str, url: str) -> tuple[str, pusher.Pusher]:
    """A second app with a webhook to ``url`` (realtime_createapp has no webhook options), made in
    the server's database through the ORM; returns its key and an SDK client of it."""
    key, secret = f"key-{app_id}", f"secret-{app_id}-0123456789abcdef"
    server.manage(
        "shell",
        "-c",
        "from realtime.models import App, Webhook\n"
        f"app = App.objects.create(id={app_id!r}, key={key!r}, secret={secret!r}, name='second')\n"
        f"Webhook.objects.create(app=app, url={url!r}, event_types={EVENT_TYPES!r})\n",
    )
    return key, server.pusher(app_id=app_id, key=key, secret=secret)


async def test_crash_before_delivery_is_recovered_by_the_restart(start_server, receivers) -> None:
    receiver = receivers(up=False)
    env = hooked_env(receiver, WEBHOOK_LEASE_SECONDS="2", WEBHOOK_POLL_SECONDS="0.2")
    server = start_server(env)
    channels = [f"crash-{i}" for i in range(20)]
    async with await PusherSocket.connect(server.ws_url()) as client:
        await subscribe_all(client, channels)
        # Committed (and tried against the dead receiver) before the crash.
        await wait_rows(server.data_dir, lambda rows: sum(r["event_count"] for r in rows) == 20)
        await asyncio.sleep(1)
        server.kill()
    rows = db_rows(server.data_dir)
    assert {r["status"] for r in rows} == {"pending"}, rows
    assert all(r["attempts"] >= 1 for r in rows), rows
    receiver.up()

    restarted = start_server(env, data_dir=server.data_dir)
    # Starting again (which applies DEFAULT_APP_* to the database) keeps the undelivered rows.
    kept = db_rows(server.data_dir)
    assert sum(r["event_count"] for r in kept) == 20, f"the restart dropped outbox rows: {kept}"
    await receiver.wait_channels("channel_occupied", set(channels), timeout=20)
    by_channel = assert_one_delivery_per_event(receiver, "channel_occupied")
    assert set(by_channel) == set(channels)
    assert_signed(receiver.snapshot(), restarted.key, restarted.pusher())
    await wait_rows(server.data_dir, lambda rows: {r["status"] for r in rows} == {"delivered"})


async def test_crash_of_one_node_is_recovered_by_another(
    start_server, receivers, redis_server: RedisProcess, tmp_path: Path
) -> None:
    receiver = receivers(up=False)
    env = hooked_env(
        receiver,
        REDIS_URL=redis_server.url,
        REDIS_PREFIX="outbox",
        WEBHOOK_LEASE_SECONDS="2",
        WEBHOOK_POLL_SECONDS="0.2",
    )
    shared = tmp_path / "shared"  # one SQLite file for both nodes
    a = start_server(env, data_dir=shared)
    b = start_server(env, data_dir=shared)
    wait_ready(a)
    wait_ready(b)
    channels = [f"node-a-{i}" for i in range(20)]
    async with await PusherSocket.connect(a.ws_url()) as client:
        await subscribe_all(client, channels)
        await wait_rows(shared, lambda rows: sum(r["event_count"] for r in rows) == 20)
        await asyncio.sleep(1)
        a.kill()
    receiver.up()

    await receiver.wait_channels("channel_occupied", set(channels), timeout=20)
    assert b.process.poll() is None, "node B died"
    by_channel = assert_one_delivery_per_event(receiver, "channel_occupied")
    assert set(by_channel) == set(channels)
    rows = await wait_rows(shared, lambda rows: {r["status"] for r in rows} == {"delivered"})
    # Every event is in exactly one row, and the rows are what was received.
    assert sorted(e["channel"] for r in rows for e in json.loads(r["body"])["events"]) == sorted(channels)
    assert {r["id"].replace("-", "") for r in rows} == {i.replace("-", "") for i in by_channel.values()}
    assert_signed(receiver.snapshot(), b.key, b.pusher())


async def test_failed_attempts_are_retried_with_the_same_delivery_id(start_server, receivers) -> None:
    receiver = receivers()
    # 500, then no answer within WEBHOOK_TIMEOUT (a late 200 does not count), then 200.
    receiver.script = [Answer(500), Answer(200, delay=1.6), Answer(200)]
    server = start_server(hooked_env(receiver, WEBHOOK_TIMEOUT="1"))
    async with await PusherSocket.connect(server.ws_url()) as client:
        await subscribe_all(client, ["retried"])
        await receiver.wait(lambda: len(receiver.snapshot()) >= 3, "three attempts", timeout=15)
        await asyncio.sleep(1.5)  # accepted: no fourth attempt
    hits = receiver.snapshot()
    assert len(hits) == 3, [(h.at, h.status) for h in hits]
    assert len({hit.delivery_id for hit in hits}) == 1
    assert len({hit.body for hit in hits}) == 1
    assert hits[0].events == [{"name": "channel_occupied", "channel": "retried"}]
    # Backoff: 1 s x [0.5, 1) after the first failure; the timeout (1 s) plus 2 s x [0.5, 1) after the second.
    assert hits[1].at - hits[0].at >= 0.45
    assert hits[2].at - hits[1].at >= 1.9
    assert_signed(hits, server.key, server.pusher())
    rows = await wait_rows(server.data_dir, lambda rows: rows and rows[0]["status"] == "delivered")
    assert len(rows) == 1
    assert rows[0]["attempts"] == 3
    assert rows[0]["last_status"] == 200


async def test_a_batch_that_keeps_failing_ends_failed(start_server, receivers) -> None:
    receiver = receivers(default=Answer(500))
    # Occupied only: the vacated event of the client leaving would be a second job in the gauges.
    only = hooks(receiver.url, ["channel_occupied"])
    server = start_server(hooked_env(receiver, WEBHOOK_RETRY_SECONDS="3", DEFAULT_APP_WEBHOOKS=only))
    before = await asyncio.to_thread(counters, server)
    async with await PusherSocket.connect(server.ws_url()) as client:
        await subscribe_all(client, ["doomed"])
        # While it is retried: one job held, and the backlog's age is showing.
        pending = await wait_counters(
            server, lambda s: total(s, "realtime_queue_oldest_job_age_seconds", queue="webhooks") > 0
        )
        assert total(pending, "realtime_queue_oldest_job_age_seconds", queue="webhooks") > 0
        assert total(pending, "realtime_queue_active_jobs", queue="webhooks") == 1
        rows = await wait_rows(
            server.data_dir, lambda rows: rows and rows[0]["status"] == "failed", timeout=15
        )
    assert len(rows) == 1
    row = rows[0]
    assert row["attempts"] >= 2
    assert row["last_status"] == 500
    assert row["last_error"] == "HTTP 500"
    hits = receiver.snapshot()
    assert len(hits) == row["attempts"]
    assert len({hit.delivery_id for hit in hits}) == 1

    after = await wait_counters(
        server, lambda s: total(s, "realtime_queue_jobs_failed_total", queue="webhooks") > 0
    )

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("realtime_webhooks_failed_total", event="channel_occupied") == 1
    assert delta("realtime_queue_jobs_failed_total", queue="webhooks") == 1
    assert delta("realtime_webhook_retries_total", event="channel_occupied") == row["attempts"] - 1
    assert delta("realtime_webhooks_sent_total") == 0
    assert delta("realtime_queue_jobs_processed_total", queue="webhooks") == 0
    settled = await wait_counters(
        server, lambda s: total(s, "realtime_queue_oldest_job_age_seconds", queue="webhooks") == 0
    )
    assert total(settled, "realtime_queue_active_jobs", queue="webhooks") == 0
    assert total(settled, "realtime_queue_oldest_job_age_seconds", queue="webhooks") == 0


async def test_a_delivered_batch_is_counted_once(start_server, receivers) -> None:
    receiver = receivers()
    # A wide batching window: the burst is one batch for sure.
    only = hooks(receiver.url, ["channel_occupied"])
    server = start_server(hooked_env(receiver, WEBHOOK_BATCH_SECONDS="0.5", DEFAULT_APP_WEBHOOKS=only))
    channels = [f"counted-{i}" for i in range(7)]
    before = await asyncio.to_thread(counters, server)
    async with await PusherSocket.connect(server.ws_url()) as client:
        await subscribe_all(client, channels)
        await receiver.wait_channels("channel_occupied", set(channels))
        await asyncio.sleep(0.5)
    hits = receiver.snapshot()
    assert len(hits) == 1
    assert len(hits[0].events) == len(channels)
    after = await wait_counters(
        server, lambda s: total(s, "realtime_queue_jobs_processed_total", queue="webhooks") > 0
    )

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("realtime_webhooks_sent_total", app_id=server.app_id, event="channel_occupied") == len(
        channels
    )
    assert delta("realtime_queue_jobs_added_total", queue="webhooks") == 1
    assert delta("realtime_queue_jobs_processed_total", queue="webhooks") == 1
    assert delta("realtime_queue_jobs_failed_total", queue="webhooks") == 0
    assert delta("realtime_webhook_retries_total") == 0
    assert delta("realtime_queue_job_duration_seconds_count", queue="webhooks") == 1
    assert delta("realtime_webhook_duration_seconds_count") == 1
    # The live levels are back where they were once the batch is delivered (and the worker's next
    # pass has seen the outbox empty).
    settled = await wait_counters(
        server, lambda s: total(s, "realtime_queue_oldest_job_age_seconds", queue="webhooks") == 0
    )
    for gauge in ("realtime_queue_active_jobs", "realtime_queue_oldest_job_age_seconds"):
        assert total(settled, gauge, queue="webhooks") == total(before, gauge, queue="webhooks") == 0


async def test_a_burst_is_batched_within_the_batch_size(start_server, receivers) -> None:
    receiver = receivers()
    server = start_server(hooked_env(receiver, WEBHOOK_BATCH_SIZE="10"))
    channels = [f"burst-{i}" for i in range(30)]
    async with await PusherSocket.connect(server.ws_url()) as client:
        await subscribe_all(client, channels)
        await receiver.wait_channels("channel_occupied", set(channels))
        await asyncio.sleep(0.3)
    hits = receiver.snapshot()
    assert 3 <= len(hits) < 30, [len(hit.events) for hit in hits]
    for hit in hits:
        assert set(hit.payload) == {"time_ms", "events"}
        assert isinstance(hit.payload["time_ms"], int)
        assert 1 <= len(hit.events) <= 10
    assert sorted(e["channel"] for _, e in receiver.events()) == sorted(channels)
    assert len({hit.delivery_id for hit in hits}) == len(hits)
    assert_signed(hits, server.key, server.pusher())


async def test_two_apps_never_share_a_request(start_server, receivers) -> None:
    receiver = receivers()
    server = start_server(hooked_env(receiver, WEBHOOK_BATCH_SECONDS="0.2"))
    second_key, second = await asyncio.to_thread(create_app, server, "200300", receiver.url)
    sdks = {server.key: (server.pusher(), "first-"), second_key: (second, "second-")}
    channels = {prefix: [f"{prefix}{i}" for i in range(10)] for prefix in ("first-", "second-")}
    async with (
        await PusherSocket.connect(server.ws_url(server.key)) as a,
        await PusherSocket.connect(server.ws_url(second_key)) as b,
    ):
        # Interleaved within one batching window.
        await asyncio.gather(subscribe_all(a, channels["first-"]), subscribe_all(b, channels["second-"]))
        await receiver.wait_channels("channel_occupied", {c for group in channels.values() for c in group})
    hits = receiver.snapshot()
    assert {hit.headers["X-Pusher-Key"] for hit in hits} == set(sdks)
    for hit in hits:
        sdk, prefix = sdks[hit.headers["X-Pusher-Key"]]
        assert_signed([hit], hit.headers["X-Pusher-Key"], sdk)
        assert all(event["channel"].startswith(prefix) for event in hit.events), hit.events


async def test_a_slow_url_does_not_delay_another(start_server, receivers) -> None:
    slow = receivers(default=Answer(200, delay=4))
    fast = receivers()
    server = start_server(hooked_env(slow))
    fast_key, fast_sdk = await asyncio.to_thread(create_app, server, "200400", fast.url)
    async with (
        await PusherSocket.connect(server.ws_url()) as a,
        await PusherSocket.connect(server.ws_url(fast_key)) as b,
    ):
        for i in range(3):  # several batches queue up behind the slow first one
            await subscribe_all(a, [f"slow-{i}"])
            await asyncio.sleep(0.15)
        await slow.wait(lambda: bool(slow.snapshot()), "the slow receiver's first request", timeout=5)
        for i in range(3):
            caused = time.monotonic()
            await subscribe_all(b, [f"fast-{i}"])
            await fast.wait_channels("channel_occupied", {f"fast-{i}"}, timeout=5)
            arrived = next(h for h, e in fast.events() if e["channel"] == f"fast-{i}").at
            assert arrived - caused < 2.0
        stuck = slow.snapshot()[0]
        # The slow receiver was still sitting on its first request the whole time.
        assert stuck.answered is None or stuck.answered > arrived
    assert all(e["channel"].startswith("fast-") for _, e in fast.events())
    assert_signed(fast.snapshot(), fast_key, fast_sdk)
