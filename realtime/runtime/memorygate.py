"""The memory gate: past ``MEMORY_LIMIT_MB`` of resident memory a node takes no new traffic.

While closed, new sockets are refused with 4100 (over capacity: pusher-js backs off and retries),
``/ready`` and ``/accept-traffic`` answer 503 so the load balancer sends new clients elsewhere, and
the sockets already open keep working. It opens again once RSS is below ``MEMORY_RESUME_MB``
(90 % of the limit by default): the gap keeps a node that hovers at the limit from flapping.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable

MIB = 1024 * 1024
# The reason of the 4100 close while the gate is closed (soketi's words).
OVER_CAPACITY_REASON = "The server is over capacity, reconnect later"
# The default resume level, as a share of the limit.
RESUME_SHARE = 0.9

try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):
    _PAGE_SIZE = 4096


def rss_bytes() -> int:
    """This process' resident set size in bytes: ``/proc/self/statm`` on Linux (one small read),
    elsewhere the peak RSS that ``getrusage`` reports."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class MemoryGate:
    """Closed while RSS is at or above ``limit`` bytes until it falls below ``resume`` bytes.

    ``limit`` None: never closes. ``resume`` None: ``RESUME_SHARE`` of the limit. ``read``: where
    RSS comes from (``rss_bytes``).
    """

    def __init__(
        self, limit: int | None, resume: int | None = None, read: Callable[[], int] = rss_bytes
    ) -> None:
        self.limit = limit
        if limit is not None and (resume is None or resume > limit):  # above: check realtime.E011
            resume = int(limit * RESUME_SHARE)
        self.resume = resume
        self.read = read
        self.closed = False
        self.rss = 0

    @classmethod
    def from_megabytes(cls, limit_mb: float | None, resume_mb: float | None) -> MemoryGate:
        """From the settings' MiB (``MEMORY_LIMIT_MB``, ``MEMORY_RESUME_MB``); None or 0 is off."""
        limit = int(limit_mb * MIB) if limit_mb else None
        resume = int(resume_mb * MIB) if resume_mb and limit else None
        return cls(limit, resume)

    @property
    def enabled(self) -> bool:
        return self.limit is not None

    def check(self) -> bool | None:
        """Read RSS and move the gate; return its new state (True: closed) if it changed, else None."""
        if self.limit is None or self.resume is None:
            return None
        self.rss = rss = self.read()
        if not self.closed and rss >= self.limit:
            self.closed = True
            return True
        if self.closed and rss < self.resume:
            self.closed = False
            return False
        return None
