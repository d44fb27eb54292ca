"""Prometheus metrics for Realtime, served on a private site of their own."""

from __future__ import annotations

from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "metrics"
    verbose_name = "Realtime metrics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .registration import register_collectors, register_model_signals

        register_collectors()
        register_model_signals()
