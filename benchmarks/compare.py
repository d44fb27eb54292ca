"""Run the load generator's scenarios against Realtime and soketi, interleaved, and compare.

Every (round, scenario) starts each server fresh on free loopback ports, runs one
loadgen process against it and stops it, alternating servers A B A B so drift of
the machine hits both alike. Ratios are (first server / baseline, soketi by default)
of the per-server medians over rounds; the table marks which direction is better.

    python benchmarks/compare.py                       # realtime vs soketi, 2 rounds
    python benchmarks/compare.py --rounds 3 --metrics  # both with metrics enabled
    python benchmarks/compare.py --servers realtime,rt-m --baseline realtime --server \
        'rt-m={python} manage.py realtime_serve --host {host} --port {port} --metrics-port {metrics_port}'
    python benchmarks/compare.py --servers realtime,rt-2nodes --baseline realtime --scenarios fanout

Variants of Realtime are PRESETS (uvicorn, --workers 2, two nodes) or --server templates; one
that names {redis_url} gets REDIS_URL and a redis-server that compare.py starts on a free loopback
port, flushes before every launch and counts as part of the server (CPU, RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soketi

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOADGEN = HERE / "loadgen.py"
HOST = "127.0.0.1"
APP = {"app_id": "bench-app", "key": "bench-key", "secret": "bench-secret"}
DATA_DIR = Path(tempfile.gettempdir()) / "realtime-bench" / "data"

# Sized so a default run (2 servers x 2 rounds x 6 scenarios) stays under ~5 minutes on
# the 2-core machine; each is a list of extra loadgen arguments.
SCENARIO_ARGS: dict[str, list[str]] = {
    "connect": ["--connections", "2000"],
    "fanout": ["--subscribers", "1000", "--rate", "20"],
    "channels": ["--channels", "1000", "--subscribers", "2", "--rate", "100"],
    "publish": ["--publishers", "4"],
    "client-events": ["--pairs", "100"],
    "presence": ["--channels", "10", "--subscribers", "100"],
}
QUICK_ARGS: dict[str, list[str]] = {
    "connect": ["--connections", "50"],
    "fanout": ["--subscribers", "20", "--rate", "20"],
    "channels": ["--channels", "20", "--subscribers", "2", "--rate", "20"],
    "publish": ["--publishers", "2"],
    "client-events": ["--pairs", "5"],
    "presence": ["--channels", "2", "--subscribers", "6"],
}

# (scenario, dotted path into its JSON result, higher is better)
METRICS: list[tuple[str, str, bool]] = [
    ("connect", "connections_per_s", True),
    ("connect", "rss_kib_per_connection", False),
    ("connect", "server_cpu_ms_per_connection", False),
    ("fanout", "fixed.latency_ms.p50", False),
    ("fanout", "fixed.latency_ms.p99", False),
    ("fanout", "fixed.server_cpu_ms_per_1000_deliveries", False),
    ("fanout", "flat.deliveries_per_s", True),
    ("fanout", "flat.server_cpu_ms_per_1000_deliveries", False),
    ("fanout", "flat.latency_ms.p99", False),
    ("channels", "fixed.latency_ms.p99", False),
    ("channels", "flat.deliveries_per_s", True),
    ("channels", "flat.server_cpu_ms_per_1000_deliveries", False),
    ("publish", "requests_per_s", True),
    ("publish", "latency_ms.p50", False),
    ("publish", "latency_ms.p99", False),
    ("publish", "server_cpu_ms_per_request", False),
    ("client-events", "round_trips_per_s", True),
    ("client-events", "rtt_ms.p50", False),
    ("client-events", "rtt_ms.p99", False),
    ("client-events", "server_cpu_ms_per_round_trip", False),
    ("presence", "joins_per_s", True),
    ("presence", "member_added_ms.p50", False),
    ("presence", "member_added_ms.p99", False),
    ("presence", "server_cpu_ms_per_join_leave", False),
]
# Shown per server but not turned into ratios: correctness and generator saturation.
CHECKS: list[tuple[str, str]] = [
    ("connect", "failures"),
    ("connect", "other_cpu_util"),
    ("fanout", "lost"),
    ("fanout", "flat.loadgen_cpu_util"),
    ("channels", "lost"),
    ("channels", "flat.loadgen_cpu_util"),
    ("publish", "failures"),
    ("publish", "loadgen_cpu_util"),
    ("client-events", "lost"),
    ("client-events", "loadgen_cpu_util"),
    ("presence", "lost"),
    ("presence", "loadgen_cpu_util"),
    ("fanout", "other_cpu_util"),
    ("channels", "other_cpu_util"),
    ("publish", "other_cpu_util"),
    ("client-events", "other_cpu_util"),
    ("presence", "other_cpu_util"),
]


# Servers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """Where one launch listens: public port, metrics port, a second node's port, Redis."""

    port: int
    metrics_port: int
    metrics: bool
    port2: int = 0
    redis_url: str | None = None


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    # Ports that must answer a handshake before the run starts (a second node's too).
    ready_ports: tuple[int, ...] = ()


