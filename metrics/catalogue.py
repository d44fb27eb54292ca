"""The metrics catalogue: one definition per family, from which exposition and docs follow.

Every family Realtime exposes is declared here once: its name after the prefix, its type, its
labels (bounded sets only: docs/architecture.md, "Metrics") and where its values come from. A
family is either *counted* (``source`` names a counter or histogram in ``realtime.stats``, updated
on the hot path) or *live* (``source`` is None: read from the node's in-memory state at scrape
time, so it cannot drift).
The README's metric table is checked against this list by ``tests/metrics``; a family with nothing
counted yet is still exposed, with its HELP and TYPE and no series (or a zero series when it has no
labels), so dashboards and alert rules can name it from the first scrape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: ``name`` after the prefix, ``type``, ``labels`` (bounded sets only), ``help``,
    ``source`` (the ``realtime.stats`` name; None for a live level) and a histogram's bucket ``unit``.
    Raises ValueError for a counter not named ``*_total`` or a histogram not in seconds or bytes.
    """

    name: str  # after the prefix; counters end in _total, units are seconds and bytes
    type: Kind
    labels: tuple[str, ...]
    help: str
    source: str | None = None  # the realtime.stats name, None for a live level
    unit: Literal["seconds", "bytes"] = "seconds"  # histograms: which bucket bounds

    def __post_init__(self) -> None:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must end in _total")
        if self.type == "histogram" and not self.name.endswith(("_seconds", "_bytes")):
            raise ValueError(f"histogram {self.name} must be in seconds or bytes")


def _counter(name: str, labels: tuple[str, ...], help: str, source: str) -> Family:
    return Family(name, "counter", labels, help, source)


def _histogram(name: str, labels: tuple[str, ...], help: str, source: str) -> Family:
    unit: Literal["seconds", "bytes"] = "bytes" if name.endswith("_bytes") else "seconds"
    return Family(name, "histogram", labels, help, source, unit)


def _gauge(name: str, labels: tuple[str, ...], help: str) -> Family:
    return Family(name, "gauge", labels, help)


APP = ("app_id",)

