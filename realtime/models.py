"""Apps (credentials, feature flags, per-app limits) and their webhooks, managed in the admin."""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models, transaction

from .protocol import limits

WEBHOOK_EVENT_TYPES = (
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
)

# What a sign-in past max_connections_per_user does (App.user_connections_policy).
REFUSE_NEWEST = "refuse_newest"
CLOSE_OLDEST = "close_oldest"

# Per-app limits, in the order the admin and realtime_createapp show them.
LIMIT_FIELDS = (
    "max_connections",
    "max_connections_per_user",
    "max_backend_events_per_second",
    "max_client_events_per_second",
    "max_read_requests_per_second",
    "max_presence_members_per_channel",
    "max_presence_member_size_kb",
    "max_event_payload_kb",
    "max_event_channels_at_once",
    "max_event_batch_size",
    "max_channel_name_length",
)

_token = RegexValidator(r"\A[A-Za-z0-9_.-]+\Z", "Letters, digits, '_', '.' and '-' only.")


def new_app_id() -> str:
    """A random 9-digit app id (100000000 to 999999999), as a str."""
    return str(secrets.randbelow(9 * 10**8) + 10**8)


def new_key() -> str:
    """A random app key: 20 lowercase hex characters."""
    return secrets.token_hex(10)


def new_secret() -> str:
    """A random app secret: 32 lowercase hex characters (128 bits)."""
    return secrets.token_hex(16)


def _limit(default: int | None, help_text: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        default=default,
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=help_text + " Empty means unlimited.",
    )


class App(models.Model):
    """A Pusher app: its credentials (``id``, ``key``, and ``secret``, never editable in forms), feature
    flags and per-app limits (``LIMIT_FIELDS``, defaults from ``protocol.limits``; None, where a
    field allows it, means unlimited).
    """

    id = models.CharField("app id", primary_key=True, max_length=64, default=new_app_id, validators=[_token])
    key = models.CharField(max_length=64, unique=True, default=new_key, validators=[_token])
    secret = models.CharField(max_length=128, default=new_secret, editable=False)
    name = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)

    enable_client_messages = models.BooleanField(
        "client events", default=False, help_text="Let clients send client-* events."
    )
    enable_user_authentication = models.BooleanField(
        "user authentication", default=False, help_text="Accept pusher:signin."
    )
    user_authentication_timeout = models.PositiveIntegerField(
        default=limits.USER_AUTHENTICATION_TIMEOUT_SECONDS,
        help_text="Seconds a connection may stay without signing in (close 4009). 0 disables it.",
    )
    enable_subscription_count = models.BooleanField(
        "subscription counting",
        default=False,
        help_text="Send pusher_internal:subscription_count and allow info=subscription_count.",
    )
    enable_watchlist_events = models.BooleanField("watchlist events", default=False)
    enable_cache_channels = models.BooleanField("cache channels", default=True)
    allowed_origins = models.TextField(
        blank=True,
        help_text="One origin per line (https://example.com, or *.example.com). Empty allows all.",
    )

    max_connections = _limit(None, "Concurrent connections.")
    max_connections_per_user = _limit(
        None, "Connections signed in as one user id at once (what happens beyond: the policy below)."
    )
    user_connections_policy = models.CharField(
        "beyond the per-user limit",
        max_length=16,
        choices=[
            (REFUSE_NEWEST, "refuse the new connection (4004)"),
            (CLOSE_OLDEST, "close the user's oldest connection (4009)"),
        ],
        default=REFUSE_NEWEST,
    )
    max_backend_events_per_second = _limit(None, "Events published through the HTTP API per second.")
    max_client_events_per_second = _limit(
        limits.MAX_CLIENT_EVENTS_PER_SECOND, "Client events per connection per second."
    )
    max_read_requests_per_second = _limit(None, "HTTP API read requests per second.")
    max_presence_members_per_channel = _limit(limits.MAX_PRESENCE_MEMBERS, "Presence members.")
    max_presence_member_size_kb = models.PositiveIntegerField(
        default=limits.MAX_PRESENCE_MEMBER_SIZE_KB, validators=[MinValueValidator(1)]
    )
    max_event_payload_kb = models.PositiveIntegerField(
        default=limits.MAX_EVENT_PAYLOAD_KB, validators=[MinValueValidator(1)]
    )
    max_event_channels_at_once = models.PositiveIntegerField(
        default=limits.MAX_CHANNELS_PER_EVENT, validators=[MinValueValidator(1)]
    )
    max_event_batch_size = models.PositiveIntegerField(
        default=limits.MAX_BATCH_SIZE, validators=[MinValueValidator(1)]
    )
    max_channel_name_length = models.PositiveIntegerField(
        default=limits.MAX_CHANNEL_NAME_LENGTH, validators=[MinValueValidator(1)]
    )

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name or self.id

    def add_key(self) -> AppKey:
        """A new random key pair for this app, saved, valid alongside the others."""
        while True:
            key = new_key()
            if not App.objects.filter(key=key).exists():
                return AppKey.objects.create(app=self, key=key)

    def regenerate_secret(self) -> str:
        """Replace the secret with a new random one, save ``secret`` and ``updated`` only, and return it."""
        self.secret = new_secret()
        self.save(update_fields=["secret", "updated"])
        return self.secret


