"""``ApiError`` and its rendering as JSON: the one place an HTTP API error becomes a response."""

from __future__ import annotations

from django.http import JsonResponse


class ApiError(Exception):
    """An HTTP API request refused: ``status`` (an HTTP status code), ``message`` (the body's
    ``error``), ``reason`` (a bounded metric label, empty when not an authentication failure) and
    ``app_id`` (empty until the app is known to exist); ``retry_after``: whole seconds for a
    ``Retry-After`` header (a 429 that ends at a known time).

    https://pusher.com/docs/channels/library_auth_reference/rest-api/
    """

    def __init__(
        self, status: int, message: str, reason: str = "", app_id: str = "", retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # Bounded label for api_authentication_failures_total (bad_signature, stale, ...).
        self.reason = reason
        # Set only once the app is known to exist: unknown ids never become label values.
        self.app_id = app_id
        self.retry_after = retry_after


def render(error: ApiError) -> JsonResponse:
    """``error`` as a JSON response: ``{"error": message}`` with the error's ``status`` (and its
    ``Retry-After``)."""
    response = JsonResponse({"error": error.message}, status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response