FAMILIES: tuple[Family, ...] = (
    # Connections
    _gauge("active_connections", APP, "Open WebSocket connections on this node."),
    _counter(
        "connection_established_total", APP, "WebSocket handshakes completed.", "connection_established"
    ),
    _counter(
        "connection_closed_total",
        ("app_id", "code"),
        "Closed WebSocket connections by close code (known codes, else other).",
        "connection_closed",
    ),
    _counter(
        "connection_errors_total",
        ("app_id", "reason"),
        "Refused or failed connections (unknown_app, app_disabled, over_quota, bad_protocol, origin, ...).",
        "connection_errors",
    ),
    # Frames and bytes
    _counter("messages_received_total", APP, "WebSocket frames received from clients.", "messages_received"),
    _counter("messages_sent_total", APP, "WebSocket frames sent to clients.", "messages_sent"),
    _counter(
        "socket_received_bytes_total", APP, "WebSocket payload bytes received.", "socket_received_bytes"
    ),
    _counter(
        "socket_transmitted_bytes_total",
        APP,
        "WebSocket payload bytes sent.",
        "socket_transmitted_bytes",
    ),
    _counter(
        "broadcast_messages_total",
        ("app_id", "channel_type"),
        "Events published through the HTTP API, once per channel.",
        "broadcast_messages",
    ),
    _counter("client_events_total", APP, "Client events relayed.", "client_events"),
    _histogram(
        "message_processing_duration_seconds",
        ("kind",),
        "Time to handle one inbound frame (kind=frame) or one HTTP API publish fan-out (kind=publish).",
        "message_processing_duration",
    ),
    _histogram(
        "message_size_bytes",
        ("direction",),
        "Inbound frame sizes (in) and published event data sizes (out).",
        "message_size",
    ),
    _histogram(
        "heartbeat_rtt_seconds", (), "Server pusher:ping to client pusher:pong round trip.", "heartbeat_rtt"
    ),
    # HTTP API
    _counter(
        "http_requests_total",
        ("method", "endpoint", "status"),
        "HTTP API requests by route name and status.",
        "http_requests",
    ),
    _histogram(
        "http_request_duration_seconds",
        ("method", "endpoint"),
        "HTTP API request latency.",
        "http_request_duration",
    ),
    _histogram(
        "http_response_size_bytes", ("endpoint",), "HTTP API response body sizes.", "http_response_size"
    ),
    _counter("http_errors_total", ("endpoint", "status"), "HTTP API 4xx and 5xx answers.", "http_errors"),
    _counter(
        "api_authentication_failures_total",
        ("app_id", "reason"),
        "HTTP API requests refused by authentication (bad signature, stale timestamp, unknown app, ...).",
        "api_authentication_failures",
    ),
    _counter(
        "authentication_failures_total",
        ("app_id", "kind"),
        "Failed private/presence channel authorizations (kind=channel) and sign-ins (kind=signin).",
        "authentication_failures",
    ),
    # Channels and presence
    _gauge(
        "active_channels",
        ("app_id", "channel_type"),
        "Channels with at least one subscriber on this node.",
    ),
    _counter(
        "channel_subscriptions_total",
        ("app_id", "channel_type"),
        "Successful channel subscriptions.",
        "channel_subscriptions",
    ),
    _counter(
        "channel_unsubscriptions_total",
        ("app_id", "channel_type"),
        "Channel unsubscriptions, explicit or by disconnection.",
        "channel_unsubscriptions",
    ),
    _gauge(
        "presence_members", APP, "Distinct members of presence channels on this node, summed over channels."
    ),
    _counter(
        "presence_events_total",
        ("app_id", "event"),
        "Presence member_added and member_removed events.",
        "presence_events",
    ),
    # Rate limiting
    _counter(
        "rate_limit_checks_total",
        ("app_id", "limiter", "result"),
        "Rate limiter decisions (result=allowed or rejected) where a limit is set.",
        "rate_limit_checks",
    ),
    _counter(
        "rate_limit_triggered_total",
        ("app_id", "limiter"),
        "Requests and client events rejected by a rate limit.",
        "rate_limit_triggered",
    ),
    # Background queue (webhook deliveries)
    _gauge("queue_active_jobs", ("queue",), "Jobs queued or in flight now."),
    _gauge(
        "queue_oldest_job_age_seconds",
        ("queue",),
        "Age of the oldest job not done yet (webhooks: the oldest pending delivery, cluster-wide).",
    ),
    _counter("queue_jobs_added_total", ("queue",), "Jobs queued.", "queue_jobs_added"),
    _counter(
        "queue_jobs_processed_total", ("queue",), "Jobs completed successfully.", "queue_jobs_processed"
    ),
    _counter("queue_jobs_failed_total", ("queue",), "Jobs that failed for good.", "queue_jobs_failed"),
    _histogram(
        "queue_job_duration_seconds",
        ("queue",),
        "Time from a job's start to its success.",
        "queue_job_duration",
    ),
    # Webhooks
    _counter("webhooks_sent_total", ("app_id", "event"), "Webhooks delivered (2xx).", "webhooks_sent"),
    _counter(
        "webhooks_failed_total",
        ("app_id", "event"),
        "Webhooks given up after retrying for the retry window.",
        "webhooks_failed",
    ),
    _counter("webhook_retries_total", ("app_id", "event"), "Webhook delivery retries.", "webhook_retries"),
    _histogram(
        "webhook_duration_seconds", (), "One webhook delivery attempt, round trip.", "webhook_duration"
    ),
    # Caches
    _counter(
        "cache_hits_total",
        ("cache",),
        "Cache hits: app credentials (cache=credentials) and cache channels (cache=channel).",
        "cache_hits",
    ),
    _counter("cache_misses_total", ("cache",), "Cache misses.", "cache_misses"),
    _counter("cache_operations_total", ("cache",), "Cache lookups and writes.", "cache_writes"),
    _gauge("cache_memory_usage_bytes", ("cache",), "Payload bytes held by the cache (approximate)."),
    # Cross-node adapter (Redis)
    _counter(
        "adapter_operations_total",
        ("operation",),
        "Cross-node publish and state operations.",
        "adapter_operations",
    ),
    _counter("adapter_errors_total", ("operation",), "Failed cross-node operations.", "adapter_errors"),
    _histogram("adapter_latency_seconds", ("operation",), "Cross-node operation latency.", "adapter_latency"),
    _histogram(
        "adapter_message_size_bytes",
        (),
        "Sizes of messages published to other nodes.",
        "adapter_message_size",
    ),
    # Errors and the process
    _counter("errors_total", ("type",), "Internal errors by where they happened.", "errors"),
    _counter(
        "websocket_errors_total",
        ("type",),
        "WebSocket protocol errors (binary_frame, slow_consumer, ...).",
        "websocket_errors",
    ),
    _gauge("build_info", ("version", "python_version"), "Build information; always 1."),
    _gauge(
        "accepting_connections",
        (),
        "1 while the node accepts connections, 0 while it drains or its memory gate is closed.",
    ),
    _gauge(
        "memory_gate_closed",
        (),
        "1 while the process' RSS keeps new sockets out (past MEMORY_LIMIT_MB, until MEMORY_RESUME_MB).",
    ),
)

BY_NAME: dict[str, Family] = {family.name: family for family in FAMILIES}
BY_SOURCE: dict[str, Family] = {family.source: family for family in FAMILIES if family.source}


@dataclass(frozen=True, slots=True)
class CompatFamily:
    """One of soketi's families: ``name`` after the compat prefix as soketi spells it, ``type``
    (``"untyped"`` for its byte counters) and ``help``; labelled ``app_id`` and ``port``.
    """

    name: str  # after the compat prefix, exactly as soketi names it
    type: Literal["counter", "gauge", "untyped"]
    help: str


# soketi's ten core families (src/metrics/prometheus-metrics-driver.ts), labels app_id and port.
# soketi declares its byte counters without _total; they are exposed untyped under the same names
# so that existing soketi dashboards (rate(), increase()) keep working unchanged.
SOKETI: tuple[CompatFamily, ...] = (
    CompatFamily("connected", "gauge", "The number of currently connected sockets."),
    CompatFamily("new_connections_total", "counter", "Total amount of connection requests."),
    CompatFamily("new_disconnections_total", "counter", "Total amount of disconnections."),
    CompatFamily("socket_received_bytes", "untyped", "Total amount of bytes received from sockets."),
    CompatFamily("socket_transmitted_bytes", "untyped", "Total amount of bytes transmitted to sockets."),
    CompatFamily("ws_messages_received_total", "counter", "Total WS messages received from connections."),
    CompatFamily("ws_messages_sent_total", "counter", "Total WS messages sent to connections."),
    CompatFamily("http_received_bytes", "untyped", "Total amount of bytes the REST API received."),
    CompatFamily("http_transmitted_bytes", "untyped", "Total amount of bytes the REST API sent back."),
    CompatFamily("http_calls_received_total", "counter", "Total amount of received REST API calls."),
)
SOKETI_LABELS = ("app_id", "port")
