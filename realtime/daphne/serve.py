"""``realtime_serve``: daphne with Realtime's server, after its start-up checks; or the workers."""

from __future__ import annotations

import logging
from typing import Any, TextIO

from daphne.endpoints import build_endpoint_description_strings

from ..conf import get_settings
from ..runtime import Runtime, get_runtime
from .heap import settle_heap
from .internals import verify_internals
from .startup import ServeError, ServeOptions, prepare_apps
from .tls import TLSError, TLSFiles
from .web import Limits
from .workers import supervise

logger = logging.getLogger(__name__)

# Largest WebSocket message autobahn accepts at all; Pusher's own limits are enforced above it
# with a pusher:error, so a client never gets a bare 1009 close for a merely large event.
WEBSOCKET_MAX_MESSAGE_BYTES = 256 * 1024
# A socket whose opening handshake is not done this long after it was handed to the WebSocket
# protocol is refused (daphne's default). daphne's own checker enforces it for every socket at
# once, every 2 s; autobahn's per-socket timer for the same (daphne's websocket_handshake_timeout)
# was one timer set and cancelled per connection, 2 % of a handshake's CPU, and is off.
OPEN_HANDSHAKE_SECONDS = 5


def serve(options: ServeOptions, out: TextIO) -> None:
    """Run until SIGTERM/SIGINT (then drain) or a fatal error (``ServeError``)."""
    verify_internals()
    conf = get_settings()
    workers = options.workers if options.workers is not None else conf.WORKERS
    if workers > 1 and conf.STATE_BACKEND != "redis":
        raise ServeError("--workers above 1 needs REDIS_URL: each worker is a node sharing state")
    try:
        tls = TLSFiles.from_settings(conf.SSL_CERT, conf.SSL_KEY, conf.SSL_CHAIN)
        if tls is not None:
            tls.verify()
    except TLSError as exc:
        raise ServeError(str(exc)) from exc
    if tls is not None and workers > 1:
        # The workers share one plain listening socket handed down by the supervisor.
        raise ServeError(
            "SSL_CERT with --workers above 1 is not supported: terminate TLS in front of the "
            "workers, or run one process per port"
        )
    if workers > 1 and options.worker_fd is None:
        supervise(options, workers, out)
        return
    runtime = get_runtime()
    runtime.serve_options.update(options.metrics_options(), server="realtime_serve")
    if options.worker_fd is None:
        try:
            prepare_apps(options, runtime, out)
        except ValueError as exc:
            raise ServeError(str(exc)) from exc
    else:
        runtime.default_app_ready = True  # the supervisor applied it
    _run_daphne(options, runtime, out, tls)


def _run_daphne(options: ServeOptions, runtime: Runtime, out: TextIO, tls: TLSFiles | None) -> None:
    from channels.routing import get_default_application

    from .server import RealtimeServer
    from .shutdown import exit_with_parent, install_shutdown_handlers

    if options.worker_fd is not None:
        endpoints = build_endpoint_description_strings(file_descriptor=options.worker_fd)
    else:
        host, port = options.public_address()
        if tls is not None:
            endpoints = [tls.endpoint(host, port)]
        else:
            endpoints = build_endpoint_description_strings(host=host, port=port)
    conf = runtime.conf
    failures: list[str] = []

    class Server(RealtimeServer):
        def listen_success(self, port: Any) -> None:
            super().listen_success(port)
            address = port.getHost()
            runtime.listening["public"] = (address.host, address.port)
            if options.worker_fd is None:
                secure = " (TLS: wss://, https://)" if tls is not None else ""
                out.write(f"Listening (public) on {address.host}:{address.port}{secure}\n")
                out.flush()

    server: Server

    async def start() -> None:
        try:
            await runtime.start()
        except Exception as exc:
            failures.append(f"Realtime could not start: {exc}")
            server.stop()
            return
        metrics = runtime.listening.get("metrics")
        if metrics is not None:
            out.write(f"Listening (metrics) on {metrics[0]}:{metrics[1]}\n")
            out.flush()

    def ready() -> None:
        settle_heap()
        shutdown = install_shutdown_handlers(server, runtime)
        runtime.tasks.spawn(start())
        if options.supervisor_pid is not None:
            runtime.tasks.spawn(exit_with_parent(shutdown, options.supervisor_pid))

    try:
        limits = Limits.from_settings(conf)
    except ValueError as exc:
        raise ServeError(str(exc)) from exc
    server = Server(
        http_limits=limits,
        application=get_default_application(),
        endpoints=endpoints,
        signal_handlers=False,
        websocket_timeout=-1,
        websocket_connect_timeout=OPEN_HANDSHAKE_SECONDS,
        websocket_handshake_timeout=0,
        ping_interval=conf.ACTIVITY_TIMEOUT,
        ping_timeout=conf.PONG_TIMEOUT,
        websocket_max_message_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        websocket_max_frame_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        application_close_timeout=conf.SHUTDOWN_GRACE_SECONDS,
        ready_callable=ready,
        server_name="realtime",
    )
    server.run()
    failures[:0] = [f"Could not listen on {endpoint}: {error}" for endpoint, error in server.listen_failures]
    if failures:
        raise ServeError("; ".join(failures))
