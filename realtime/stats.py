"""Plain in-process counters and histograms that the hot path updates and collectors read.

``realtime`` never imports ``metrics``: it counts here with dict updates (once per operation,
never once per subscriber), and the metrics app turns these into Prometheus families at scrape
time. Keys are bounded label tuples (app id, channel type, close code bucket, ...). The one
``Stats`` of a process belongs to its runtime (``realtime.runtime``).
"""

from __future__ import annotations

import bisect
from collections import defaultdict

# Upper bounds, in base units, shared by every histogram of the same family.
BUCKETS: dict[str, tuple[float, ...]] = {
    "seconds": (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    "bytes": (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536, 262144, 1048576),
}


class Histogram:
    """Counts per bucket (``bounds`` are upper bounds in base units; the last count is +Inf) and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Count ``value`` (in base units) ``times`` times in the first bucket whose upper bound is at
        least ``value`` (the +Inf one above every bound), and add it as often to the sum.
        """
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times

    @property
    def count(self) -> int:
        """Observations in all buckets, +Inf included."""
        return sum(self.counts)


class Stats:
    """Counters (``name -> labels -> int``) and histograms (``name -> labels -> Histogram``).

    ``labels`` is a tuple of bounded values in the order of the catalogue family's label names.
    """

    def __init__(self) -> None:
        self.counters: dict[str, defaultdict[tuple[str, ...], int]] = defaultdict(lambda: defaultdict(int))
        self.histograms: dict[str, dict[tuple[str, ...], Histogram]] = defaultdict(dict)

    def incr(self, name: str, labels: tuple[str, ...] = (), by: int = 1) -> None:
        """Add ``by`` to counter ``name`` under ``labels`` (bounded values, in the family's label order)."""
        self.counters[name][labels] += by

    def observe(
        self, name: str, value: float, labels: tuple[str, ...] = (), unit: str = "seconds", times: int = 1
    ) -> None:
        """Record ``value`` ``times`` times in histogram ``name`` under ``labels``. ``unit`` (``"seconds"``
        or ``"bytes"``) picks the bucket bounds when the series is first made (KeyError for another).
        """
        series = self.histograms[name]
        histogram = series.get(labels)
        if histogram is None:
            histogram = series[labels] = Histogram(BUCKETS[unit])
        histogram.observe(value, times)
