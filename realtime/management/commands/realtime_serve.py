"""Run Realtime under daphne with its fast path, the private metrics site, drain and workers."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from realtime.daphne.internals import UnsupportedInternals
from realtime.daphne.serve import serve
from realtime.daphne.startup import ServeError, ServeOptions


class Command(BaseCommand):
    """``realtime_serve``: serve under daphne with Realtime's additions (fast path, private metrics site,
    workers) until SIGTERM or SIGINT, then drain. The options override the ``REALTIME`` and
    ``REALTIME_METRICS`` hosts, ports and workers. A failed start (``ServeError``, unsupported daphne
    internals) is a ``CommandError``. See docs/architecture.md, "Serving".
    """

    help = "Serve the Pusher WebSocket protocol, the HTTP API and the admin (and metrics privately)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", help="Public interface (default: REALTIME['HOST'], 0.0.0.0).")
        parser.add_argument(
            "--port", type=int, help="Public port (default: REALTIME['PORT'], 6001). 0 picks a free one."
        )
        parser.add_argument(
            "--metrics-host", help="Metrics interface (default: REALTIME_METRICS['HOST'], 127.0.0.1)."
        )
        parser.add_argument(
            "--metrics-port", type=int, help="Metrics port (default: REALTIME_METRICS['PORT'], 9601)."
        )
        parser.add_argument("--no-metrics", action="store_true", help="Do not serve the metrics site.")
        parser.add_argument(
            "--demo", action="store_true", help="Create a demo app and print its credentials."
        )
        parser.add_argument(
            "--workers",
            type=int,
            help="Processes sharing the public port (default: REALTIME['WORKERS'], 1). Above 1 needs Redis.",
        )
        parser.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--metrics-port-offset", type=int, default=0, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            serve(
                ServeOptions(
                    host=options["host"],
                    port=options["port"],
                    metrics_host=options["metrics_host"],
                    metrics_port=options["metrics_port"],
                    metrics=not options["no_metrics"],
                    demo=options["demo"],
                    workers=options["workers"],
                    worker_fd=options["worker_fd"],
                    supervisor_pid=options["supervisor_pid"],
                    metrics_port_offset=options["metrics_port_offset"],
                ),
                self.stdout,
            )
        except (ServeError, UnsupportedInternals) as exc:
            raise CommandError(str(exc)) from exc
