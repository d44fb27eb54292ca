"""The ``REALTIME_METRICS`` settings dict: typed defaults, cached until settings change."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``REALTIME_METRICS`` with its defaults: ``ENABLED``; the private site's ``HOST``, ``PORT`` and
    ``PATH``; ``DRIVER`` (``"prometheus"`` only); the family name ``PREFIX``; ``COMPAT`` (``"soketi"``:
    also soketi's families, named with ``COMPAT_PREFIX``).
    """

    ENABLED: bool = True
    HOST: str = "127.0.0.1"
    PORT: int = 9601
    PATH: str = "/metrics"
    DRIVER: str = "prometheus"
    PREFIX: str = "realtime_"
    COMPAT: str = ""  # "soketi": also expose soketi's ten core families
    COMPAT_PREFIX: str = "soketi_"  # soketi's own default, so its dashboards work unchanged


KNOWN_KEYS = frozenset(f.name for f in fields(MetricsSettings))


@functools.cache
def get_settings() -> MetricsSettings:
    """``MetricsSettings`` from ``settings.REALTIME_METRICS``, cached until that setting changes.
    Unknown keys are left out (check metrics.E002 reports them).
    """
    user = getattr(settings, "REALTIME_METRICS", {}) or {}
    return MetricsSettings(**{k: v for k, v in user.items() if k in KNOWN_KEYS})


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME_METRICS":
        get_settings.cache_clear()
