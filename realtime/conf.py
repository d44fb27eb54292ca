"""The ``REALTIME`` settings dict: every default of the reusable app, defined once, here.

Read lazily and cached until settings change (``override_settings`` works in tests). A project
sets only what it changes; ``project/settings.py`` maps environment variables onto these keys.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .protocol import limits


@dataclass(frozen=True, slots=True)
class RealtimeSettings:
    """The typed ``REALTIME`` settings; units are seconds, bytes and counts as the names say."""

    # Where ``realtime_serve`` listens for the public site.
    HOST: str = "0.0.0.0"  # noqa: S104 (the public endpoint)
    PORT: int = 6001
    WORKERS: int = 1
    # PEM files for TLS on realtime_serve's public port (wss://, https://): the certificate, its
    # key without a passphrase, and the intermediate certificates. Unset: plain ws:// and http://.
    SSL_CERT: str = ""
    SSL_KEY: str = ""
    SSL_CHAIN: str = ""
    ACTIVITY_TIMEOUT: int = limits.ACTIVITY_TIMEOUT_SECONDS
    PONG_TIMEOUT: int = limits.PONG_TIMEOUT_SECONDS
    MAX_CLIENT_FRAME_BYTES: int = limits.MAX_CLIENT_FRAME_BYTES
    CACHE_TTL: int = limits.CACHE_TTL_SECONDS
    # Lowest protocol version accepted; 1-3 are no longer supported by Pusher.
    MIN_PROTOCOL: int = 4
    MAX_PROTOCOL: int = 7
    # Credentials of unknown keys are remembered as missing this long, so a flood of
    # bad keys cannot hammer the database.
    CREDENTIALS_NEGATIVE_TTL: float = 5.0
    # Every this many seconds the apps a process holds (cached, or with open sockets) are read
    # again from the database: a change that no invalidation reached (another process without
    # Redis, a missed bus message) applies by then, to open sockets too.
    CREDENTIALS_TTL: float = 5.0
    # "memory" (one node, no services) or "redis" (several nodes sharing REDIS_URL).
    STATE_BACKEND: str = "memory"
    REDIS_URL: str = ""
    REDIS_PREFIX: str = "realtime"
    REDIS_MAX_CONNECTIONS: int = 200
    # Connect, read and pool-wait timeout of Redis calls: a stalled Redis counts as down after it.
    REDIS_SOCKET_TIMEOUT: float = 5.0
    # Heartbeat period (at most DEAD_NODE_TIMEOUT / 3); a node silent for DEAD_NODE_TIMEOUT
    # is reaped by the survivors, with member_removed for its presence members.
    NODE_HEARTBEAT_SECONDS: float = 5.0
    DEAD_NODE_TIMEOUT: float = 30.0
    SHUTDOWN_GRACE_SECONDS: float = 10.0
    # Past this much resident memory (MiB) the node refuses new sockets (4100) and /ready answers
    # 503 until RSS is below MEMORY_RESUME_MB (default 90 % of the limit). None: no limit.
    MEMORY_LIMIT_MB: float | None = None
    MEMORY_RESUME_MB: float | None = None
    # Close frames are spread over this window on shutdown so clients don't reconnect at once.
    SHUTDOWN_JITTER_SECONDS: float = 1.0
    # Webhooks: each request times out after WEBHOOK_TIMEOUT; a batch is retried with backoff for
    # WEBHOOK_RETRY_SECONDS after it was made, then recorded as failed. channel_vacated and
    # member_removed wait WEBHOOK_DELAY_SECONDS (a quick reconnect sends neither).
    WEBHOOK_TIMEOUT: float = 5.0
    WEBHOOK_RETRY_SECONDS: float = 300.0
    WEBHOOK_DELAY_SECONDS: float = 3.0
    # An app's events for one webhook are batched for this long (and at most this many per request),
    # then committed to the outbox together: the window within which an event is durable.
    WEBHOOK_BATCH_SECONDS: float = 0.05
    WEBHOOK_BATCH_SIZE: int = 100
    # Requests in flight to one webhook URL at most (lanes of several apps sharing the URL).
    WEBHOOK_CONCURRENCY_PER_URL: int = 4
    # "server": every server process delivers (nothing else to run); "external": servers only
    # commit to the outbox and ``manage.py realtime_webhooks`` processes deliver.
    WEBHOOK_WORKER: str = "server"
    # A worker holds a delivery this long without renewing; after a crash, another (or the
    # restarted) process takes it over once it runs out.
    WEBHOOK_LEASE_SECONDS: float = 30.0
    # How often a worker looks in the outbox for due deliveries (retries, other processes' leftovers).
    WEBHOOK_POLL_SECONDS: float = 1.0
    # Delivered and failed deliveries are kept in the log (the admin) this many days.
    WEBHOOK_LOG_DAYS: float = 7.0
    # A socket whose unsent output grows past this is a slow consumer and is dropped.
    MAX_SOCKET_BUFFER_BYTES: int = 4 * 1024 * 1024
    # Under realtime_serve: a request (or a WebSocket upgrade request) must arrive whole this many
    # seconds after its first byte, and at most this many connections may be in the middle of one.
    REQUEST_TIMEOUT: float = 10.0
    MAX_PENDING_CONNECTIONS: int = 1024
    # Addresses or CIDRs of the reverse proxies whose forwarding headers count (daphne's
    # Daphne-Root-Path); from anyone else they are ignored.
    TRUSTED_PROXIES: tuple[str, ...] = ()
    # The header those proxies put the client's address in: "X-Forwarded-For" or "Forwarded".
    FORWARDED_HEADER: str = "X-Forwarded-For"
    # New WebSocket connections and HTTP API requests per minute from one client address (an IPv6
    # client's /64); beyond them 4100 and 429. None: no limit. Cluster-wide with Redis.
    IP_CONNECTIONS_PER_MINUTE: int | None = None
    IP_API_REQUESTS_PER_MINUTE: int | None = None
    # Prepended to every public path Realtime answers (``/app/{key}``, ``/apps/...``, ``/users/...``,
    # ``/health``, ``/ready``), for host projects whose own URLs already use them. "" or "/pusher".
    PATH_PREFIX: str = ""
    # An app created or updated from these fields whenever the runtime starts (field -> value,
    # as the App model names them; missing fields take the model's defaults).
    DEFAULT_APP: dict[str, Any] | None = field(default=None)


KNOWN_KEYS = frozenset(f.name for f in fields(RealtimeSettings))


@functools.cache
def get_settings() -> RealtimeSettings:
    """The current ``REALTIME`` settings over the defaults (unknown keys are check realtime.E002)."""
    user = getattr(settings, "REALTIME", {}) or {}
    return RealtimeSettings(**{k: v for k, v in user.items() if k in KNOWN_KEYS})


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME":
        get_settings.cache_clear()
