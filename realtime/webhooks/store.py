"""The outbox table (``WebhookDelivery``) as the webhook worker uses it, from one database thread.

Every call runs on the store's own thread, one at a time, so the event loop never waits on the
database and a process holds one database connection for its webhooks. A row is claimed with a
lease (``lease_owner`` until ``lease_until``): an ``UPDATE`` whose ``WHERE`` re-checks that the row
is still due and unleased, so two nodes (or a node and ``realtime_webhooks``) never both take it,
on SQLite and PostgreSQL alike. A node that dies stops renewing its leases; once they run out, the
rows are due again for anyone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DatabaseError, IntegrityError, connection
from django.db.models import Min, Q, QuerySet
from django.utils import timezone

from ..models import WebhookDelivery

T = TypeVar("T")

# Deliveries made within this many seconds are recorded in one UPDATE.
DELIVERED_WINDOW = 0.05

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    """One request's worth of events for one app's webhook: a ``WebhookDelivery`` row in memory.

    ``events`` are the event objects in the order they happened; ``body`` is set once the batch is
    closed, and is exactly what is sent. Times are aware datetimes (UTC).
    """

    id: uuid.UUID
    app_id: str
    webhook_id: int | None
    url: str
    created: dt.datetime
    retry_until: dt.datetime
    events: list[dict[str, Any]]
    body: str = ""
    attempts: int = 0

    @property
    def event_names(self) -> list[str]:
        """The distinct event names of the batch, in order of first appearance."""
        return list(dict.fromkeys(event["name"] for event in self.events))


def _row(batch: Batch, lease_owner: str, lease_until: dt.datetime | None) -> WebhookDelivery:
    return WebhookDelivery(
        id=batch.id,
        app_id=batch.app_id,
        webhook_id=batch.webhook_id,
        url=batch.url,
        event_names=", ".join(batch.event_names)[:200],
        event_count=len(batch.events),
        body=batch.body,
        created=batch.created,
        next_attempt=batch.created,
        retry_until=batch.retry_until,
        lease_owner=lease_owner,
        lease_until=lease_until,
    )


def _batch(row: WebhookDelivery) -> Batch:
    return Batch(
        id=row.id,
        app_id=row.app_id,
        webhook_id=row.webhook_id,
        url=row.url,
        created=row.created,
        retry_until=row.retry_until,
        events=json.loads(row.body)["events"],
        body=row.body,
        attempts=row.attempts,
    )


class Store:
    """The outbox, read and written on one thread of its own. Every method may raise
    ``django.db.DatabaseError`` (the connection is then dropped, and the next call opens a new one).
    """

    def __init__(self, owner: str) -> None:
        # Whose leases this store takes: the node's instance id.
        self.owner = owner
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="realtime-outbox")
        # Whether any lease was ever taken: a process that never held one has none to release.
        self._leased = False
        # Deliveries made and not yet recorded: (id, attempts, HTTP status, URL).
        self._delivered: list[tuple[uuid.UUID, int, int, str]] = []
        self._marking: asyncio.Task[None] | None = None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(_guarded, function, *args))

    def delivered(self, batch: Batch, http_status: int) -> None:
        """Record that ``batch`` was delivered, together with the others delivered within
        ``DELIVERED_WINDOW`` seconds (one ``UPDATE`` for them all). Until it lands the row is still
        pending: a crash in between sends it again, under the same delivery id."""
        self._delivered.append((batch.id, batch.attempts, http_status, batch.url))
        if self._marking is None or self._marking.done():
            self._marking = asyncio.ensure_future(self._mark_delivered())

    async def flush_delivered(self) -> None:
        """Until every delivery recorded so far is written (a stop must not hand them back)."""
        if self._marking is not None and not self._marking.done():
            await self._marking

    async def _mark_delivered(self) -> None:
        await asyncio.sleep(DELIVERED_WINDOW)
        while self._delivered:
            marks, self._delivered = self._delivered, []
            try:
                await self._run(self._update_delivered, marks)
            except Exception:
                # The rows stay pending under a lease that runs out: sent again, same delivery id.
                logger.exception("webhook deliveries not recorded", extra={"batches": len(marks)})

    def _update_delivered(self, marks: list[tuple[uuid.UUID, int, int, str]]) -> None:
        groups: dict[tuple[int, int, str], list[uuid.UUID]] = {}
        for delivery_id, attempts, http_status, url in marks:
            groups.setdefault((attempts, http_status, url), []).append(delivery_id)
        now = timezone.now()
        for (attempts, http_status, url), ids in groups.items():
            WebhookDelivery.objects.filter(id__in=ids, lease_owner=self.owner).update(
                status=WebhookDelivery.DELIVERED,
                attempts=attempts,
                last_status=http_status,
                last_error="",
                url=url,
                delivered=now,
                lease_owner="",
                lease_until=None,
            )

    async def close(self) -> None:
        """Close the thread's database connection and stop the thread."""
        loop = asyncio.get_running_loop()
        # Looked up on the store's thread: ``connection`` is that thread's own.
        await loop.run_in_executor(self._executor, _close_connection)
        self._executor.shutdown(wait=False)

    async def insert(self, batches: list[Batch], lease_seconds: float | None) -> None:
        """Commit ``batches`` in one transaction, leased to this owner for ``lease_seconds`` (None:
        unleased, for whichever worker polls first)."""
        await self._run(self._insert, batches, lease_seconds)

    def _insert(self, batches: list[Batch], lease_seconds: float | None) -> None:
        until = None if lease_seconds is None else timezone.now() + dt.timedelta(seconds=lease_seconds)
        owner = self.owner if until is not None else ""
        self._leased = self._leased or until is not None
        # Idempotent: a commit whose acknowledgement was lost is simply tried again.
        rows = [_row(batch, owner, until) for batch in batches]
        try:
            WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
        except IntegrityError:
            # An app or webhook deleted since its events were made (another node's cache was
            # older): those batches have nowhere to go; the others must not wait behind them.
            for row in rows:
                try:
                    WebhookDelivery.objects.bulk_create([row], ignore_conflicts=True)
                except IntegrityError:
                    logger.warning(
                        "webhook batch dropped: its app or webhook was deleted",
                        extra={"app_id": row.app_id, "delivery_id": str(row.id)},
                    )

    async def claim(self, lease_seconds: float, limit: int) -> list[Batch]:
        """Lease up to ``limit`` due rows (pending, next attempt passed, no live lease), oldest first."""
        return await self._run(self._claim, lease_seconds, limit)

    def _claim(self, lease_seconds: float, limit: int) -> list[Batch]:
        now = timezone.now()
        free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        due = WebhookDelivery.objects.filter(free, status=WebhookDelivery.PENDING, next_attempt__lte=now)
        ids = list(due.order_by("created").values_list("id", flat=True)[:limit])
        if not ids:
            return []
        self._leased = True
        # The lease's end doubles as this claim's token: only rows this UPDATE took carry it.
        until = now + dt.timedelta(seconds=lease_seconds, microseconds=uuid.uuid4().int % 1000)
        due.filter(id__in=ids).update(lease_owner=self.owner, lease_until=until)
        taken = WebhookDelivery.objects.filter(id__in=ids, lease_owner=self.owner, lease_until=until)
        return [_batch(row) for row in taken.order_by("created")]

    async def renew(self, ids: list[uuid.UUID], lease_seconds: float) -> None:
        """Extend this owner's leases on ``ids`` to ``lease_seconds`` from now."""
        await self._run(self._renew, ids, lease_seconds)

    def _renew(self, ids: list[uuid.UUID], lease_seconds: float) -> None:
        until = timezone.now() + dt.timedelta(seconds=lease_seconds)
        WebhookDelivery.objects.filter(
            id__in=ids, lease_owner=self.owner, status=WebhookDelivery.PENDING
        ).update(lease_until=until)

    async def release_all(self) -> int:
        """Give up every lease this owner holds on pending rows: due again for anyone at once (a
        drain). Returns how many (0 without asking when this owner never took a lease)."""
        if not self._leased:
            return 0
        return await self._run(self._release_all)

    def _release_all(self) -> int:
        return WebhookDelivery.objects.filter(lease_owner=self.owner, status=WebhookDelivery.PENDING).update(
            lease_owner="", lease_until=None
        )

    async def attempted(
        self,
        batch: Batch,
        status: str,
        http_status: int | None,
        error: str,
        next_attempt: dt.datetime | None = None,
    ) -> bool:
        """Record a failed attempt's outcome: ``status`` is ``failed`` (for good) or ``pending``
        (retried at ``next_attempt``); deliveries go through ``delivered``. False when this owner
        no longer holds the row's lease (another worker took it over): nothing is recorded and the
        caller lets it go."""
        return await self._run(self._attempted, batch, status, http_status, error, next_attempt)

    def _attempted(
        self,
        batch: Batch,
        status: str,
        http_status: int | None,
        error: str,
        next_attempt: dt.datetime | None,
    ) -> bool:
        now = timezone.now()
        fields: dict[str, Any] = {
            # The webhook's URL may have been changed in the admin since the batch was made.
            "url": batch.url,
            "status": status,
            "attempts": batch.attempts,
            "last_status": http_status,
            "last_error": error[:300],
        }
        if status == WebhookDelivery.FAILED:
            fields.update(lease_owner="", lease_until=None)
        else:
            fields["next_attempt"] = next_attempt or now
        return bool(WebhookDelivery.objects.filter(id=batch.id, lease_owner=self.owner).update(**fields))

    async def oldest_pending(self) -> dt.datetime | None:
        """When the oldest pending row (any node's) was created, or None."""
        return await self._run(_oldest_pending)

    async def prune(self, days: float) -> int:
        """Delete delivered and failed rows created more than ``days`` ago; return how many."""
        return await self._run(prune, days)


