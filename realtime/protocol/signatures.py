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
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def verify(secret: str, message: str | bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, message), signature)


def channel_string_to_sign(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def user_string_to_sign(socket_id: str, user_data: str) -> str:
    return f"{socket_id}::user::{user_data}"


def channel_auth(key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """The ``auth`` token an app's auth endpoint returns: ``"<key>:<hex>"``."""
    return f"{key}:{sign(secret, channel_string_to_sign(socket_id, channel, channel_data))}"


def user_auth(key: str, secret: str, socket_id: str, user_data: str) -> str:
    return f"{key}:{sign(secret, user_string_to_sign(socket_id, user_data))}"


def verify_token(key: str, secret: str, token: object, string_to_sign: str) -> bool:
    """Check a ``"<key>:<hex>"`` token in constant time; a token for another key fails."""
    if not isinstance(token, str):
        return False
    token_key, sep, signature = token.partition(":")
    if not sep:
        return False
    key_ok = hmac.compare_digest(token_key.encode(), key.encode())
    return verify(secret, string_to_sign, signature) and key_ok


def body_md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def api_string_to_sign(method: str, path: str, params: Mapping[str, str]) -> str:
    """Method, path and the sorted, unescaped query (without auth_signature), joined by newlines."""
    lowered = {key.lower(): value for key, value in params.items()}
    lowered.pop("auth_signature", None)
    query = "&".join(f"{key}={lowered[key]}" for key in sorted(lowered))
    return f"{method.upper()}\n{path}\n{query}"


def api_signature(secret: str, method: str, path: str, params: Mapping[str, str]) -> str:
    return sign(secret, api_string_to_sign(method, path, params))


def webhook_signature(secret: str, body: bytes) -> str:
    return sign(secret, body)
