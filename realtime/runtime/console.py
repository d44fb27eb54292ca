"""The admin's live console: what happens in an app, recorded only while someone watches it.

``ConsoleHub.record`` is called at each place worth showing (a connection opened or closed, a
subscription, an API or client event, a presence join or leave, a webhook delivery, an error sent
to a client). While no console watches the app, it is one dictionary lookup and nothing else.
While one does, the record (payloads cut to ``MAX_DATA_CHARS``, never an auth signature or a
secret) goes into the app's ring buffer and to every watcher's bounded queue; past
``MAX_RECORDS_PER_SECOND`` per app and node, records are counted as sampled out instead.

Across nodes (``Broker.console``): a node with a watcher announces a lease on the app every
``LEASE_SECONDS / 3``; every node that holds a lease sends its own records for the app over the
bus, and every ``STATS_SECONDS`` its message rates, so a console on one node shows the cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..stats import Stats

logger = logging.getLogger(__name__)

# What one record may carry of an event's data, in characters.
MAX_DATA_CHARS = 2000
# Records per app and second that one node keeps for consoles; beyond, they are counted only.
MAX_RECORDS_PER_SECOND = 200
# Records kept per watched app, shown to a console as it opens.
BACKLOG = 200
# Records waiting for one console (a browser that stops reading loses the oldest).
QUEUE_SIZE = 1000
# How long a node keeps sending an app's records after the last announcement of a watcher.
LEASE_SECONDS = 30.0
# How often a node with a lease reports its message rates for the app.
STATS_SECONDS = 2.0


def truncated(data: Any) -> str:
    """``data`` as text of at most ``MAX_DATA_CHARS`` characters (marked when cut)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    if len(text) <= MAX_DATA_CHARS:
        return text
    return text[:MAX_DATA_CHARS] + f"… ({len(text) - MAX_DATA_CHARS} more characters)"


