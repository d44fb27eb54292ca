"""Channel and event names: the grammar, the kind of a channel, and its rules.

Kinds by prefix: https://pusher.com/docs/channels/using_channels/channels/#channel-types
Grammar and length: https://pusher.com/docs/channels/using_channels/channels/#channel-naming-conventions
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .limits import (
    MAX_CHANNEL_NAME_LENGTH,
    MAX_EVENT_NAME_LENGTH,
    MAX_SIGNIN_USER_ID_LENGTH,
    MAX_USER_ID_LENGTH,
)

# \A...\Z with fullmatch: "$" would let a trailing newline through.
_CHANNEL_RE = re.compile(r"[-a-zA-Z0-9_=@,.;]+")
_USER_ID_RE = re.compile(r"[-a-zA-Z0-9_=@,.;]+")
SERVER_TO_USER_PREFIX = "#server-to-user-"
CLIENT_EVENT_PREFIX = "client-"


@dataclass(frozen=True, slots=True)
class ChannelKind:
    """What a channel prefix means for auth, presence, caching and client events."""

    name: str
    label: str  # bounded metric label: public, private, presence, encrypted, cache, user
    requires_auth: bool
    presence: bool = False
    encrypted: bool = False
    cache: bool = False
    client_events: bool = False
    user: bool = False


PUBLIC = ChannelKind("public", "public", requires_auth=False)
PRIVATE = ChannelKind("private", "private", requires_auth=True, client_events=True)
ENCRYPTED = ChannelKind("private-encrypted", "encrypted", requires_auth=True, encrypted=True)
PRESENCE = ChannelKind("presence", "presence", requires_auth=True, presence=True, client_events=True)
CACHE = ChannelKind("cache", "cache", requires_auth=False, cache=True)
PRIVATE_CACHE = ChannelKind("private-cache", "cache", requires_auth=True, cache=True, client_events=True)
ENCRYPTED_CACHE = ChannelKind(
    "private-encrypted-cache", "cache", requires_auth=True, encrypted=True, cache=True
)
PRESENCE_CACHE = ChannelKind(
    "presence-cache", "cache", requires_auth=True, presence=True, cache=True, client_events=True
)
SERVER_TO_USER = ChannelKind("server-to-user", "user", requires_auth=False, user=True)

# Longest prefix first: private-encrypted-cache- before private-encrypted- before private-.
_PREFIXES: tuple[tuple[str, ChannelKind], ...] = (
    ("private-encrypted-cache-", ENCRYPTED_CACHE),
    ("private-encrypted-", ENCRYPTED),
    ("private-cache-", PRIVATE_CACHE),
    ("private-", PRIVATE),
    ("presence-cache-", PRESENCE_CACHE),
    ("presence-", PRESENCE),
    ("cache-", CACHE),
    (SERVER_TO_USER_PREFIX, SERVER_TO_USER),
)

_BARE_PREFIXES = frozenset(prefix for prefix, _ in _PREFIXES) - {SERVER_TO_USER_PREFIX}

CHANNEL_TYPE_LABELS: tuple[str, ...] = ("public", "private", "presence", "encrypted", "cache", "user")


def channel_kind(channel: str) -> ChannelKind:
    """The ``ChannelKind`` of ``channel`` by its longest known prefix, else ``PUBLIC``. The name is
    not validated here (``channel_name_error`` does that).

    https://pusher.com/docs/channels/using_channels/channels/#channel-types
    """
    for prefix, kind in _PREFIXES:
        if channel.startswith(prefix):
            return kind
    return PUBLIC


def channel_name_error(channel: object, max_length: int = MAX_CHANNEL_NAME_LENGTH) -> str | None:
    """Why ``channel`` is not a valid channel name, or None when it is."""
    if not isinstance(channel, str) or not channel:
        return "Channel name must be a non-empty string"
    if len(channel) > max_length:
        return f"Channel name too long (max {max_length} characters)"
    if channel.startswith(SERVER_TO_USER_PREFIX):
        if user_id_error(channel[len(SERVER_TO_USER_PREFIX) :], MAX_SIGNIN_USER_ID_LENGTH) is None:
            return None
        return "Invalid server-to-user channel name"
    if _CHANNEL_RE.fullmatch(channel) is None:
        return "Channel name contains invalid characters"
    if channel in _BARE_PREFIXES:
        return "Channel name is only a prefix"
    return None


def user_id_error(user_id: object, max_length: int = MAX_USER_ID_LENGTH) -> str | None:
    """Why ``user_id`` is not a valid user id, or None when it is: a non-empty str of channel-name
    characters, at most ``max_length`` long (128 for presence members, 200 for sign-in).

    https://pusher.com/docs/channels/using_channels/presence-channels/
    """
    if not isinstance(user_id, str) or not user_id:
        return "User id must be a non-empty string"
    if len(user_id) > max_length:
        return f"User id too long (max {max_length} characters)"
    if _USER_ID_RE.fullmatch(user_id) is None:
        return "User id contains invalid characters"
    return None


def event_name_error(name: object) -> str | None:
    """Why ``name`` is not a valid event name, or None when it is: a non-empty str of at most
    ``MAX_EVENT_NAME_LENGTH`` (200) characters, the official server SDKs' limit.

    https://pusher.com/docs/channels/library_auth_reference/rest-api/#post-event-trigger-an-event
    """
    if not isinstance(name, str) or not name:
        return "Event name must be a non-empty string"
    if len(name) > MAX_EVENT_NAME_LENGTH:
        return f"Event name too long (max {MAX_EVENT_NAME_LENGTH} characters)"
    return None


def is_client_event(name: str) -> bool:
    """True when ``name`` has the ``client-`` prefix of a client event.

    https://pusher.com/docs/channels/using_channels/events/#triggering-client-events
    """
    return name.startswith(CLIENT_EVENT_PREFIX)


def server_to_user_channel(user_id: str) -> str:
    """``#server-to-user-<user_id>``: the channel of the events sent to a signed-in user.

    https://pusher.com/docs/channels/server_api/server-to-user-messages/
    """
    return SERVER_TO_USER_PREFIX + user_id


def server_to_user_id(channel: str) -> str | None:
    """The user id in a ``#server-to-user-`` channel name (not validated), or None for any other channel.

    https://pusher.com/docs/channels/server_api/server-to-user-messages/
    """
    if channel.startswith(SERVER_TO_USER_PREFIX):
        return channel[len(SERVER_TO_USER_PREFIX) :]
    return None
