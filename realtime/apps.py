"""The Django app: registers system checks, model signals and log redaction. No I/O here."""

from __future__ import annotations

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The ``realtime`` app. ``ready()`` registers the system checks, the signals that invalidate
    cached credentials and the drain at a stock daphne's shutdown, and puts log redaction on the
    request loggers and on daphne's access log. No I/O: the runtime is built on first use
    (docs/architecture.md, "The runtime").
    """

    name = "realtime"
    verbose_name = "Realtime"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signals  # noqa: F401  (registers checks and cache invalidation)
        from .daphne import access_log, stock
        from .redaction import install_on_request_loggers
        from .runtime import runtime_started

        install_on_request_loggers()
        access_log.install()
        runtime_started.connect(stock.drain_at_reactor_shutdown, dispatch_uid="realtime-daphne-drain")