class Watcher:
    """One open console: its app and the records not yet sent to it."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.records: deque[dict[str, Any]] = deque(maxlen=QUEUE_SIZE)
        self.ready = asyncio.Event()
        # Message rates by node (``instance``): (messages in, messages out) per second.
        self.rates: dict[str, tuple[float, float, float]] = {}

    def push(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.ready.set()

    def take(self) -> list[dict[str, Any]]:
        """The records waiting, oldest first; the queue is empty afterwards."""
        records = list(self.records)
        self.records.clear()
        self.ready.clear()
        return records


class ConsoleHub:
    """Watchers and leases per app, the recording, and its share of the bus."""

    def __init__(self, stats: Stats, instance: str) -> None:
        self.stats = stats
        self.instance = instance
        self.watchers: dict[str, set[Watcher]] = {}
        # app id -> monotonic end of the lease (local watchers renew it).
        self.leases: dict[str, float] = {}
        self.backlog: dict[str, deque[dict[str, Any]]] = {}
        self._window: dict[str, tuple[int, int]] = {}
        self._last_counts: dict[str, tuple[float, float, float]] = {}
        # Set by the runtime: sends a console message over the bus (nothing on one node).
        self.send: Callable[[str], Awaitable[None]] | None = None

    # Recording (the hot path while nobody watches: one dict lookup)

    def record(self, app_id: str, kind: str, **fields: Any) -> None:
        """Record that ``kind`` happened in the app (``fields``: channel, event, socket_id, code,
        data, user_id, ...), if a console anywhere watches it."""
        until = self.leases.get(app_id)
        if until is None:
            return
        now = time.monotonic()
        if until < now:
            self._expire(app_id)
            return
        second = int(now)
        started, count = self._window.get(app_id, (second, 0))
        if started != second:
            if count > MAX_RECORDS_PER_SECOND:
                self._deliver(app_id, {"kind": "sampled", "skipped": count - MAX_RECORDS_PER_SECOND})
            started, count = second, 0
        self._window[app_id] = (started, count + 1)
        if count >= MAX_RECORDS_PER_SECOND:
            return
        if "data" in fields:
            fields["data"] = truncated(fields["data"])
        record = {"time": round(time.time(), 3), "kind": kind, "node": self.instance, **fields}
        self._deliver(app_id, record)
        if self.send is not None:
            message = json.dumps({"type": "record", "app": app_id, "record": record}, separators=(",", ":"))
            self._spawn_send(message)

    def _deliver(self, app_id: str, record: dict[str, Any]) -> None:
        backlog = self.backlog.get(app_id)
        if backlog is not None:
            backlog.append(record)
        for watcher in self.watchers.get(app_id, ()):
            watcher.push(record)

    # Watchers

    def watch(self, app_id: str) -> Watcher:
        """Open a console on the app: records start now (and on every node once it hears)."""
        watcher = Watcher(app_id)
        self.watchers.setdefault(app_id, set()).add(watcher)
        self.backlog.setdefault(app_id, deque(maxlen=BACKLOG))
        self.leases[app_id] = float("inf")
        self._announce(app_id)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        """Close a console; the app is recorded no more here once its last console closes (other
        nodes stop when the lease they heard of runs out)."""
        watchers = self.watchers.get(watcher.app_id)
        if watchers is None:
            return
        watchers.discard(watcher)
        if not watchers:
            del self.watchers[watcher.app_id]
            self.backlog.pop(watcher.app_id, None)
            self.leases[watcher.app_id] = time.monotonic() + LEASE_SECONDS

    def recent(self, app_id: str) -> list[dict[str, Any]]:
        """The app's last records (at most ``BACKLOG``), oldest first."""
        return list(self.backlog.get(app_id, ()))

    def _expire(self, app_id: str) -> None:
        self.leases.pop(app_id, None)
        self._window.pop(app_id, None)
        self._last_counts.pop(app_id, None)

    # The bus

    def _announce(self, app_id: str) -> None:
        if self.send is not None:
            self._spawn_send(json.dumps({"type": "watch", "app": app_id}, separators=(",", ":")))

    def _spawn_send(self, message: str) -> None:
        send = self.send
        assert send is not None
        task = asyncio.ensure_future(send(message))
        task.add_done_callback(_log_failure)

    def received(self, origin: str, message: str) -> None:
        """A console message from another node (``origin``): a lease, a record, or its rates.
        Anything malformed is dropped (logged at debug), never raised into the bus reader."""
        try:
            body = json.loads(message)
            kind, app_id = body["type"], str(body["app"])
            if kind == "watch":
                if self.leases.get(app_id, 0.0) != float("inf"):
                    self.leases[app_id] = time.monotonic() + LEASE_SECONDS
            elif kind == "record" and isinstance(body.get("record"), dict):
                if app_id in self.watchers:
                    self._deliver(app_id, body["record"])
            elif kind == "rates" and app_id in self.watchers:
                received, sent = (_rate(value) for value in body["rates"])
                for watcher in self.watchers[app_id]:
                    watcher.rates[origin] = (received, sent, time.monotonic())
        except Exception:  # JSON too deep, wrong shapes, numbers out of range: all the sender's
            logger.debug("malformed console message dropped", exc_info=True)

    async def tick(self) -> None:
        """Every ``STATS_SECONDS``: renew the leases of watched apps and report this node's
        message rates for every app under a lease."""
        now = time.monotonic()
        for app_id in list(self.watchers):
            self._announce(app_id)
        for app_id, until in list(self.leases.items()):
            if until < now:
                self._expire(app_id)
                continue
            rates = self._rates(app_id, now)
            if rates is None:
                continue
            for watcher in self.watchers.get(app_id, ()):
                watcher.rates[self.instance] = (*rates, now)
            if self.send is not None:
                body = {"type": "rates", "app": app_id, "rates": list(rates)}
                await self.send(json.dumps(body, separators=(",", ":")))

    def _rates(self, app_id: str, now: float) -> tuple[float, float] | None:
        counters = self.stats.counters
        received = counters.get("messages_received", {}).get((app_id,), 0.0)
        sent = counters.get("messages_sent", {}).get((app_id,), 0.0)
        last = self._last_counts.get(app_id)
        self._last_counts[app_id] = (received, sent, now)
        if last is None or now <= last[2]:
            return None
        elapsed = now - last[2]
        return round((received - last[0]) / elapsed, 1), round((sent - last[1]) / elapsed, 1)


def _rate(value: Any) -> float:
    """A message rate from another node: a finite, non-negative number; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a rate: {value!r}")
    rate = float(value)
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"not a rate: {value!r}")
    return rate


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("a console message could not be sent", exc_info=task.exception())
