"""Shared fixtures: real `realtime_serve` processes, `redis-server` instances and webhook receivers on
loopback."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pusher
import pytest

if TYPE_CHECKING:
    from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WS_QUERY = "protocol=7&client=js&version=8.4.0&flash=false"

APP_ID = "100200"
APP_KEY = "test-key-0123456789"
APP_SECRET = "test-secret-0123456789abcdef"


# Fixtures that start real processes (servers, redis-server): a test using one is end to end.
PROCESS_FIXTURES = frozenset({"migrated_db", "redis_server"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow tests ``e2e``: under tests/e2e, or using a fixture that starts a process.

    ``pytest -m "not e2e"`` runs the fast rest in seconds.
    """
    e2e = pytest.mark.e2e
    for item in items:
        if "e2e" in item.path.parts or PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(e2e)
    # The long robustness campaign runs only when asked for by name (-m campaign).
    if "campaign" not in (config.option.markexpr or ""):
        deselected = [item for item in items if item.get_closest_marker("campaign")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("campaign")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too; Redis needs it below 55536."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFAULT_APP_", "METRICS_", "REDIS_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "REALTIME_DATA_DIR": str(data_dir),
            "DJANGO_SECRET_KEY": "tests-only-secret-key-not-for-production-0123456789",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.pop("DATABASE_URL", None)
    return env


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database, made once and copied for each server."""
    data_dir = tmp_path_factory.mktemp("db-template")
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=_base_env(data_dir), check=True, timeout=120
    )
    return data_dir / "db.sqlite3"


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    data_dir: Path
    env: dict[str, str]
    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int = 0
    app_id: str = APP_ID
    key: str = APP_KEY
    secret: str = APP_SECRET
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    # Which of SERVER_KINDS serves it.
    kind: str = "realtime_serve"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def metrics_url(self, path: str = "/metrics") -> str:
        return f"http://{self.host}:{self.metrics_port}{path}"

    def ws_url(self, key: str | None = None, query: str = WS_QUERY) -> str:
        return f"ws://{self.host}:{self.port}/app/{key or self.key}?{query}"

    def pusher(self, **kwargs: Any) -> pusher.Pusher:
        options = {"app_id": self.app_id, "key": self.key, "secret": self.secret}
        options.update(kwargs)
        return pusher.Pusher(host=self.host, port=self.port, ssl=False, timeout=10, **options)

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr or result.stdout)
        return result.stdout

    def create_app(self, **options: Any) -> tuple[str, str, str]:
        """Create another app through ``realtime_createapp``; returns (id, key, secret)."""
        args = ["realtime_createapp"]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value not in (False, None):
                args += [flag, str(value)]
        out = self.manage(*args)
        found = dict(re.findall(r"^(app id|key|secret):\s+(\S+)$", out, re.MULTILINE))
        return found["app id"], found["key"], found["secret"]

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.reader is not None:
            self.reader.join(5)
        return self.process.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def _server_env(migrated_db: Path, data_dir: Path, env: dict[str, str] | None) -> dict[str, str]:
    """A server's environment: its own copy of the migrated database and the test app as default app."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "db.sqlite3").exists():
        shutil.copy(migrated_db, data_dir / "db.sqlite3")
    full_env = _base_env(data_dir)
    full_env.update(
        {
            "DEFAULT_APP_ID": APP_ID,
            "DEFAULT_APP_KEY": APP_KEY,
            "DEFAULT_APP_SECRET": APP_SECRET,
            "DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        }
    )
    full_env.update(env or {})
    return full_env


def _spawn(
    args: list[str],
    data_dir: Path,
    env: dict[str, str],
    on_line: Callable[[ServerProcess, str], None] | None = None,
    ended: threading.Event | None = None,
) -> ServerProcess:
    """Start ``args`` with stdout and stderr combined, read by a thread into ``ServerProcess.lines``
    (each also given to ``on_line``); ``ended`` is set when the output ends."""
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = ServerProcess(
        process=process,
        data_dir=data_dir,
        env=env,
        app_id=env["DEFAULT_APP_ID"],
        key=env["DEFAULT_APP_KEY"],
        secret=env["DEFAULT_APP_SECRET"],
    )

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.append(line)
            if on_line is not None:
                on_line(server, line)
        process.stdout.close()
        if ended is not None:
            ended.set()

    server.reader = threading.Thread(target=read, daemon=True)
    server.reader.start()
    return server


def start_server_process(
    migrated_db: Path, data_dir: Path, env: dict[str, str] | None = None, metrics: bool = True
) -> ServerProcess:
    full_env = _server_env(migrated_db, data_dir, env)
    args = [PYTHON, "manage.py", "realtime_serve", "--host", "127.0.0.1", "--port", "0"]
    args += ["--metrics-port", "0"] if metrics else ["--no-metrics"]
    ready = threading.Event()

    def on_line(server: ServerProcess, line: str) -> None:
        match = re.match(r"Listening \((public|metrics)\) on (\S+):(\d+)", line)
        if match:
            if match.group(1) == "public":
                server.port = int(match.group(3))
            else:
                server.metrics_port = int(match.group(3))
            if server.port and (server.metrics_port or not metrics):
                ready.set()

    server = _spawn(args, data_dir, full_env, on_line, ended=ready)
    if not ready.wait(30) or not server.port:
        server.kill()
        raise RuntimeError(f"realtime_serve did not start:\n{server.output()}")
    return server


@dataclass(frozen=True)
class ServerKind:
    """One way to serve the standalone project (``project.asgi:application``)."""

    name: str
    # Its command line, "{port}" the public port; None: start_server_process starts it.
    command: tuple[str, ...] | None = None
    # Whether it logs each HTTP request (path and query string) at LOG_LEVEL=INFO.
    logs_requests: bool = True


SERVER_KINDS = {
    kind.name: kind
    for kind in (
        ServerKind("realtime_serve", logs_requests=False),
        ServerKind("runserver", (PYTHON, "manage.py", "runserver", "127.0.0.1:{port}", "--noreload")),
        ServerKind(
            "daphne", (PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "project.asgi:application")
        ),
        ServerKind(
            "uvicorn",
            (PYTHON, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", "{port}"),
        ),
    )
}


def _health(server: ServerProcess) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(server.url("/health"), timeout=2) as response:
        return response.status == 200
    return False


def start_any_server(
    kind: str, migrated_db: Path, data_dir: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> ServerProcess:
    """Serve the standalone project with ``kind`` (a key of ``SERVER_KINDS``) until ``/health`` answers.

    Same environment as ``start_server_process``, and a free metrics port (``METRICS_PORT``;
    realtime_serve is given ``--metrics-port 0``). The metrics site listens once Realtime starts:
    at once under realtime_serve and uvicorn (lifespan), with the first request to Realtime's paths
    (``/ready``, say) under runserver and daphne. ``stop()`` or ``kill()`` the result.
    """
    command = SERVER_KINDS[kind].command
    if command is None:
        server = start_server_process(migrated_db, data_dir, env)
    else:
        port, metrics_port = free_port(), free_port()
        while metrics_port == port:
            metrics_port = free_port()
        full_env = _server_env(migrated_db, data_dir, {"METRICS_PORT": str(metrics_port), **(env or {})})
        server = _spawn([arg.format(port=port) for arg in command], data_dir, full_env)
        server.port, server.metrics_port = port, metrics_port
    server.kind = kind
    deadline = time.monotonic() + timeout
    while not _health(server):
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"{kind} did not start:\n{server.output()}")
        time.sleep(0.1)
    return server


@pytest.fixture
def start_server(
    migrated_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ServerProcess]]:
    """Start a ``realtime_serve`` subprocess; extra environment variables configure it."""
    started: list[ServerProcess] = []

    def start(
        env: dict[str, str] | None = None, metrics: bool = True, data_dir: Path | None = None
    ) -> ServerProcess:
        server = start_server_process(
            migrated_db, data_dir or tmp_path_factory.mktemp("server"), env, metrics
        )
        started.append(server)
        return server

    yield start
    for server in started:
        with contextlib.suppress(Exception):
            server.stop(signal.SIGKILL)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Make loopback webhook endpoints, ``Receiver(**options)`` of tests/webhook_receiver.py, all shut
    down at the end."""
    from tests.webhook_receiver import Receiver  # which imports this module

    made: list[Receiver] = []

    def make(**options: Any) -> Receiver:
        receiver = Receiver(**options)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.down()


@pytest.fixture(scope="module")
def server(migrated_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by a test module: default app with client events enabled."""
    process = start_server_process(migrated_db, tmp_path_factory.mktemp("server"))
    yield process
    process.stop(signal.SIGKILL)


@dataclass
class RedisProcess:
    process: subprocess.Popen[bytes]
    port: int
    args: list[str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def start(self) -> None:
        self.stop()
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port)


def _wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def start_redis() -> RedisProcess:
    """A private ``redis-server`` on a free port (the caller stops it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (bin/test installs it)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = RedisProcess(process, port, args)
    _wait_for_port(port)
    return redis


@dataclass
class SentinelGroup:
    """A primary, its replica and one Sentinel watching them as ``service``."""

    primary: RedisProcess
    replica: RedisProcess
    sentinel: RedisProcess
    service: str = "realtime-primary"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}/0"

    def stop(self) -> None:
        for process in (self.sentinel, self.replica, self.primary):
            process.stop()


def start_sentinel_group(directory: Path) -> SentinelGroup:
    """``start_redis`` twice (the second a replica of the first) and ``redis-server --sentinel``
    watching them, quick to fail over: down after 1 s, one Sentinel's vote enough."""
    primary = start_redis()
    replica = start_redis()
    replica.args += ["--replicaof", "127.0.0.1", str(primary.port)]
    replica.start()
    port = free_port()
    config = directory / f"sentinel-{port}.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor realtime-primary 127.0.0.1 {primary.port} 1\n"
        "sentinel down-after-milliseconds realtime-primary 1000\n"
        "sentinel failover-timeout realtime-primary 3000\n"
        "sentinel parallel-syncs realtime-primary 1\n"
    )
    args = [shutil.which("redis-server") or "redis-server", str(config), "--sentinel"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sentinel = RedisProcess(process, port, args)
    _wait_for_port(port)
    return SentinelGroup(primary, replica, sentinel)


@dataclass
class RedisClusterGroup:
    """Three ``redis-server --cluster-enabled yes`` primaries joined by ``redis-cli --cluster create``."""

    primaries: list[RedisProcess]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p.port}" for p in self.primaries[:2])

    def stop(self) -> None:
        for process in self.primaries:
            process.stop()


def start_redis_cluster(directory: Path, size: int = 3) -> RedisClusterGroup:
    """A Redis Cluster of ``size`` primaries on free loopback ports, its slots all assigned."""
    binary = shutil.which("redis-server") or "redis-server"
    primaries = []
    for _ in range(size):
        port = free_cluster_port()
        args = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--cluster-enabled", "yes", "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
            "--cluster-node-timeout", "2000", "--dir", str(directory),
        ]  # fmt: skip
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        primaries.append(RedisProcess(process, port, args))
        _wait_for_port(port)
    addresses = [f"127.0.0.1:{p.port}" for p in primaries]
    subprocess.run(
        [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *addresses,
         "--cluster-replicas", "0", "--cluster-yes"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    for process in primaries:
        while True:
            info = subprocess.run(
                [shutil.which("redis-cli") or "redis-cli", "-p", str(process.port), "cluster", "info"],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            if "cluster_state:ok" in info:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster did not come up: {info}")
            time.sleep(0.1)
    return RedisClusterGroup(primaries)


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterGroup]:
    group = start_redis_cluster(tmp_path)
    yield group
    group.stop()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = start_sentinel_group(tmp_path)
    yield group
    group.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    """A private ``redis-server`` on a free port, which a test may stop and restart."""
    redis = start_redis()
    yield redis
    redis.stop()
