"""The collectors in-process: counters and histograms from the runtime's stats, levels from live state."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.test import override_settings
from django_prometheus.testutils import assert_metric_diff, assert_metric_equal, get_metric, save_registry
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from metrics.checks import check_metrics_settings, is_private_address
from metrics.collectors import RealtimeCollector, SoketiCompatCollector
from metrics.conf import get_settings
from project.logging import JsonFormatter
from realtime.ratelimit import AppLimiters, WindowLimiter
from realtime.runtime import get_runtime, reset_runtime
from realtime.stats import Stats

METRICS = {"ENABLED": True, "HOST": "127.0.0.1", "PORT": 9601, "PREFIX": "realtime_"}


@dataclass
class FakeSubscription:
    user_id: str | None = None


@dataclass
class FakeSocket:
    socket_id: str
    app_id: str
    subscriptions: dict[str, FakeSubscription] = field(default_factory=dict)

    def deliver(self, message: object) -> None: ...
    def terminate(self, code: int, reason: str) -> None: ...
    def watchlist_changed(self, user_id: str, online: bool) -> None: ...


@pytest.fixture(autouse=True)
def stats() -> Iterator[Stats]:
    """A fresh runtime per test; its counters are what the collectors read."""
    reset_runtime()
    yield get_runtime().stats
    reset_runtime()


def test_counters_come_from_stats(stats: Stats) -> None:
    frozen = save_registry()
    stats.incr("connection_established", ("unit-app",))
    stats.incr("connection_established", ("unit-app",), 2)
    stats.incr("connection_closed", ("unit-app", "1000"))
    assert_metric_diff(frozen, 3, "realtime_connection_established_total", app_id="unit-app")
    assert_metric_diff(frozen, 1, "realtime_connection_closed_total", app_id="unit-app", code="1000")


def test_histograms_are_cumulative_with_sum_and_count(stats: Stats) -> None:
    registry = CollectorRegistry()
    registry.register(RealtimeCollector())
    for value in (0.0004, 0.003, 0.003, 20.0):
        stats.observe("adapter_latency", value, ("unit-op",))
    samples = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        if family.name == "realtime_adapter_latency_seconds"
        for s in family.samples
        if s.labels.get("operation") == "unit-op"
    }
    assert samples[("realtime_adapter_latency_seconds_bucket", "0.0005")] == 1
    assert samples[("realtime_adapter_latency_seconds_bucket", "0.0025")] == 1
    assert samples[("realtime_adapter_latency_seconds_bucket", "0.005")] == 3
    assert samples[("realtime_adapter_latency_seconds_bucket", "10.0")] == 3
    assert samples[("realtime_adapter_latency_seconds_bucket", "+Inf")] == 4
    assert samples[("realtime_adapter_latency_seconds_count", None)] == 4
    assert samples[("realtime_adapter_latency_seconds_sum", None)] == pytest.approx(20.0064)


def test_a_miscounted_series_is_skipped_not_a_failed_scrape(stats: Stats) -> None:
    stats.incr("errors", ("too", "many", "labels"))
    try:
        text = generate_latest().decode()
    finally:
        del stats.counters["errors"][("too", "many", "labels")]
    assert "realtime_errors_total" in text
    assert 'type="too"' not in text


def test_live_levels_are_read_from_the_registry(stats: Stats) -> None:
    registry = get_runtime().registry
    sockets = [FakeSocket(f"1.{i}", "live-app") for i in range(3)]
    frozen = save_registry()
    for i, socket in enumerate(sockets):
        registry.add(socket)
        stats.incr("connection_established", (socket.app_id,))  # as the consumer does
        for channel in ("news", "private-a", "presence-room"):
            socket.subscriptions[channel] = FakeSubscription(
                f"user-{i % 2}" if channel.startswith("presence") else None
            )
            registry.subscribe(socket, channel)
            registry.acknowledge(socket, channel)
    assert_metric_equal(3, "realtime_active_connections", app_id="live-app")
    assert_metric_equal(1, "realtime_active_channels", app_id="live-app", channel_type="public")
    assert_metric_equal(1, "realtime_active_channels", app_id="live-app", channel_type="presence")
    assert_metric_equal(0, "realtime_active_channels", app_id="live-app", channel_type="cache")
    assert_metric_equal(2, "realtime_presence_members", app_id="live-app")  # user-0 twice, user-1

    for socket in sockets:
        for channel in socket.subscriptions:
            registry.unsubscribe(socket, channel)
        registry.remove(socket)
    # Back to exactly nothing: the app, now known, reports zeros rather than vanishing.
    assert_metric_equal(0, "realtime_active_connections", app_id="live-app")
    assert_metric_equal(0, "realtime_presence_members", app_id="live-app")
    assert_metric_equal(0, "realtime_active_channels", app_id="live-app", channel_type="public")
    assert_metric_diff(frozen, 3, "realtime_connection_established_total", app_id="live-app")


def test_accepting_connections_follows_the_node() -> None:
    node = get_runtime()
    assert_metric_equal(1, "realtime_accepting_connections")
    node.accepting = False
    assert_metric_equal(0, "realtime_accepting_connections")


def test_rate_limit_decisions_are_counted(stats: Stats) -> None:
    frozen = save_registry()
    limiter = WindowLimiter(2, ("rl-app", "client_events"), stats)
    results = [limiter.allow(now=100.0) for _ in range(3)]
    assert results == [True, True, False]
    assert AppLimiters(stats).allow("rl-app", "backend_events", None)  # no limit: no decision counted
    assert_metric_diff(
        frozen,
        2,
        "realtime_rate_limit_checks_total",
        app_id="rl-app",
        limiter="client_events",
        result="allowed",
    )
    assert_metric_diff(
        frozen,
        1,
        "realtime_rate_limit_checks_total",
        app_id="rl-app",
        limiter="client_events",
        result="rejected",
    )
    assert (
        get_metric(
            "realtime_rate_limit_checks_total", app_id="rl-app", limiter="backend_events", result="allowed"
        )
        is None
    )


def test_prefix_setting_renames_every_family() -> None:
    registry = CollectorRegistry()
    registry.register(RealtimeCollector())
    with override_settings(REALTIME_METRICS={**METRICS, "PREFIX": "rt_"}):
        names = {family.name for family in text_string_to_metric_families(generate_latest(registry).decode())}
    assert "rt_active_connections" in names
    assert not any(name.startswith("realtime_") for name in names)


def test_soketi_families_only_when_asked(stats: Stats) -> None:
    registry = CollectorRegistry()
    registry.register(SoketiCompatCollector())
    stats.incr("connection_established", ("compat-app",), 5)
    assert generate_latest(registry) == b""
    with override_settings(REALTIME_METRICS={**METRICS, "COMPAT": "soketi"}):
        text = generate_latest(registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert len(families) == 10
    assert families["soketi_socket_received_bytes"].type == "unknown"
    samples = {(s.name, s.labels["app_id"]): s.value for f in families.values() for s in f.samples}
    assert samples[("soketi_new_connections_total", "compat-app")] >= 5
    # None of those five is connected now: every one of them counts as a disconnection.
    assert (
        samples[("soketi_new_disconnections_total", "compat-app")]
        == samples[("soketi_new_connections_total", "compat-app")]
    )


@pytest.mark.django_db
def test_model_operations_feed_django_prometheus() -> None:
    from realtime.models import App

    frozen = save_registry()
    app = App.objects.create(name="metrics")
    app.name = "renamed"
    app.save()
    app.delete()
    assert_metric_diff(frozen, 1, "django_model_inserts_total", model="app")
    assert_metric_diff(frozen, 1, "django_model_updates_total", model="app")
    assert_metric_diff(frozen, 1, "django_model_deletes_total", model="app")


@pytest.mark.parametrize(
    ("host", "private"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("10.1.2.3", True),
        ("192.168.0.10", True),
        ("fd00::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("8.8.8.8", False),
        ("metrics.example.com", False),
    ],
)
def test_private_addresses(host: str, private: bool) -> None:
    assert is_private_address(host) is private


def _ids(**metrics: object) -> set[str]:
    with override_settings(REALTIME_METRICS={**METRICS, **metrics}):
        return {problem.id for problem in check_metrics_settings()}


def test_checks() -> None:
    assert _ids() == set()
    assert _ids(HOST="0.0.0.0") == {"metrics.W001"}
    assert _ids(HOST="0.0.0.0", ENABLED=False) == set()
    assert _ids(DRIVER="statsd") == {"metrics.E003"}
    assert _ids(PREFIX="1x") == {"metrics.E004"}
    assert _ids(COMPAT="sockudo") == {"metrics.E005"}
    assert _ids(COMPAT="soketi", PREFIX="soketi_") == {"metrics.E006"}
    assert _ids(COLOUR="blue") == {"metrics.E002"}
    with override_settings(REALTIME_METRICS=[]):
        assert {p.id for p in check_metrics_settings()} == {"metrics.E001"}
    assert get_settings().PREFIX == "realtime_"


def test_middleware_order_check(settings) -> None:
    before = "django_prometheus.middleware.PrometheusBeforeMiddleware"
    after = "django_prometheus.middleware.PrometheusAfterMiddleware"
    assert settings.MIDDLEWARE[0] == before and settings.MIDDLEWARE[-1] == after
    settings.MIDDLEWARE = [after, *settings.MIDDLEWARE[1:-1], before]
    assert {p.id for p in check_metrics_settings()} == {"metrics.W002"}


def test_json_log_lines_drop_secrets_and_payloads() -> None:
    record = logging.LogRecord("realtime.test", logging.WARNING, __file__, 1, "delivery failed", None, None)
    for key, value in {
        "app_id": "42",
        "secret": "s3cr3t",
        "auth": "key:signature",
        "signature": "abc",
        "data": "payload",
        "payload": "payload",
        "channel_data": "{}",
        "user_data": "{}",
    }.items():
        setattr(record, key, value)
    line = JsonFormatter().format(record)
    assert '"app_id": "42"' in line
    for leaked in ("s3cr3t", "signature", "payload", "channel_data", "user_data", '"auth"'):
        assert leaked not in line
