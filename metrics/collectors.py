"""Prometheus collectors: the catalogue's families, read from realtime's counters and live state.

Nothing here runs on the hot path. At scrape time (inside the event loop, to which the metrics site's
listener hands each scrape, so nothing mutates what is read) the collector turns the plain dicts of
the runtime's ``Stats`` into counter and histogram families, and computes the live levels (connections,
channels, presence members, queue depth, caches) from the node's in-memory state: one pass over
local sockets and channels, no I/O, nothing that could drift.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

import realtime
from realtime.cluster.memory import MemoryState
from realtime.credentials import CredentialsCache
from realtime.protocol.names import CHANNEL_TYPE_LABELS, channel_kind
from realtime.runtime import Runtime, get_runtime
from realtime.stats import BUCKETS, Histogram, Stats

from .catalogue import FAMILIES, SOKETI, SOKETI_LABELS, Family
from .conf import get_settings

Series = dict[tuple[str, ...], float]


class LiveState:
    """The live levels of this node, computed once per scrape from in-memory state."""

    def __init__(self, runtime: Runtime) -> None:
        registry = runtime.registry
        stats = runtime.stats
        self.memory_gate_closed = 1.0 if runtime.memory.closed else 0.0
        self.accepting = 1.0 if runtime.accepting and not runtime.memory.closed else 0.0
        # Every app this node knows of reports its levels, zeros included: "dropped to 0" must be a
        # value an alert can see, not a series that vanished. App ids come from apps that exist.
        sockets = list(registry.sockets.values())
        apps = {app.id for app in runtime.credentials.cached()} | {socket.app_id for socket in sockets}
        apps.update(key[0] for key in list(stats.counters.get("connection_established", {})) if key[0])
        self.connections: Counter[tuple[str, ...]] = Counter({(app_id,): 0 for app_id in apps})
        self.channels: Counter[tuple[str, ...]] = Counter(
            {(app_id, label): 0 for app_id in apps for label in CHANNEL_TYPE_LABELS}
        )
        self.members: Counter[tuple[str, ...]] = Counter({(app_id,): 0 for app_id in apps})
        for socket in sockets:
            self.connections[(socket.app_id,)] += 1
        channels = self.channels
        for (app_id, channel), sockets in list(registry.channels.items()):
            label, presence = _kind(channel)
            channels[(app_id, label)] += 1
            if presence:
                users = set()
                for socket in list(sockets.values()):
                    subscription = getattr(socket, "subscriptions", {}).get(channel)
                    if subscription is not None and subscription.user_id is not None:
                        users.add(subscription.user_id)
                self.members[(app_id,)] += len(users)
        self.channel_cache_bytes = _channel_cache_bytes(runtime.state)
        self.queued_webhooks = float(runtime.webhooks.pending())
        self.webhook_backlog_age = runtime.webhooks.backlog_age()
        self.credentials_cache_bytes = _credentials_cache_bytes(runtime.credentials)


# channel name -> (channel_type label, presence?): classifying 10,000 channels by prefix at every
# scrape is most of a scrape's cost; the memo is cleared when it grows past any sane channel count.
_kinds: dict[str, tuple[str, bool]] = {}


def _kind(channel: str) -> tuple[str, bool]:
    entry = _kinds.get(channel)
    if entry is None:
        if len(_kinds) >= 200_000:
            _kinds.clear()
        kind = channel_kind(channel)
        entry = _kinds[channel] = (kind.label, kind.presence)
    return entry


def _channel_cache_bytes(state: Any) -> float:
    # The in-process state keeps cache channels' last frames; with Redis they live in Redis.
    if not isinstance(state, MemoryState):
        return 0.0
    return float(state.cache_bytes())


def _credentials_cache_bytes(credentials: CredentialsCache) -> float:
    total = 0
    for app in credentials.cached():
        total += len(app.id) + len(app.key) + len(app.secret) + len(app.name)
        total += sum(len(origin) for origin in app.allowed_origins)
        total += sum(len(target.url) for target in app.webhooks)
    return float(total)


def _counted(stats: Stats, source: str) -> Series:
    return {labels: float(value) for labels, value in list(stats.counters.get(source, {}).items())}


def _plus(series: Series, extra: Series) -> Series:
    merged = dict(series)
    for labels, value in extra.items():
        merged[labels] = merged.get(labels, 0.0) + value
    return merged


def _live_values(family: Family, live: LiveState) -> Series:
    name = family.name
    if name == "active_connections":
        return {k: float(v) for k, v in live.connections.items()}
    if name == "active_channels":
        return {k: float(v) for k, v in live.channels.items()}
    if name == "presence_members":
        return {k: float(v) for k, v in live.members.items()}
    if name == "queue_active_jobs":
        return {("webhooks",): live.queued_webhooks}
    if name == "queue_oldest_job_age_seconds":
        return {("webhooks",): live.webhook_backlog_age}
    if name == "cache_memory_usage_bytes":
        return {("channel",): live.channel_cache_bytes, ("credentials",): live.credentials_cache_bytes}
    if name == "build_info":
        return {(realtime.__version__, platform.python_version()): 1.0}
    if name == "accepting_connections":
        return {(): live.accepting}
    if name == "memory_gate_closed":
        return {(): live.memory_gate_closed}
    raise LookupError(f"no live source for {name}")


def _counter_values(runtime: Runtime, family: Family) -> Series:
    assert family.source is not None
    stats = runtime.stats
    credentials = runtime.credentials
    values = _counted(stats, family.source)
    # The credentials cache keeps plain attributes (it predates stats); fold them in here.
    if family.name == "cache_hits_total":
        values = _plus(values, {("credentials",): float(credentials.hits)})
    elif family.name == "cache_misses_total":
        values = _plus(values, {("credentials",): float(credentials.misses)})
    elif family.name == "cache_operations_total":
        lookups = {
            ("credentials",): float(credentials.hits + credentials.misses),
            ("channel",): sum(_counted(stats, "cache_hits").values())
            + sum(_counted(stats, "cache_misses").values()),
        }
        values = _plus(values, lookups)
    return values


def _histogram_samples(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        cumulative += count
        buckets.append((floatToGoString(bound), float(cumulative)))
    cumulative += histogram.counts[-1]
    buckets.append(("+Inf", float(cumulative)))
    return buckets, histogram.sum


def _family(
    family: Family, prefix: str, runtime: Runtime | None, live: Callable[[], LiveState] | None
) -> Metric:
    name = prefix + family.name
    labels = list(family.labels)
    width = len(labels)
    if family.type == "histogram":
        metric = HistogramMetricFamily(name, family.help, labels=labels)
        if runtime is None:
            return metric
        assert family.source is not None
        series = dict(runtime.stats.histograms.get(family.source, {}))
        if not labels and () not in series:
            series[()] = Histogram(BUCKETS[family.unit])
        for key, histogram in series.items():
            if len(key) == width:
                buckets, total = _histogram_samples(histogram)
                metric.add_metric(list(key), buckets, total)
        return metric
    if family.type == "counter":
        metric = CounterMetricFamily(name, family.help, labels=labels)
        values = _counter_values(runtime, family) if runtime is not None else {}
        if not labels and runtime is not None:
            values.setdefault((), 0.0)
    else:
        metric = GaugeMetricFamily(name, family.help, labels=labels)
        values = _live_values(family, live()) if live is not None else {}
    for key, value in sorted(values.items()):
        if len(key) == width:  # a mis-shaped key is a bug caught by tests, never a failed scrape
            metric.add_metric(list(key), value)
    return metric


class RealtimeCollector(Collector):
    """The catalogue's families with the configured prefix."""

    def collect(self) -> Iterator[Metric]:
        """Every catalogue family under ``PREFIX``: counters and histograms from the runtime's ``Stats``,
        gauges from one ``LiveState`` per scrape. Gets (or builds) the process' runtime.
        """
        prefix = get_settings().PREFIX
        runtime = get_runtime()
        cached: list[LiveState] = []

        def live() -> LiveState:
            if not cached:
                cached.append(LiveState(runtime))
            return cached[0]

        for family in FAMILIES:
            yield _family(family, prefix, runtime, live)

    def describe(self) -> Iterable[Metric]:
        """The families without samples, for registration; never builds the runtime."""
        # Names only: registering must not build the runtime (AppConfig.ready() does no I/O).
        prefix = get_settings().PREFIX
        return [_family(family, prefix, None, None) for family in FAMILIES]


