"""Client frames decoded into typed values; server frames encoded to text exactly once.

Double encoding and the event catalogue:
https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#double-encoding
https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#events
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypedDict

from .errors import GENERIC_ERROR, PusherError
from .limits import MAX_JSON_DEPTH

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# A \uD800-\uDFFF escape may decode to a lone surrogate, which no UTF-8 encoder accepts.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("JSON number out of range")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of arrays and objects in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def loads(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted input (RFC 8259 only): every way it fails is a ValueError.

    Refused: ``NaN``/``Infinity`` and numbers too large for a float (not JSON, and not encodable
    again), nesting deeper than ``max_depth`` (the parser would hit the recursion limit, or a
    relayed value would later, in every subscriber's answer), and a lone surrogate escape
    (``"\\ud800"``, which parses but cannot be encoded again).
    """
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_number)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # Fewer brackets than the limit cannot nest deeper: most texts skip the walk.
    if text.count("[") + text.count("{") > max_depth and _depth(value) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(text) is not None:  # rare: only then pay for a second pass
        try:
            _dumps(value).encode()
        except UnicodeEncodeError:
            raise ValueError("JSON contains a lone surrogate") from None
    return value


class ClientFrame(TypedDict):
    """A decoded client frame: ``event`` (a non-empty str), ``channel`` (str or None) and ``data``
    (any JSON value; None when absent), as ``decode_client_frame`` returns it.

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#events
    """

    event: str
    channel: str | None
    data: Any


def decode_client_frame(text: str) -> ClientFrame:
    """Parse one client frame; anything that is not an object with a string ``event`` is a PusherError."""
    try:
        message = loads(text)
    except ValueError:
        raise PusherError(GENERIC_ERROR, "Invalid JSON") from None
    if not isinstance(message, dict):
        raise PusherError(GENERIC_ERROR, "Message must be a JSON object")
    event = message.get("event")
    if not isinstance(event, str) or not event:
        raise PusherError(GENERIC_ERROR, "Message must have a string event")
    channel = message.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise PusherError(GENERIC_ERROR, "channel must be a string")
    return {"event": event, "channel": channel, "data": message.get("data")}


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces, non-ASCII kept); TypeError for a value JSON cannot encode."""
    return _dumps(value)


def encode_event(event: str, channel: str | None = None, data: Any = None, user_id: str | None = None) -> str:
    """One server frame. ``data`` that is not already a string is JSON-encoded into one (double encoding)."""
    frame: dict[str, Any] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    if data is not None:
        frame["data"] = data if isinstance(data, str) else _dumps(data)
    if user_id is not None:
        frame["user_id"] = user_id
    return _dumps(frame)


def connection_established(socket_id: str, activity_timeout: int) -> str:
    """``pusher:connection_established`` with ``{"socket_id", "activity_timeout"}`` (seconds) as data.

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#connection-events
    """
    return encode_event(
        "pusher:connection_established",
        data={"socket_id": socket_id, "activity_timeout": activity_timeout},
    )


def error(code: int | None, message: str, channel: str | None = None) -> str:
    """``pusher:error`` with ``{"code", "message"}`` as data (``code`` may be None); ``channel``, when
    given, names at the top level the channel the error concerns.

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#system-events
    """
    return encode_event("pusher:error", channel, data={"code": code, "message": message})


def subscription_error(channel: str, error_type: str, message: str, status: int) -> str:
    """``pusher:subscription_error`` on ``channel`` with ``{"type", "error", "status"}`` as data: a
    category such as ``"AuthError"``, a message and an HTTP status code, as pusher-js reports them.

    https://pusher.com/docs/channels/using_channels/events/#channel-events
    """
    return encode_event(
        "pusher:subscription_error",
        channel,
        data={"type": error_type, "error": message, "status": status},
    )


PONG = encode_event("pusher:pong", data={})
PING = encode_event("pusher:ping", data={})


def subscription_succeeded(channel: str, presence: dict[str, Any] | None = None) -> str:
    """``pusher_internal:subscription_succeeded`` on ``channel``: data ``{}``, or on a presence channel
    ``{"presence": presence}`` with ``presence`` from ``members_payload``.

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#presence-channel-events
    """
    return encode_event(
        "pusher_internal:subscription_succeeded",
        channel,
        data={"presence": presence} if presence is not None else {},
    )


def cache_miss(channel: str) -> str:
    """``pusher:cache_miss`` on ``channel``, without data: the cache channel holds no last event.

    https://pusher.com/docs/channels/using_channels/cache-channels/
    """
    return encode_event("pusher:cache_miss", channel)


def member_added(channel: str, user_id: str, user_info: Any) -> str:
    """``pusher_internal:member_added`` on ``channel`` with ``{"user_id", "user_info"}`` as data
    (``user_info`` left out when None).

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#presence-channel-events
    """
    data: dict[str, Any] = {"user_id": user_id}
    if user_info is not None:
        data["user_info"] = user_info
    return encode_event("pusher_internal:member_added", channel, data=data)


def member_removed(channel: str, user_id: str) -> str:
    """``pusher_internal:member_removed`` on ``channel`` with ``{"user_id"}`` as data.

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#presence-channel-events
    """
    return encode_event("pusher_internal:member_removed", channel, data={"user_id": user_id})


def subscription_count(channel: str, count: int) -> str:
    """``pusher_internal:subscription_count`` on ``channel`` with ``{"subscription_count": count}``
    as data (pusher-js emits it to the app as ``pusher:subscription_count``).

    https://pusher.com/docs/channels/using_channels/events/#channel-events
    """
    return encode_event("pusher_internal:subscription_count", channel, data={"subscription_count": count})


def signin_success(user_data: str) -> str:
    """``pusher:signin_success`` with ``{"user_data": user_data}``: the string the client signed in with.

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#connection-events
    """
    return encode_event("pusher:signin_success", data={"user_data": user_data})


def watchlist_events(events: list[dict[str, Any]]) -> str:
    """``pusher_internal:watchlist_events`` (no channel) with ``{"events": events}`` as data, each
    event ``{"name": "online" or "offline", "user_ids": [...]}``.

    https://pusher.com/docs/channels/using_channels/watchlist-events/
    """
    return encode_event("pusher_internal:watchlist_events", data={"events": events})
