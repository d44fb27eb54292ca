"""Delivering committed batches: signed POSTs, retried with backoff, one lane per app and webhook.

Each app's webhook is a lane: its batches go out one at a time, in the order they were made, so a
receiver sees a channel's events in order (occupied before vacated) even across retries. Lanes
run side by side; requests to one URL are bounded by ``WEBHOOK_CONCURRENCY_PER_URL``, so a slow
or dead endpoint holds only its own lanes, never another URL's. The HTTP client is aiohttp: one
session, connections kept alive and reused per target, a timeout on every request
(``WEBHOOK_TIMEOUT``). Any 2xx is success; anything else is retried with exponential backoff and
jitter until ``retry_until`` (``WEBHOOK_RETRY_SECONDS`` after the batch was made), then recorded as
failed. Every attempt carries the same ``X-Realtime-Delivery-Id`` (the row's id) so receivers can
drop duplicates: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from django.utils import timezone

from ..credentials import AppCredentials, CredentialsCache, WebhookTarget
from ..models import WebhookDelivery
from ..protocol.signatures import webhook_signature
from ..stats import Stats
from ..tasks import TaskSet
from .store import Batch, Store

if TYPE_CHECKING:
    from ..conf import RealtimeSettings

logger = logging.getLogger(__name__)

DELIVERY_ID_HEADER = "X-Realtime-Delivery-Id"
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
# At most this many batches held in memory by one process; the rest wait in the table.
MAX_HELD = 1000
# Of a receiver's answer only this much is read (the status is what counts); the rest is dropped.
MAX_RESPONSE_BYTES = 64 * 1024


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 1, 2, 4, ... capped at 60, each
    scaled by a random factor in [0.5, 1) so that many failed batches do not retry in step."""
    base = min(FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1), MAX_RETRY_SECONDS)
    return base * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not security)


