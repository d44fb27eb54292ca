"""Pusher error codes and the close policy that goes with each range.

https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#error-codes
"""

from __future__ import annotations

TLS_ONLY = 4000
APP_NOT_FOUND = 4001
APP_DISABLED = 4003
OVER_CONNECTION_QUOTA = 4004
PATH_NOT_FOUND = 4005
INVALID_VERSION = 4006
UNSUPPORTED_PROTOCOL = 4007
NO_PROTOCOL = 4008
UNAUTHORIZED = 4009
OVER_CAPACITY = 4100
RECONNECT = 4200
PONG_NOT_RECEIVED = 4201
CLOSED_AFTER_INACTIVITY = 4202
CLIENT_EVENT_REJECTED = 4301
WATCHLIST_LIMIT = 4302
# 4300-4399 is "any other error": sent as pusher:error without closing.
GENERIC_ERROR = 4300

# Close codes a connection can end with: RFC 6455's and Pusher's (metric label values).
KNOWN_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1012}
    | {TLS_ONLY, APP_NOT_FOUND, APP_DISABLED, OVER_CONNECTION_QUOTA, PATH_NOT_FOUND, INVALID_VERSION}
    | {UNSUPPORTED_PROTOCOL, NO_PROTOCOL, UNAUTHORIZED, OVER_CAPACITY, RECONNECT, PONG_NOT_RECEIVED}
    | {CLOSED_AFTER_INACTIVITY}
)


def close_code_label(code: object) -> str:
    """``code`` as a bounded metric label: the code itself when known, else ``"other"``."""
    return str(code) if code in KNOWN_CLOSE_CODES else "other"


class PusherError(Exception):
    """A protocol error reported to the client as ``pusher:error``.

    ``code`` may be None: the hosted service sends ``code: null`` for subscription
    errors such as a bad signature, and pusher-js accepts it.
    """

    def __init__(self, code: int | None, message: str, channel: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.channel = channel

    @property
    def closes(self) -> bool:
        """True when ``code`` closes the socket (4000-4299: ``closes_connection``); 43xx and None do not.

        https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#error-codes
        """
        return closes_connection(self.code)


def closes_connection(code: int | None) -> bool:
    """4000-4299 close the socket; 43xx must not (pusher-js treats a 43xx close as refused)."""
    return code is not None and 4000 <= code <= 4299
