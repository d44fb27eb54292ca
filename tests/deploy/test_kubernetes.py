"""The Helm chart (deploy/helm/realtime) and its rendering with default values (deploy/kubernetes).

helm lint and helm template run for real (bin/test.d/helm.sh installs helm); the plain manifests must
equal what the chart renders, so they never drift. Every manifest is validated against the Kubernetes
schemas (kubernetes-validate, bundled schemas, strict: unknown fields are errors) for the oldest and
the newest Kubernetes the chart supports. The ServiceMonitor's CRD is not among those schemas: it is
checked field by field against the Services it must select.

After changing the chart, regenerate the plain manifests from the repository root:

    helm template realtime deploy/helm/realtime --output-dir /tmp/rendered
    cp /tmp/rendered/realtime/templates/*.yaml deploy/kubernetes/
    helm template realtime deploy/helm/realtime --set metrics.serviceMonitor.enabled=true \\
        --show-only templates/servicemonitor.yaml > deploy/kubernetes/optional/servicemonitor.yaml
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import realtime
from tests.conftest import ROOT

from .test_docker import image_env, values

CHART = ROOT / "deploy" / "helm" / "realtime"
PLAIN = ROOT / "deploy" / "kubernetes"
RELEASE = "realtime"
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")  # Chart.yaml's kubeVersion floor, and kubernetes-validate's newest
CLUSTER = [
    "--set",
    "replicaCount=3",
    "--set",
    "secret.redisUrl=redis://redis:6379/0",
    "--set",
    "secret.databaseUrl=postgres://realtime:pw@db/realtime",
]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("helm")
    if binary is None:
        pytest.fail("helm is not installed (bin/test installs it: bin/test.d/helm.sh)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def render(*args: str) -> list[dict[str, Any]]:
    result = helm("template", RELEASE, str(CHART), *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def plain() -> list[dict[str, Any]]:
    return [
        doc for path in sorted(PLAIN.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def env_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(docs)["env"]}


def validate(paths: list[Path], version: str) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run(
        [str(tool), "--strict", "--kubernetes-version", version, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# The chart and the plain manifests --------------------------------------------------------------------


def test_helm_lint_passes() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_plain_manifests_are_the_chart_rendered_with_default_values(tmp_path: Path) -> None:
    result = helm("template", RELEASE, str(CHART), "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rendered = {path.name: path.read_text() for path in (tmp_path / RELEASE / "templates").glob("*.yaml")}
    shipped = {path.name: path.read_text() for path in PLAIN.glob("*.yaml")}
    assert sorted(shipped) == sorted(rendered), "regenerate deploy/kubernetes (this module's docstring)"
    for name, text in rendered.items():
        assert shipped[name] == text, f"deploy/kubernetes/{name} differs from the chart: regenerate it"
    monitor = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--show-only",
        "templates/servicemonitor.yaml",
    )
    assert monitor.returncode == 0, monitor.stderr
    assert (PLAIN / "optional" / "servicemonitor.yaml").read_text() == monitor.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_plain_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    paths = sorted(PLAIN.glob("*.yaml"))
    assert {path.name for path in paths} >= {"deployment.yaml", "service.yaml", "service-metrics.yaml"}
    result = validate(paths, version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(plain())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_a_cluster_rendering_validates_too(tmp_path: Path, version: str) -> None:
    docs = render(
        *CLUSTER, "--set", "autoscaling.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"
    )
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Secret",
        "Service",
        "Service",
        "ServiceMonitor",
    ]
    core = tmp_path / "cluster.yaml"
    core.write_text(yaml.safe_dump_all([doc for doc in docs if doc["kind"] != "ServiceMonitor"]))
    result = validate([core], version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == 5


def test_the_schema_check_rejects_a_broken_manifest(tmp_path: Path) -> None:
    broken = tmp_path / "deployment.yaml"
    text = (PLAIN / "deployment.yaml").read_text()
    assert "          readinessProbe:\n" in text
    broken.write_text(text.replace("          readinessProbe:\n", "          readynessProbe:\n"))
    assert validate([broken], KUBERNETES_VERSIONS[-1]).returncode != 0


def test_chart_version_follows_the_server() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == realtime.__version__
    assert container(plain())["image"] == f"realtime:{realtime.__version__}"


# What the manifests say ---------------------------------------------------------------------------------


def test_probes_readiness_on_ready_liveness_on_health() -> None:
    main = container(plain())
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert ports == {"http": int(env_of(plain())["PORT"]), "metrics": int(env_of(plain())["METRICS_PORT"])}
    assert main["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert main["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_probes_follow_path_prefix() -> None:
    main = container(render("--set", "env.PATH_PREFIX=/pusher/"))
    assert main["readinessProbe"]["httpGet"]["path"] == "/pusher/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/pusher/health"


def termination(docs: list[dict[str, Any]]) -> tuple[int, float, int]:
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    pause = container(docs).get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["", "0"])
    return (
        spec["terminationGracePeriodSeconds"],
        float(env_of(docs)["SHUTDOWN_GRACE_SECONDS"]),
        int(pause[-1]),
    )


def test_kubernetes_waits_longer_than_the_drain() -> None:
    period, grace, pause = termination(plain())
    assert grace == 10
    assert period > pause + grace
    # Computed from the value, not written down.
    period, grace, pause = termination(render("--set", "shutdownGraceSeconds=42.5"))
    assert (period, grace, pause) == (math.ceil(42.5) + 5 + 15, 42.5, 5)
    period, grace, pause = termination(render("--set", "preStopSleepSeconds=0"))
    assert "lifecycle" not in container(render("--set", "preStopSleepSeconds=0"))
    assert period > grace


def test_the_public_service_exposes_only_the_public_port() -> None:
    docs = plain()
    service = one(docs, "Service", RELEASE)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 6001, "targetPort": "http", "protocol": "TCP"}
    ]
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_the_metrics_service_is_cluster_internal_and_only_metrics() -> None:
    docs = plain()
    service = one(docs, "Service", f"{RELEASE}-metrics")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9601, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "9601"
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # Even a public Service of type LoadBalancer leaves the metrics Service inside the cluster.
    docs = render("--set", "service.type=LoadBalancer")
    assert one(docs, "Service", f"{RELEASE}-metrics")["spec"]["type"] == "ClusterIP"
    assert [p["targetPort"] for p in one(docs, "Service", RELEASE)["spec"]["ports"]] == ["http"]


def test_the_service_monitor_selects_the_metrics_service_under_the_realtime_job() -> None:
    docs = render("--set", "metrics.serviceMonitor.enabled=true")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    metrics_service = one(docs, "Service", f"{RELEASE}-metrics")
    public_service = one(docs, "Service", RELEASE)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= metrics_service["metadata"]["labels"].items()
    assert not selector.items() <= public_service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == metrics_service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # deploy/alerts.yml and the Grafana dashboard select job="realtime".
    assert metrics_service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "realtime"
    assert not any(doc["kind"] == "ServiceMonitor" for doc in plain())


def test_secrets_come_from_a_secret() -> None:
    docs = render(*CLUSTER, "--set", "secret.djangoSecretKey=k3y", "--set", "secret.defaultAppSecret=s3cret")
    secret = one(docs, "Secret")
    assert secret["stringData"] == {
        "REDIS_URL": "redis://redis:6379/0",
        "DATABASE_URL": "postgres://realtime:pw@db/realtime",
        "DJANGO_SECRET_KEY": "k3y",
        "DEFAULT_APP_SECRET": "s3cret",
    }
    main = container(docs)
    assert main["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    deployment = yaml.safe_dump(one(docs, "Deployment"))
    for value in secret["stringData"].values():
        assert value not in deployment
    # A Secret of your own instead: the chart creates none and points the pods at it.
    docs = render("--set", "replicaCount=3", "--set", "secret.existingSecret=mine")
    assert not any(doc["kind"] == "Secret" for doc in docs)
    assert container(docs)["envFrom"] == [{"secretRef": {"name": "mine"}}]


def test_several_pods_without_redis_or_a_database_are_refused() -> None:
    for args in (["--set", "replicaCount=2"], ["--set", "autoscaling.enabled=true"], CLUSTER[:4]):
        result = helm("template", RELEASE, str(CHART), *args)
        assert result.returncode != 0
        assert "needs secret.redisUrl and secret.databaseUrl" in result.stderr


def test_autoscaling_is_off_by_default_and_owns_the_replicas_when_on() -> None:
    assert not any(doc["kind"] == "HorizontalPodAutoscaler" for doc in plain())
    assert one(plain(), "Deployment")["spec"]["replicas"] == 1
    docs = render(*CLUSTER, "--set", "autoscaling.enabled=true")
    assert "replicas" not in one(docs, "Deployment")["spec"]
    target = one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", one(docs, "Deployment")["metadata"]["name"])


def test_runs_unprivileged_on_a_read_only_root_with_a_writable_data_dir() -> None:
    docs = plain()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    main = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The image's own user, so files it made at build time stay readable.
    assert (
        f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == values("USER")[-1]
    )
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"]: mount["name"] for mount in main["volumeMounts"]}
    data_dir = env_of(docs)["REALTIME_DATA_DIR"]
    assert data_dir == image_env()["REALTIME_DATA_DIR"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[data_dir]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert pod["automountServiceAccountToken"] is False
