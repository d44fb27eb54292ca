"""What webhooks cost the WebSocket side: Realtime with every webhook event on vs none, interleaved.

Each round starts Realtime fresh twice, ON then OFF (OFF then ON in the next round), and runs
loadgen's churn scenarios against it: ``presence`` (joins and leaves: channel_occupied/vacated and
member_added/removed for every join and leave) and ``connect`` (sockets each subscribing to a channel
of their own: a channel_occupied each). ON points the default app's webhook, for every event type, at
``webhook_receiver.py`` running beside it (its CPU is not counted as the server's); OFF has no webhook.
The receiver's counts show that the events were delivered.

    python benchmarks/webhooks_overhead.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare import (
    SCENARIO_ARGS,
    Launch,
    Server,
    Slot,
    dig,
    free_port,
    prepare_realtime,
    realtime_launch,
    run_loadgen,
    wait_until_quiet,
)
from metrics_overhead import median

HERE = Path(__file__).resolve().parent
EVENTS = ["channel_occupied", "channel_vacated", "member_added", "member_removed", "cache_miss"]
FIGURES: dict[str, list[tuple[str, bool]]] = {
    "presence": [
        ("joins_per_s", True),
        ("member_added_ms.p50", False),
        ("member_added_ms.p99", False),
        ("server_cpu_ms_per_join_leave", False),
    ],
    "connect": [
        ("connections_per_s", True),
        ("server_cpu_ms_per_connection", False),
    ],
}


def hooked_launch(receiver_port: int) -> Any:
    def launch(slot: Slot) -> Launch:
        plain = realtime_launch(slot)
        hooks = [{"url": f"http://127.0.0.1:{receiver_port}/hook", "event_types": EVENTS}]
        return Launch(plain.argv, {**plain.env, "DEFAULT_APP_WEBHOOKS": json.dumps(hooks)}, plain.cwd)

    return launch


def one_run(hooks: bool, scenario: str, extra: list[str], timeout: float, logs: Path) -> dict[str, Any]:
    receiver = None
    factory = realtime_launch
    if hooks:
        port = free_port()
        receiver = subprocess.Popen(
            [sys.executable, str(HERE / "webhook_receiver.py"), "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        factory = hooked_launch(port)
    server = Server("hooks-on" if hooks else "hooks-off", factory, False, logs)
    try:
        server.wait_ready()
        result = run_loadgen(server, scenario, extra, timeout)
        if receiver is not None:
            time.sleep(4.0)  # vacated/removed wait WEBHOOK_DELAY_SECONDS (3) after the run
    finally:
        server.stop()
        if receiver is not None:
            receiver.send_signal(signal.SIGTERM)
            out, _ = receiver.communicate(timeout=10)
    if receiver is not None:
        lines = out.strip().splitlines()
        result["webhooks_received"] = json.loads(lines[-1]) if lines else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="presence,connect")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured phase")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="max seconds to wait for idle cores")
    parser.add_argument("--out", type=Path, default=None, help="also write the full results here")
    args = parser.parse_args(argv)

    prepare_realtime()
    logs = Path(tempfile.gettempdir()) / "realtime-bench"
    summary: dict[str, Any] = {"rounds": args.rounds, "figures": {}}
    everything: dict[str, Any] = {}
    for scenario in args.scenarios.split(","):
        extra = [*SCENARIO_ARGS[scenario], "--duration", str(args.duration)]
        results: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
        for round_number in range(args.rounds):
            for hooks in [True, False] if round_number % 2 == 0 else [False, True]:
                load = wait_until_quiet(args.quiet_wait)
                result = one_run(hooks, scenario, extra, args.timeout, logs)
                result["machine_load_before"] = load
                results["on" if hooks else "off"].append(result)
                print(
                    f"{scenario} round {round_number + 1} webhooks {'on ' if hooks else 'off'}: "
                    f"{ {path: dig(result, path) for path, _ in FIGURES[scenario]} } "
                    f"received {result.get('webhooks_received')}",
                    file=sys.stderr,
                )
        everything[scenario] = results
        print(f"{scenario:10} {'figure':34} {'on':>10} {'off':>10} {'on/off':>8}")
        for path, higher in FIGURES[scenario]:
            on, off = median(results["on"], path), median(results["off"], path)
            ratio = round(on / off, 3) if on is not None and off else None
            summary["figures"][f"{scenario}.{path}"] = {
                "on": on,
                "off": off,
                "ratio": ratio,
                "higher": higher,
            }
            print(f"{'':10} {path:34} {on!s:>10} {off!s:>10} {ratio!s:>8}")
        summary[f"{scenario}.webhooks_received"] = [r.get("webhooks_received") for r in results["on"]]
    print(json.dumps(summary))
    if args.out is not None:
        args.out.write_text(json.dumps({"summary": summary, "results": everything}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
