"""Wiring done once per process from ``MetricsConfig.ready()``: collectors and model signals.

Realtime's models stay free of any metrics import (``realtime`` never imports ``metrics``), so
django-prometheus's model counters (``django_model_inserts_total``, ...) are fed from Django's
``post_save``/``post_delete`` signals here instead of its ``ExportModelOperationsMixin``.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db.models.signals import post_delete, post_save
from prometheus_client import REGISTRY

from .collectors import RealtimeCollector, SoketiCompatCollector

_registered: list[Any] = []


def register_collectors() -> None:
    """Register ``RealtimeCollector`` and ``SoketiCompatCollector`` with prometheus-client's
    ``REGISTRY``, once per process.
    """
    if _registered:
        return  # ready() may run more than once in one process (tests)
    for collector in (RealtimeCollector(), SoketiCompatCollector()):
        REGISTRY.register(collector)
        _registered.append(collector)


def _model_label(sender: type) -> str:
    return sender._meta.model_name or sender.__name__.lower()


def _saved(sender: type, created: bool = False, raw: bool = False, **kwargs: Any) -> None:
    from django_prometheus.models import model_inserts, model_updates

    if not raw:
        (model_inserts if created else model_updates).labels(_model_label(sender)).inc()


def _deleted(sender: type, **kwargs: Any) -> None:
    from django_prometheus.models import model_deletes

    model_deletes.labels(_model_label(sender)).inc()


def register_model_signals() -> None:
    """Feed django-prometheus's model insert, update and delete counters from realtime's models'
    ``post_save`` and ``post_delete``, each label with a zero series from the start.
    """
    from django_prometheus.models import model_deletes, model_inserts, model_updates

    for model in apps.get_app_config("realtime").get_models():
        label = _model_label(model)
        for counter in (model_inserts, model_updates, model_deletes):
            counter.labels(label)  # a zero series from the start: no gap in rate()
        post_save.connect(_saved, sender=model, dispatch_uid=f"metrics-save-{label}")
        post_delete.connect(_deleted, sender=model, dispatch_uid=f"metrics-delete-{label}")
