"""ASGI entry point of the standalone deployment: Realtime in front of this project's Django.

The metrics site is not here: the ``metrics`` app serves it on a private listener of its own.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_application = get_asgi_application()

from realtime.asgi import realtime_application  # noqa: E402

application = realtime_application(django_application)
