"""System checks for the REALTIME settings: each with a stable id and a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .addresses import trusted_networks
from .conf import KNOWN_KEYS, RealtimeSettings

# The defaults, for reading settings the user did not give (they are not validated yet here).
_DEFAULTS = RealtimeSettings()


def _is_network(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        trusted_networks([value])
    except ValueError:
        return False
    return True


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Check ``settings.REALTIME``: realtime.E001 (not a dict), E002 (unknown key), E003 and E004
    (state backend, REDIS_URL), E005 (timeouts not a positive whole number of seconds), E008
    (several workers without Redis), E009 (TRUSTED_PROXIES not addresses or CIDRs), E010
    (WEBHOOK_WORKER neither "server" nor "external"), E011 (MEMORY_LIMIT_MB or MEMORY_RESUME_MB
    not a positive number, or the resume level above the limit) and W002
    (daphne not installed). Returns the problems found.
    """
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
    backend = user.get("STATE_BACKEND", _DEFAULTS.STATE_BACKEND)
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
    for name in ("ACTIVITY_TIMEOUT", "PONG_TIMEOUT"):
        value = user.get(name, 1)
        # pusher-js refuses a handshake whose activity_timeout is missing or zero (processHandshake in
        # https://github.com/pusher/pusher-js/blob/master/src/core/connection/protocol/protocol.ts).
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(
                Error(
                    f"REALTIME[{name!r}] is {value!r}.",
                    hint="Give a positive whole number of seconds (defaults: 120 and 30).",
                    id="realtime.E005",
                )
            )
    workers = user.get("WORKERS", _DEFAULTS.WORKERS)
    if isinstance(workers, int) and workers > 1 and backend != "redis":
        problems.append(
            Error(
                f"REALTIME['WORKERS'] is {workers} with the in-memory state backend.",
                hint="Each worker is a node: set REDIS_URL so they share state, or use one worker.",
                id="realtime.E008",
            )
        )
    proxies = user.get("TRUSTED_PROXIES", ())
    bad = [p for p in proxies if not _is_network(p)] if isinstance(proxies, (list, tuple)) else [proxies]
    if bad:
        problems.append(
            Error(
                f"REALTIME['TRUSTED_PROXIES'] has entries that are not addresses or CIDRs: {bad!r}.",
                hint="Give a list of addresses or networks, e.g. ['10.0.0.0/8', '127.0.0.1'].",
                id="realtime.E009",
            )
        )
    worker = user.get("WEBHOOK_WORKER", _DEFAULTS.WEBHOOK_WORKER)
    if worker not in ("server", "external"):
        problems.append(
            Error(
                f"REALTIME['WEBHOOK_WORKER'] is {worker!r}.",
                hint='"server" (servers deliver webhooks) or "external" (manage.py realtime_webhooks does).',
                id="realtime.E010",
            )
        )
    problems.extend(_memory_gate_problems(user))
    if "daphne" not in settings.INSTALLED_APPS:
        problems.append(
            Warning(
                "'daphne' is not in INSTALLED_APPS.",
                hint="realtime_serve runs daphne; add 'daphne' first in INSTALLED_APPS.",
                id="realtime.W002",
            )
        )
    return problems


def _memory_gate_problems(user: dict[str, Any]) -> list[Any]:
    limit, resume = user.get("MEMORY_LIMIT_MB"), user.get("MEMORY_RESUME_MB")
    for name, value in (("MEMORY_LIMIT_MB", limit), ("MEMORY_RESUME_MB", resume)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            return [
                Error(
                    f"REALTIME[{name!r}] is {value!r}.",
                    hint="Give a positive number of MiB, or leave it unset (no memory limit).",
                    id="realtime.E011",
                )
            ]
    if resume is not None and (limit is None or resume > limit):
        return [
            Error(
                f"REALTIME['MEMORY_RESUME_MB'] is {resume!r} with MEMORY_LIMIT_MB {limit!r}.",
                hint="The resume level is below the limit (default: 90 % of it); it needs a limit.",
                id="realtime.E011",
            )
        ]
    return []


REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")


@register(Tags.compatibility)
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Several nodes need shared state: catch the settings that would split or stall a cluster."""
    user = getattr(settings, "REALTIME", {}) or {}
    if not isinstance(user, dict):
        return []  # realtime.E001
    problems: list[Any] = []
    backend = user.get("STATE_BACKEND", _DEFAULTS.STATE_BACKEND)
    url = user.get("REDIS_URL") or ""
    if backend == "memory" and url:
        problems.append(
            Warning(
                "REALTIME['REDIS_URL'] is set but STATE_BACKEND is 'memory'.",
                hint="Each node would keep its own channels and presence members, and events would "
                "reach only the node they were published on. Set STATE_BACKEND to 'redis'.",
                id="realtime.W003",
            )
        )
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    layer = str((layers.get("default") or {}).get("BACKEND", "")) if isinstance(layers, dict) else ""
    if backend == "memory" and "redis" in layer.lower():
        problems.append(
            Warning(
                "A Redis channel layer is configured but REALTIME['STATE_BACKEND'] is 'memory'.",
                hint="A shared channel layer suggests several nodes; realtime does not use it for "
                "fan-out. Set STATE_BACKEND to 'redis' and REDIS_URL so the nodes share their state.",
                id="realtime.W004",
            )
        )
    if backend != "redis":
        return problems
    if url and not str(url).startswith(REDIS_SCHEMES):
        problems.append(
            Error(
                "REALTIME['REDIS_URL'] is not a Redis URL.",
                hint="Use redis://host:port/db, rediss:// for TLS, unix:///path/to/socket, or "
                "redis+sentinel://host:port[,host:port...]/service_name[/db], or "
                "redis+cluster://host:port[,host:port...].",
                id="realtime.E006",
            )
        )
    limit = user.get("REDIS_MAX_CONNECTIONS")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 4):
        problems.append(
            Error(
                f"REALTIME['REDIS_MAX_CONNECTIONS'] is {limit!r}.",
                hint="Give a whole number of connections, at least 4 (the heartbeat, reaping and "
                "requests share the pool); 200 suits most nodes.",
                id="realtime.E007",
            )
        )
    dead = user.get("DEAD_NODE_TIMEOUT", _DEFAULTS.DEAD_NODE_TIMEOUT)
    timeout = user.get("REDIS_SOCKET_TIMEOUT", _DEFAULTS.REDIS_SOCKET_TIMEOUT)
    numbers = (int, float)
    if isinstance(dead, numbers) and isinstance(timeout, numbers) and dead <= timeout:
        problems.append(
            Warning(
                f"REALTIME['DEAD_NODE_TIMEOUT'] ({dead}) is not longer than "
                f"REDIS_SOCKET_TIMEOUT ({timeout}).",
                hint="A live node waiting on one slow Redis call could be declared dead and lose its "
                "members. Make DEAD_NODE_TIMEOUT several times REDIS_SOCKET_TIMEOUT (defaults: 30 and 5).",
                id="realtime.W005",
            )
        )
    return problems
