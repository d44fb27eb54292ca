"""Public site of the standalone deployment: a landing page and the admin. Realtime's own paths are
served by ``realtime.asgi`` in front of Django (WebSocket, HTTP API, /health, /ready)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from .views import landing

admin.site.site_header = "Realtime"
admin.site.site_title = "Realtime"
admin.site.index_title = "Apps, webhooks and users"

urlpatterns = [
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
]
