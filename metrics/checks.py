"""System checks for the REALTIME_METRICS settings and the django-prometheus wiring."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import KNOWN_KEYS, get_settings

_PREFIX_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
DRIVERS = ("prometheus",)
COMPATS = ("", "soketi")
BEFORE = "django_prometheus.middleware.PrometheusBeforeMiddleware"
AFTER = "django_prometheus.middleware.PrometheusAfterMiddleware"


def is_private_address(host: str) -> bool:
    """True for loopback and private addresses (and ``localhost``); False for public or any-address."""
    if host.lower() in {"localhost", "ip6-localhost"}:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a host name: where it resolves is not known here, so say so
    if address.is_unspecified:
        return False  # 0.0.0.0 / :: listen on every interface, public ones included
    return address.is_loopback or address.is_private


@register(Tags.compatibility)
def check_metrics_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Check ``settings.REALTIME_METRICS`` and the django-prometheus middleware: metrics.E001 to E006
    (not a dict, unknown key, driver, prefixes, compat mode, clashing prefixes), W001 (site on a
    public address) and W002 (middleware out of order). Returns the problems found.
    """
    user = getattr(settings, "REALTIME_METRICS", None)
    if user is None:
        user = {}
    if not isinstance(user, dict):
        return [
            Error("REALTIME_METRICS must be a dict.", hint="Set REALTIME_METRICS = {...}.", id="metrics.E001")
        ]
    problems: list[Any] = [
        Error(
            f"Unknown REALTIME_METRICS setting {key!r}.",
            hint=f"Known settings: {', '.join(sorted(KNOWN_KEYS))}.",
            id="metrics.E002",
        )
        for key in sorted(set(user) - KNOWN_KEYS)
    ]
    conf = get_settings()
    if conf.DRIVER not in DRIVERS:
        problems.append(
            Error(
                f"Unknown metrics driver {conf.DRIVER!r}.",
                hint="METRICS_DRIVER (REALTIME_METRICS['DRIVER']) must be 'prometheus', the only driver; "
                "turn metrics off with METRICS_ENABLED=false instead.",
                id="metrics.E003",
            )
        )
    for key, value in (("PREFIX", conf.PREFIX), ("COMPAT_PREFIX", conf.COMPAT_PREFIX)):
        if value and not _PREFIX_RE.fullmatch(value):
            problems.append(
                Error(
                    f"REALTIME_METRICS[{key!r}] is {value!r}, not a valid start of a metric name.",
                    hint="Use letters, digits, '_' and ':' and do not start with a digit, e.g. 'realtime_'.",
                    id="metrics.E004",
                )
            )
    if conf.COMPAT not in COMPATS:
        problems.append(
            Error(
                f"Unknown metrics compatibility mode {conf.COMPAT!r}.",
                hint="METRICS_COMPAT may be empty or 'soketi'.",
                id="metrics.E005",
            )
        )
    elif conf.COMPAT and conf.COMPAT_PREFIX == conf.PREFIX:
        problems.append(
            Error(
                "The soketi-compatible families would use the same prefix as Realtime's own.",
                hint="soketi's socket_received_bytes would clash with socket_received_bytes_total; "
                "set METRICS_COMPAT_PREFIX (default 'soketi_') and METRICS_PROMETHEUS_PREFIX apart.",
                id="metrics.E006",
            )
        )
    if conf.ENABLED and not is_private_address(conf.HOST):
        problems.append(
            Warning(
                f"The metrics site is bound to {conf.HOST!r}, which is not a loopback or private address.",
                hint="Metrics reveal app ids and traffic and have no authentication: bind METRICS_HOST to "
                "127.0.0.1 or a private interface and let Prometheus scrape over the private network.",
                id="metrics.W001",
            )
        )
    problems.extend(_middleware_problems())
    return problems


def _middleware_problems() -> list[Any]:
    middleware = list(getattr(settings, "MIDDLEWARE", []))
    if BEFORE not in middleware and AFTER not in middleware:
        return []
    if middleware[:1] == [BEFORE] and middleware[-1:] == [AFTER]:
        return []
    return [
        Warning(
            "django-prometheus middleware is out of order.",
            hint=f"Put {BEFORE} first and {AFTER} last in MIDDLEWARE, so that they time the whole request.",
            id="metrics.W002",
        )
    ]
