"""What metrics cost on the fan-out path: Realtime with metrics on (and scraped) vs off, interleaved.

Each round starts Realtime fresh twice, ON then OFF (then OFF then ON in the next round, so drift
of the machine hits both alike), and runs loadgen's fan-out scenario against it. With metrics on,
a scraper thread fetches /metrics every --scrape-interval seconds during the run, as a Prometheus
scraping far more often than the usual 15 s would. "Off" is METRICS_ENABLED=false: no endpoint and
no collectors; the in-process counters of realtime.stats (dict increments, once per operation) are
always on, they are part of both figures.

    python benchmarks/metrics_overhead.py --rounds 3 --subscribers 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare import HOST, Server, dig, prepare_realtime, realtime_launch, run_loadgen, wait_until_quiet

FIGURES: list[tuple[str, bool]] = [
    ("flat.deliveries_per_s", True),
    ("flat.server_cpu_ms_per_1000_deliveries", False),
    ("flat.latency_ms.p99", False),
    ("fixed.server_cpu_ms_per_1000_deliveries", False),
    ("fixed.latency_ms.p50", False),
    ("fixed.latency_ms.p99", False),
]


class Scraper(threading.Thread):
    def __init__(self, port: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.url = f"http://{HOST}:{port}/metrics"
        self.interval = interval
        self.stopped = threading.Event()
        self.scrapes = 0
        self.seconds: list[float] = []

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    response.read()
            except OSError:
                continue
            self.seconds.append(time.perf_counter() - started)
            self.scrapes += 1


def one_run(metrics: bool, extra: list[str], timeout: float, interval: float, logs: Path) -> dict[str, Any]:
    server = Server("metrics-on" if metrics else "metrics-off", realtime_launch, metrics, logs)
    try:
        server.wait_ready()
        scraper = Scraper(server.metrics_port, interval) if metrics else None
        if scraper is not None:
            scraper.start()
        result = run_loadgen(server, "fanout", extra, timeout)
        if scraper is not None:
            scraper.stopped.set()
            scraper.join(10)
            result["scrapes"] = scraper.scrapes
            result["scrape_ms_p50"] = (
                round(statistics.median(scraper.seconds) * 1000, 2) if scraper.seconds else None
            )
        return result
    finally:
        server.stop()


def interleaved(
    rounds: int, quiet_wait: float, labels: tuple[str, str], run: Callable[[bool], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` of ``run(True)`` and ``run(False)`` (results under ``labels``), in A B then B A
    order, so that drift of the machine hits both alike; each after the cores are quiet."""
    results: dict[str, list[dict[str, Any]]] = {labels[0]: [], labels[1]: []}
    for round_number in range(rounds):
        for first in [True, False] if round_number % 2 == 0 else [False, True]:
            load = wait_until_quiet(quiet_wait)
            result = run(first)
            result["machine_load_before"] = load
            label = labels[0] if first else labels[1]
            results[label].append(result)
            print(
                f"round {round_number + 1} {label}: "
                f"{dig(result, 'flat.deliveries_per_s')} deliveries/s, "
                f"{dig(result, 'flat.server_cpu_ms_per_1000_deliveries')} ms CPU/1000, "
                f"lost {result.get('lost')}, load before {load}",
                file=sys.stderr,
            )
    return results


def compare_figures(
    results: dict[str, list[dict[str, Any]]],
    labels: tuple[str, str],
    figures: list[tuple[str, bool]],
    **summary: Any,
) -> dict[str, Any]:
    """Print each figure's medians under both labels and their ratio; return them with ``summary``."""
    a, b = labels
    summary["figures"] = {}
    print(f"{'figure':44} {a:>10} {b:>10} {f'{a}/{b}':>14}")
    for path, higher in figures:
        first, second = median(results[a], path), median(results[b], path)
        ratio = round(first / second, 3) if first is not None and second else None
        summary["figures"][path] = {a: first, b: second, "ratio": ratio, "higher_is_better": higher}
        print(f"{path:44} {first!s:>10} {second!s:>10} {ratio!s:>14}")
    return summary


def median(results: list[dict[str, Any]], path: str) -> float | None:
    values = [v for v in (dig(r, path) for r in results) if isinstance(v, int | float)]
    return round(statistics.median(values), 4) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="fixed-rate phase, events/s")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured phase")
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="max seconds to wait for idle cores")
    parser.add_argument("--out", type=Path, default=None, help="also write the full results here")
    args = parser.parse_args(argv)

    prepare_realtime()
    extra = [
        "--subscribers",
        str(args.subscribers),
        "--rate",
        str(args.rate),
        "--duration",
        str(args.duration),
    ]
    logs = Path(tempfile.gettempdir()) / "realtime-bench"  # server logs, beside compare.py's
    results = interleaved(
        args.rounds,
        args.quiet_wait,
        ("on", "off"),
        lambda on: one_run(on, extra, args.timeout, args.scrape_interval, logs),
    )
    summary = compare_figures(
        results, ("on", "off"), FIGURES, subscribers=args.subscribers, rounds=args.rounds
    )
    scrape = median(results["on"], "scrape_ms_p50")
    summary["scrape_ms_p50"] = scrape
    print(f"median scrape time with {args.subscribers} sockets: {scrape} ms")
    print(json.dumps(summary))
    if args.out is not None:
        args.out.write_text(json.dumps({"summary": summary, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
