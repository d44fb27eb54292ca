"""What ``realtime_serve`` was asked for, and the apps it prepares before it listens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from ..conf import get_settings
from ..provisioning import apply_default_app, ensure_demo_app
from ..runtime import Runtime


class ServeError(Exception):
    """The server could not start or stopped on an error; the message says why, for the operator."""


@dataclass(frozen=True)
class ServeOptions:
    """What ``realtime_serve`` was asked for. None: the settings decide (``REALTIME`` for the
    public site, ``REALTIME_METRICS`` for the metrics site)."""

    host: str | None = None
    port: int | None = None
    metrics_host: str | None = None
    metrics_port: int | None = None
    # False: no metrics site (--no-metrics).
    metrics: bool = True
    demo: bool = False
    # More than one: a supervisor and that many worker processes sharing the public socket.
    workers: int | None = None
    # A worker adopts the supervisor's listening socket instead of binding the port itself.
    worker_fd: int | None = None
    supervisor_pid: int | None = None
    # Worker i serves its metrics on the metrics port + i.
    metrics_port_offset: int = 0

    def public_address(self) -> tuple[str, int]:
        conf = get_settings()
        host = self.host if self.host is not None else conf.HOST
        return host, (self.port if self.port is not None else conf.PORT)

    def metrics_options(self) -> dict[str, Any]:
        """The metrics site's address as ``Runtime.serve_options`` carries it to the metrics app."""
        options: dict[str, Any] = {"metrics": self.metrics}
        if self.metrics_host is not None:
            options["metrics_host"] = self.metrics_host
        if self.metrics_port is not None:
            options["metrics_port"] = self.metrics_port
        if self.metrics_port_offset:
            options["metrics_port_offset"] = self.metrics_port_offset
        return options


def prepare_apps(options: ServeOptions, runtime: Runtime, out: TextIO) -> None:
    """Apply the default app (a clear error when it is invalid) and, with ``--demo``, the demo app."""
    default_app = runtime.conf.DEFAULT_APP
    if default_app:
        app = apply_default_app(default_app)
        runtime.default_app_ready = True
        out.write(f"Default app {app.id} ready (key {app.key}).\n")
    if options.demo:
        app = ensure_demo_app()
        host, port = options.public_address()
        host = "127.0.0.1" if host in {"0.0.0.0", "::"} else host  # noqa: S104
        out.write(
            "\nDemo app (client events and subscription counting enabled):\n"
            f"  app id: {app.id}\n  key:    {app.key}\n  secret: {app.secret}\n\n"
            "pusher-js:\n"
            f"  const pusher = new Pusher('{app.key}', {{ wsHost: '{host}', wsPort: {port},\n"
            "    forceTLS: false, enabledTransports: ['ws'], cluster: '' });\n"
            "  pusher.subscribe('my-channel').bind('my-event', (data) => console.log(data));\n\n"
            "Publish with the official Python SDK:\n"
            f"  pusher.Pusher(app_id='{app.id}', key='{app.key}', secret='<secret>',\n"
            f"                host='{host}', port={port}, ssl=False)"
            ".trigger('my-channel', 'my-event', {'hello': 'world'})\n\n"
        )
    out.flush()
