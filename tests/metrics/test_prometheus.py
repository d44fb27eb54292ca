"""deploy/ checked by the real thing: promtool, and a Prometheus server scraping live nodes.

bin/test installs Debian's ``prometheus`` package (bin/test.d/prometheus.sh). The live test runs
the shipped ``deploy/prometheus.yml`` (targets and intervals swapped for the test's) against two
``realtime_serve`` nodes, finds our series with the right values through Prometheus's HTTP API, and
evaluates every expression of the Grafana dashboard and of ``deploy/alerts.yml``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metrics.catalogue import BY_NAME
from tests.conftest import ROOT, free_port

from .conftest import connect, fetch, scrape

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "realtime-dashboard.json"
# Grafana's variables, as a query over every node and app would expand them.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$instance": ".*", "$app_id": ".*"}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (bin/test installs Debian's prometheus package)")
    return path


def _promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_binary("promtool"), *args], cwd=DEPLOY, capture_output=True, text=True, input=stdin, timeout=60
    )


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = []
    for panel in dashboard["panels"]:
        expressions += [target["expr"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), \w+\)", variable["definition"])
            assert match, variable["definition"]
            expressions.append(match.group(1))
    return expressions


def alert_expressions() -> dict[str, str]:
    """alert name -> expr, read with a small parser for the file's own layout (no YAML library)."""
    text = (DEPLOY / "alerts.yml").read_text()
    alerts: dict[str, str] = {}
    for block in re.split(r"\n      - alert: ", text)[1:]:
        name, rest = block.split("\n", 1)
        match = re.search(r"^        expr: (\|\n(?P<multi>(?:          .*\n)+)|(?P<single>.+)\n)", rest, re.M)
        assert match, name
        alerts[name] = (match.group("multi") or match.group("single")).strip()
    return alerts


def substitute(expression: str) -> str:
    for variable, value in VARIABLES.items():
        expression = expression.replace(variable, value)
    return expression


def metric_names(expression: str) -> set[str]:
    # Every query here selects with a label matcher (job at least), so a name is what precedes "{".
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expression))


def test_promtool_check_config() -> None:
    result = _promtool("check", "config", "prometheus.yml", "prometheus-cluster.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") >= 2


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_expressions())} rules found" in result.stdout


def test_promtool_test_rules_make_every_alert_fire() -> None:
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tests = (DEPLOY / "alerts_test.yml").read_text()
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests))
    assert fired == set(alert_expressions())


def test_alerts_cover_the_issue_list() -> None:
    names = set(alert_expressions())
    for needed in ("InstanceDown", "ConnectionsDropped", "HttpErrorRate", "ApiLatency", "RateLimiting"):
        assert any(needed in name for name in names), needed
    for needed in ("QueueBacklog", "WebhookFailures", "LowCacheHitRate"):
        assert any(needed in name for name in names), needed


def test_every_query_names_a_family_that_exists(server) -> None:
    exposed = set(scrape(server).families)
    expressions = dashboard_expressions() + list(alert_expressions().values())
    assert len(expressions) > 50
    for expression in expressions:
        for name in metric_names(expression):
            if name == "up":
                continue
            if name.startswith("realtime_"):
                family = re.sub(r"_(bucket|sum|count)$", "", name.removeprefix("realtime_"))
                assert family in BY_NAME, (name, expression)
                assert BY_NAME[family].type == "histogram" or family == name.removeprefix("realtime_")
            else:
                base = re.sub(r"_(total|bucket|sum|count)$", "", name)
                assert name in exposed or base in exposed, (name, expression)


def test_dashboard_covers_the_issue_list() -> None:
    titles = " ".join(panel["title"].lower() for panel in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("connections", "frames", "latency", "channels", "presence", "errors", "memory", "cpu"):
        assert topic in titles, topic


def test_promtool_check_metrics_finds_nothing_in_our_exposition(server) -> None:
    _, _, body = fetch(server.metrics_url())
    result = _promtool("check", "metrics", stdin=body)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "realtime_" in line]
    assert ours == []


