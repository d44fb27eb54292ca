"""``realtime_serve`` refuses to run, with one clear line, when it cannot listen or is misconfigured."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, _base_env


def _serve(tmp_path: Path, migrated_db: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "db.sqlite3").write_bytes(migrated_db.read_bytes())
    full_env = {**_base_env(data_dir), **env}
    command = [PYTHON, "manage.py", "realtime_serve", "--host", "127.0.0.1", *args]
    return subprocess.Popen(
        command, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """The output of a process expected to exit on its own (killed, and the test fails, if not)."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=10)
        pytest.fail(f"realtime_serve kept running:\n{output}")
    return output


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket listens on for the test's duration."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_public_port_taken(tmp_path, migrated_db, taken_port) -> None:
    process = _serve(tmp_path, migrated_db, {}, "--port", str(taken_port), "--metrics-port", "0")
    output = _finish(process)

    assert process.returncode != 0, output
    assert "CommandError: Could not listen on " in output
    assert f"127.0.0.1:{taken_port}" in output
    assert "Address already in use" in output
    assert "Listening" not in output
    assert "Traceback" not in output


def test_metrics_port_taken(tmp_path, migrated_db, taken_port) -> None:
    process = _serve(tmp_path, migrated_db, {}, "--port", "0", "--metrics-port", str(taken_port))
    output = _finish(process)

    assert process.returncode != 0, output
    assert "CommandError: Realtime could not start: " in output
    assert f"the metrics site could not listen on 127.0.0.1:{taken_port}" in output
    assert "Address already in use" in output
    # The public port was bound first (and is released on exit); the metrics site never was.
    assert "Listening (metrics)" not in output
    assert "Traceback" not in output


def test_metrics_port_from_the_environment_taken(tmp_path, migrated_db, taken_port) -> None:
    process = _serve(tmp_path, migrated_db, {"METRICS_PORT": str(taken_port)}, "--port", "0")
    output = _finish(process)

    assert process.returncode != 0, output
    assert "CommandError: " in output
    assert f"the metrics site could not listen on 127.0.0.1:{taken_port}" in output
    assert "Listening (metrics)" not in output
    assert "Traceback" not in output


def test_workers_without_redis(tmp_path, migrated_db) -> None:
    process = _serve(tmp_path, migrated_db, {}, "--port", "0", "--no-metrics", "--workers", "2")
    output = _finish(process)

    assert process.returncode != 0, output
    assert "CommandError: --workers above 1 needs REDIS_URL" in output
    assert "Listening" not in output
    assert "Traceback" not in output


def test_workers_from_the_environment_without_redis(tmp_path, migrated_db) -> None:
    # WORKERS in the environment is a setting: the system checks refuse it before serve() runs.
    process = _serve(tmp_path, migrated_db, {"WORKERS": "2"}, "--port", "0", "--no-metrics")
    output = _finish(process)

    assert process.returncode != 0, output
    assert "realtime.E008" in output
    assert "REDIS_URL" in output
    assert "Listening" not in output
    assert "Traceback" not in output
