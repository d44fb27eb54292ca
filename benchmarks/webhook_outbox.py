"""The outbox's two figures: what an event costs the code path that causes it, and how soon it is durable.

Emits webhook events into a real ``Outbox`` (one app, ``--webhooks`` webhooks wanting them) at
``--rate`` events per second for ``--duration`` seconds, against a scratch SQLite file in WAL mode
(the embedded default) or ``--database-url`` (PostgreSQL). Reports the CPU time of ``emit`` per
event (what a subscribe pays) and, per event, the time from ``emit`` until its batch was committed
(the durability window: ``WEBHOOK_BATCH_SECONDS`` plus the commit).

    python benchmarks/webhook_outbox.py
    python benchmarks/webhook_outbox.py --database-url postgres://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(rate: float, duration: float, webhooks: int) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    from realtime.conf import RealtimeSettings
    from realtime.credentials import CredentialsCache
    from realtime.models import App, Webhook, WebhookDelivery
    from realtime.stats import Stats
    from realtime.webhooks.dispatcher import Webhooks
    from realtime.webhooks.store import Batch

    def setup() -> None:
        WebhookDelivery.objects.all().delete()
        App.objects.filter(id="bench-outbox").delete()
        app = App.objects.create(id="bench-outbox", key="bench-outbox-key")
        for n in range(webhooks):
            Webhook.objects.create(app=app, url=f"http://127.0.0.1:9/{n}", event_types=["channel_occupied"])

    await sync_to_async(setup)()
    credentials = CredentialsCache()
    app = await credentials.by_id("bench-outbox")
    assert app is not None
    conf = RealtimeSettings(WEBHOOK_WORKER="external")  # commit only: delivery is not measured here
    hooks = Webhooks(conf, None, Stats(), credentials, "bench")  # type: ignore[arg-type]
    emitted: dict[str, float] = {}
    committed: list[float] = []

    def on_committed(batches: list[Batch]) -> None:
        now = time.perf_counter()
        committed.extend(now - emitted[e["channel"]] for b in batches for e in b.events)

    hooks.outbox.on_committed = on_committed
    emit_cpu: list[float] = []
    interval = 1.0 / rate
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < duration:
        channel = f"c{n}"
        cpu = time.thread_time()
        emitted[channel] = time.perf_counter()
        hooks.emit(app, "channel_occupied", channel)
        emit_cpu.append(time.thread_time() - cpu)
        n += 1
        await asyncio.sleep(max(0.0, started + n * interval - time.perf_counter()))
    await hooks.outbox.flush()
    rows = await sync_to_async(WebhookDelivery.objects.count)()
    await hooks.store.close()
    ms = [x * 1000 for x in committed]
    return {
        "events": n,
        "rows": rows,
        "events_committed": len(committed),
        "emit_cpu_us_per_event": round(statistics.mean(emit_cpu) * 1e6, 2),
        "durable_after_ms": {
            "p50": round(percentile(ms, 0.5), 1),
            "p99": round(percentile(ms, 0.99), 1),
            "max": round(max(ms), 1),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--webhooks", type=int, default=1)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ["REALTIME_DATA_DIR"] = tempfile.mkdtemp(prefix="outbox-bench-")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    print(json.dumps(asyncio.run(measure(args.rate, args.duration, args.webhooks))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
