"""Webhooks as the runtime sees them: events in, a durable outbox, delivery by a worker.

``emit`` puts an event into the outbox (``outbox.py``: batched per app and webhook, committed
within ``WEBHOOK_BATCH_SECONDS``); the worker (``worker.py``, ``delivery.py``) delivers what is
committed, at least once. ``emit_later`` is for ``channel_vacated`` and ``member_removed``: they
wait ``WEBHOOK_DELAY_SECONDS`` and are sent only if the state's story check
(``State.report``) agrees then, so a quick reconnect sends nothing, and occupied/vacated (and
added/removed) strictly alternate cluster-wide
(https://pusher.com/docs/channels/server_api/webhooks/).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError

from ..cluster.base import State, StateUnavailable
from ..credentials import AppCredentials, CredentialsCache
from ..stats import Stats
from ..tasks import TaskSet
from .delivery import Deliverer
from .outbox import Outbox
from .store import Store
from .worker import Worker

if TYPE_CHECKING:
    from ..conf import RealtimeSettings

logger = logging.getLogger(__name__)

# A delayed event: the app, its name, the channel and its other fields.
Delayed = tuple[AppCredentials, str, str, dict[str, Any]]

# What a stop without a drain's deadline (tests, a lifespan without grace) gives deliveries.
STOP_TIMEOUT_SECONDS = 1.0


class Webhooks:
    """The webhooks of one process: outbox, delayed events and (unless an external worker runs
    them) the worker. ``instance`` names this process in the outbox's leases."""

    def __init__(
        self,
        conf: RealtimeSettings,
        state: State,
        stats: Stats,
        credentials: CredentialsCache,
        instance: str,
    ) -> None:
        self.conf = conf
        self.state = state
        self.stats = stats
        self.store = Store(instance)
        self.in_process = conf.WEBHOOK_WORKER == "server"
        self.deliverer = Deliverer(conf, self.store, stats, credentials)
        self.worker = Worker(conf, self.store, self.deliverer, stats)
        self.outbox = Outbox(
            conf,
            self.store,
            stats,
            self.deliverer.submit if self.in_process else None,
            self.deliverer.room,
        )
        self._tasks = TaskSet()
        self._worker: asyncio.Task[None] | None = None
        # Delayed events in the order they fall due (the delay is the same for all): one task
        # wakes for them, instead of a timer and a task per event.
        self._delayed: deque[tuple[float, Delayed]] = deque()
        self._delayed_task: asyncio.Future[None] | None = None
        self._delayed_sleeping = False
        # Delayed events due now: a stop decides them at once instead of dropping their timers.
        self._due: list[Delayed] = []
        self._stopping = False
        self._stopped = False

    def start(self) -> None:
        """Start the worker's loop in this process: delivering, or with ``WEBHOOK_WORKER`` set to
        ``"external"`` only noting the backlog's age for the metrics."""
        if self._worker is None:
            self._worker = asyncio.ensure_future(self.worker.run(deliver=self.in_process))

    @staticmethod
    def wanted(app: AppCredentials, name: str, channel: str) -> bool:
        """Whether any of ``app``'s webhooks wants the event ``name`` on ``channel``."""
        return any(t.wants(name, channel) for t in app.webhooks)

    def emit(self, app: AppCredentials, name: str, channel: str, **fields: Any) -> None:
        """Put the event ``name`` (with ``fields``) into the outbox for each webhook that wants it
        (dropped, and logged, once ``stop`` has finished: nothing could commit it any more)."""
        if self._stopped:
            if self.wanted(app, name, channel):
                logger.warning("webhook event after stop dropped", extra={"app_id": app.id, "event": name})
            return
        event: dict[str, Any] | None = None
        for target in app.webhooks:
            if target.wants(name, channel):
                if event is None:
                    event = {"name": name, "channel": channel, **fields}
                self.outbox.add(app, target, event)

    def emit_later(self, app: AppCredentials, name: str, channel: str, **fields: Any) -> None:
        """``emit`` after ``WEBHOOK_DELAY_SECONDS`` if the story check agrees then
        (``channel_vacated``, ``member_removed``)."""
        if not app.webhooks:
            return
        entry = (app, name, channel, fields)
        if self._stopping:
            self._due.append(entry)
            return
        loop = asyncio.get_running_loop()
        self._delayed.append((loop.time() + self.conf.WEBHOOK_DELAY_SECONDS, entry))
        if self._delayed_task is None or self._delayed_task.done():
            self._delayed_task = self._tasks.spawn(self._run_delayed())

    async def _run_delayed(self) -> None:
        loop = asyncio.get_running_loop()
        delayed = self._delayed
        while delayed:
            wait = delayed[0][0] - loop.time()
            if wait > 0:
                self._delayed_sleeping = True
                try:
                    await asyncio.sleep(wait)
                finally:
                    self._delayed_sleeping = False
                continue
            now = loop.time()
            due: list[Delayed] = []
            while delayed and delayed[0][0] <= now:
                due.append(delayed.popleft()[1])
            results = await asyncio.gather(
                *(self._emit_if_still_true(*entry) for entry in due), return_exceptions=True
            )
            for result in results:
                if isinstance(result, Exception):
                    logger.error("delayed webhook event failed", exc_info=result)

    def pending(self) -> int:
        """Batches not delivered yet that this process holds (uncommitted or held by its worker)."""
        return self.outbox.pending() + self.deliverer.pending()

    def backlog_age(self) -> float:
        """Seconds since the oldest undelivered event was made: the outbox's pending rows (as of the
        worker's last pass) or this process' uncommitted events, whichever is older."""
        return max(self.worker.backlog_age(), self.outbox.oldest_age())

    def begin_stop(self) -> None:
        """The node is leaving: delayed events become due now (``decide_delayed``), so that what is
        still true about its sockets is decided while the state can still be asked, rather than
        lost with the timers. Idempotent."""
        self._stopping = True
        # Only a sleeping task is cancelled: one deciding events finishes them (stop waits).
        if self._delayed_task is not None and self._delayed_sleeping:
            self._delayed_task.cancel()
        self._due.extend(entry for _, entry in self._delayed)
        self._delayed.clear()

    async def decide_delayed(self) -> None:
        """Decide every due delayed event now (after ``begin_stop``): the cluster backend calls this
        once it has removed the node's entries and before it closes its connections."""
        while self._due:
            due, self._due = self._due, []
            await asyncio.gather(*(self._emit_if_still_true(*entry) for entry in due))

    async def stop(self, deadline: float | None = None) -> None:
        """Decide the delayed events, commit everything to the outbox, give deliveries in flight
        until ``deadline`` (monotonic seconds; default ``STOP_TIMEOUT_SECONDS`` from now), and
        leave the rest to the next start or another node (leases released)."""
        self.begin_stop()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if deadline is None:
            deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await self.decide_delayed()
                await self._tasks.wait_idle()
                await self.outbox.flush()
        except TimeoutError:
            logger.error("webhook events not committed at stop", extra={"batches": self.outbox.pending()})
        # From here on nothing would commit a new event.
        self._stopped = True
        await self._tasks.cancel()
        await self.deliverer.stop(max(0.0, deadline - time.monotonic()))
        try:
            # Recorded first: what was delivered must not be handed back as pending.
            await self.store.flush_delivered()
            await self.store.release_all()
        except DatabaseError:
            logger.warning("webhook leases not released at stop; they run out")
        await self.store.close()

    async def _emit_if_still_true(
        self, app: AppCredentials, name: str, channel: str, fields: dict[str, Any]
    ) -> None:
        try:
            if name == "channel_vacated":
                reported = await self.state.report(app.id, channel, None, False)
            else:
                reported = await self.state.report(app.id, channel, fields["user_id"], False)
        except StateUnavailable:
            # Redis is away: when it is back, this node's entries are reaped and the reaper sends
            # the webhooks that are still true then.
            return
        if reported:
            self.emit(app, name, channel, **fields)
