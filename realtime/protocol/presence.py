"""Presence channel_data and sign-in user_data: parsing, limits and the members payload.

Presence limits: https://pusher.com/docs/channels/using_channels/presence-channels/
What is signed ("Presence channels", "User authentication"):
https://pusher.com/docs/channels/library_auth_reference/auth-signatures/
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import GENERIC_ERROR, UNAUTHORIZED, PusherError
from .frames import loads
from .limits import MAX_SIGNIN_USER_ID_LENGTH
from .names import user_id_error


@dataclass(frozen=True, slots=True)
class Member:
    """A presence member from ``channel_data``: ``user_id`` (str; a numeric id as its string) and
    ``user_info`` (any JSON value; None when absent).

    https://pusher.com/docs/channels/using_channels/presence-channels/
    """

    user_id: str
    user_info: Any = None


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """A signed-in user from ``user_data``: its ``id`` as ``user_id``, ``user_info`` (any JSON value;
    None when absent) and ``watchlist`` (user ids, in order, without duplicates).

    https://pusher.com/docs/channels/using_channels/user-authentication/
    """

    user_id: str
    user_info: Any = None
    watchlist: tuple[str, ...] = field(default_factory=tuple)


def _normalise_user_id(raw: object) -> str | None:
    # channel_data may carry a numeric user_id; pusher-js keys members by its string form.
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str):
        return raw
    return None


def parse_channel_data(channel_data: object, max_member_size_kb: float) -> Member:
    """The ``Member`` in a presence subscription's ``channel_data``: a JSON object string of at most
    ``max_member_size_kb`` KiB (UTF-8) with a valid ``user_id`` (str or int) and optional ``user_info``.
    Raises ``PusherError`` (4300) when any of that does not hold.

    https://pusher.com/docs/channels/using_channels/presence-channels/
    """
    if not isinstance(channel_data, str):
        raise PusherError(GENERIC_ERROR, "channel_data must be a JSON string")
    if len(channel_data.encode()) > max_member_size_kb * 1024:
        raise PusherError(GENERIC_ERROR, f"Presence member data is larger than {max_member_size_kb} KB")
    try:
        data = loads(channel_data)
    except ValueError:
        raise PusherError(GENERIC_ERROR, "channel_data is not valid JSON") from None
    if not isinstance(data, dict):
        raise PusherError(GENERIC_ERROR, "channel_data must be a JSON object")
    user_id = _normalise_user_id(data.get("user_id"))
    if user_id is None or user_id_error(user_id) is not None:
        raise PusherError(GENERIC_ERROR, "channel_data has an invalid user_id")
    return Member(user_id, data.get("user_info"))


def parse_user_data(user_data: object) -> SignedInUser:
    """The ``SignedInUser`` in ``pusher:signin``'s ``user_data``: a JSON object string with a valid str
    ``id`` (at most 200 characters), optional ``user_info`` and ``watchlist`` (a list of str).
    Raises ``PusherError`` 4009 (unauthorized, which closes the socket) when any of that does not hold.

    https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#connection-events
    """
    if not isinstance(user_data, str):
        raise PusherError(UNAUTHORIZED, "user_data must be a JSON string")
    try:
        data = loads(user_data)
    except ValueError:
        raise PusherError(UNAUTHORIZED, "user_data is not valid JSON") from None
    if not isinstance(data, dict):
        raise PusherError(UNAUTHORIZED, "user_data must be a JSON object")
    user_id = data.get("id")
    if not isinstance(user_id, str) or user_id_error(user_id, MAX_SIGNIN_USER_ID_LENGTH) is not None:
        raise PusherError(UNAUTHORIZED, "user_data must have a valid string id")
    watchlist = data.get("watchlist") or []
    if not isinstance(watchlist, list) or not all(isinstance(u, str) for u in watchlist):
        raise PusherError(UNAUTHORIZED, "watchlist must be a list of user ids")
    return SignedInUser(user_id, data.get("user_info"), tuple(dict.fromkeys(watchlist)))


def members_payload(members: Mapping[str, Any]) -> dict[str, Any]:
    """``{"ids", "hash", "count"}`` for subscription_succeeded; ``members`` maps user id to user_info."""
    return {"ids": list(members), "hash": dict(members), "count": len(members)}
