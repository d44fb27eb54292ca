"""Fixed-window rate limiters: per connection (client events), per app (HTTP API) and per client
address (new connections, HTTP API requests)."""

from __future__ import annotations

import time

from .stats import Stats


class WindowLimiter:
    """At most ``limit`` operations per one-second window; with ``stats`` and ``labels`` (app id,
    limiter name) each decision is counted as ``rate_limit_checks``."""

    __slots__ = ("_count", "_window", "labels", "limit", "stats")

    def __init__(self, limit: int, labels: tuple[str, str] | None = None, stats: Stats | None = None) -> None:
        self.limit = limit
        self.labels = labels
        self.stats = stats
        self._window = 0
        self._count = 0

    def allow(self, cost: int = 1, now: float | None = None) -> bool:
        """Count ``cost`` operations if they fit the current window (``now``: monotonic seconds)."""
        window = int(time.monotonic() if now is None else now)
        if window != self._window:
            self._window = window
            self._count = 0
        allowed = self._count + cost <= self.limit
        if allowed:
            self._count += cost
        if self.labels is not None and self.stats is not None:
            self.stats.incr("rate_limit_checks", (*self.labels, "allowed" if allowed else "rejected"))
        return allowed


class AppLimiters:
    """One limiter per (app, limiter name), created on first use with the app's current limit."""

    def __init__(self, stats: Stats | None = None) -> None:
        self._limiters: dict[tuple[str, str], WindowLimiter] = {}
        self.stats = stats

    def allow(self, app_id: str, name: str, limit: int | None, cost: int = 1) -> bool:
        """Whether ``cost`` more operations fit this second; ``limit`` None means unlimited."""
        if limit is None:
            return True
        limiter = self._limiters.get((app_id, name))
        if limiter is None or limiter.limit != limit:
            limiter = self._limiters[(app_id, name)] = WindowLimiter(limit, (app_id, name), self.stats)
        return limiter.allow(cost)


class AddressLimiters:
    """Per-address counts in the current fixed window of each limiter, for one node. A new window
    drops the last one's counts whole, so many addresses cost memory for one window at most."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, dict[str, int]]] = {}

    def allow(self, name: str, address: str, limit: int, window: int, now: float | None = None) -> bool:
        """Count one operation of ``address`` for limiter ``name`` if it fits ``limit`` per
        ``window`` seconds (``now``: wall-clock seconds, so windows match Redis' on one host)."""
        current = int((time.time() if now is None else now) // window)
        started, counts = self._windows.get(name, (None, None))
        if started != current or counts is None:
            counts = {}
            self._windows[name] = (current, counts)
        count = counts.get(address, 0)
        if count >= limit:
            return False
        counts[address] = count + 1
        return True
