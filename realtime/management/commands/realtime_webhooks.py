"""Deliver webhooks from the outbox in a process of their own, or prune the delivery log."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from typing import Any

from django.core.management.base import BaseCommand

from realtime.conf import get_settings
from realtime.credentials import CredentialsCache
from realtime.stats import Stats
from realtime.webhooks.delivery import Deliverer
from realtime.webhooks.store import Store, prune
from realtime.webhooks.worker import Worker

logger = logging.getLogger(__name__)

CREDENTIALS_REFRESH_SECONDS = 10.0


class Command(BaseCommand):
    """``realtime_webhooks``: a webhook worker without a server. It claims due deliveries from the
    outbox (leases, so any number of these and of servers can run side by side), delivers them
    and prunes the log, until SIGTERM or SIGINT; then it gives deliveries in flight
    ``SHUTDOWN_GRACE_SECONDS`` and releases the rest. ``--prune`` only deletes log entries older
    than ``WEBHOOK_LOG_DAYS`` (or ``--days``) and exits.
    """

    help = "Deliver webhooks from the outbox (with WEBHOOK_WORKER=external), or --prune the delivery log."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--prune", action="store_true", help="Delete old log entries and exit.")
        parser.add_argument(
            "--days", type=float, help="With --prune: keep this many days (default: setting)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Prune and exit (``--prune``), or deliver until SIGTERM or SIGINT."""
        conf = get_settings()
        if options["prune"]:
            days = conf.WEBHOOK_LOG_DAYS if options["days"] is None else options["days"]
            self.stdout.write(f"Deleted {prune(days)} webhook deliveries older than {days:g} days.")
            return
        asyncio.run(self._run())

    async def _run(self) -> None:
        conf = get_settings()
        instance = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}:webhooks"
        store = Store(instance)
        credentials = CredentialsCache(conf.CREDENTIALS_NEGATIVE_TTL)
        deliverer = Deliverer(conf, store, Stats(), credentials)
        worker = Worker(conf, store, deliverer, deliverer.stats)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        self.stdout.write("Delivering webhooks from the outbox; SIGTERM or Ctrl-C stops.")
        self.stdout.flush()
        tasks = [asyncio.ensure_future(worker.run()), asyncio.ensure_future(_refresh(credentials))]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await deliverer.stop(conf.SHUTDOWN_GRACE_SECONDS)
        await store.flush_delivered()
        released = await store.release_all()
        await store.close()
        logger.info("webhook worker stopped", extra={"released": released})


async def _refresh(credentials: CredentialsCache) -> None:
    # Servers hear of changed apps through model signals and the Redis bus; this process does not,
    # so a rotated secret or an edited webhook reaches it within this many seconds.
    while True:
        await asyncio.sleep(CREDENTIALS_REFRESH_SECONDS)
        credentials.invalidate()