def _attempt_shown(
    url: str, names: list[str], status: int | None, error: str | None, attempt: int
) -> dict[str, Any]:
    """What the admin console shows of a delivery attempt: the receiver's origin only (a URL may
    carry credentials, in its user part, path or query) and the error without the URL."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    shown_error = error.replace(url, origin) if error else error
    return {"events": names, "url": origin, "status": status, "error": shown_error, "attempt": attempt}


class Deliverer:
    """The batches this process holds (leased), in their lanes, and the HTTP client that sends them."""

    def __init__(
        self, conf: RealtimeSettings, store: Store, stats: Stats, credentials: CredentialsCache
    ) -> None:
        self.conf = conf
        self.store = store
        self.stats = stats
        self.credentials = credentials
        self._lanes: dict[tuple[str, int], deque[Batch]] = {}
        self._held: dict[uuid.UUID, Batch] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks = TaskSet()
        self._stopping = False
        # Attempts in flight now: a drain waits for these, not for batches waiting their turn.
        self._in_flight = 0
        self._idle = asyncio.Event()
        # Told of every attempt (app id, what to show): the admin console, set by the runtime.
        self.on_attempt: Callable[[str, dict[str, Any]], None] | None = None

    def submit(self, batches: list[Batch]) -> None:
        """Hold ``batches`` (committed, leased to this process) and deliver each in its lane."""
        if self._stopping:
            return
        for batch in batches:
            if batch.id in self._held:
                continue
            self._held[batch.id] = batch
            key = (batch.app_id, batch.webhook_id)
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = deque()
                self._tasks.spawn(self._run_lane(key, lane))
            lane.append(batch)

    def held(self) -> list[uuid.UUID]:
        """Ids of the batches this process holds: waiting, in flight or between retries."""
        return list(self._held)

    def pending(self) -> int:
        """Batches held."""
        return len(self._held)

    def room(self) -> int:
        """How many more batches this process should take on (``MAX_HELD`` at most are held)."""
        return MAX_HELD - len(self._held)

    async def stop(self, grace: float) -> None:
        """Start no new attempt, give the ones in flight up to ``grace`` seconds, then cancel what is
        left (its leases are the caller's to release)."""
        self._stopping = True
        if self._in_flight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._idle.wait()
        await self._tasks.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._held.clear()
        self._lanes.clear()

    async def _run_lane(self, key: tuple[str, int], lane: deque[Batch]) -> None:
        try:
            while lane and not self._stopping:
                batch = lane[0]
                try:
                    await self._deliver(batch)
                except Exception:
                    # The outcome could not be recorded (the database away, or a bug): the batch
                    # leaves the lane, its lease runs out and it is sent again (same delivery id),
                    # which at-least-once allows; the lane itself goes on.
                    logger.exception("webhook delivery could not be recorded")
                    self.stats.incr("errors", ("webhook_outbox",))
                lane.popleft()
                self._held.pop(batch.id, None)
        finally:
            if self._lanes.get(key) is lane and not lane:
                del self._lanes[key]

    async def _target(self, batch: Batch) -> tuple[AppCredentials | None, WebhookTarget | None]:
        for fresh in (False, True):
            if fresh:
                # Not in this process' snapshot: made after it (a worker without the Redis bus
                # that tells servers), or deleted. The database says which.
                self.credentials.invalidate()
            app = await self.credentials.by_id(batch.app_id)
            target = (
                None if app is None else next((t for t in app.webhooks if t.id == batch.webhook_id), None)
            )
            if target is not None:
                return app, target
        return app, None

    async def _deliver(self, batch: Batch) -> None:
        stats = self.stats
        store = self.store
        names = [event["name"] for event in batch.events]
        while not self._stopping:
            app, target = await self._target(batch)
            if app is None:
                return  # deleted meanwhile: its rows went with it
            if target is None:
                if await store.attempted(batch, WebhookDelivery.FAILED, None, "the webhook was deleted"):
                    stats.incr("queue_jobs_failed", ("webhooks",))
                return
            batch.attempts += 1
            batch.url = target.url
            http_status, error = await self._post(app, target, batch)
            if self.on_attempt is not None:
                self.on_attempt(app.id, _attempt_shown(target.url, names, http_status, error, batch.attempts))
            now = timezone.now()
            if http_status is not None and 200 <= http_status < 300:
                store.delivered(batch, http_status)
                for name in names:
                    stats.incr("webhooks_sent", (app.id, name))
                stats.incr("queue_jobs_processed", ("webhooks",))
                stats.observe("queue_job_duration", (now - batch.created).total_seconds(), ("webhooks",))
                return
            delay = retry_delay(batch.attempts)
            if now + dt.timedelta(seconds=delay) > batch.retry_until:
                if not await store.attempted(batch, WebhookDelivery.FAILED, http_status, error):
                    return
                for name in names:
                    stats.incr("webhooks_failed", (app.id, name))
                stats.incr("queue_jobs_failed", ("webhooks",))
                logger.warning(
                    "webhook delivery failed",
                    extra={
                        "app_id": app.id,
                        "delivery_id": str(batch.id),
                        "status": http_status or 0,
                        "error": error,
                        "attempts": batch.attempts,
                    },
                )
                return
            for name in names:
                stats.incr("webhook_retries", (app.id, name))
            next_attempt = now + dt.timedelta(seconds=delay)
            if not await store.attempted(batch, WebhookDelivery.PENDING, http_status, error, next_attempt):
                return
            await asyncio.sleep(delay)

    async def _post(self, app: AppCredentials, target: WebhookTarget, batch: Batch) -> tuple[int | None, str]:
        body = batch.body.encode()
        headers = dict(target.headers)
        key, secret = app.signing_pair
        headers.update(
            {
                "Content-Type": "application/json",
                "X-Pusher-Key": key,
                "X-Pusher-Signature": webhook_signature(secret, body),
                DELIVERY_ID_HEADER: str(batch.id),
            }
        )
        slot = self._slots.get(target.url)
        if slot is None:
            slot = self._slots[target.url] = asyncio.Semaphore(self.conf.WEBHOOK_CONCURRENCY_PER_URL)
        async with slot:
            session = self._session
            if session is None or session.closed:
                # No overall connection cap: the per-URL slots are the bound, so one URL's
                # stuck connections never hold back another's.
                connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
                session = self._session = aiohttp.ClientSession(connector=connector)
            self._in_flight += 1
            self._idle.clear()
            started = time.perf_counter()
            try:
                timeout = aiohttp.ClientTimeout(total=self.conf.WEBHOOK_TIMEOUT)
                async with session.post(
                    target.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
                ) as response:
                    await response.content.read(MAX_RESPONSE_BYTES)
                    status = response.status
                return status, "" if 200 <= status < 300 else f"HTTP {status}"
            except TimeoutError:
                return None, f"timed out after {self.conf.WEBHOOK_TIMEOUT:g} s"
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                return None, f"{type(exc).__name__}: {exc}"[:300]
            finally:
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.set()
                self.stats.observe("webhook_duration", time.perf_counter() - started)
