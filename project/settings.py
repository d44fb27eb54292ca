"""Settings of the standalone deployment: the only place that reads ``os.environ``.

Environment names follow what operators of soketi and sockudo already know (``PORT``,
``METRICS_PORT``, ``REDIS_URL``, ``DEFAULT_APP_KEY``, ...) and are mapped here onto the
``REALTIME`` and ``REALTIME_METRICS`` dicts that the reusable apps read.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("REALTIME_DATA_DIR", BASE_DIR / "var"))


# Environment variables that are unset (or empty) leave a setting to the app's own default
# (``realtime/conf.py``, ``metrics/conf.py``, the App model): defaults live there, once.
UNSET: Any = object()


def env_bool(name: str) -> Any:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return UNSET
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, *, minimum: int | None = None) -> Any:
    value = os.environ.get(name, "").strip()
    if not value:
        return UNSET
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def env_float(name: str) -> Any:
    value = os.environ.get(name, "").strip()
    if not value:
        return UNSET
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_str(name: str) -> Any:
    value = os.environ.get(name, "")
    return value if value.strip() else UNSET


def env_limit(name: str, *, unlimited: bool) -> Any:
    """A per-app limit: -1 (soketi's convention) and 0 mean unlimited where it may be absent."""
    number = env_int(name)
    if number is UNSET:
        return UNSET
    if number <= 0:
        if unlimited:
            return None
        raise ImproperlyConfigured(f"{name} must be a positive integer")
    return number


def _list(value: Any) -> Any:
    """A comma-separated variable as a tuple of its non-empty items."""
    return value if value is UNSET else tuple(item.strip() for item in value.split(",") if item.strip())


def given(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the settings the environment left unset."""
    return {key: value for key, value in values.items() if value is not UNSET}


def _secret_key() -> str:
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG") is True
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "*").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "realtime",
    "metrics",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The admin's CSS and JS, served by the same process: no separate static file server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_default_db = f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL") or _default_db)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.sqlite3"
    # WAL: the webhook outbox's writes never block readers (the admin, credentials lookups); with
    # synchronous=NORMAL a commit survives the process being killed (not a power cut) without an
    # fsync per commit. A writer waits up to 20 s for another process' write instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", "timeout": 20}
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# Serve straight from the apps' static folders, so no collectstatic step is needed.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)


def _webhooks(raw: str) -> Any:
    if not raw.strip():
        return UNSET
    try:
        webhooks = json.loads(raw)
    except ValueError:
        raise ImproperlyConfigured("DEFAULT_APP_WEBHOOKS must be a JSON list") from None
    if not isinstance(webhooks, list) or not all(
        isinstance(hook, dict)
        and isinstance(hook.get("url"), str)
        and isinstance(hook.get("filter") or {}, dict)
        and isinstance(hook.get("event_types", []), list)
        for hook in webhooks
    ):
        raise ImproperlyConfigured(
            'DEFAULT_APP_WEBHOOKS must be a JSON list of objects with a "url", '
            'an "event_types" list and optionally a "filter" object'
        )
    return webhooks


# Per-app limits of the default app: (may be unlimited, soketi's name for the variable).
_DEFAULT_APP_LIMITS: dict[str, tuple[bool, str | None]] = {
    "max_connections": (True, None),
    "max_connections_per_user": (True, None),
    "max_backend_events_per_second": (True, "DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC"),
    "max_client_events_per_second": (True, "DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC"),
    "max_read_requests_per_second": (True, "DEFAULT_APP_MAX_READ_REQ_PER_SEC"),
    "max_presence_members_per_channel": (True, None),
    "max_presence_member_size_kb": (False, "DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB"),
    "max_event_payload_kb": (False, "DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB"),
    "max_event_channels_at_once": (False, None),
    "max_event_batch_size": (False, None),
    "max_channel_name_length": (False, None),
}


def _default_app() -> dict[str, Any] | None:
    app_id = os.environ.get("DEFAULT_APP_ID", "").strip()
    if not app_id:
        return None
    origins = env_str("DEFAULT_APP_ALLOWED_ORIGINS")
    app = {
        "id": app_id,
        "key": env_str("DEFAULT_APP_KEY"),
        "secret": env_str("DEFAULT_APP_SECRET"),
        "name": env_str("DEFAULT_APP_NAME"),
        "enabled": env_bool("DEFAULT_APP_ENABLED"),
        "enable_client_messages": env_bool("DEFAULT_APP_ENABLE_CLIENT_MESSAGES"),
        "enable_user_authentication": env_bool("DEFAULT_APP_ENABLE_USER_AUTHENTICATION"),
        "user_authentication_timeout": env_int("DEFAULT_APP_USER_AUTHENTICATION_TIMEOUT", minimum=0),
        "enable_subscription_count": env_bool("DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT"),
        "enable_watchlist_events": env_bool("DEFAULT_APP_ENABLE_WATCHLIST_EVENTS"),
        "enable_cache_channels": env_bool("DEFAULT_APP_ENABLE_CACHE_CHANNELS"),
        "user_connections_policy": env_str("DEFAULT_APP_USER_CONNECTIONS_POLICY"),
        "allowed_origins": UNSET
        if origins is UNSET
        else "\n".join(o.strip() for o in origins.split(",") if o.strip()),
        "webhooks": _webhooks(os.environ.get("DEFAULT_APP_WEBHOOKS", "")),
    }
    for field, (unlimited, alias) in _DEFAULT_APP_LIMITS.items():
        name = f"DEFAULT_APP_{field.upper()}"
        # Our name wins over soketi's when both are set.
        if not os.environ.get(name, "").strip() and alias and os.environ.get(alias, "").strip():
            name = alias
        app[field] = env_limit(name, unlimited=unlimited)
    return given(app)


_redis_url = env_str("REDIS_URL")
REALTIME: dict[str, Any] = given(
    {
        "HOST": env_str("HOST"),
        "PORT": env_int("PORT", minimum=0),
        "WORKERS": env_int("WORKERS", minimum=1),
        "SSL_CERT": env_str("SSL_CERT"),
        "SSL_KEY": env_str("SSL_KEY"),
        "SSL_CHAIN": env_str("SSL_CHAIN"),
        "ACTIVITY_TIMEOUT": env_int("ACTIVITY_TIMEOUT"),
        "PONG_TIMEOUT": env_int("PONG_TIMEOUT"),
        "STATE_BACKEND": UNSET if _redis_url is UNSET else "redis",
        "REDIS_URL": _redis_url,
        "REDIS_PREFIX": env_str("REDIS_PREFIX"),
        "REDIS_MAX_CONNECTIONS": env_int("REDIS_MAX_CONNECTIONS"),
        "REDIS_SOCKET_TIMEOUT": env_float("REDIS_SOCKET_TIMEOUT"),
        "NODE_HEARTBEAT_SECONDS": env_float("NODE_HEARTBEAT_SECONDS"),
        "DEAD_NODE_TIMEOUT": env_float("DEAD_NODE_TIMEOUT"),
        "SHUTDOWN_GRACE_SECONDS": env_float("SHUTDOWN_GRACE_SECONDS"),
        "MAX_SOCKET_BUFFER_BYTES": env_int("MAX_SOCKET_BUFFER_BYTES", minimum=1),
        "PATH_PREFIX": env_str("PATH_PREFIX"),
        "REQUEST_TIMEOUT": env_float("REQUEST_TIMEOUT"),
        "MAX_PENDING_CONNECTIONS": env_int("MAX_PENDING_CONNECTIONS", minimum=1),
        "TRUSTED_PROXIES": _list(env_str("TRUSTED_PROXIES")),
        "FORWARDED_HEADER": env_str("FORWARDED_HEADER"),
        "IP_CONNECTIONS_PER_MINUTE": env_int("IP_CONNECTIONS_PER_MINUTE", minimum=1),
        "IP_API_REQUESTS_PER_MINUTE": env_int("IP_API_REQUESTS_PER_MINUTE", minimum=1),
        "WEBHOOK_DELAY_SECONDS": env_float("WEBHOOK_DELAY_SECONDS"),
        "WEBHOOK_RETRY_SECONDS": env_float("WEBHOOK_RETRY_SECONDS"),
        "WEBHOOK_TIMEOUT": env_float("WEBHOOK_TIMEOUT"),
        "WEBHOOK_BATCH_SECONDS": env_float("WEBHOOK_BATCH_SECONDS"),
        "WEBHOOK_BATCH_SIZE": env_int("WEBHOOK_BATCH_SIZE", minimum=1),
        "WEBHOOK_CONCURRENCY_PER_URL": env_int("WEBHOOK_CONCURRENCY_PER_URL", minimum=1),
        "WEBHOOK_WORKER": env_str("WEBHOOK_WORKER"),
        "WEBHOOK_LEASE_SECONDS": env_float("WEBHOOK_LEASE_SECONDS"),
        "WEBHOOK_POLL_SECONDS": env_float("WEBHOOK_POLL_SECONDS"),
        "WEBHOOK_LOG_DAYS": env_float("WEBHOOK_LOG_DAYS"),
        "CREDENTIALS_TTL": env_float("CREDENTIALS_TTL"),
        "MEMORY_LIMIT_MB": env_float("MEMORY_LIMIT_MB"),
        "MEMORY_RESUME_MB": env_float("MEMORY_RESUME_MB"),
        "DEFAULT_APP": _default_app(),
    }
)
_metrics_prefix = env_str("METRICS_PROMETHEUS_PREFIX")
if _metrics_prefix is UNSET:
    _metrics_prefix = env_str("PROMETHEUS_METRICS_PREFIX")
REALTIME_METRICS: dict[str, Any] = given(
    {
        "ENABLED": env_bool("METRICS_ENABLED"),
        "HOST": env_str("METRICS_HOST"),
        "PORT": env_int("METRICS_PORT", minimum=0),
        "DRIVER": env_str("METRICS_DRIVER"),
        "PREFIX": _metrics_prefix,
        "COMPAT": env_str("METRICS_COMPAT"),
        "COMPAT_PREFIX": env_str("METRICS_COMPAT_PREFIX"),
    }
)

LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "project.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    # Whatever a library logs, a signature in a logged URL never reaches the output.
    "filters": {"redact": {"()": "realtime.redaction.RedactSecrets"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.request": {"level": "ERROR"}},
}
