"""Webhook events into the outbox: batched per app and webhook, committed together (group commit).

An event joins the open batch of its app's webhook; every ``WEBHOOK_BATCH_SECONDS`` the open
batches are closed and committed to the ``WebhookDelivery`` table in one transaction, and a batch
that reaches ``WEBHOOK_BATCH_SIZE`` events is closed at once. So an event is durable at most one
window plus one commit after it happened, the subscribe path only appends to a list, and the
database sees one write per window, not one per event. Batches never mix apps or webhooks: each
carries one app's secret and one webhook's filter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from ..credentials import AppCredentials, WebhookTarget
from ..stats import Stats
from .store import Batch, Store

if TYPE_CHECKING:
    from ..conf import RealtimeSettings

logger = logging.getLogger(__name__)

# After a failed commit (the database away), the next try waits this long, doubling up to the cap.
COMMIT_RETRY_SECONDS = 0.5
COMMIT_RETRY_MAX_SECONDS = 10.0


class Outbox:
    """The open and closed-but-uncommitted batches of one process.

    ``on_committed``: committed batches are leased to this process (``WEBHOOK_LEASE_SECONDS``) and
    handed to it (the in-process worker delivers them at once) while ``room()`` says it can take
    them; otherwise, and when it is None, they are committed unleased for whichever worker polls
    first (a later pass of this one, or ``realtime_webhooks``).
    """

    def __init__(
        self,
        conf: RealtimeSettings,
        store: Store,
        stats: Stats,
        on_committed: Callable[[list[Batch]], None] | None,
        room: Callable[[], int] | None = None,
    ) -> None:
        self.conf = conf
        self.store = store
        self.stats = stats
        self.on_committed = on_committed
        self.room = room
        self._open: dict[tuple[str, int], Batch] = {}
        self._closed: list[Batch] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    def add(self, app: AppCredentials, target: WebhookTarget, event: dict[str, Any]) -> None:
        """Append ``event`` to the open batch of ``app``'s webhook ``target``."""
        key = (app.id, target.id)
        batch = self._open.get(key)
        if batch is None:
            now = timezone.now()
            retry = dt.timedelta(seconds=self.conf.WEBHOOK_RETRY_SECONDS)
            batch = Batch(uuid.uuid4(), app.id, target.id, target.url, now, now + retry, [])
            self._open[key] = batch
        batch.events.append(event)
        if len(batch.events) >= self.conf.WEBHOOK_BATCH_SIZE:
            self._close(key)
            self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    def pending(self) -> int:
        """Batches not committed yet."""
        return len(self._open) + len(self._closed)

    def oldest_age(self) -> float:
        """Seconds since the oldest uncommitted batch was opened (0 when none)."""
        batches = [*self._closed, *self._open.values()]
        if not batches:
            return 0.0
        return max(0.0, (timezone.now() - min(b.created for b in batches)).total_seconds())

    async def flush(self) -> None:
        """Close every open batch and wait until everything uncommitted is committed (retrying while
        the database is away: bound it with a timeout)."""
        for key in list(self._open):
            self._close(key)
        self._wake.set()
        writer = self._writer
        if writer is not None and not writer.done():
            await writer

    def _close(self, key: tuple[str, int]) -> None:
        batch = self._open.pop(key)
        created_ms = int(batch.created.timestamp() * 1000)
        batch.body = json.dumps({"time_ms": created_ms, "events": batch.events}, separators=(",", ":"))
        self._closed.append(batch)

    async def _write(self) -> None:
        delay = COMMIT_RETRY_SECONDS
        while self._open or self._closed:
            if not self._closed:
                self._wake.clear()
                try:
                    async with asyncio.timeout(self.conf.WEBHOOK_BATCH_SECONDS):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            for key in list(self._open):
                self._close(key)
            try:
                await self._commit()
                delay = COMMIT_RETRY_SECONDS
            except Exception:
                # The database away (or a bug): the batches stay closed and are tried again.
                logger.exception("webhook outbox commit failed", extra={"batches": len(self._closed)})
                self.stats.incr("errors", ("webhook_outbox",))
                await asyncio.sleep(delay)
                delay = min(delay * 2, COMMIT_RETRY_MAX_SECONDS)

    async def _commit(self) -> None:
        batches, self._closed = self._closed, []
        if not batches:
            return
        hand_over = self.on_committed is not None and (self.room is None or self.room() >= len(batches))
        lease = self.conf.WEBHOOK_LEASE_SECONDS if hand_over else None
        try:
            await self.store.insert(batches, lease)
        except BaseException:
            self._closed = batches + self._closed
            raise
        self.stats.incr("queue_jobs_added", ("webhooks",), len(batches))
        if hand_over and self.on_committed is not None:
            self.on_committed(batches)
