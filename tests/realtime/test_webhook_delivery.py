"""The outbox, its leases and the deliverer in process, against a real HTTP receiver on loopback.

The end-to-end cases (crashes, restarts, two nodes) are in tests/e2e/test_webhook_outbox.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.utils import timezone

from realtime.conf import RealtimeSettings
from realtime.credentials import CredentialsCache
from realtime.models import App, AppKey, Webhook, WebhookDelivery
from realtime.protocol.signatures import webhook_signature
from realtime.provisioning import sync_app
from realtime.stats import Stats
from realtime.webhooks import delivery as delivery_module
from realtime.webhooks.delivery import DELIVERY_ID_HEADER, Deliverer
from realtime.webhooks.outbox import Outbox
from realtime.webhooks.store import Batch, Store
from tests.webhook_receiver import Answer, Receiver

pytestmark = pytest.mark.django_db(transaction=True)

EMPTY = '{"time_ms":1,"events":[]}'


@pytest.fixture
def receiver(receivers: Callable[..., Receiver]) -> Receiver:
    return receivers()


def make_app(app_id: str, url: str, headers: dict[str, str] | None = None) -> tuple[App, Webhook]:
    app = App.objects.create(id=app_id, key=f"key{app_id}", secret=f"secret{app_id}")
    hook = Webhook.objects.create(app=app, url=url, event_types=["channel_occupied"], headers=headers or {})
    return app, hook


def rows() -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.order_by("created", "event_count"))


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await sync_to_async(condition)():
            await asyncio.sleep(0.02)


async def test_events_are_batched_per_app_and_webhook_and_committed_together() -> None:
    await sync_to_async(make_app)("1", "http://127.0.0.1:9/a")
    await sync_to_async(make_app)("2", "http://127.0.0.1:9/a")
    credentials = CredentialsCache()
    one, two = await credentials.by_id("1"), await credentials.by_id("2")
    assert one is not None and two is not None
    conf = RealtimeSettings(WEBHOOK_BATCH_SIZE=100)
    store = Store("test")
    committed: list[Batch] = []
    outbox = Outbox(conf, store, Stats(), committed.extend)
    for n in range(250):
        outbox.add(one, one.webhooks[0], {"name": "channel_occupied", "channel": f"c{n}"})
    outbox.add(two, two.webhooks[0], {"name": "channel_occupied", "channel": "other"})
    await outbox.flush()
    saved = await sync_to_async(rows)()
    # One app's webhook: full batches of 100 and the rest; the other app never shares a request.
    assert sorted((r.app_id, r.event_count) for r in saved) == [("1", 50), ("1", 100), ("1", 100), ("2", 1)]
    assert {r.id for r in saved} == {b.id for b in committed}
    first = [json.loads(r.body) for r in saved if r.app_id == "1"]
    channels = [
        e["channel"]
        for body in sorted(first, key=lambda b: b["events"][0]["channel"])
        for e in body["events"]
    ]
    assert sorted(channels) == sorted(f"c{n}" for n in range(250))
    assert all(isinstance(body["time_ms"], int) for body in first)
    assert all(r.status == "pending" and r.lease_owner == "test" for r in saved)
    assert outbox.pending() == 0
    await store.close()


async def test_a_row_is_claimed_by_one_owner_until_its_lease_runs_out() -> None:
    _, hook = await sync_to_async(make_app)("3", "http://127.0.0.1:9/a")
    now = timezone.now()
    batches = [
        Batch(uuid.uuid4(), "3", hook.pk, hook.url, now, now + dt.timedelta(seconds=60), [], EMPTY)
        for _ in range(20)
    ]
    a, b = Store("a"), Store("b")
    await a.insert(batches, None)  # unleased: for whoever polls first
    first, second = await asyncio.gather(a.claim(0.3, 100), b.claim(0.3, 100))
    assert len(first) + len(second) == 20
    assert not {x.id for x in first} & {x.id for x in second}
    assert await b.claim(0.3, 100) == [] and await a.claim(0.3, 100) == []
    mine = [x.id for x in first] or [x.id for x in second]
    owner, other = (a, b) if first else (b, a)
    await owner.renew(mine, 30)
    await asyncio.sleep(0.4)
    # The renewed leases hold; the others ran out and are anyone's again.
    taken = await other.claim(30, 100)
    assert {x.id for x in taken} == {x.id for x in batches} - set(mine)
    assert await owner.release_all() == len(mine)
    assert {x.id for x in await other.claim(30, 100)} == set(mine)
    for store in (a, b):
        await store.close()


async def deliver(
    conf: RealtimeSettings, app_id: str, events: list[dict[str, Any]]
) -> tuple[Stats, Deliverer]:
    credentials = CredentialsCache()
    app = await credentials.by_id(app_id)
    assert app is not None
    stats = Stats()
    store = Store("test")
    deliverer = Deliverer(conf, store, stats, credentials)
    outbox = Outbox(conf, store, stats, deliverer.submit, deliverer.room)
    for event in events:
        outbox.add(app, app.webhooks[0], event)
    await outbox.flush()
    return stats, deliverer


async def done(deliverer: Deliverer) -> None:
    await deliverer.stop(1.0)
    await deliverer.store.close()


async def test_delivered_signed_with_a_delivery_id(receiver: Receiver) -> None:
    await sync_to_async(make_app)("4", receiver.url, {"Authorization": "Bearer x"})
    events = [{"name": "channel_occupied", "channel": f"d{n}"} for n in range(3)]
    stats, deliverer = await deliver(RealtimeSettings(), "4", events)
    await wait_until(lambda: rows()[0].status == "delivered")
    [hit] = receiver.snapshot()
    [row] = await sync_to_async(rows)()
    assert hit.events == events
    assert hit.body.decode() == row.body
    assert hit.headers["X-Pusher-Key"] == "key4"
    assert hit.headers["X-Pusher-Signature"] == webhook_signature("secret4", hit.body)
    assert hit.headers[DELIVERY_ID_HEADER] == str(row.id)
    assert hit.headers["Authorization"] == "Bearer x"
    assert (row.attempts, row.last_status, row.delivered is not None) == (1, 200, True)
    assert stats.counters["webhooks_sent"][("4", "channel_occupied")] == 3
    assert stats.counters["queue_jobs_processed"][("webhooks",)] == 1
    await done(deliverer)


async def test_signed_with_the_newest_key_pair(receiver: Receiver) -> None:
    app, _ = await sync_to_async(make_app)("6", receiver.url)
    await AppKey.objects.acreate(app=app, key="key6-new", secret="secret6-new")
    _, deliverer = await deliver(RealtimeSettings(), "6", [{"name": "channel_occupied", "channel": "n"}])
    await wait_until(lambda: rows()[0].status == "delivered")
    [hit] = receiver.snapshot()
    assert hit.headers["X-Pusher-Key"] == "key6-new"
    assert hit.headers["X-Pusher-Signature"] == webhook_signature("secret6-new", hit.body)
    await done(deliverer)


async def test_retried_with_the_same_delivery_id_then_failed_for_good(monkeypatch, receivers) -> None:
    monkeypatch.setattr(delivery_module, "FIRST_RETRY_SECONDS", 0.05)
    flaky = receivers(script=[Answer(500), Answer(503)])
    await sync_to_async(make_app)("5", flaky.url)
    stats, first = await deliver(RealtimeSettings(), "5", [{"name": "channel_occupied", "channel": "r"}])
    await wait_until(lambda: rows()[0].status == "delivered")
    hits = flaky.snapshot()
    assert [hit.status for hit in hits] == [500, 503, 200] and len({hit.delivery_id for hit in hits}) == 1
    assert stats.counters["webhook_retries"][("5", "channel_occupied")] == 2
    flaky.default = Answer(500)
    await sync_to_async(WebhookDelivery.objects.all().delete)()
    conf = RealtimeSettings(WEBHOOK_RETRY_SECONDS=0.3)
    stats, second = await deliver(conf, "5", [{"name": "channel_occupied", "channel": "f"}])
    await wait_until(lambda: rows()[0].status == "failed")
    [row] = await sync_to_async(rows)()
    assert row.attempts >= 2 and row.last_status == 500 and row.last_error == "HTTP 500"
    assert stats.counters["webhooks_failed"][("5", "channel_occupied")] == 1
    assert stats.counters["queue_jobs_failed"][("webhooks",)] == 1
    for deliverer in (first, second):
        await done(deliverer)


def test_resyncing_the_default_app_keeps_its_webhooks_and_their_deliveries() -> None:
    hooks = [{"url": "https://hooks.example/a", "event_types": ["channel_occupied"]}]
    app = sync_app({"id": "6", "key": "k6", "webhooks": hooks})
    [hook] = app.webhooks.all()
    now = timezone.now()
    batch = Batch(uuid.uuid4(), "6", hook.pk, hook.url, now, now + dt.timedelta(seconds=60), [], EMPTY)
    WebhookDelivery.objects.create(
        id=batch.id,
        app=app,
        webhook=hook,
        url=hook.url,
        event_names="",
        event_count=0,
        body=EMPTY,
        created=now,
        next_attempt=now,
        retry_until=batch.retry_until,
    )
    changed = [{**hooks[0], "event_types": ["channel_vacated"]}]
    sync_app({"id": "6", "key": "k6", "webhooks": changed})
    [same] = Webhook.objects.filter(app_id="6")
    assert (same.pk, same.event_types) == (hook.pk, ["channel_vacated"])
    assert WebhookDelivery.objects.get(id=batch.id).webhook_id == hook.pk
    sync_app({"id": "6", "key": "k6", "webhooks": []})
    # The webhook is gone; its log is not.
    assert WebhookDelivery.objects.get(id=batch.id).webhook_id is None


async def test_a_batch_for_a_deleted_webhook_does_not_hold_up_the_others() -> None:
    _, kept = await sync_to_async(make_app)("7", "http://127.0.0.1:9/kept")
    _, gone = await sync_to_async(make_app)("8", "http://127.0.0.1:9/gone")
    gone_id = gone.pk
    await sync_to_async(gone.delete)()
    now = timezone.now()
    later = now + dt.timedelta(seconds=60)
    batches = [
        Batch(uuid.uuid4(), "8", gone_id, gone.url, now, later, [], EMPTY),
        Batch(uuid.uuid4(), "7", kept.pk, kept.url, now, later, [], EMPTY),
    ]
    store = Store("test")
    await store.insert(batches, 30)
    assert [r.id for r in await sync_to_async(rows)()] == [batches[1].id]
    await store.close()