class AppKey(models.Model):
    """One more key and secret of an app, valid alongside the app's own (``App.key``/``secret``):
    the overlap that lets clients and backends move to a new pair before the old one is revoked.
    Deleting the row revokes the pair. Webhooks are signed with the newest pair.
    """

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="extra_keys")
    key = models.CharField(max_length=64, unique=True, default=new_key, validators=[_token])
    secret = models.CharField(max_length=128, default=new_secret, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = "additional key"

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        """Raises ``ValidationError`` when ``key`` is another app's (or this app's own) main key."""
        if App.objects.filter(key=self.key).exists():
            raise ValidationError({"key": "This key is already an app's key."})


def revoke_key(app: App, key: str) -> None:
    """Revoke the pair whose key is ``key``: an additional pair is deleted; the app's own is replaced
    by its newest additional pair (which then stops being additional). Raises ``ValueError`` when
    ``key`` is not one of the app's or is its only pair."""
    extra = list(app.extra_keys.all())
    if key != app.key:
        match = [pair for pair in extra if pair.key == key]
        if not match:
            raise ValueError(f"{key!r} is not a key of app {app.id}")
        match[0].delete()
        return
    if not extra:
        raise ValueError(f"{key!r} is app {app.id}'s only key: add another before revoking it")
    newest = extra[-1]
    with transaction.atomic():
        newest.delete()
        app.key, app.secret = newest.key, newest.secret
        app.save(update_fields=["key", "secret", "updated"])


class Webhook(models.Model):
    """Where an app's webhooks go: ``url`` receives the ``event_types`` (``WEBHOOK_EVENT_TYPES``) of
    channels whose names start with ``filter_prefix`` and end with ``filter_suffix`` (empty: any),
    with the extra ``headers``.

    https://pusher.com/docs/channels/server_api/webhooks/
    """

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    event_types = models.JSONField(
        default=list, help_text=f"A JSON list of: {', '.join(WEBHOOK_EVENT_TYPES)}."
    )
    headers = models.JSONField(default=dict, blank=True, help_text="Extra HTTP headers, a JSON object.")
    filter_prefix = models.CharField("channel name starts with", max_length=200, blank=True)
    filter_suffix = models.CharField("channel name ends with", max_length=200, blank=True)

    def __str__(self) -> str:
        return self.url

    def clean(self) -> None:
        """Turn emptied ``headers`` into ``{}``. Raises ``ValidationError`` unless ``event_types`` is a
        non-empty list of ``WEBHOOK_EVENT_TYPES`` and ``headers`` a JSON object of strings.
        """
        if self.headers is None:  # an emptied "headers" box in the admin means no extra headers
            self.headers = {}
        if not isinstance(self.event_types, list) or not self.event_types:
            raise ValidationError({"event_types": "Give a non-empty list of event types."})
        unknown = [e for e in self.event_types if e not in WEBHOOK_EVENT_TYPES]
        if unknown:
            raise ValidationError({"event_types": f"Unknown event types: {', '.join(map(str, unknown))}."})
        if not isinstance(self.headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise ValidationError({"headers": "Give a JSON object of string headers."})


class WebhookDelivery(models.Model):
    """One webhook request: a batch of one app's events for one of its webhooks, kept until delivered
    or given up, then for ``WEBHOOK_LOG_DAYS`` as the delivery log.

    The row is the outbox: it is committed before the first attempt and is delivered at least once,
    by whichever node holds its lease (``lease_owner`` until ``lease_until``). ``id`` is sent as the
    ``X-Realtime-Delivery-Id`` header, the same on every attempt. ``body`` is the exact JSON sent
    (``{"time_ms", "events"}``); it is signed with the app's current secret when sent, and holds no
    secret itself.
    """

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    STATUSES = ((PENDING, "pending"), (DELIVERED, "delivered"), (FAILED, "failed"))

    id = models.UUIDField(primary_key=True)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="deliveries")
    # The log outlives a deleted webhook; its pending deliveries are then recorded as failed.
    webhook = models.ForeignKey(
        Webhook, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    url = models.CharField(max_length=500)
    event_names = models.CharField(max_length=200, help_text="The events in the body, in order, once each.")
    event_count = models.PositiveIntegerField()
    body = models.TextField()
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status = models.PositiveIntegerField(
        null=True, blank=True, help_text="HTTP status of the last attempt (empty: no response)."
    )
    last_error = models.CharField(max_length=300, blank=True)
    created = models.DateTimeField()
    next_attempt = models.DateTimeField()
    retry_until = models.DateTimeField()
    delivered = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=120, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        ordering = ("-created",)
        indexes = (
            models.Index(fields=("status", "next_attempt"), name="realtime_delivery_due"),
            models.Index(fields=("created",), name="realtime_delivery_created"),
            # The admin's pending and failed counts per app.
            models.Index(fields=("app", "status"), name="realtime_delivery_app_status"),
        )

    def __str__(self) -> str:
        return f"{self.event_names} → {self.url}"
