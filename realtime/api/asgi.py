"""The HTTP API served straight from ASGI, without Django's per-request machinery.

Django's ``ASGIHandler`` runs the request_started/finished signals and every sync-capable
middleware through ``sync_to_async``: several thread hops per request, measured at ~990 µs of
CPU per ``POST /events`` against ~210 µs for a plain ASGI handler (docs/architecture.md, "The
HTTP API without Django's handler"). The API views need none of it (no sessions, no CSRF, no ORM
on the hot path), so ``ApiApplication`` resolves API paths itself, builds Django's
``ASGIRequest``, calls the same views and sends their response.
"""

from __future__ import annotations

import io
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.urls import Resolver404, ResolverMatch, resolve

from . import views
from .errors import ApiError, render

# The largest API request body read at all; event size limits are checked by the views.
MAX_BODY_BYTES = 1024 * 1024
PREFIXES = ("/apps/", "/users/")


class ApiApplication:
    """The Pusher HTTP API routes of ``urlconf`` as an ASGI application for ``http`` scopes."""

    def __init__(self, urlconf: str = "realtime.api.urls") -> None:
        self.urlconf = urlconf

    def match(self, path: str) -> ResolverMatch | None:
        """The API route of ``path`` (below any prefix); None when it is not under the API's
        prefixes. Any other path under them is the API's JSON 404 (``views.not_found``)."""
        if not path.startswith(PREFIXES):
            return None
        try:
            return resolve(path, urlconf=self.urlconf)
        except Resolver404:
            return ResolverMatch(views.not_found, (), {}, url_name="not_found")

    async def serve(self, match: ResolverMatch, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer the request ``match`` was resolved for. ``scope["root_path"]`` holds any prefix.

        A body declared larger than ``MAX_BODY_BYTES`` is refused (413) before any of it is read;
        one that streams past it undeclared is cut off there.
        """
        declared = _content_length(scope)
        if declared is None:
            response: HttpResponse = render(ApiError(400, "Content-Length must be a number of bytes"))
        elif declared > MAX_BODY_BYTES:
            response = render(ApiError(413, "Request body too large"))
        else:
            body = await _read_body(receive)
            if body is None:
                response = render(ApiError(413, "Request body too large"))
            else:
                try:
                    request = ASGIRequest(scope, io.BytesIO(body))
                except UnicodeDecodeError:  # raw bytes that are not UTF-8 in the query string
                    response = render(ApiError(400, "The query string is not UTF-8"))
                else:
                    request.resolver_match = match
                    response = await match.func(request, *match.args, **match.kwargs)
        await _send_response(response, send)


def _content_length(scope: dict[str, Any]) -> int | None:
    """The declared body length (0 when not declared), or None when it is not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            if not value.isdigit():
                return None
            return int(value) if len(value) < 19 else MAX_BODY_BYTES + 1  # no int() of 10**6 digits
    return 0


async def _read_body(receive: Any) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_response(response: HttpResponse, send: Any) -> None:
    headers = [(name.encode("latin1"), value.encode("latin1")) for name, value in response.items()]
    content = response.content
    headers.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": content})
