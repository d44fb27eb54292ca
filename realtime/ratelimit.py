"""Fixed-window rate limiters: per connection (client events) and per app (HTTP API)."""

from __future__ import annotations

import time


class WindowLimiter:
    """At most ``limit`` operations per one-second window."""

    __slots__ = ("_count", "_window", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._window = 0
        self._count = 0

    def allow(self, cost: int = 1, now: float | None = None) -> bool:
        window = int(time.monotonic() if now is None else now)
        if window != self._window:
            self._window = window
            self._count = 0
        if self._count + cost > self.limit:
            return False
        self._count += cost
        return True


class AppLimiters:
    """One limiter per (app, limiter name), created on first use with the app's current limit."""

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str], WindowLimiter] = {}

    def allow(self, app_id: str, name: str, limit: int | None, cost: int = 1) -> bool:
        if limit is None:
            return True
        limiter = self._limiters.get((app_id, name))
        if limiter is None or limiter.limit != limit:
            limiter = self._limiters[(app_id, name)] = WindowLimiter(limit)
        return limiter.allow(cost)


app_limiters = AppLimiters()
