"""The benchmark load generator runs every scenario against a real ``realtime_serve``.

Tiny loads and no timing assertions: this keeps ``benchmarks/loadgen.py`` working as the
server changes (protocol, signing, client events, presence), so the figures in the README
and the issues can be re-measured at any time. Loss and failures must still be zero.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, ServerProcess, start_server_process

LOADGEN = ROOT / "benchmarks" / "loadgen.py"

# Limits that would otherwise turn a closed-loop load into rate-limit errors (10 client
# events/s per connection is Pusher's default).
BENCH_ENV = {
    "DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC": "-1",
    "DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC": "-1",
    "DEFAULT_APP_MAX_READ_REQ_PER_SEC": "-1",
}

TINY: dict[str, list[str]] = {
    "connect": ["--connections", "20"],
    "fanout": ["--subscribers", "20", "--rate", "20"],
    "channels": ["--channels", "10", "--subscribers", "2", "--rate", "20", "--channels-per-event", "3"],
    "publish": ["--publishers", "2", "--subscribers", "3"],
    "client-events": ["--pairs", "3"],
    "presence": ["--channels", "2", "--subscribers", "4"],
}

EXPECTED_KEYS: dict[str, set[str]] = {
    "connect": {"connected", "connections_per_s", "rss_kib_per_connection", "failures"},
    "fanout": {"subscribed", "fixed", "flat", "lost", "failures"},
    "channels": {"subscribed", "fixed", "flat", "lost", "failures"},
    "publish": {"requests", "requests_per_s", "latency_ms", "lost", "failures"},
    "client-events": {"round_trips", "round_trips_per_s", "rtt_ms", "lost", "failures"},
    "presence": {"joins", "leaves", "joins_per_s", "member_added_ms", "lost", "failures"},
}
PHASE_KEYS = {
    "events",
    "delivered",
    "lost",
    "deliveries_per_s",
    "latency_ms",
    "server_cpu_ms_per_1000_deliveries",
}


@pytest.fixture(scope="module")
def bench_server(migrated_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server_process(migrated_db, tmp_path_factory.mktemp("bench"), BENCH_ENV, metrics=False)
    yield process
    process.stop()


def run_loadgen(server: ServerProcess, scenario: str) -> dict[str, Any]:
    argv = [sys.executable, str(LOADGEN), scenario, "--host", server.host, "--port", str(server.port)]
    argv += ["--app-id", server.app_id, "--key", server.key, "--secret", server.secret]
    argv += ["--server-pid", str(server.process.pid), "--duration", "1", "--drain", "3", "--timeout", "40"]
    done = subprocess.run(
        [*argv, *TINY[scenario]], capture_output=True, text=True, timeout=50, check=False, cwd=ROOT
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"stdout: {done.stdout}\nstderr: {done.stderr}"
    result = json.loads(lines[0])
    assert done.returncode == 0, result
    return dict(result)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scenario", list(TINY))
def test_scenario_reports_without_loss(bench_server: ServerProcess, scenario: str) -> None:
    result = run_loadgen(bench_server, scenario)

    assert result["ok"] is True
    assert result["scenario"] == scenario
    assert result.keys() >= EXPECTED_KEYS[scenario]
    assert result["failures"] == 0, result.get("failure_sample")
    if scenario != "connect":
        assert result["lost"] == 0, result
    for phase in ("fixed", "flat"):
        if phase in EXPECTED_KEYS[scenario]:
            assert result[phase].keys() >= PHASE_KEYS
            assert result[phase]["events"] > 0
            assert result[phase]["delivered"] == result[phase]["expected"]
    # The server's process was found, so per-connection and per-delivery costs are real.
    assert result["server"]["pid"] == bench_server.process.pid
    assert result["server"]["rss_kib"] > 0
