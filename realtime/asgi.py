"""Realtime's ASGI entry point: one call wraps a Django project's ASGI application.

``realtime_application(django_application)`` answers what Realtime serves on the public site and
hands everything else to the host's application:

- WebSocket ``{PATH_PREFIX}/app/{key}``: a Pusher connection (other WebSocket paths go to the
  ``websocket`` application given, else they are refused with 4005, as Pusher does);
- HTTP ``{PATH_PREFIX}/apps/...`` and ``{PATH_PREFIX}/users/...``: the Pusher HTTP API, served
  without Django's per-request signals and middleware (``api.asgi``);
- HTTP ``{PATH_PREFIX}/health`` (200 while the process runs) and ``{PATH_PREFIX}/ready`` (200
  while the node accepts traffic, else 503 with the reason: draining, starting, memory, Redis
  down); ``/accept-traffic`` is ``/ready`` under soketi's name;
- ASGI ``lifespan``: starts the runtime at startup and drains it at shutdown, where the server
  sends lifespan events (uvicorn); elsewhere the runtime starts with the first request to it.

The metrics site is never served here: it has a private listener of its own (the ``metrics`` app).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from .api.asgi import ApiApplication
from .conf import get_settings
from .connection.consumer import PusherConsumer
from .runtime import get_runtime

ASGIApp = Any
_SOCKET_PREFIX = "/app/"


class RealtimeApplication:
    """The router ``realtime_application`` returns; see the module docstring for what it serves."""

    def __init__(self, http: ASGIApp | None = None, websocket: ASGIApp | None = None) -> None:
        self.http = http
        self.websocket = websocket
        self.api = ApiApplication()
        self.consumer = PusherConsumer.as_asgi()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind in ("websocket", "http"):
            listening = get_runtime().listening
            if "public" not in listening and scope.get("server"):
                # Where this server listens publicly, for soketi's port label (no server says so
                # but through its scopes; realtime_serve records it when it binds).
                listening["public"] = tuple(scope["server"])
        if kind == "websocket":
            application, routed = self.route_scope(scope)
            return await application(routed, receive, send)
        if kind == "http":
            return await self._http(scope, receive, send)
        if kind == "lifespan":
            return await _lifespan(receive, send)
        if self.http is not None:
            return await self.http(scope, receive, send)
        raise ValueError(f"Realtime cannot serve ASGI scope type {kind!r}")

    def route_scope(self, scope: dict[str, Any]) -> tuple[ASGIApp, dict[str, Any]]:
        """Where a WebSocket scope goes, and the scope it gets there (without running either).

        ``realtime.daphne`` follows this to start a connection's consumer directly, so that this
        router's coroutine frame does not live as long as the connection.
        """
        prefix = get_settings().PATH_PREFIX
        path = scope["path"]
        if path.startswith(prefix + _SOCKET_PREFIX):
            key = path[len(prefix) + len(_SOCKET_PREFIX) :]
            if key and "/" not in key:
                return self.consumer, dict(scope, url_route={"args": (), "kwargs": {"app_key": key}})
        if self.websocket is not None:
            return self.websocket, scope
        # No app key: the consumer answers 4005 (path not found), as Pusher does.
        return self.consumer, scope

    def route_api(self, scope: dict[str, Any]) -> tuple[ASGIApp, dict[str, Any]] | None:
        """The HTTP API's handler for an ``http`` scope and the scope it gets, or None when the
        path is not the API's (without running either).

        ``realtime.daphne`` follows this to serve API requests without daphne's per-request
        machinery; any other path goes through the server as usual.
        """
        prefix = get_settings().PATH_PREFIX
        path = scope["path"]
        if not path.startswith(prefix):
            return None
        match = self.api.match(path[len(prefix) :])
        if match is None:
            return None
        routed = dict(scope, root_path=scope.get("root_path", "") + prefix) if prefix else scope
        return partial(self.api.serve, match), routed

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        api = self.route_api(scope)
        if api is not None:
            handler, routed = api
            return await handler(routed, receive, send)
        prefix = get_settings().PATH_PREFIX
        path = scope["path"]
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            if rest in ("/health", "/ready", "/accept-traffic"):
                return await _health(rest != "/health", send)
        if self.http is None:
            return await _send_json(send, 404, {"error": "Not found"})
        return await self.http(scope, receive, send)


def realtime_application(http: ASGIApp | None = None, *, websocket: ASGIApp | None = None) -> ASGIApp:
    """An ASGI application serving Realtime's public paths and handing the rest to ``http``.

    ``http``: the host project's ASGI application (``django.core.asgi.get_asgi_application()``);
    None answers 404 JSON for anything that is not Realtime's. ``websocket``: the host's own
    WebSocket application (a Channels ``URLRouter``, say) for paths other than ``/app/{key}``.
    """
    return RealtimeApplication(http, websocket)


async def _health(ready: bool, send: Any) -> None:
    if not ready:
        return await _send_json(send, 200, {"status": "ok"})
    runtime = get_runtime()
    try:
        await runtime.start()
    except Exception:
        return await _send_json(send, 503, {"status": "unavailable", "reason": "start failed"})
    problem = runtime.readiness_problem()
    if problem is not None:
        return await _send_json(send, 503, {"status": "unavailable", "reason": problem})
    return await _send_json(send, 200, {"status": "ready"})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await get_runtime().start()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await get_runtime().drain()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
