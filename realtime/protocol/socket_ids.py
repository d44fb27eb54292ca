"""Socket ids: two decimal integers joined by a dot, drawn from a CSPRNG so they cannot be guessed."""

from __future__ import annotations

import re
import secrets

# [0-9], not \d: \d also matches other scripts' digits ("١٢.٣").
_SOCKET_ID_RE = re.compile(r"[0-9]+\.[0-9]+")


def new_socket_id() -> str:
    """A fresh socket id: two random integers below 10**10 joined by a dot (``"1234.5678"``).

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#connection-events
    """
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}"


def is_valid_socket_id(value: object) -> bool:
    """True when ``value`` is a str of ASCII digits, a dot and ASCII digits, the socket id format the
    official server SDKs validate.
    """
    return isinstance(value, str) and _SOCKET_ID_RE.fullmatch(value) is not None
