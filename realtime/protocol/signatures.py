"""HMAC-SHA256 signing for channel auth, user sign-in, the HTTP API and webhooks.

Channels and sign-in: https://pusher.com/docs/channels/library_auth_reference/auth-signatures/
HTTP API: https://pusher.com/docs/channels/library_auth_reference/rest-api/#authentication
Webhooks: https://pusher.com/docs/channels/server_api/webhooks/#authentication
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def sign(secret: str, message: str | bytes) -> str:
    """Hex HMAC-SHA256 (64 lowercase characters) of ``message`` (a str is UTF-8 encoded) under ``secret``."""
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def verify(secret: str, message: str | bytes, signature: str) -> bool:
    """True when ``signature`` is ``sign(secret, message)``, compared in constant time.

    Any string is an answer, never an error: a signature is hex, so one with a character outside
    ASCII is simply wrong (``hmac.compare_digest`` refuses such a ``str``: compare bytes).
    """
    return hmac.compare_digest(sign(secret, message).encode(), signature.encode("utf-8", "replace"))


def channel_string_to_sign(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """What a channel auth token signs: ``"<socket_id>:<channel>"``, with ``":<channel_data>"``
    appended for a presence channel ("Presence channels").

    https://pusher.com/docs/channels/library_auth_reference/auth-signatures/
    """
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def user_string_to_sign(socket_id: str, user_data: str) -> str:
    """What a ``pusher:signin`` auth token signs: ``"<socket_id>::user::<user_data>"``.

    https://pusher.com/docs/channels/library_auth_reference/auth-signatures/ ("User authentication")
    """
    return f"{socket_id}::user::{user_data}"


def channel_auth(key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """The ``auth`` token an app's auth endpoint returns: ``"<key>:<hex>"``."""
    return f"{key}:{sign(secret, channel_string_to_sign(socket_id, channel, channel_data))}"


def user_auth(key: str, secret: str, socket_id: str, user_data: str) -> str:
    """The ``auth`` token an app's user authentication endpoint returns: ``"<key>:<hex>"``.

    https://pusher.com/docs/channels/library_auth_reference/auth-signatures/ ("User authentication")
    """
    return f"{key}:{sign(secret, user_string_to_sign(socket_id, user_data))}"


def verify_token(key: str, secret: str, token: object, string_to_sign: str) -> bool:
    """Check a ``"<key>:<hex>"`` token in constant time; a token for another key fails."""
    if not isinstance(token, str):
        return False
    token_key, sep, signature = token.partition(":")
    if not sep:
        return False
    key_ok = hmac.compare_digest(token_key.encode("utf-8", "replace"), key.encode())
    return verify(secret, string_to_sign, signature) and key_ok


def body_md5(body: bytes) -> str:
    """Lowercase hex MD5 of a request body: the HTTP API's ``body_md5`` parameter (not a security use).

    https://pusher.com/docs/channels/library_auth_reference/rest-api/#authentication
    """
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def api_string_to_sign(method: str, path: str, params: Mapping[str, str]) -> str:
    """Method, path and the sorted, unescaped query (without auth_signature), joined by newlines."""
    lowered = {key.lower(): value for key, value in params.items()}
    lowered.pop("auth_signature", None)
    query = "&".join(f"{key}={lowered[key]}" for key in sorted(lowered))
    return f"{method.upper()}\n{path}\n{query}"


def api_signature(secret: str, method: str, path: str, params: Mapping[str, str]) -> str:
    """An HTTP API request's ``auth_signature``: hex HMAC-SHA256 of ``api_string_to_sign`` under ``secret``.

    https://pusher.com/docs/channels/library_auth_reference/rest-api/#authentication
    """
    return sign(secret, api_string_to_sign(method, path, params))


def webhook_signature(secret: str, body: bytes) -> str:
    """A webhook's ``X-Pusher-Signature``: hex HMAC-SHA256 of the exact request ``body`` under ``secret``.

    https://pusher.com/docs/channels/server_api/webhooks/#authentication
    """
    return sign(secret, body)
