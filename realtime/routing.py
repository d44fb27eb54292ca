"""WebSocket routes: ``/app/<key>`` for Pusher clients; any other path is refused with 4005."""

from __future__ import annotations

from django.urls import path, re_path

from .consumers import PusherConsumer

websocket_urlpatterns = [
    path("app/<str:app_key>", PusherConsumer.as_asgi()),
    re_path(r"", PusherConsumer.as_asgi()),
]