ServerFactory = Callable[[Slot], Launch]


def realtime_env(port: int, metrics_port: int, metrics: bool) -> dict[str, str]:
    """Environment for `realtime_serve` with one app and limits that do not cap a benchmark.

    The per-app limits use soketi's names with the DEFAULT_APP_ prefix; -1 is unlimited.
    """
    return {
        "DEFAULT_APP_ID": APP["app_id"],
        "DEFAULT_APP_KEY": APP["key"],
        "DEFAULT_APP_SECRET": APP["secret"],
        "DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        "DEFAULT_APP_MAX_CONNECTIONS": "-1",
        "DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC": "-1",
        "DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC": "-1",
        "DEFAULT_APP_MAX_READ_REQ_PER_SEC": "-1",
        "DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL": "100000",
        "METRICS_ENABLED": "true" if metrics else "false",
        "METRICS_HOST": HOST,
        "METRICS_PORT": str(metrics_port),
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "project.settings",
        # A scratch SQLite database, so a benchmark never touches the developer's var/.
        "REALTIME_DATA_DIR": str(DATA_DIR),
    }


def prepare_realtime() -> None:
    """Migrate the scratch database once; every Realtime launch of this run shares it."""
    env = dict(os.environ)
    env.update(realtime_env(0, 0, False))
    subprocess.run([_python(), "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True, timeout=120)


def _python() -> str:
    python = REPO / ".venv" / "bin" / "python"
    return str(python if python.exists() else sys.executable)


def realtime_launch(slot: Slot) -> Launch:
    """`manage.py realtime_serve` from the repository's virtualenv."""
    argv = [_python(), "manage.py", "realtime_serve", "--host", HOST, "--port", str(slot.port)]
    if slot.metrics:
        argv += ["--metrics-host", HOST, "--metrics-port", str(slot.metrics_port)]
    else:
        argv.append("--no-metrics")
    return Launch(argv, realtime_env(slot.port, slot.metrics_port, slot.metrics), REPO)


def soketi_launch(slot: Slot) -> Launch:
    env = soketi.server_env(
        slot.port, APP["app_id"], APP["key"], APP["secret"], slot.metrics, slot.metrics_port
    )
    return Launch(soketi.server_command(), env, soketi.ROOT)


def template_launch(template: str) -> ServerFactory:
    """A server started from a command template ({python} {host} {port} {metrics_port}, and
    {port2} for a second node, {redis_url}).

    It gets Realtime's environment (plus REDIS_URL when the template names {redis_url}), so
    Realtime variants (uvicorn, several processes behind one port, ...) need only their command line.
    """

    def launch(slot: Slot) -> Launch:
        values = {
            "python": _python(),
            "host": HOST,
            "port": slot.port,
            "metrics_port": slot.metrics_port,
            "port2": slot.port2,
            "redis_url": slot.redis_url,
        }
        argv = [part.format(**values) for part in shlex.split(template)]
        env = realtime_env(slot.port, slot.metrics_port, slot.metrics)
        if slot.redis_url:
            env["REDIS_URL"] = slot.redis_url
        ready = (slot.port, slot.port2) if "{port2}" in template else (slot.port,)
        return Launch(argv, env, REPO, ready)

    return launch


BUILTIN: dict[str, ServerFactory] = {"realtime": realtime_launch, "soketi": soketi_launch}

_SERVE = "{python} manage.py realtime_serve --host {host} --no-metrics"
_TWO_NODES = (
    f"env REDIS_URL={{redis_url}} sh -c '{_SERVE} --port {{port2}} & sleep 3; exec {_SERVE} --port {{port}}'"
)
# Realtime variants by name: (command template, extra loadgen arguments with {port} {port2}).
PRESETS: dict[str, tuple[str, str]] = {
    # The same ASGI application under uvicorn (pip install uvicorn; not a project dependency):
    # no daphne writer extension, so the consumer sends with plain websocket.send.
    "uvicorn": (
        "{python} -m uvicorn project.asgi:application --host {host} --port {port} "
        "--log-level warning --no-access-log",
        "",
    ),
    # One process per core: a supervisor and 2 workers sharing the public port, through Redis.
    "rt-workers2": (f"env REDIS_URL={{redis_url}} {_SERVE} --port {{port}} --workers 2", ""),
    # Two nodes on two ports: sockets alternate between them, events are published through node 2.
    # The second node is a child of the first (sh execs it), so both count as the server; it starts
    # first, as two nodes syncing the default app into one SQLite file at once can fail.
    "rt-2nodes": (
        _TWO_NODES,
        "--socket-ports {port},{port2} --publish-port {port2}",
    ),
    # Every socket on node 1, every event published through node 2: all deliveries cross Redis.
    "rt-2nodes-remote": (
        _TWO_NODES,
        "--publish-port {port2}",
    ),
}


class RedisServer:
    """A throwaway redis-server on a free loopback port, for the variants that need one."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not self._command(b"PING").startswith(b"+PONG"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)

    def _command(self, command: bytes) -> bytes:
        try:
            with socket.create_connection((HOST, self.port), timeout=2.0) as sock:
                sock.sendall(command + b"\r\n")
                return sock.recv(64)
        except OSError:
            return b""

    def flush(self) -> None:
        """Forget what the previous launch left (its nodes, sockets, presence members)."""
        self._command(b"FLUSHALL")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ready(port: int) -> bool:
    """True once the server answers a WebSocket handshake with connection_established."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(
                (
                    f"GET /app/{APP['key']}?protocol=7 HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            received = b""
            deadline = time.monotonic() + 2.0
            while b"connection_established" not in received and time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
            return b"connection_established" in received
    except OSError:
        return False


class Server:
    """A server process in its own process group, started and stopped by us."""

    def __init__(
        self,
        name: str,
        factory: ServerFactory,
        metrics: bool,
        log_dir: Path,
        redis: RedisServer | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.metrics_port = free_port()
        self.port2 = free_port()
        self.redis = redis
        if redis is not None:
            redis.flush()
        launch = factory(Slot(self.port, self.metrics_port, metrics, self.port2, redis and redis.url))
        self.ready_ports = launch.ready_ports or (self.port,)
        env = dict(os.environ)
        env.update(launch.env)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            launch.argv,
            cwd=launch.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            if all(_ready(port) for port in self.ready_ports):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout} s: {self.tail()}")

    def tail(self, lines: int = 15) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        # The group is ours (start_new_session): it holds the server and its workers only. It is
        # signalled even when the leader has exited, so a second node or a worker cannot outlive it.
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(5)
        deadline = time.monotonic() + 15
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._signal(signal.SIGKILL)
        self._log.close()

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True


# Running ---------------------------------------------------------------------------


def _busy_cores(window: float = 1.0) -> float:
    def busy() -> float:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
        return float(sum(fields) - fields[3] - fields[4])

    before, started = busy(), time.monotonic()
    time.sleep(window)
    return (busy() - before) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - started)


def wait_until_quiet(limit: float, threshold: float = 0.3) -> float:
    """Wait (at most `limit` s) until other work leaves both cores nearly idle; return load.

    The machine has two cores, one for the server and one for the generator: a test suite
    running beside them skews every figure, so runs start in a quiet moment when one comes.
    """
    deadline = time.monotonic() + limit
    load = _busy_cores()
    while load > threshold and time.monotonic() < deadline:
        load = _busy_cores()
    return round(load, 2)


def run_loadgen(server: Server, scenario: str, extra: list[str], timeout: float) -> dict[str, Any]:
    argv = [sys.executable, str(LOADGEN), scenario, "--host", HOST, "--port", str(server.port)]
    argv += ["--app-id", APP["app_id"], "--key", APP["key"], "--secret", APP["secret"]]
    pids = [server.proc.pid] + ([server.redis.proc.pid] if server.redis is not None else [])
    argv += ["--server-pid", ",".join(map(str, pids)), "--timeout", str(timeout), *extra]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 30, check=False, cwd=HERE
        )
    except subprocess.TimeoutExpired:
        return {"scenario": scenario, "ok": False, "error": "loadgen did not finish"}
    sys.stderr.write(done.stderr)
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            return dict(json.loads(line))
    return {"scenario": scenario, "ok": False, "error": f"no JSON line (exit {done.returncode})"}


def dig(result: dict[str, Any] | None, path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def median_of(results: list[dict[str, Any]], path: str) -> float | None:
    values = [v for v in (dig(r, path) for r in results) if isinstance(v, int | float)]
    return round(statistics.median(values), 4) if values else None


def compare(
    results: dict[str, dict[str, list[dict[str, Any]]]], names: list[str], baseline: str
) -> dict[str, Any]:
    """Medians per server and metric, and each server's ratio to the baseline."""
    table: dict[str, Any] = {}
    for scenario, path, higher in METRICS:
        key = f"{scenario}.{path}"
        medians = {name: median_of(results[name].get(scenario, []), path) for name in names}
        base = medians.get(baseline)
        ratios = {
            name: round(value / base, 3) if value is not None and base else None
            for name, value in medians.items()
            if name != baseline
        }
        table[key] = {"higher_is_better": higher, "median": medians, "ratio": ratios}
    checks = {
        f"{scenario}.{path}": {
            name: [dig(r, path) for r in results[name].get(scenario, [])] for name in names
        }
        for scenario, path in CHECKS
    }
    return {"metrics": table, "checks": checks}


def render(summary: dict[str, Any], names: list[str], baseline: str) -> str:
    others = [n for n in names if n != baseline]
    header = ["metric", *names, *(f"{n}/{baseline}" for n in others), "better"]
    rows = [header]
    for key, entry in summary["metrics"].items():
        if all(value is None for value in entry["median"].values()):
            continue
        rows.append(
            [
                key,
                *(_num(entry["median"][n]) for n in names),
                *(_num(entry["ratio"].get(n)) for n in others),
                "higher" if entry["higher_is_better"] else "lower",
            ]
        )
    rows.append(["-- checks (per round)", *["" for _ in header[1:]]])
    for key, per_server in summary["checks"].items():
        if not any(per_server.values()):
            continue
        rows.append(
            [key, *(",".join(_num(v) for v in per_server[n]) for n in names), *["" for _ in others], ""]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--servers", default="realtime,soketi", help="comma list, in A B order")
    parser.add_argument("--baseline", default="soketi")
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="extra server from a command template with {python} {host} {port} {metrics_port} "
        "(also {port2} {redis_url})",
    )
    parser.add_argument(
        "--loadgen",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra loadgen arguments for one server, with {port} {port2} (e.g. --publish-port {port2})",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIO_ARGS))
    parser.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="SCENARIO=ARGS",
        help="replace a scenario's loadgen arguments, e.g. connect='--connections 10000'",
    )
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured phase")
    parser.add_argument("--metrics", action="store_true", help="run the servers with metrics enabled")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=20.0,
        help="max seconds to wait before each run for the machine to go idle (0: do not wait)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny loads, for checking the tooling")
    parser.add_argument("--out", type=Path, default=None, help="also write the full results here")
    parser.add_argument(
        "--log-dir", type=Path, default=Path(tempfile.gettempdir()) / "realtime-bench", help="server logs"
    )
    args = parser.parse_args(argv)

    factories = dict(BUILTIN)
    templates = {name: template for name, (template, _) in PRESETS.items()}
    loadgen_args = {name: extra for name, (_, extra) in PRESETS.items() if extra}
    for spec in args.server:
        name, _, template = spec.partition("=")
        if not template:
            parser.error(f"--server wants NAME=COMMAND, got {spec!r}")
        templates[name] = template
    for spec in args.loadgen:
        name, _, extra = spec.partition("=")
        loadgen_args[name] = extra
    factories.update({name: template_launch(template) for name, template in templates.items()})
    names = [n for n in args.servers.split(",") if n]
    unknown = [n for n in names if n not in factories]
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {sorted(factories)}")
    scenarios = [s for s in args.scenarios.split(",") if s]
    if "soketi" in names:
        soketi.install()
    if any(name != "soketi" for name in names):
        prepare_realtime()
    needs_redis = {name for name in names if "{redis_url}" in templates.get(name, "")}
    redis = RedisServer() if needs_redis else None

    per_scenario = dict(QUICK_ARGS if args.quick else SCENARIO_ARGS)
    for spec in args.args:
        scenario, _, extra = spec.partition("=")
        per_scenario[scenario] = shlex.split(extra)
    timeout = 60 + 4 * args.duration
    results: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n in names}
    errors: list[str] = []
    started = time.monotonic()
    try:
        for round_no in range(args.rounds):
            for scenario in scenarios:
                for name in names:
                    print(f"-- round {round_no + 1}/{args.rounds}: {scenario} on {name}", file=sys.stderr)
                    load = wait_until_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
                    uses = redis if name in needs_redis else None
                    server = Server(name, factories[name], args.metrics, args.log_dir, uses)
                    try:
                        server.wait_ready()
                        extra = [*per_scenario[scenario], "--duration", str(args.duration)]
                        extra += [
                            part.format(port=server.port, port2=server.port2)
                            for part in shlex.split(loadgen_args.get(name, ""))
                        ]
                        result = run_loadgen(server, scenario, extra, timeout)
                    except RuntimeError as exc:
                        result = {"scenario": scenario, "ok": False, "error": str(exc)}
                    finally:
                        server.stop()
                    if not result.get("ok"):
                        errors.append(f"{name} {scenario} round {round_no + 1}: {result.get('error')}")
                    result["busy_cores_before"] = load
                    results[name].setdefault(scenario, []).append(result)
    finally:
        if redis is not None:
            redis.stop()
    baseline = args.baseline if args.baseline in names else names[-1]
    summary = compare(results, names, baseline)
    report = {
        "servers": names,
        "baseline": baseline,
        "rounds": args.rounds,
        "duration": args.duration,
        "metrics_enabled": args.metrics,
        "wall_s": round(time.monotonic() - started, 1),
        "errors": errors,
        **summary,
    }
    print(json.dumps(report, separators=(",", ":")), flush=True)
    print(render(summary, names, baseline), file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if args.out is not None:
        args.out.write_text(json.dumps({**report, "results": results}, indent=1) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
