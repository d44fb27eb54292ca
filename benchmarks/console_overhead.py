"""What an open admin console costs the fan-out path: Realtime with a console watching the app vs
none, interleaved.

Each round starts Realtime fresh twice, OPEN then CLOSED (CLOSED then OPEN in the next round), and
runs loadgen's fan-out scenario against it. OPEN logs in to the admin as a staff user and reads the
app's console stream (server-sent events) for the whole run, as a browser would, counting the
records it gets; CLOSED has no console, which is every server's normal state.

    python benchmarks/console_overhead.py --rounds 3 --subscribers 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import requests
from compare import (
    APP,
    REPO,
    Server,
    _python,
    prepare_realtime,
    realtime_env,
    realtime_launch,
    run_loadgen,
)
from metrics_overhead import FIGURES, compare_figures, interleaved, median

USER, PASSWORD = "bench-admin", "bench-admin-password-0123"


def make_staff() -> None:
    """A superuser in the benchmark's scratch database (kept between runs)."""
    env = {**os.environ, **realtime_env(0, 0, False)}
    code = (
        "from django.contrib.auth.models import User; "
        f"User.objects.filter(username='{USER}').exists() or "
        f"User.objects.create_superuser('{USER}', 'bench@example.com', '{PASSWORD}')"
    )
    subprocess.run([_python(), "manage.py", "shell", "-c", code], cwd=REPO, env=env, check=True, timeout=120)


class Console(threading.Thread):
    """A staff session reading the app's console stream until stopped; counts records and bytes."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        base = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        self.session.get(f"{base}/admin/login/", timeout=10)
        login = {
            "username": USER,
            "password": PASSWORD,
            "csrfmiddlewaretoken": self.session.cookies["csrftoken"],
            "next": "/admin/",
        }
        answer = self.session.post(
            f"{base}/admin/login/", data=login, headers={"Referer": f"{base}/admin/login/"}, timeout=10
        )
        answer.raise_for_status()
        url = f"{base}/admin/realtime/app/{APP['app_id']}/console/stream/"
        self.response = self.session.get(url, stream=True, timeout=30)
        self.response.raise_for_status()
        self.records = 0
        self.bytes = 0

    def run(self) -> None:
        try:
            for line in self.response.iter_lines():
                self.bytes += len(line) + 1
                if line == b"event: record":
                    self.records += 1
        except (requests.RequestException, AttributeError, ValueError):
            return

    def stop(self) -> None:
        self.response.close()


def one_run(open_console: bool, extra: list[str], timeout: float, logs: Path) -> dict[str, Any]:
    server = Server("console-open" if open_console else "console-closed", realtime_launch, False, logs)
    try:
        server.wait_ready()
        console = Console(server.port) if open_console else None
        if console is not None:
            console.start()
        result = run_loadgen(server, "fanout", extra, timeout)
        if console is not None:
            console.stop()
            console.join(10)
            result["console_records"] = console.records
            result["console_bytes"] = console.bytes
        return result
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="fixed-rate phase, events/s")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured phase")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="max seconds to wait for idle cores")
    parser.add_argument("--out", type=Path, default=None, help="also write the full results here")
    args = parser.parse_args(argv)

    prepare_realtime()
    make_staff()
    extra = [
        "--subscribers",
        str(args.subscribers),
        "--rate",
        str(args.rate),
        "--duration",
        str(args.duration),
    ]
    logs = Path(tempfile.gettempdir()) / "realtime-bench"
    labels = ("open", "closed")
    results = interleaved(
        args.rounds, args.quiet_wait, labels, lambda on: one_run(on, extra, args.timeout, logs)
    )
    summary = compare_figures(results, labels, FIGURES, subscribers=args.subscribers, rounds=args.rounds)
    summary["console_records"] = median(results["open"], "console_records")
    print(f"median records a console received per run: {summary['console_records']}")
    print(json.dumps(summary))
    if args.out is not None:
        args.out.write_text(json.dumps({"summary": summary, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
