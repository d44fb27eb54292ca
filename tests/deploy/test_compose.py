"""deploy/compose.yaml and what it mounts: the compose-spec schema, the nodes' wiring, Prometheus and
Grafana provisioning.

The Docker Compose plugin is not on the test machine (and `docker compose config` would not run
without it), so the file is checked against the compose-spec JSON schema that check-jsonschema
ships, and its wiring is read with PyYAML.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from realtime.conf import RealtimeSettings
from tests.conftest import ROOT

from .test_docker import image_env

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
NODES = ("realtime-1", "realtime-2")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_matches_the_compose_spec_schema() -> None:
    result = check_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ("  realtime-1:\n", "  realtime-1:\n    prots: []\n"),
        ("    restart: unless-stopped\n    command:", "    restart: 3\n    command:"),
    ],
)
def test_the_schema_check_rejects_a_broken_file(tmp_path: Path, good: str, bad: str) -> None:
    broken = tmp_path / "compose.yaml"
    text = COMPOSE.read_text()
    assert good in text
    broken.write_text(text.replace(good, bad, 1))
    assert check_schema(broken).returncode != 0


def test_two_nodes_share_redis_and_postgresql_and_publish_only_the_public_port() -> None:
    services = compose()["services"]
    public = image_env()["PORT"]
    for name in NODES:
        node = services[name]
        assert node["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        env = node["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert (
            env["DATABASE_URL"].startswith("postgres://realtime:")
            and "@postgres:5432/realtime" in env["DATABASE_URL"]
        )
        assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
        assert [port.rsplit(":", 1)[1] for port in node["ports"]] == [public]
        assert {"redis", "postgres"} <= set(node["depends_on"])
        assert all(condition == {"condition": "service_healthy"} for condition in node["depends_on"].values())
    assert sorted(services[name]["ports"][0].split(":")[0] for name in NODES) == ["6001", "6002"]
    # Nothing publishes a node's metrics port to the host.
    metrics = image_env()["METRICS_PORT"]
    for name in NODES:
        assert not any(port.endswith(f":{metrics}") for port in services[name]["ports"])


def test_nodes_get_more_stop_time_than_the_drain_takes() -> None:
    for name in NODES:
        node = compose()["services"][name]
        grace = float(
            node["environment"].get("SHUTDOWN_GRACE_SECONDS", RealtimeSettings().SHUTDOWN_GRACE_SECONDS)
        )
        stop = re.fullmatch(r"(\d+)s", node["stop_grace_period"])
        assert stop, node["stop_grace_period"]
        assert int(stop.group(1)) > grace


def test_monitoring_tools_listen_on_loopback_only() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name
    for name in ("redis", "postgres"):
        assert "ports" not in services[name], name


def test_every_mounted_file_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)


def test_prometheus_scrapes_every_node_on_its_metrics_port() -> None:
    prometheus = compose()["services"]["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"] if volume.startswith("."))
    config_file = next(
        source for source, target in mounts.items() if target == "/etc/prometheus/prometheus.yml"
    )
    config = yaml.safe_load((DEPLOY / config_file).read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "realtime"  # alerts.yml and the dashboard select on it
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert sorted(targets) == sorted(f"{name}:{image_env()['METRICS_PORT']}" for name in NODES)
    # The rules are mounted where the config names them.
    assert f"/etc/prometheus/{config['rule_files'][0]}" in mounts.values()


def test_promtool_accepts_the_compose_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (bin/test installs Debian's prometheus package)"
    result = subprocess.run(
        [promtool, "check", "config", "prometheus-compose.yml"], cwd=DEPLOY, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("."))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "9090" in compose()["services"]["prometheus"]["ports"][0]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "realtime.yaml").read_text())["providers"]
    dashboard = mounts["./grafana/realtime-dashboard.json"]
    assert str(Path(dashboard).parent) == provider["options"]["path"]


def test_the_example_env_file_sets_every_required_variable() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required == {"POSTGRES_PASSWORD", "DJANGO_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD"}
    example = (DEPLOY / "compose.env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, re.M))
    assert required <= defined
