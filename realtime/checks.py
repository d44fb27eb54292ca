"""System checks for the REALTIME settings: each with a stable id and a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import KNOWN_KEYS


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    user = getattr(settings, "REALTIME", {}) or {}
    if not isinstance(user, dict):
        return [Error("REALTIME must be a dict.", hint="Set REALTIME = {...}.", id="realtime.E001")]
    for key in sorted(set(user) - KNOWN_KEYS):
        problems.append(
            Error(
                f"Unknown REALTIME setting {key!r}.",
                hint=f"Known settings: {', '.join(sorted(KNOWN_KEYS))}.",
                id="realtime.E002",
            )
        )
    backend = user.get("STATE_BACKEND", "memory")
    if backend not in {"memory", "redis"}:
        problems.append(
            Error(
                f"REALTIME['STATE_BACKEND'] is {backend!r}.",
                hint="Use 'memory' (one node) or 'redis' (several nodes, needs REDIS_URL).",
                id="realtime.E003",
            )
        )
    if backend == "redis" and not user.get("REDIS_URL"):
        problems.append(
            Error(
                "The redis state backend needs REALTIME['REDIS_URL'].",
                hint="Set REDIS_URL, e.g. redis://127.0.0.1:6379/0.",
                id="realtime.E004",
            )
        )
    if backend == "redis" and not user.get("REDIS_MAX_CONNECTIONS"):
        problems.append(
            Warning(
                "REALTIME['REDIS_MAX_CONNECTIONS'] is not set.",
                hint="redis-py 8 caps its asyncio pool at 100 and fails fast when it is full; "
                "set REDIS_MAX_CONNECTIONS explicitly (e.g. 200).",
                id="realtime.W001",
            )
        )
    for name in ("ACTIVITY_TIMEOUT", "PONG_TIMEOUT"):
        value = user.get(name, 1)
        # pusher-js refuses a handshake whose activity_timeout is missing or zero (§1.3).
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(
                Error(
                    f"REALTIME[{name!r}] is {value!r}.",
                    hint="Give a positive whole number of seconds (defaults: 120 and 30).",
                    id="realtime.E005",
                )
            )
    if "daphne" not in settings.INSTALLED_APPS:
        problems.append(
            Warning(
                "'daphne' is not in INSTALLED_APPS.",
                hint="realtime_serve runs daphne; add 'daphne' first in INSTALLED_APPS.",
                id="realtime.W002",
            )
        )
    return problems