# The live test ------------------------------------------------------------------------------------


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        status, _, body = fetch(url)
        payload = json.loads(body)
        payload["http_status"] = status
        return payload

    def query(self, expression: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expression)

    def values(self, expression: str) -> dict[str, float]:
        """instance -> value of an instant query (one series per instance)."""
        result = self.query(expression)
        assert result["status"] == "success", result
        return {r["metric"].get("instance", ""): float(r["value"][1]) for r in result["data"]["result"]}

    def wait(self, check: Any, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
            except (AssertionError, OSError, ValueError):
                value = None
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.25)


@contextlib.contextmanager
def run_prometheus(tmp_path: Path, targets: list[str]) -> Iterator[Prometheus]:
    # The shipped config, with the test's targets and one-second intervals.
    config = (DEPLOY / "prometheus.yml").read_text()
    assert '["127.0.0.1:9601"]' in config
    config = config.replace('["127.0.0.1:9601"]', json.dumps(targets)).replace("15s", "1s")
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(DEPLOY / "alerts.yml", tmp_path / "alerts.yml")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            _binary("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        prometheus = Prometheus(port)
        ready = prometheus.wait(lambda: fetch(prometheus.base + "/-/ready")[0] == 200)
        assert ready, (tmp_path / "prometheus.log").read_text()
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@pytest.mark.timeout(180)
async def test_real_prometheus_scrapes_two_nodes_and_evaluates_everything(start_server, tmp_path) -> None:
    nodes = [start_server(), start_server()]
    clients = [await connect(nodes[0]), await connect(nodes[0]), await connect(nodes[1])]
    for client in clients:
        await client.send("pusher:subscribe", {"channel": "prom"})
        await client.expect("pusher_internal:subscription_succeeded")
    await clients[0].send("pusher:subscribe", {"channel": "presence-x", "auth": "bad:signature"})
    await clients[0].expect("pusher:subscription_error")
    targets = [f"127.0.0.1:{node.metrics_port}" for node in nodes]

    def check() -> None:
        with run_prometheus(tmp_path, targets) as prometheus:
            app = f'app_id="{nodes[0].app_id}"'
            up = prometheus.wait(
                lambda: prometheus.values('up{job="realtime"}') == dict.fromkeys(targets, 1.0)
            )
            assert up, prometheus.values('up{job="realtime"}')
            connections = prometheus.values(f"sum by (instance) (realtime_active_connections{{{app}}})")
            assert connections == {targets[0]: 2.0, targets[1]: 1.0}
            assert prometheus.values(f"sum(realtime_active_connections{{{app}}})") == {"": 3.0}
            established = prometheus.values(f"realtime_connection_established_total{{{app}}}")
            assert established == {targets[0]: 2.0, targets[1]: 1.0}
            channels = prometheus.values(f'realtime_active_channels{{{app}, channel_type="public"}}')
            assert channels == {targets[0]: 1.0, targets[1]: 1.0}
            failures = prometheus.values(f'realtime_authentication_failures_total{{{app}, kind="channel"}}')
            assert failures == {targets[0]: 1.0}
            assert prometheus.values("realtime_accepting_connections") == dict.fromkeys(targets, 1.0)
            assert set(prometheus.values("realtime_build_info")) == set(targets)

            for expression in dashboard_expressions():
                result = prometheus.query(substitute(expression))
                assert result["status"] == "success", (expression, result)
            for name, expression in alert_expressions().items():
                result = prometheus.query(expression)
                assert result["status"] == "success", (name, result)
                assert result["data"]["result"] == [], (name, "fires on a healthy pair of nodes")

            # Prometheus evaluates the rule file itself too: every rule healthy, none firing.
            def evaluated() -> list[dict[str, Any]] | None:
                groups = prometheus.get("/api/v1/rules")["data"]["groups"]
                rules = [rule for group in groups for rule in group["rules"]]
                done = rules and all(not rule["lastEvaluation"].startswith("0001") for rule in rules)
                return rules if done else None

            rules = prometheus.wait(evaluated)
            assert rules, "rules were never evaluated"
            assert {rule["name"] for rule in rules} == set(alert_expressions())
            for rule in rules:
                assert rule["health"] == "ok", rule
                assert rule["state"] == "inactive", rule

    await asyncio.to_thread(check)
    for client in clients:
        await client.ws.close()
