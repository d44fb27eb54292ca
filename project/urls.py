"""Public site: the Pusher HTTP API, health endpoints and the admin. Metrics live on their own site."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from realtime import health

urlpatterns = [
    path("health", health.health, name="health"),
    path("ready", health.ready, name="ready"),
    path("admin/", admin.site.urls),
    path("", include("realtime.api.urls")),
]
