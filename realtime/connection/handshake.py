"""The checks of a WebSocket handshake that need no state: the protocol and client versions, the origin.

https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#connection
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..protocol import errors
from ..protocol.errors import PusherError

# connection_errors_total's reason label for each refusal.
_REASONS = {
    errors.APP_NOT_FOUND: "unknown_app",
    errors.APP_DISABLED: "app_disabled",
    errors.OVER_CONNECTION_QUOTA: "over_quota",
    errors.PATH_NOT_FOUND: "bad_path",
    errors.UNSUPPORTED_PROTOCOL: "bad_protocol",
    errors.NO_PROTOCOL: "bad_protocol",
    errors.INVALID_VERSION: "bad_version",
    errors.UNAUTHORIZED: "origin",
    errors.RECONNECT: "draining",
    errors.OVER_CAPACITY: "unavailable",
}


def refusal_reason(code: int | None) -> str:
    """The bounded ``reason`` label of a refused handshake with ``code``."""
    return _REASONS.get(code or 0, "other")


# What the official clients send as ``version`` (pusher-js "8.4.0", "8.4.0-rc2", the mobile SDKs
# "10.1.5"), and what others do ("v2.1.0"): dotted numbers, then an optional pre-release or build
# suffix ("+" arrives as a space when a client does not encode it).
_CLIENT_VERSION = re.compile(r"\A[vV]?[0-9]{1,9}(\.[0-9]{1,9}){0,3}([-+ ][0-9A-Za-z.+-]{1,32})?\Z")


def check_protocol(query_string: bytes, minimum: int, maximum: int) -> None:
    """Check the handshake's query: raise ``PusherError`` 4008 without ``?protocol=``, 4007 outside
    ``minimum..maximum``, 4006 for a ``version`` (the client library's) that is not a version.

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#error-codes
    """
    query = parse_qs(query_string.decode("latin1"), keep_blank_values=True)
    versions = query.get("version")
    if versions is not None and not _CLIENT_VERSION.match(versions[0]):
        raise PusherError(errors.INVALID_VERSION, "Invalid version string format")
    values = query.get("protocol")
    if not values or not values[0]:
        raise PusherError(errors.NO_PROTOCOL, "No protocol version supplied")
    try:
        version = int(values[0])
    except ValueError:
        raise PusherError(errors.UNSUPPORTED_PROTOCOL, "Unsupported protocol version") from None
    if not minimum <= version <= maximum:
        raise PusherError(errors.UNSUPPORTED_PROTOCOL, "Unsupported protocol version")


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """The first request header ``name`` (lower case bytes) of an ASGI scope, decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin1")
    return None


def origin_allowed(allowed: tuple[str, ...], origin: str | None) -> bool:
    """Whether ``origin`` matches one of an app's allowed origins (exact, or ``*.example.com``).

    No allowed origins (or ``*``) allows every origin, a missing Origin header included.
    """
    if not allowed or "*" in allowed:
        return True
    if not origin:
        return False
    origin = origin.lower().rstrip("/")
    host = urlsplit(origin).hostname or ""
    for pattern in allowed:
        pattern = pattern.lower().rstrip("/")
        if pattern == origin:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if "://" in pattern:
            scheme, _, rest = pattern.partition("://")
            if rest.startswith("*.") and origin.startswith(scheme + "://") and host.endswith(rest[1:]):
                return True
    return False
