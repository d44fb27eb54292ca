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

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("REALTIME_DATA_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None
    # -1 (soketi's convention) means "none" (unlimited, unset).
    return None if number < 0 else number


def env_limit(name: str, default: int | None, *, unlimited: bool = True) -> int | None:
    """A per-app limit: -1 and 0 mean unlimited where the limit may be absent, else it must be positive."""
    number = env_int(name, default)
    if number is None or number == 0:
        if unlimited:
            return None
        raise ImproperlyConfigured(f"{name} must be a positive integer")
    return number


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


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
DEBUG = env_bool("DEBUG", False)
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
        "DIRS": [],
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


def _webhooks(raw: str) -> list[dict[str, object]]:
    try:
        webhooks = json.loads(raw) if raw.strip() else []
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


# Per-app limits of the default app: (default, may be unlimited, soketi's name for it).
_DEFAULT_APP_LIMITS: dict[str, tuple[int | None, bool, str | None]] = {
    "max_connections": (None, True, None),
    "max_backend_events_per_second": (None, True, "DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC"),
    "max_client_events_per_second": (10, True, "DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC"),
    "max_read_requests_per_second": (None, True, "DEFAULT_APP_MAX_READ_REQ_PER_SEC"),
    "max_presence_members_per_channel": (100, True, None),
    "max_presence_member_size_kb": (2, False, "DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB"),
    "max_event_payload_kb": (10, False, "DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB"),
    "max_event_channels_at_once": (100, False, None),
    "max_event_batch_size": (10, False, None),
    "max_channel_name_length": (200, False, None),
}


def _default_app() -> dict[str, object] | None:
    app_id = os.environ.get("DEFAULT_APP_ID")
    if not app_id:
        return None
    app: dict[str, object] = {
        "id": app_id,
        "key": os.environ.get("DEFAULT_APP_KEY", ""),
        "secret": os.environ.get("DEFAULT_APP_SECRET", ""),
        "name": os.environ.get("DEFAULT_APP_NAME", ""),
        "enabled": env_bool("DEFAULT_APP_ENABLED", True),
        "enable_client_messages": env_bool("DEFAULT_APP_ENABLE_CLIENT_MESSAGES", False),
        "enable_user_authentication": env_bool("DEFAULT_APP_ENABLE_USER_AUTHENTICATION", False),
        "user_authentication_timeout": env_int("DEFAULT_APP_USER_AUTHENTICATION_TIMEOUT", 30) or 0,
        "enable_subscription_count": env_bool("DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT", False),
        "enable_watchlist_events": env_bool("DEFAULT_APP_ENABLE_WATCHLIST_EVENTS", False),
        "enable_cache_channels": env_bool("DEFAULT_APP_ENABLE_CACHE_CHANNELS", True),
        "allowed_origins": "\n".join(
            o.strip() for o in os.environ.get("DEFAULT_APP_ALLOWED_ORIGINS", "").split(",") if o.strip()
        ),
        "webhooks": _webhooks(os.environ.get("DEFAULT_APP_WEBHOOKS", "")),
    }
    for field, (default, unlimited, alias) in _DEFAULT_APP_LIMITS.items():
        name = f"DEFAULT_APP_{field.upper()}"
        # Our name wins over soketi's when both are set.
        if not os.environ.get(name, "").strip() and alias and os.environ.get(alias, "").strip():
            name = alias
        app[field] = env_limit(name, default, unlimited=unlimited)
    return app


_redis_url = os.environ.get("REDIS_URL", "")
REALTIME: dict[str, object] = {
    "HOST": os.environ.get("HOST", "0.0.0.0"),  # noqa: S104 (the public endpoint, by design)
    "PORT": env_int("PORT", 6001),
    "WORKERS": env_int("WORKERS", 1) or 1,
    "ACTIVITY_TIMEOUT": env_int("ACTIVITY_TIMEOUT", 120),
    "PONG_TIMEOUT": env_int("PONG_TIMEOUT", 30),
    "STATE_BACKEND": "redis" if _redis_url else "memory",
    "REDIS_URL": _redis_url,
    "REDIS_PREFIX": os.environ.get("REDIS_PREFIX", "realtime"),
    "REDIS_MAX_CONNECTIONS": env_int("REDIS_MAX_CONNECTIONS", 200),
    "REDIS_SOCKET_TIMEOUT": env_float("REDIS_SOCKET_TIMEOUT", 5.0),
    "NODE_HEARTBEAT_SECONDS": env_float("NODE_HEARTBEAT_SECONDS", 5.0),
    "DEAD_NODE_TIMEOUT": env_float("DEAD_NODE_TIMEOUT", 30.0),
    "SHUTDOWN_GRACE_SECONDS": env_float("SHUTDOWN_GRACE_SECONDS", 10.0),
    "WEBHOOK_DELAY_SECONDS": env_float("WEBHOOK_DELAY_SECONDS", 3.0),
    "WEBHOOK_RETRY_SECONDS": env_float("WEBHOOK_RETRY_SECONDS", 300.0),
    "DEFAULT_APP": _default_app(),
}

_metrics_prefix = os.environ.get("METRICS_PROMETHEUS_PREFIX") or os.environ.get(
    "PROMETHEUS_METRICS_PREFIX", "realtime_"
)
REALTIME_METRICS: dict[str, object] = {
    "ENABLED": env_bool("METRICS_ENABLED", True),
    "HOST": os.environ.get("METRICS_HOST", "127.0.0.1"),
    "PORT": env_int("METRICS_PORT", 9601),
    "DRIVER": os.environ.get("METRICS_DRIVER", "prometheus"),
    "PREFIX": _metrics_prefix,
    "COMPAT": os.environ.get("METRICS_COMPAT", ""),
    "COMPAT_PREFIX": os.environ.get("METRICS_COMPAT_PREFIX", "soketi_"),
}

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
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.request": {"level": "ERROR"}},
}
