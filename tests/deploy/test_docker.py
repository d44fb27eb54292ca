"""deploy/Dockerfile, its entrypoint and healthcheck, and .dockerignore.

No image is built here (the test machine has no Docker daemon): the Dockerfile is read instruction by
instruction, and the two scripts the image runs are run for real, with stand-ins for what they call.
"""

from __future__ import annotations

import http.server
import os
import shlex
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from metrics.conf import MetricsSettings
from realtime.conf import RealtimeSettings
from tests.conftest import ROOT, free_port

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"

Instruction = tuple[str, str]


def stages() -> list[list[Instruction]]:
    """The Dockerfile's build stages, each a list of (INSTRUCTION, arguments) with continuations joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    result: list[list[Instruction]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, args = line.partition(" ")
        if name.upper() == "FROM":
            result.append([])
        if result:
            result[-1].append((name.upper(), " ".join(args.split())))
    return result


def final_stage() -> list[Instruction]:
    return stages()[-1]


def values(name: str, stage: list[Instruction] | None = None) -> list[str]:
    return [args for instruction, args in (final_stage() if stage is None else stage) if instruction == name]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in values("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def test_builder_installs_the_pinned_requirements_and_the_final_stage_copies_them() -> None:
    builder, final = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert any(
        "pip install" in args and "-r /tmp/requirements.txt" in args for args in values("RUN", builder)
    )
    assert "requirements.txt /tmp/requirements.txt" in values("COPY", builder)
    copied = [args for args in values("COPY", final) if args.startswith("--from=")]
    assert any("/opt/venv" in args for args in copied)
    assert not any("pip install" in args for args in values("RUN", final))


def test_the_final_stage_runs_as_an_unprivileged_user() -> None:
    users = values("USER")
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    created = " ".join(values("RUN"))
    assert f"--uid {user}" in created, "the USER is the one the image creates"
    # Nothing after USER may switch back.
    instructions = [name for name, _ in final_stage()]
    assert "USER" not in instructions[instructions.index("USER") + 1 :]


def test_only_the_public_port_is_exposed() -> None:
    env = image_env()
    assert values("EXPOSE") == [env["PORT"]]
    assert env["PORT"] == str(RealtimeSettings().PORT)
    assert env["METRICS_PORT"] == str(MetricsSettings().PORT)
    assert env["METRICS_PORT"] not in " ".join(values("EXPOSE"))
    # Inside the container the metrics site must be reachable from Prometheus on the container network.
    assert env["METRICS_HOST"] == "0.0.0.0"
    assert env["HOST"] == "0.0.0.0"


def test_stop_signal_is_sigterm_and_the_healthcheck_asks_health() -> None:
    assert values("STOPSIGNAL") == ["SIGTERM"]
    (healthcheck,) = values("HEALTHCHECK")
    assert "CMD" in healthcheck
    assert '"/app/deploy/docker/healthcheck.py"' in healthcheck
    assert "curl" not in healthcheck


def test_entrypoint_and_command_serve_after_migrating() -> None:
    assert values("ENTRYPOINT") == ['["/app/deploy/docker/entrypoint.sh"]']
    assert values("CMD")[-1] == '["python", "manage.py", "realtime_serve"]'
    assert image_env()["REALTIME_DATA_DIR"] == "/var/lib/realtime"
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert ignore[0] == "*", "the context starts empty and names what the image needs"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stage in stages():
        for args in values("COPY", stage):
            if args.startswith("--from="):
                continue
            *sources, _target = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in allowed, f"{source} is left out by .dockerignore"
    # What the image runs: the entrypoint calls migrate.py, the healthcheck is a file.
    assert {"deploy/migrate.py", "deploy/docker"} <= allowed


# The entrypoint, run with a stand-in python ---------------------------------------------------------


def run_entrypoint(tmp_path: Path, *, python_exit: int = 0, **env: str) -> tuple[int, list[str]]:
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "python $*" >> {calls}\nexit {python_exit}\n')
    fake.chmod(0o755)
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", f'echo "served $*" >> {calls}', "x", "--port", "6001"],
        env={"PATH": f"{fake.parent}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=10,
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return result.returncode, lines


def test_entrypoint_migrates_then_runs_the_command(tmp_path: Path) -> None:
    code, calls = run_entrypoint(tmp_path)
    assert code == 0
    assert calls == ["python /app/deploy/migrate.py", "served --port 6001"]


def test_entrypoint_does_not_serve_when_migrations_fail(tmp_path: Path) -> None:
    code, calls = run_entrypoint(tmp_path, python_exit=3)
    assert code == 3
    assert calls == ["python /app/deploy/migrate.py"]


@pytest.mark.parametrize("value", ["false", "0", "off"])
def test_entrypoint_skips_migrations_when_told(tmp_path: Path, value: str) -> None:
    code, calls = run_entrypoint(tmp_path, REALTIME_MIGRATE=value)
    assert code == 0
    assert calls == ["served --port 6001"]


# The healthcheck, against a stand-in server ---------------------------------------------------------


class Answer(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:
        Answer.paths.append(self.path)
        self.send_response(Answer.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[http.server.HTTPServer]:
    Answer.paths = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def healthcheck(port: int, **env: str) -> int:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env={"PATH": os.environ["PATH"], "PORT": str(port), **env},
        capture_output=True,
        timeout=15,
    ).returncode


@pytest.mark.parametrize(("status", "expected"), [(200, 0), (503, 1), (404, 1)])
def test_healthcheck_passes_only_on_200_from_health(stand_in, status: int, expected: int) -> None:
    Answer.status = status
    assert healthcheck(stand_in.server_address[1]) == expected
    assert Answer.paths == ["/health"]


def test_healthcheck_follows_path_prefix(stand_in) -> None:
    Answer.status = 200
    assert healthcheck(stand_in.server_address[1], PATH_PREFIX="/pusher/") == 0
    assert Answer.paths == ["/pusher/health"]


def test_healthcheck_fails_when_nothing_listens() -> None:
    assert healthcheck(free_port()) == 1
