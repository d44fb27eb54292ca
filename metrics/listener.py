"""The private metrics site: its own listener in the serving process, never the public port.

When Realtime's runtime starts (under ``realtime_serve``, ``runserver``, ``daphne`` or
``uvicorn`` alike) this app binds ``REALTIME_METRICS["HOST"]:["PORT"]`` (default
``127.0.0.1:9601``) and serves ``REALTIME_METRICS["PATH"]`` and ``/usage`` there, nothing else; it closes
when the runtime stops. The HTTP server is the standard library's (``wsgiref``) with
prometheus-client's WSGI application, in a thread of its own; the collectors still run inside the
event loop (each scrape is handed to it), where nothing changes the state they read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.registry import Collector

from realtime.runtime import Runtime

from .conf import get_settings
from .usage import usage

logger = logging.getLogger(__name__)

USAGE_PATH = "/usage"
# A scrape that the event loop does not answer within this many seconds fails (HTTP 500).
SCRAPE_TIMEOUT_SECONDS = 30.0


class InLoopRegistry:
    """A registry whose ``collect()`` runs in the event loop ``loop``, called from another thread."""

    def __init__(self, registry: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.registry = registry
        self.loop = loop

    def collect(self) -> Iterator[Any]:
        """The wrapped registry's metrics, collected in ``loop`` while this (non-loop) thread waits.
        Raises TimeoutError after ``SCRAPE_TIMEOUT_SECONDS``, or what a collector raised.
        """

        async def gather() -> list[Any]:
            return list(self.registry.collect())

        future = asyncio.run_coroutine_threadsafe(gather(), self.loop)
        return iter(future.result(SCRAPE_TIMEOUT_SECONDS))

    def restricted_registry(self, names: Iterable[str]) -> InLoopRegistry:
        """The same for the families ``names`` only (prometheus-client's ``name[]`` query parameter)."""
        return InLoopRegistry(self.registry.restricted_registry(names), self.loop)


class _QuietHandler(WSGIRequestHandler):
    # A client that connects and says nothing must not hold the listener's only thread.
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing (wsgiref writes every request to stderr otherwise)."""
        return None


class _Server6(WSGIServer):
    # wsgiref's server is IPv4 only unless told otherwise.
    address_family = socket.AF_INET6


def site(
    registry: Collector | InLoopRegistry, path: str, report: Callable[[], dict[str, Any]] | None = None
) -> Any:
    """The WSGI application of the metrics site: ``path`` is the metrics, ``/usage`` the JSON that
    ``report`` makes (when given), anything else is 404."""
    metrics = make_wsgi_app(registry)  # type: ignore[arg-type]

    def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        where = environ.get("PATH_INFO")
        if where == USAGE_PATH and report is not None:
            body = json.dumps(report()).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        if where != path:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not found\n"]
        return metrics(environ, start_response)

    return application


class MetricsListener:
    """One bound metrics site and the thread serving it."""

    def __init__(
        self, host: str, port: int, loop: asyncio.AbstractEventLoop, runtime: Runtime | None = None
    ) -> None:
        server_class = _Server6 if ":" in host else WSGIServer
        report = None if runtime is None else partial(usage, runtime)
        application = site(InLoopRegistry(REGISTRY, loop), get_settings().PATH, report)
        self.server = make_server(
            host, port, application, server_class=server_class, handler_class=_QuietHandler
        )
        self.address = (host, self.server.server_port)
        self.thread = threading.Thread(target=self.server.serve_forever, name="realtime-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving, close the socket and wait up to 5 s for the thread. Blocks: never call it
        in the event loop, which a scrape under way waits for.
        """
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# Each runtime's listener, for as long as the runtime lives.
_listeners: weakref.WeakKeyDictionary[Runtime, MetricsListener] = weakref.WeakKeyDictionary()


def address(runtime: Runtime) -> tuple[str, int] | None:
    """Where this runtime's metrics site listens: ``REALTIME_METRICS`` unless ``realtime_serve``
    said otherwise (``--metrics-host``, ``--metrics-port``, ``--no-metrics``, worker offsets)."""
    conf = get_settings()
    options = runtime.serve_options
    if not conf.ENABLED or not options.get("metrics", True):
        return None
    host = options.get("metrics_host", conf.HOST)
    port = options.get("metrics_port", conf.PORT)
    if port:
        port += options.get("metrics_port_offset", 0)
    return host, port


def start(sender: Any, runtime: Runtime, **kwargs: Any) -> None:
    """``runtime_started``: bind the metrics site. A port that cannot be bound is an error."""
    where = address(runtime)
    if where is None or runtime in _listeners:
        return
    try:
        listener = MetricsListener(*where, asyncio.get_running_loop(), runtime)
    except OSError as exc:
        message = f"the metrics site could not listen on {where[0]}:{where[1]}: {exc.strerror}"
        if runtime.serve_options.get("server") == "realtime_serve":
            # realtime_serve was told to serve metrics: not doing so is a failed start.
            raise OSError(exc.errno, message) from exc
        # Under another server the listener comes with the app: losing metrics must not take
        # Realtime down with it (several worker processes of one server, say).
        logger.error("%s; serving without metrics", message)
        return
    _listeners[runtime] = listener
    runtime.listening["metrics"] = listener.address
    logger.info("metrics listening on %s:%s", *listener.address)


def stop(sender: Any, runtime: Runtime, **kwargs: Any) -> None:
    """``runtime_stopping``: close the metrics site."""
    listener = _listeners.pop(runtime, None)
    if listener is not None:
        runtime.listening.pop("metrics", None)
        # Not in the event loop's thread: a scrape under way waits for the loop to collect.
        threading.Thread(target=listener.close, name="realtime-metrics-close", daemon=True).start()
