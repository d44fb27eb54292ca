"""Starting the server: apps from settings, the two endpoints, daphne's defaults overridden."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, TextIO

from daphne.endpoints import build_endpoint_description_strings
from django.core.exceptions import ValidationError
from django.db import OperationalError

from .conf import get_settings

logger = logging.getLogger(__name__)

# Ports actually bound by this process ("public", "metrics"); port 0 asks the OS for a free one.
LISTENING: dict[str, int] = {}

# Largest WebSocket message autobahn accepts at all; Pusher's own limits are enforced above it
# with a pusher:error, so a client never gets a bare 1009 close for a merely large event.
WEBSOCKET_MAX_MESSAGE_BYTES = 256 * 1024
DEFAULT_APP_ATTEMPTS = 10


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    metrics_host: str
    metrics_port: int
    metrics: bool
    demo: bool = False
    # More than one: a supervisor and that many worker processes sharing the public socket.
    workers: int = 1
    # A worker adopts the supervisor's listening socket instead of binding the port itself.
    worker_fd: int | None = None
    supervisor_pid: int | None = None


def _endpoint(host: str, port: int) -> str:
    return build_endpoint_description_strings(host=host, port=port)[0]


def _sync_default_app(config: dict[str, Any]) -> Any:
    from .provisioning import sync_app

    # Several nodes starting at once on one SQLite file write the same default app: SQLite
    # answers "database is locked" to all but one writer, so the others wait and try again.
    attempt = 0
    while True:
        try:
            return sync_app(config)
        except OperationalError:
            attempt += 1
            if attempt >= DEFAULT_APP_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)


def prepare_apps(options: ServeOptions, out: TextIO) -> None:
    from .provisioning import ensure_demo_app

    default_app = get_settings().DEFAULT_APP
    if default_app:
        try:
            app = _sync_default_app(default_app)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            raise ValueError(f"The default app (DEFAULT_APP_*) is invalid: {problems}") from exc
        out.write(f"Default app {app.id} ready (key {app.key}).\n")
    if options.demo:
        app = ensure_demo_app()
        host = "127.0.0.1" if options.host in {"0.0.0.0", "::"} else options.host  # noqa: S104
        out.write(
            "\nDemo app (client events and subscription counting enabled):\n"
            f"  app id: {app.id}\n  key:    {app.key}\n  secret: {app.secret}\n\n"
            "pusher-js:\n"
            f"  const pusher = new Pusher('{app.key}', {{ wsHost: '{host}', wsPort: {options.port},\n"
            "    forceTLS: false, enabledTransports: ['ws'], cluster: '' });\n"
            "  pusher.subscribe('my-channel').bind('my-event', (data) => console.log(data));\n\n"
            "Publish with the official Python SDK:\n"
            f"  pusher.Pusher(app_id='{app.id}', key='{app.key}', secret='<secret>',\n"
            f"                host='{host}', port={options.port}, ssl=False)"
            ".trigger('my-channel', 'my-event', {'hello': 'world'})\n\n"
        )
    out.flush()


def serve(options: ServeOptions, out: TextIO) -> None:
    from .server import RealtimeServer, exit_with_parent, install_shutdown_handlers

    if options.workers > 1:
        from .workers import supervise

        supervise(options, out)
        return
    if options.worker_fd is None:
        prepare_apps(options, out)
    if options.metrics and options.port != 0 and options.port == options.metrics_port:
        raise ValueError("The public port and the metrics port must differ")
    if options.worker_fd is not None:
        endpoints = build_endpoint_description_strings(file_descriptor=options.worker_fd)
    else:
        endpoints = [_endpoint(options.host, options.port)]
    if options.metrics:
        endpoints.append(_endpoint(options.metrics_host, options.metrics_port))
    conf = get_settings()

    from channels.routing import get_default_application
    from django.conf import settings

    settings.ASGI_APPLICATION  # noqa: B018 (fail early when the host project has none)
    application = get_default_application()
    names = ["public", "metrics"]

    class Server(RealtimeServer):
        def listen_success(self, port: Any) -> None:
            super().listen_success(port)
            name = names[len(LISTENING)] if len(LISTENING) < len(names) else "other"
            LISTENING[name] = port.getHost().port
            out.write(f"Listening ({name}) on {port.getHost().host}:{port.getHost().port}\n")
            out.flush()

    server: Server

    def ready() -> None:
        from .background import spawn
        from .node import get_node

        shutdown = install_shutdown_handlers(server)
        spawn(get_node().start())
        if options.supervisor_pid is not None:
            spawn(exit_with_parent(shutdown, options.supervisor_pid))

    server = Server(
        application=application,
        endpoints=endpoints,
        signal_handlers=False,
        websocket_timeout=-1,
        ping_interval=conf.ACTIVITY_TIMEOUT,
        ping_timeout=conf.PONG_TIMEOUT,
        websocket_max_message_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        websocket_max_frame_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        application_close_timeout=conf.SHUTDOWN_GRACE_SECONDS,
        ready_callable=ready,
        server_name="realtime",
    )
    server.run()
