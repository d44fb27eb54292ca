"""The private metrics site and the router that keeps it off the public port."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, make_asgi_app

from realtime.serving import LISTENING

from .conf import get_settings

Scope = dict[str, Any]


class SiteRouter:
    """Send a request to the metrics site only when it arrived on the metrics port."""

    def __init__(self, public: Any) -> None:
        self.public = public
        self.metrics = make_asgi_app(REGISTRY)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in {"http", "websocket"} and _is_metrics_port(scope):
            if scope["type"] == "http" and scope["path"] == get_settings().PATH:
                return await self.metrics(scope, receive, send)
            return await _not_found(scope, receive, send)
        return await self.public(scope, receive, send)

    def route_scope(self, scope: Scope) -> Any:
        """The application a scope goes to next, or None when this router answers it itself.

        ``realtime.server`` follows this for a WebSocket so that a long-lived connection does not
        keep this router's coroutine frame for its whole life.
        """
        return None if _is_metrics_port(scope) else self.public


def _is_metrics_port(scope: Scope) -> bool:
    conf = get_settings()
    server = scope.get("server")
    return bool(conf.ENABLED and server and server[1] == LISTENING.get("metrics", conf.PORT))


async def _not_found(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Not found\n"})
