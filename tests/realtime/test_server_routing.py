"""direct_application: a WebSocket scope reaches its consumer without router coroutine frames."""

from __future__ import annotations

import functools
from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path, re_path

from realtime.asgi import realtime_application
from realtime.connection.consumer import PusherConsumer
from realtime.daphne.server import direct_application

websocket_urlpatterns = [
    path("app/<str:app_key>", PusherConsumer.as_asgi()),
    re_path(r"", PusherConsumer.as_asgi()),
]


def _scope(path_: str, **extra: Any) -> dict[str, Any]:
    return {"type": "websocket", "path": path_, "headers": [], "query_string": b"", **extra}


class Site:
    """A router that opts in with route_scope, and sends some scopes elsewhere."""

    def __init__(self, public: Any) -> None:
        self.public = public

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("not called when the route resolves")

    def route_scope(self, scope: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return (None if scope.get("elsewhere") else self.public), scope


def _application(routes: list[Any] = websocket_urlpatterns) -> Site:
    return Site(ProtocolTypeRouter({"websocket": URLRouter(routes)}))


def test_realtimes_own_router_is_followed_to_the_consumer() -> None:
    app, routed = direct_application(realtime_application(), _scope("/app/k1"))
    assert isinstance(app, PusherConsumer)
    assert routed["url_route"] == {"args": (), "kwargs": {"app_key": "k1"}}


def test_realtimes_router_hands_other_paths_to_the_hosts_websocket_app() -> None:
    async def host(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    application = realtime_application(websocket=host)
    assert direct_application(application, _scope("/chat/room"))[0] is host
    assert isinstance(direct_application(application, _scope("/app/k1"))[0], PusherConsumer)


def test_realtimes_router_honours_the_path_prefix(settings) -> None:
    settings.REALTIME = {"PATH_PREFIX": "/pusher"}
    app, routed = direct_application(realtime_application(), _scope("/pusher/app/k1"))
    assert isinstance(app, PusherConsumer)
    assert routed["url_route"]["kwargs"] == {"app_key": "k1"}
    _, unrouted = direct_application(realtime_application(), _scope("/app/k1"))
    assert "url_route" not in unrouted  # the consumer refuses it with 4005


def test_routes_resolve_to_a_consumer_with_channels_url_route() -> None:
    scope = _scope("/app/k1")
    app, routed = direct_application(_application(), scope)
    assert isinstance(app, PusherConsumer)
    assert routed["url_route"] == {"args": (), "kwargs": {"app_key": "k1"}}
    assert routed["path_remaining"] == ""
    assert "url_route" not in scope  # the server's scope is not changed, as with URLRouter


def test_the_catch_all_route_still_reaches_the_consumer() -> None:
    app, routed = direct_application(_application(), _scope("/elsewhere"))
    assert isinstance(app, PusherConsumer)
    assert routed["url_route"]["kwargs"] == {}


def test_nested_url_routers_resolve() -> None:
    inner = URLRouter([path("<str:app_key>", PusherConsumer.as_asgi())])
    app, routed = direct_application(_application([path("v1/app/", inner)]), _scope("/v1/app/k2"))
    assert isinstance(app, PusherConsumer)
    assert routed["url_route"]["kwargs"] == {"app_key": "k2"}


def test_a_router_answering_itself_runs_as_usual() -> None:
    application = _application()
    scope = _scope("/app/k1", elsewhere=True)
    assert direct_application(application, scope) == (application, scope)


def test_unmatched_paths_run_the_whole_application() -> None:
    application = _application([re_path(r"^only$", PusherConsumer.as_asgi())])
    scope = _scope("/other")
    assert direct_application(application, scope) == (application, scope)


def test_middleware_runs_with_the_scope_it_would_have_received() -> None:
    class Middleware:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            await self.inner(scope, receive, send)

    middleware = Middleware(URLRouter(websocket_urlpatterns))
    application = Site(ProtocolTypeRouter({"websocket": middleware}))
    scope = _scope("/app/k1")
    assert direct_application(application, scope) == (middleware, scope)


def test_a_wrapped_consumer_app_is_not_skipped() -> None:
    inner = PusherConsumer.as_asgi()

    @functools.wraps(inner)
    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await inner(scope, receive, send)

    app, _ = direct_application(_application([path("app/<str:app_key>", wrapper)]), _scope("/app/k1"))
    assert app is wrapper
