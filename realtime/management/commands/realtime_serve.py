"""Run Realtime: one daphne server with the public endpoint and the private metrics endpoint."""

from __future__ import annotations

import argparse
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from realtime.serving import ServeOptions, serve


class Command(BaseCommand):
    help = "Serve the Pusher WebSocket protocol, the HTTP API and the admin (and metrics privately)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", help="Public interface (default: HOST, 0.0.0.0).")
        parser.add_argument("--port", type=int, help="Public port (default: PORT, 6001). 0 picks a free one.")
        parser.add_argument("--metrics-host", help="Metrics interface (default: METRICS_HOST, 127.0.0.1).")
        parser.add_argument("--metrics-port", type=int, help="Metrics port (default: METRICS_PORT, 9601).")
        parser.add_argument("--no-metrics", action="store_true", help="Do not serve the metrics site.")
        parser.add_argument(
            "--demo", action="store_true", help="Create a demo app and print its credentials."
        )
        parser.add_argument(
            "--workers",
            type=int,
            help="Processes sharing the public port (default: WORKERS, 1). Above 1 needs REDIS_URL.",
        )
        parser.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        realtime = settings.REALTIME if hasattr(settings, "REALTIME") else {}
        metrics = getattr(settings, "REALTIME_METRICS", {})
        workers = options["workers"] or realtime.get("WORKERS", 1)
        if workers > 1 and realtime.get("STATE_BACKEND", "memory") != "redis":
            raise CommandError("--workers above 1 needs REDIS_URL: each worker is a node sharing state")
        try:
            serve(
                ServeOptions(
                    host=options["host"] or realtime.get("HOST", "0.0.0.0"),  # noqa: S104
                    port=options["port"] if options["port"] is not None else realtime.get("PORT", 6001),
                    metrics_host=options["metrics_host"] or metrics.get("HOST", "127.0.0.1"),
                    metrics_port=(
                        options["metrics_port"]
                        if options["metrics_port"] is not None
                        else metrics.get("PORT", 9601)
                    ),
                    metrics=metrics.get("ENABLED", True) and not options["no_metrics"],
                    demo=options["demo"],
                    workers=options["workers"] or realtime.get("WORKERS", 1),
                    worker_fd=options["worker_fd"],
                    supervisor_pid=options["supervisor_pid"],
                ),
                self.stdout,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
