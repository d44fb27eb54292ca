"""In-process cache of apps by key and by id: the only database access on the hot path.

Entries are dropped when an App or Webhook is saved or deleted (``signals.py``) and read again
every ``CREDENTIALS_TTL`` seconds (``reload``), and unknown keys are remembered for a few seconds
so that a flood of bad keys cannot reach the database.
The one cache of a process belongs to its runtime (``realtime.runtime``).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass

from channels.db import database_sync_to_async

from .protocol.signatures import verify_token


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One webhook of an app: its row ``id``, where to POST, which events, extra headers, the
    channel-name filter."""

    id: int
    url: str
    event_types: frozenset[str]
    headers: tuple[tuple[str, str], ...]
    filter_prefix: str
    filter_suffix: str

    def wants(self, event: str, channel: str) -> bool:
        """Whether the event ``event`` on ``channel`` passes this webhook's event types and filter."""
        return (
            event in self.event_types
            and channel.startswith(self.filter_prefix)
            and channel.endswith(self.filter_suffix)
        )


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """An app as the hot path sees it: an immutable snapshot of its row and webhooks."""

    id: str
    key: str
    secret: str
    name: str
    enabled: bool
    enable_client_messages: bool
    enable_user_authentication: bool
    user_authentication_timeout: int
    enable_subscription_count: bool
    enable_watchlist_events: bool
    enable_cache_channels: bool
    allowed_origins: tuple[str, ...]
    max_connections: int | None
    max_connections_per_user: int | None
    user_connections_policy: str
    max_backend_events_per_second: int | None
    max_client_events_per_second: int | None
    max_read_requests_per_second: int | None
    max_presence_members_per_channel: int | None
    max_presence_member_size_kb: int
    max_event_payload_kb: int
    max_event_channels_at_once: int
    max_event_batch_size: int
    max_channel_name_length: int
    webhooks: tuple[WebhookTarget, ...]
    # More (key, secret) pairs valid alongside ``key``/``secret``, oldest first.
    extra_pairs: tuple[tuple[str, str], ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key of the app: its own, then the additional ones."""
        return (self.key, *(key for key, _ in self.extra_pairs))

    def secret_for(self, key: str) -> str | None:
        """The secret paired with ``key``, or None when ``key`` is not one of the app's."""
        if hmac.compare_digest(key.encode("utf-8", "replace"), self.key.encode()):
            return self.secret
        for extra_key, secret in self.extra_pairs:
            if hmac.compare_digest(key.encode("utf-8", "replace"), extra_key.encode()):
                return secret
        return None

    def verify_token(self, token: object, string_to_sign: str) -> bool:
        """Check a ``"<key>:<hex>"`` channel or user authentication token against whichever of
        the app's pairs its key names (auth-signatures reference)."""
        if not isinstance(token, str):
            return False
        key = token.partition(":")[0]
        secret = self.secret_for(key)
        return secret is not None and verify_token(key, secret, token, string_to_sign)

    @property
    def signing_pair(self) -> tuple[str, str]:
        """``(key, secret)`` that webhooks are signed with: the newest pair."""
        return self.extra_pairs[-1] if self.extra_pairs else (self.key, self.secret)

    def __repr__(self) -> str:
        # Never let the secret reach a log line or a traceback.
        return f"AppCredentials(id={self.id!r}, key={self.key!r})"


def _snapshot(app) -> AppCredentials:  # type: ignore[no-untyped-def]
    return AppCredentials(
        id=app.id,
        key=app.key,
        secret=app.secret,
        name=app.name,
        enabled=app.enabled,
        enable_client_messages=app.enable_client_messages,
        enable_user_authentication=app.enable_user_authentication,
        user_authentication_timeout=app.user_authentication_timeout,
        enable_subscription_count=app.enable_subscription_count,
        enable_watchlist_events=app.enable_watchlist_events,
        enable_cache_channels=app.enable_cache_channels,
        allowed_origins=tuple(line.strip() for line in app.allowed_origins.splitlines() if line.strip()),
        max_connections=app.max_connections,
        max_connections_per_user=app.max_connections_per_user,
        user_connections_policy=app.user_connections_policy,
        max_backend_events_per_second=app.max_backend_events_per_second,
        max_client_events_per_second=app.max_client_events_per_second,
        max_read_requests_per_second=app.max_read_requests_per_second,
        max_presence_members_per_channel=app.max_presence_members_per_channel,
        max_presence_member_size_kb=app.max_presence_member_size_kb,
        max_event_payload_kb=app.max_event_payload_kb,
        max_event_channels_at_once=app.max_event_channels_at_once,
        max_event_batch_size=app.max_event_batch_size,
        max_channel_name_length=app.max_channel_name_length,
        webhooks=tuple(
            WebhookTarget(
                id=w.pk,
                url=w.url,
                event_types=frozenset(w.event_types or ()),
                headers=tuple((w.headers or {}).items()),
                filter_prefix=w.filter_prefix,
                filter_suffix=w.filter_suffix,
            )
            for w in app.webhooks.all()
        ),
        extra_pairs=tuple((pair.key, pair.secret) for pair in app.extra_keys.all()),
    )


def _load_many(app_ids: list[str]) -> dict[str, AppCredentials]:
    from .models import App

    apps = App.objects.prefetch_related("webhooks", "extra_keys").filter(id__in=app_ids)
    return {app.id: _snapshot(app) for app in apps}


def _load(field: str, value: str) -> AppCredentials | None:
    from .models import App

    apps = App.objects.prefetch_related("webhooks", "extra_keys")
    if field == "key":
        # An app's own key, or one of its additional keys (unique across both).
        app = apps.filter(key=value).first() or apps.filter(extra_keys__key=value).first()
    else:
        app = apps.filter(**{field: value}).first()
    return _snapshot(app) if app is not None else None


class CredentialsCache:
    """Apps by key and by id, loaded from the database once and kept until ``invalidate()`` or
    the next ``reload()``.

    ``negative_ttl`` (seconds): how long a key or id that matched no app is answered as missing
    without asking the database again.
    """

    def __init__(self, negative_ttl: float = 5.0) -> None:
        self.negative_ttl = negative_ttl
        self._by_key: dict[str, AppCredentials] = {}
        self._by_id: dict[str, AppCredentials] = {}
        self._missing: dict[tuple[str, str], float] = {}
        # One database load per key at a time: a burst of connections for an app that is not
        # cached yet (a restart, an admin save) waits for the same load instead of each querying.
        self._loading: dict[tuple[str, str], asyncio.Future[AppCredentials | None]] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0

    async def by_key(self, key: str) -> AppCredentials | None:
        """The app whose key is ``key``, or None."""
        return await self._get("key", key, self._by_key)

    async def by_id(self, app_id: str) -> AppCredentials | None:
        """The app whose id is ``app_id``, or None."""
        return await self._get("id", app_id, self._by_id)

    async def _get(self, field: str, value: str, index: dict[str, AppCredentials]) -> AppCredentials | None:
        app = index.get(value)
        if app is not None:
            self.hits += 1
            return app
        self.misses += 1
        missing_until = self._missing.get((field, value))
        if missing_until is not None and missing_until > time.monotonic():
            return None
        loading = self._loading.get((field, value))
        if loading is not None:
            return await asyncio.shield(loading)
        loading = self._loading[(field, value)] = asyncio.get_running_loop().create_future()
        generation = self._generation
        try:
            # Closes stale connections around the load: a restarted PostgreSQL must not break
            # every later lookup of this thread.
            app = await database_sync_to_async(_load)(field, value)
        except BaseException as exc:
            loading.set_exception(exc)
            loading.exception()  # retrieved here, so an unawaited failure is not reported twice
            raise
        finally:
            del self._loading[(field, value)]
        loading.set_result(app)
        # An invalidation while loading means the row may have changed: answer, don't cache.
        if generation != self._generation:
            return app
        if app is None:
            if len(self._missing) > 10_000:
                self._missing.clear()
            self._missing[(field, value)] = time.monotonic() + self.negative_ttl
            return None
        for key in app.keys:
            self._by_key[key] = app
        self._by_id[app.id] = app
        return app

    async def reload(self, app_ids: Iterable[str] = ()) -> dict[str, AppCredentials | None]:
        """Read ``app_ids`` and every cached app again from the database, in one query, and cache
        what was found (an app that is gone is dropped). Returns ``{app id: its snapshot now, or
        None once deleted}``; an unchanged app keeps its snapshot object, so ``is`` tells whether
        it changed. Raises what the database raises."""
        ids = sorted(set(app_ids) | set(self._by_id))
        self._generation += 1
        generation = self._generation
        loaded = await database_sync_to_async(_load_many)(ids) if ids else {}
        fresh: dict[str, AppCredentials | None] = {}
        for app_id in ids:
            old = self._by_id.get(app_id)
            new = loaded.get(app_id)
            fresh[app_id] = old if new is not None and new == old else new
        if generation == self._generation:  # else an invalidation came meanwhile: answer only
            for app_id, app in fresh.items():
                old = self._by_id.pop(app_id, None)
                if old is not None:
                    for key in old.keys:
                        if self._by_key.get(key) is old:
                            del self._by_key[key]
                if app is not None:
                    self._by_id[app_id] = app
                    for key in app.keys:
                        self._by_key[key] = app
            self._missing.clear()
        return fresh

    def cached(self) -> list[AppCredentials]:
        """The apps cached now (for the metrics' per-app zero series)."""
        return list(self._by_id.values())

    def invalidate(self) -> None:
        """Forget every app; a load already under way answers its callers but is not cached."""
        self._generation += 1
        self._by_key.clear()
        self._by_id.clear()
        self._missing.clear()
