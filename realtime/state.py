"""Cluster-wide state: occupancy, presence members, signed-in users, cache channels, connection counts.

One ``State`` protocol, two backends: ``MemoryState`` for the embedded single node (no services)
and ``RedisState`` when several nodes share Redis. Every change reports what it changed (first
subscriber, user's first connection, ...) so that events and webhooks follow from the state, not
from guesses made by one node.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Protocol

from .api.errors import ApiError
from .protocol.errors import RECONNECT, PusherError


class BackendUnavailable(PusherError, ApiError):
    """The shared state or broker cannot be reached (Redis down): nothing was changed.

    Both a protocol error and an HTTP API error, so that each side reports it in its one place
    without knowing about Redis: the socket gets ``pusher:error`` 4200 and is closed so the client
    reconnects and resubscribes (pub/sub delivery is at most once, so it must resync), and the HTTP
    API answers 503. While the node is known to be down, calls fail fast with 4100 instead, which
    pusher-js answers by reconnecting after a back-off rather than at once.
    """

    def __init__(
        self, message: str = "Service temporarily unavailable, reconnect", code: int = RECONNECT
    ) -> None:
        # Both bases call super().__init__ with their own arguments: set the fields directly.
        Exception.__init__(self, message)
        self.code: int | None = code
        self.message = message
        self.channel: str | None = None
        self.status = 503
        self.reason = "unavailable"
        self.app_id = ""


class State(Protocol):
    async def add_connection(self, app_id: str, socket_id: str) -> int: ...
    async def remove_connection(self, app_id: str, socket_id: str) -> None: ...
    async def connection_count(self, app_id: str) -> int: ...

    async def subscribe(self, app_id: str, channel: str, socket_id: str) -> int:
        """Add a subscription; return the channel's new subscription count."""
        ...

    async def unsubscribe(self, app_id: str, channel: str, socket_id: str) -> int | None:
        """Remove a subscription; return the remaining count, or None if it was not there."""
        ...

    async def subscription_count(self, app_id: str, channel: str) -> int: ...
    async def channels(self, app_id: str, prefix: str = "") -> dict[str, int]: ...

    async def add_member(
        self, app_id: str, channel: str, socket_id: str, user_id: str, user_info: Any
    ) -> bool:
        """Record a presence connection; True when it is the user's first in the channel."""
        ...

    async def remove_member(self, app_id: str, channel: str, socket_id: str, user_id: str) -> bool:
        """Forget a presence connection; True when it was the user's last in the channel."""
        ...

    async def members(self, app_id: str, channel: str) -> dict[str, Any]: ...
    async def member_count(self, app_id: str, channel: str) -> int: ...

    async def user_connected(self, app_id: str, user_id: str, socket_id: str) -> bool:
        """True when this is the user's first signed-in connection."""
        ...

    async def user_disconnected(self, app_id: str, user_id: str, socket_id: str) -> bool:
        """True when that was the user's last signed-in connection."""
        ...

    async def online_users(self, app_id: str, user_ids: list[str]) -> set[str]: ...

    async def cache_set(self, app_id: str, channel: str, frame: str, ttl: float) -> None: ...
    async def cache_get(self, app_id: str, channel: str) -> tuple[str, float] | None: ...


class MemoryState:
    """State for one node: plain dicts, nothing shared."""

    def __init__(self) -> None:
        self._connections: dict[str, set[str]] = defaultdict(set)
        self._subscriptions: dict[tuple[str, str], set[str]] = {}
        # (app, channel) -> user_id -> [user_info, set of socket ids]
        self._members: dict[tuple[str, str], dict[str, tuple[Any, set[str]]]] = {}
        self._users: dict[tuple[str, str], set[str]] = {}
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}

    async def add_connection(self, app_id: str, socket_id: str) -> int:
        sockets = self._connections[app_id]
        sockets.add(socket_id)
        return len(sockets)

    async def remove_connection(self, app_id: str, socket_id: str) -> None:
        sockets = self._connections.get(app_id)
        if sockets is not None:
            sockets.discard(socket_id)
            if not sockets:
                del self._connections[app_id]

    async def connection_count(self, app_id: str) -> int:
        return len(self._connections.get(app_id, ()))

    async def subscribe(self, app_id: str, channel: str, socket_id: str) -> int:
        sockets = self._subscriptions.setdefault((app_id, channel), set())
        sockets.add(socket_id)
        return len(sockets)

    async def unsubscribe(self, app_id: str, channel: str, socket_id: str) -> int | None:
        sockets = self._subscriptions.get((app_id, channel))
        if sockets is None or socket_id not in sockets:
            return None
        sockets.discard(socket_id)
        if not sockets:
            del self._subscriptions[(app_id, channel)]
        return len(sockets)

    async def subscription_count(self, app_id: str, channel: str) -> int:
        return len(self._subscriptions.get((app_id, channel), ()))

    async def channels(self, app_id: str, prefix: str = "") -> dict[str, int]:
        return {
            channel: len(sockets)
            for (app, channel), sockets in self._subscriptions.items()
            if app == app_id and channel.startswith(prefix)
        }

    async def add_member(
        self, app_id: str, channel: str, socket_id: str, user_id: str, user_info: Any
    ) -> bool:
        members = self._members.setdefault((app_id, channel), {})
        entry = members.get(user_id)
        if entry is None:
            members[user_id] = (user_info, {socket_id})
            return True
        entry[1].add(socket_id)
        return False

    async def remove_member(self, app_id: str, channel: str, socket_id: str, user_id: str) -> bool:
        members = self._members.get((app_id, channel))
        if members is None or user_id not in members:
            return False
        sockets = members[user_id][1]
        sockets.discard(socket_id)
        if sockets:
            return False
        del members[user_id]
        if not members:
            del self._members[(app_id, channel)]
        return True

    async def members(self, app_id: str, channel: str) -> dict[str, Any]:
        return {uid: info for uid, (info, _) in self._members.get((app_id, channel), {}).items()}

    async def member_count(self, app_id: str, channel: str) -> int:
        return len(self._members.get((app_id, channel), ()))

    async def user_connected(self, app_id: str, user_id: str, socket_id: str) -> bool:
        sockets = self._users.setdefault((app_id, user_id), set())
        sockets.add(socket_id)
        return len(sockets) == 1

    async def user_disconnected(self, app_id: str, user_id: str, socket_id: str) -> bool:
        sockets = self._users.get((app_id, user_id))
        if sockets is None or socket_id not in sockets:
            return False
        sockets.discard(socket_id)
        if sockets:
            return False
        del self._users[(app_id, user_id)]
        return True

    async def online_users(self, app_id: str, user_ids: list[str]) -> set[str]:
        return {uid for uid in user_ids if (app_id, uid) in self._users}

    async def cache_set(self, app_id: str, channel: str, frame: str, ttl: float) -> None:
        self._cache[(app_id, channel)] = (frame, time.monotonic() + ttl)

    async def cache_get(self, app_id: str, channel: str) -> tuple[str, float] | None:
        entry = self._cache.get((app_id, channel))
        if entry is None:
            return None
        remaining = entry[1] - time.monotonic()
        if remaining <= 0:
            del self._cache[(app_id, channel)]
            return None
        return entry[0], remaining
