"""ASGI entry point: the public site (WebSocket, HTTP API, admin) and the private metrics site.

The site is chosen by the port a request arrived on (``scope["server"]``), never by a header,
so ``/metrics`` cannot be reached through the public port.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from metrics.asgi import SiteRouter  # noqa: E402
from realtime.api.asgi import ApiApplication  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

application = SiteRouter(
    public=ProtocolTypeRouter(
        {"http": ApiApplication(django_application), "websocket": URLRouter(websocket_urlpatterns)}
    )
)
