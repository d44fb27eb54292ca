"""The private metrics site: its own listener, valid exposition, settings from the environment."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidHandshake

from metrics.catalogue import FAMILIES, SOKETI
from tests.conftest import PYTHON, ROOT, _base_env

from .conftest import PREFIX, Exposition, connect, fetch, scrape


def test_public_port_has_no_metrics(server) -> None:
    status, _, body = fetch(server.url("/metrics"))
    assert status == 404
    assert "realtime_" not in body


def test_metrics_port_serves_valid_exposition(server) -> None:
    status, content_type, body = fetch(server.metrics_url())
    assert status == 200
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(body)}
    # Ours, prometheus-client's process and Python collectors, and django-prometheus's.
    assert PREFIX + "active_connections" in names
    assert {"process_resident_memory_bytes", "python_gc_objects_collected"} <= names
    assert {"django_http_requests_before_middlewares", "django_model_inserts"} <= names
    assert any(name.startswith("django_db_") for name in names)  # the instrumented database backend


def test_metrics_port_serves_nothing_else(server) -> None:
    assert fetch(server.metrics_url("/"))[0] == 404
    assert fetch(server.metrics_url("/admin/"))[0] == 404
    assert fetch(server.metrics_url("/health"))[0] == 404


async def test_metrics_port_refuses_websockets(server) -> None:
    url = f"ws://{server.host}:{server.metrics_port}/app/{server.key}?protocol=7"
    with pytest.raises(InvalidHandshake):  # an HTTP/1.0 404, never a 101
        async with websockets.connect(url, open_timeout=5) as ws:
            await ws.recv()


async def test_openmetrics_negotiation(server) -> None:
    # Prometheus asks for OpenMetrics first; the answer must be a valid OpenMetrics document.
    import urllib.request

    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

    request = urllib.request.Request(
        server.metrics_url(), headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        names = {family.name for family in parse_om(response.read().decode())}
    assert {PREFIX + "connection_established", PREFIX + "active_connections"} <= names


def _serve(tmp_path: Path, migrated_db: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "db.sqlite3").write_bytes(migrated_db.read_bytes())
    full_env = {**_base_env(data_dir), **env}
    command = [PYTHON, "manage.py", "realtime_serve", "--host", "127.0.0.1", "--port", "0", *args]
    return subprocess.Popen(
        command, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_metrics_enabled_false_serves_no_metrics_endpoint(tmp_path, migrated_db) -> None:
    process = _serve(tmp_path, migrated_db, {"METRICS_ENABLED": "false"}, "--metrics-port", "0")
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("Listening (public)") or not line:
                break
        assert any(line.startswith("Listening (public)") for line in lines), "".join(lines)
        time.sleep(0.5)
    finally:
        process.kill()
        output = "".join(lines) + process.communicate(timeout=10)[0]
    assert "Listening (metrics)" not in output


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METRICS_DRIVER": "statsd"}, "metrics.E003"),
        ({"METRICS_COMPAT": "sockudo"}, "metrics.E005"),
        ({"METRICS_PROMETHEUS_PREFIX": "9bad"}, "metrics.E004"),
        ({"METRICS_COMPAT": "soketi", "METRICS_PROMETHEUS_PREFIX": "soketi_"}, "metrics.E006"),
    ],
)
def test_bad_metrics_settings_stop_the_server_at_start(tmp_path, migrated_db, env, message) -> None:
    process = _serve(tmp_path, migrated_db, env, "--metrics-port", "0")
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode != 0
    assert message in output
    assert "Listening" not in output


@pytest.mark.parametrize("variable", ["METRICS_PROMETHEUS_PREFIX", "PROMETHEUS_METRICS_PREFIX"])
async def test_prefix_from_environment(start_server, variable) -> None:
    server = start_server(env={variable: "rt_"})
    client = await connect(server)
    exposition = scrape(server)
    await client.ws.close()
    assert exposition.value("rt_active_connections", app_id=server.app_id) == 1
    ours = {name for name in exposition.families if name.startswith("rt_")}
    assert ours == {"rt_" + family.name.removesuffix("_total") for family in FAMILIES}
    assert not any(name.startswith(PREFIX) for name in exposition.families)


async def test_soketi_compat_families(start_server) -> None:
    server = start_server(env={"METRICS_COMPAT": "soketi"})
    client = await connect(server)
    await client.send("pusher:subscribe", {"channel": "compat"})
    await client.expect("pusher_internal:subscription_succeeded")
    await asyncio.to_thread(server.pusher().trigger, "compat", "hello", {"n": 1})
    await client.expect("hello")
    exposition = scrape(server)
    await client.ws.close()
    labels = {"app_id": server.app_id, "port": str(server.port)}

    compat = {name: family for name, family in exposition.families.items() if name.startswith("soketi_")}
    assert set(compat) == {"soketi_" + f.name.removesuffix("_total") for f in SOKETI}
    for family in compat.values():
        for sample in family.samples:
            assert set(sample.labels) == {"app_id", "port"}

    def same(compat_name: str, ours: str) -> None:
        assert exposition.value(compat_name, **labels) == exposition.value(
            PREFIX + ours, app_id=server.app_id
        )

    assert exposition.value("soketi_connected", **labels) == 1
    same("soketi_new_connections_total", "connection_established_total")
    same("soketi_socket_received_bytes", "socket_received_bytes_total")
    same("soketi_socket_transmitted_bytes", "socket_transmitted_bytes_total")
    same("soketi_ws_messages_received_total", "messages_received_total")
    same("soketi_ws_messages_sent_total", "messages_sent_total")
    assert exposition.value("soketi_new_disconnections_total", **labels) == 0
    assert exposition.value("soketi_http_calls_received_total", **labels) == 1
    # The SDK's body, byte for byte (pusher/http.py: json.dumps of name, channels, data).
    body = json.dumps({"name": "hello", "channels": ["compat"], "data": json.dumps({"n": 1})})
    assert exposition.value("soketi_http_received_bytes", **labels) == len(body)
    assert exposition.value("soketi_http_transmitted_bytes", **labels) == 2  # "{}"


def test_compat_off_by_default(server) -> None:
    exposition = scrape(server)
    assert not any(name.startswith("soketi_") for name in exposition.families)


def test_exposition_type_lines(server) -> None:
    # Every family of ours has exactly one TYPE line matching the catalogue.
    exposition: Exposition = scrape(server)
    for family in FAMILIES:
        parsed = exposition.families[PREFIX + family.name.removesuffix("_total")]
        assert parsed.type == family.type, family.name
