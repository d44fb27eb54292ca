"""Logging an error that a client can cause again and again: once per interval, with a count.

An error on a path any client reaches (a frame, an HTTP request, a handshake) must never cost one
log line per attempt: a client repeating it would fill the disk. ``ErrorLog.exception`` writes the
first occurrence of each kind with its traceback, then nothing for that kind until ``interval``
seconds have passed, when the next occurrence is written with how many were left out meanwhile.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

# Kinds of error remembered at most; past it the oldest are forgotten (a kind is a code location
# and an exception class, so a working process never comes near).
MAX_KINDS = 1000


class ErrorLog:
    """Rate-limited error logging, per kind (``where`` and the exception's class)."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        # kind -> (when last written, occurrences left out since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def exception(self, logger: logging.Logger, where: str, message: str, **extra: Any) -> bool:
        """Log the exception being handled as ``message`` unless its kind was logged within the
        interval; returns whether it was written. ``extra`` goes to the record, with ``repeated``:
        the occurrences left out since the last line."""
        error = sys.exc_info()[1]
        kind = (where, type(error).__name__)
        now = time.monotonic()
        last, left_out = self._seen.get(kind, (None, 0))
        if last is not None and now - last < self.interval:
            self._seen[kind] = (last, left_out + 1)
            return False
        if len(self._seen) >= MAX_KINDS and kind not in self._seen:
            del self._seen[next(iter(self._seen))]
        self._seen[kind] = (now, 0)
        if left_out:
            message = f"{message} ({left_out} more like it since the last report)"
        logger.error(message, exc_info=True, extra={**extra, "repeated": left_out})
        return True
