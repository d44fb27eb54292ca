"""Public site of the standalone deployment: the admin. Realtime's own paths are served by
``realtime.asgi`` in front of Django (WebSocket, HTTP API, /health, /ready)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
