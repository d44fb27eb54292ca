"""Signed-request verification for the HTTP API.

https://pusher.com/docs/channels/library_auth_reference/rest-api/#authentication
"""

from __future__ import annotations

import hmac
import re
import time

from django.http import HttpRequest

from ..credentials import AppCredentials, CredentialsCache
from ..protocol.limits import API_TIMESTAMP_WINDOW_SECONDS
from ..protocol.signatures import api_signature, body_md5
from .errors import ApiError

_TIMESTAMP = re.compile(r"-?[0-9]{1,20}")
_REQUIRED = ("auth_key", "auth_timestamp", "auth_version", "auth_signature")


async def authenticate(
    credentials: CredentialsCache, request: HttpRequest, app_id: str | None
) -> AppCredentials:
    """The app a request is signed for; ``app_id`` None means "resolve it from auth_key".

    Raises ``ApiError`` 401 (missing or bad parameters, signature, timestamp, body_md5), 403 (app
    disabled) or 404 (unknown app). The signature is checked over the path as the client sent it
    and over the path below a prefix (``root_path``: a prefix-stripping proxy, ``PATH_PREFIX``).
    """
    params = {key: request.GET[key] for key in request.GET}
    if app_id is None:
        key = params.get("auth_key")
        if not key:
            raise ApiError(401, "Missing authentication parameters: auth_key", "missing_params")
        app = await credentials.by_key(key)
    else:
        app = await credentials.by_id(app_id)
    if app is None:
        raise ApiError(404, "Unknown app", "unknown_app")
    try:
        _verify(request, app, params)
    except ApiError as error:
        error.app_id = app.id
        raise
    return app


def _verify(request: HttpRequest, app: AppCredentials, params: dict[str, str]) -> None:
    missing = [name for name in _REQUIRED if not params.get(name)]
    if missing:
        raise ApiError(401, f"Missing authentication parameters: {', '.join(missing)}", "missing_params")
    secret = app.secret_for(params["auth_key"])
    if secret is None:
        raise ApiError(401, "Unknown auth_key for this app", "unknown_key")
    if params["auth_version"] != "1.0":
        raise ApiError(401, "Unsupported auth_version", "bad_version")
    raw_timestamp = params["auth_timestamp"]
    # ASCII digits of a sane length only: int() takes "١٢", "1_0" and 4,000 digits, and a float
    # of the last overflows.
    if _TIMESTAMP.fullmatch(raw_timestamp) is None:
        raise ApiError(401, "auth_timestamp must be an integer", "stale_timestamp")
    timestamp = int(raw_timestamp)
    if abs(time.time() - timestamp) > API_TIMESTAMP_WINDOW_SECONDS:
        raise ApiError(
            401,
            f"Timestamp expired: auth_timestamp must be within {API_TIMESTAMP_WINDOW_SECONDS} s "
            "of the server's time",
            "stale_timestamp",
        )
    body = request.body
    if (body or "body_md5" in params) and not hmac.compare_digest(
        params.get("body_md5", "").encode(), body_md5(body).encode()
    ):
        raise ApiError(401, "body_md5 does not match the request body", "bad_body_md5")
    signature = params["auth_signature"].encode()
    # Verify over the path as the client signed it; behind a prefix-stripping proxy that is
    # the path before the prefix was removed (the Reverb "signature invalid" trap).
    for path in dict.fromkeys((request.path, request.path_info)):
        expected = api_signature(secret, request.method or "GET", path, params)
        if hmac.compare_digest(expected.encode(), signature):
            break
    else:
        raise ApiError(401, "Invalid signature", "bad_signature")
    if not app.enabled:
        raise ApiError(403, "Application disabled", "disabled")
