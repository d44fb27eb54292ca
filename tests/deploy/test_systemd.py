"""deploy/systemd: the units pass ``systemd-analyze verify`` and say what a drained, hardened node needs.

verify wants each command's binary to exist, so the copies checked here run the test's own Python
instead of /opt/realtime/.venv/bin/python; nothing else changes. A unit verify complains about in any
way (an unknown key is only a warning) counts as broken, and deliberately broken copies prove it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from realtime.conf import RealtimeSettings
from tests.conftest import ROOT

SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = ("realtime.service", "realtime@.service")
VENV_PYTHON = "/opt/realtime/.venv/bin/python"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail(
            "systemd-analyze is not installed (bin/test installs Debian's systemd: bin/test.d/systemd.sh)"
        )
    return path


def unit(name: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) in order; systemd allows a key more than once, so no dict of keys."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in (SYSTEMD / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        else:
            key, _, value = line.partition("=")
            sections[current].append((key, value))
    return sections


def service(name: str) -> dict[str, str]:
    return dict(unit(name)["Service"])


def checked_copy(tmp_path: Path, name: str, text: str | None = None) -> Path:
    text = (SYSTEMD / name).read_text() if text is None else text
    assert VENV_PYTHON in text
    # An instance of a template is what gets verified: realtime@1.service.
    copy = tmp_path / name.replace("@.", "@1.")
    copy.write_text(text.replace(VENV_PYTHON, sys.executable))
    return copy


def verify(path: Path) -> list[str]:
    """verify's complaints about the unit (nothing is printed for a clean unit)."""
    result = subprocess.run(
        [systemd_analyze(), "verify", path.name], cwd=path.parent, capture_output=True, text=True, timeout=60
    )
    complaints = (result.stdout + result.stderr).splitlines()
    if result.returncode != 0:
        complaints.append(f"exit status {result.returncode}")
    return complaints


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_is_clean(tmp_path: Path, name: str) -> None:
    assert verify(checked_copy(tmp_path, name)) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("NoNewPrivileges=yes", "NoNewPrivilege=yes", "Unknown key"),
        ("ExecStart=" + VENV_PYTHON, "ExecStart=/nonexistent/python", "not executable"),
        ("RestartSec=2", "RestartSec=soon", "Failed to parse"),
    ],
)
def test_verify_catches_a_broken_unit(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = (SYSTEMD / "realtime.service").read_text()
    assert old in text
    broken = tmp_path / "broken.service"
    broken.write_text(
        text.replace(VENV_PYTHON, sys.executable).replace(old.replace(VENV_PYTHON, sys.executable), new)
    )
    complaints = verify(broken)
    assert any(expected in line for line in complaints), complaints


@pytest.mark.parametrize("name", UNITS)
def test_hardening_scores_ok(tmp_path: Path, name: str) -> None:
    copy = checked_copy(tmp_path, name)
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", copy.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    # systemd's scale: 0 (locked down) to 10 (unprotected); "OK" is below 2.
    assert float(match.group(1)) < 2.0, result.stdout


@pytest.mark.parametrize("name", UNITS)
def test_stops_by_draining_with_time_to_spare(name: str) -> None:
    options = service(name)
    assert options["KillSignal"] == "SIGTERM"
    # Only the main process: it forwards SIGTERM to its workers, which then drain once.
    assert options["KillMode"] == "mixed"
    assert int(options["TimeoutStopSec"]) > RealtimeSettings().SHUTDOWN_GRACE_SECONDS
    assert options["Restart"] == "on-failure"


@pytest.mark.parametrize("name", UNITS)
def test_runs_realtime_serve_after_migrating(name: str) -> None:
    options = service(name)
    assert options["ExecStart"] == f"{VENV_PYTHON} manage.py realtime_serve"
    assert options["ExecStartPre"] == f"{VENV_PYTHON} deploy/migrate.py"
    assert options["WorkingDirectory"] == "/opt/realtime"
    assert (ROOT / "manage.py").exists()
    assert (ROOT / "deploy" / "migrate.py").exists()


@pytest.mark.parametrize("name", UNITS)
def test_dedicated_user_and_hardening(name: str) -> None:
    options = service(name)
    assert options["User"] == options["Group"] == "realtime"
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }
    assert {key: options.get(key) for key in expected} == expected
    assert options["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert int(options["LimitNOFILE"]) >= 65536
    # The only writable place is the data directory, which is REALTIME_DATA_DIR.
    data_dir = options["Environment"].removeprefix("REALTIME_DATA_DIR=")
    assert options["ReadWritePaths"] == data_dir == f"/var/lib/{options['StateDirectory']}"


def test_the_template_gives_each_instance_its_own_environment_file() -> None:
    files = [value for key, value in unit("realtime@.service")["Service"] if key == "EnvironmentFile"]
    # Shared settings first; the instance's own file (PORT, METRICS_PORT) overrides them.
    assert files == ["/etc/realtime/realtime.env", "/etc/realtime/%i.env"]
    files = [value for key, value in unit("realtime.service")["Service"] if key == "EnvironmentFile"]
    assert files == ["/etc/realtime/realtime.env"]


def test_the_example_environment_names_only_real_settings() -> None:
    settings = (ROOT / "project" / "settings.py").read_text()
    names = re.findall(r"^#? ?([A-Z_]+)=", (SYSTEMD / "realtime.env").read_text(), re.M)
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PORT", "METRICS_PORT", "WORKERS"} <= set(names)
    for name in names:
        assert f'"{name}"' in settings, name
