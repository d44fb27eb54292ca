"""HTTP API routes, resolved by ``api.asgi.ApiApplication`` (not included in a project's urls.py)."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "realtime_api"

urlpatterns = [
    path("apps/<str:app_id>/events", views.trigger_event, name="events"),
    path("apps/<str:app_id>/batch_events", views.trigger_batch, name="batch_events"),
    path("apps/<str:app_id>/channels", views.channels, name="channels"),
    path("apps/<str:app_id>/channels/<str:channel_name>", views.channel, name="channel"),
    path("apps/<str:app_id>/channels/<str:channel_name>/users", views.channel_users, name="channel_users"),
    path(
        "apps/<str:app_id>/users/<str:user_id>/terminate_connections",
        views.terminate_connections,
        name="terminate_connections",
    ),
    # The official Python SDK posts here without the /apps/<id> prefix (terminate_user_connections in
    # https://github.com/pusher/pusher-http-python/blob/master/pusher/pusher_client.py).
    path(
        "users/<str:user_id>/terminate_connections",
        views.terminate_connections,
        name="terminate_connections_unprefixed",
    ),
]
