"""The webhook worker's loop: take due deliveries from the outbox, keep leases alive, prune the log.

It runs in every server process by default (``WEBHOOK_WORKER = "server"``), or alone in
``manage.py realtime_webhooks``. Each pass renews the leases of what this process holds, claims due
rows (left by a process that died, retries of any node, or everything when the servers only
commit), notes when the oldest pending row was made (the backlog alert's signal) and, once an
hour, deletes log rows older than ``WEBHOOK_LOG_DAYS``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import TYPE_CHECKING

from django.utils import timezone

from ..stats import Stats
from .delivery import Deliverer
from .store import Store

if TYPE_CHECKING:
    from ..conf import RealtimeSettings

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0


class Worker:
    """One process' share of the outbox: claims, lease renewal, backlog age, pruning."""

    def __init__(self, conf: RealtimeSettings, store: Store, deliverer: Deliverer, stats: Stats) -> None:
        self.conf = conf
        self.store = store
        self.deliverer = deliverer
        self.stats = stats
        # When the oldest pending row (any process') was made, as of the last pass.
        self.oldest_pending: dt.datetime | None = None
        self._renewed = 0.0
        self._pruned = 0.0

    async def run(self, deliver: bool = True) -> None:
        """Pass after pass, ``WEBHOOK_POLL_SECONDS`` apart, until cancelled. ``deliver`` False: only
        note the backlog's age (a server whose deliveries an external worker makes)."""
        while True:
            try:
                await self.run_once(deliver)
            except Exception:
                # The database away, or a bug: the next pass tries again; a dead loop would stop
                # renewing leases and let other workers send what this one is sending.
                logger.exception("webhook worker pass failed")
                self.stats.incr("errors", ("webhook_outbox",))
            await asyncio.sleep(self.conf.WEBHOOK_POLL_SECONDS)

    async def run_once(self, deliver: bool = True) -> None:
        """One pass: renew, claim, note the backlog, prune when due. Raises ``DatabaseError``."""
        conf = self.conf
        store = self.store
        lease = conf.WEBHOOK_LEASE_SECONDS
        now = time.monotonic()
        if deliver:
            held = self.deliverer.held()
            if held and now - self._renewed >= lease / 3:
                await store.renew(held, lease)
                self._renewed = now
            room = self.deliverer.room()
            if room > 0:
                claimed = await store.claim(lease, room)
                if claimed:
                    self.deliverer.submit(claimed)
        self.oldest_pending = await store.oldest_pending()
        if not deliver:
            return
        if now - self._pruned >= PRUNE_INTERVAL_SECONDS:
            self._pruned = now
            deleted = await store.prune(conf.WEBHOOK_LOG_DAYS)
            if deleted:
                logger.info("webhook log pruned", extra={"deleted": deleted})

    def backlog_age(self) -> float:
        """Seconds since the oldest pending row was made, as of the last pass (0 when none)."""
        oldest = self.oldest_pending
        return max(0.0, (timezone.now() - oldest).total_seconds()) if oldest is not None else 0.0
