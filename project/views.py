"""The standalone deployment's landing page at ``/``: what this server is, and where to go."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

import realtime
from realtime.conf import get_settings


def landing(request: HttpRequest) -> HttpResponse:
    """``GET /``: the server's name and version, its endpoints, and a link to the admin."""
    prefix = get_settings().PATH_PREFIX
    context = {"version": realtime.__version__, "prefix": prefix}
    return render(request, "landing.html", context)