def _close_connection() -> None:
    connection.close()


def _guarded(function: Callable[..., T], *args: Any) -> T:
    # No transaction around the calls: each statement stands alone (a claim's UPDATE re-checks its
    # own WHERE), and SQLite cannot wait for a lock that a read transaction would have to upgrade.
    try:
        return function(*args)
    except DatabaseError:
        # A broken connection (a restarted PostgreSQL) must not poison every later call.
        connection.close()
        raise


def _oldest_pending() -> dt.datetime | None:
    return WebhookDelivery.objects.filter(status=WebhookDelivery.PENDING).aggregate(oldest=Min("created"))[
        "oldest"
    ]


def prune(days: float) -> int:
    """Delete delivered and failed deliveries created more than ``days`` ago; return how many."""
    cutoff = timezone.now() - dt.timedelta(days=days)
    done = (WebhookDelivery.DELIVERED, WebhookDelivery.FAILED)
    deleted, _ = WebhookDelivery.objects.filter(status__in=done, created__lt=cutoff).delete()
    return deleted


def redeliver(deliveries: QuerySet[WebhookDelivery], retry_seconds: float) -> int:
    """Make the failed ones of ``deliveries`` (a ``WebhookDelivery`` queryset) pending again, due now,
    with a fresh retry window of ``retry_seconds``; return how many."""
    now = timezone.now()
    return deliveries.filter(status=WebhookDelivery.FAILED).update(
        status=WebhookDelivery.PENDING,
        next_attempt=now,
        retry_until=now + dt.timedelta(seconds=retry_seconds),
        lease_owner="",
        lease_until=None,
        last_error="",
        # The backoff starts over: a redelivery gets its full retry window of attempts.
        attempts=0,
    )
