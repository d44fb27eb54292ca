"""Allowed WebSocket origins per app: exact origins or ``*.example.com`` wildcards."""

from __future__ import annotations

from urllib.parse import urlsplit


def origin_allowed(allowed: tuple[str, ...], origin: str | None) -> bool:
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
