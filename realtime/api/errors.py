"""``ApiError`` and its rendering as JSON: the one place an HTTP API error becomes a response."""

from __future__ import annotations

from django.http import JsonResponse


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str = "", app_id: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # Bounded label for api_authentication_failures_total (bad_signature, stale, ...).
        self.reason = reason
        # Set only once the app is known to exist: unknown ids never become label values.
        self.app_id = app_id


def render(error: ApiError) -> JsonResponse:
    return JsonResponse({"error": error.message}, status=error.status)