class SoketiCompatCollector(Collector):
    """soketi's ten core families from the same counters, labelled app_id and port (METRICS_COMPAT)."""

    def collect(self) -> Iterator[Metric]:
        """soketi's ten families under ``COMPAT_PREFIX`` when ``COMPAT`` is ``"soketi"`` (else none),
        labelled ``app_id`` and ``port`` (the public port, empty when not known).
        """
        conf = get_settings()
        if conf.COMPAT != "soketi":
            return
        runtime = get_runtime()
        stats = runtime.stats
        public = runtime.listening.get("public")
        port = str(public[1]) if public is not None else ""
        connected = LiveState(runtime).connections
        established = _counted(stats, "connection_established")
        values: dict[str, Series] = {
            "connected": {key: float(count) for key, count in connected.items()},
            # Disconnections of established connections: so that connected = new - disconnected.
            "new_disconnections_total": {
                key: max(0.0, total - connected.get(key, 0)) for key, total in established.items()
            },
            "new_connections_total": established,
            "socket_received_bytes": _counted(stats, "socket_received_bytes"),
            "socket_transmitted_bytes": _counted(stats, "socket_transmitted_bytes"),
            "ws_messages_received_total": _counted(stats, "messages_received"),
            "ws_messages_sent_total": _counted(stats, "messages_sent"),
            "http_received_bytes": _counted(stats, "http_received_bytes"),
            "http_transmitted_bytes": _counted(stats, "http_transmitted_bytes"),
            "http_calls_received_total": _counted(stats, "http_calls_received"),
        }
        for family in SOKETI:
            yield _compat_family(
                conf.COMPAT_PREFIX + family.name, family.type, family.help, values[family.name], port
            )

    def describe(self) -> Iterable[Metric]:
        """The compat families without samples; none when compat is off or its prefix clashes with
        ``PREFIX`` (check metrics.E006 reports that).
        """
        conf = get_settings()
        if conf.COMPAT != "soketi" or conf.COMPAT_PREFIX == conf.PREFIX:
            return []  # a clash of prefixes is reported by check metrics.E006, not by a crash here
        return [_compat_family(conf.COMPAT_PREFIX + f.name, f.type, f.help, {}, "") for f in SOKETI]


def _compat_family(name: str, kind: str, help: str, series: Series, port: str) -> Metric:
    labels = list(SOKETI_LABELS)
    metric: Metric
    if kind == "gauge":
        metric = GaugeMetricFamily(name, help, labels=labels)
    elif kind == "counter":
        metric = CounterMetricFamily(name, help, labels=labels)
    else:
        metric = Metric(name, help, "unknown")
    for key, value in sorted(series.items()):
        if len(key) != 1 or not key[0]:
            continue  # only connections of known apps
        if kind == "untyped":
            metric.add_sample(name, {"app_id": key[0], "port": port}, value)
        else:
            metric.add_metric([key[0], port], value)  # type: ignore[attr-defined]
    return metric
