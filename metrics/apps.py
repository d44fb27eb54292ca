"""Prometheus metrics for Realtime, served on a private site of their own."""

from __future__ import annotations

from django.apps import AppConfig


class MetricsConfig(AppConfig):
    """The ``metrics`` app. ``ready()`` registers the system checks, the Prometheus collectors and the
    model counters, and opens and closes the private listener on ``runtime_started`` and
    ``runtime_stopping``. No I/O until the runtime starts.
    """

    name = "metrics"
    verbose_name = "Realtime metrics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from realtime.runtime import runtime_started, runtime_stopping

        from . import checks, listener  # noqa: F401  (checks registers the system checks)
        from .registration import register_collectors, register_model_signals

        register_collectors()
        register_model_signals()
        runtime_started.connect(listener.start, dispatch_uid="metrics-listener-start")
        runtime_stopping.connect(listener.stop, dispatch_uid="metrics-listener-stop")
