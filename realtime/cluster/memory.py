"""The embedded single node: state in plain dicts, a publish is a direct call into the registry."""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from ..protocol import errors
from ..ratelimit import AddressLimiters, AppLimiters
from .base import TERMINATED_REASON
from .registry import Outbound, Registry


class MemoryState:
    """``State`` for one node: plain dicts, nothing shared."""

    def __init__(self) -> None:
        self._connections: dict[str, set[str]] = defaultdict(set)
        self._subscriptions: dict[tuple[str, str], set[str]] = {}
        # (app, channel) -> user_id -> [user_info, set of socket ids]
        self._members: dict[tuple[str, str], dict[str, tuple[Any, set[str]]]] = {}
        # A user's signed-in sockets in sign-in order (dict keys keep it).
        self._users: dict[tuple[str, str], dict[str, None]] = {}
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        # Webhook stories reported "present": (app, channel, None) occupied, (app, channel, user) added.
        self._reported: set[tuple[str, str, str | None]] = set()
        # (app, channel) -> monotonic end of the cache channel's reported empty spell.
        self._misses: dict[tuple[str, str], float] = {}
        self._misses_limit = 10_000
        self._rates = AppLimiters()
        self._addresses = AddressLimiters()

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

    async def user_connected(
        self, app_id: str, user_id: str, socket_id: str, keep: int | None = None
    ) -> tuple[int, list[str]]:
        sockets = self._users.setdefault((app_id, user_id), {})
        sockets[socket_id] = None
        count = len(sockets)
        if keep is None or count <= keep:
            return count, []
        return count, list(sockets)[: count - keep]

    async def user_disconnected(self, app_id: str, user_id: str, socket_id: str) -> bool:
        sockets = self._users.get((app_id, user_id))
        if sockets is None or socket_id not in sockets:
            return False
        del sockets[socket_id]
        if sockets:
            return False
        del self._users[(app_id, user_id)]
        return True

    async def online_users(self, app_id: str, user_ids: list[str]) -> set[str]:
        return {uid for uid in user_ids if (app_id, uid) in self._users}

    async def cache_set(self, app_id: str, channel: str, frame: str, ttl: float) -> None:
        self._cache[(app_id, channel)] = (frame, time.monotonic() + ttl)
        self._misses.pop((app_id, channel), None)

    def cache_bytes(self) -> int:
        """Characters of cache channels' last events held now (expired ones until next read)."""
        return sum(len(entry[0]) for entry in list(self._cache.values()))

    async def cache_get(self, app_id: str, channel: str) -> tuple[str, float] | None:
        entry = self._cache.get((app_id, channel))
        if entry is None:
            return None
        remaining = entry[1] - time.monotonic()
        if remaining <= 0:
            del self._cache[(app_id, channel)]
            return None
        return entry[0], remaining

    async def report(self, app_id: str, channel: str, user_id: str | None, present: bool) -> bool:
        story = (app_id, channel, user_id)
        if user_id is None:
            live = (app_id, channel) in self._subscriptions
        else:
            live = user_id in self._members.get((app_id, channel), ())
        if live != present or (story in self._reported) == present:
            return False
        if present:
            self._reported.add(story)
        else:
            self._reported.discard(story)
        return True

    async def allow_rate(self, app_id: str, name: str, limit: int, cost: int = 1) -> bool:
        return self._rates.allow(app_id, name, limit, cost)

    async def allow_address(self, name: str, address: str, limit: int, window: int) -> bool:
        return self._addresses.allow(name, address, limit, window)

    async def report_cache_miss(self, app_id: str, channel: str, ttl: float) -> bool:
        now = time.monotonic()
        if self._misses.get((app_id, channel), 0.0) > now:
            return False
        if len(self._misses) > self._misses_limit:
            # Spells whose channels never got an event: drop the ended ones, and let the map
            # double before looking again, so a large live set is not rescanned on every miss.
            self._misses = {key: end for key, end in self._misses.items() if end > now}
            self._misses_limit = max(10_000, 2 * len(self._misses))
        self._misses[(app_id, channel)] = now + ttl
        return True


class LocalBroker:
    """``Broker`` for one node: a publish is delivered to the registry at once."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def publish(
        self, app_id: str, channels: list[str], text: str, except_socket_id: str | None = None
    ) -> None:
        message = Outbound(text)
        deliver = self.registry.deliver
        for channel in channels:
            deliver(app_id, channel, message, except_socket_id)

    async def terminate_user(self, app_id: str, user_id: str) -> None:
        self.registry.terminate_user(app_id, user_id, errors.UNAUTHORIZED, TERMINATED_REASON)

    async def watchlist_changed(self, app_id: str, user_id: str, online: bool) -> None:
        self.registry.watchlist_changed(app_id, user_id, online)

    async def terminate_socket(self, app_id: str, socket_id: str, code: int, reason: str) -> None:
        self.registry.terminate_socket(app_id, socket_id, code, reason)


class MemoryCluster:
    """``Cluster`` of one: nothing to connect to, nothing to leave."""

    def __init__(self, registry: Registry) -> None:
        self.state = MemoryState()
        self.broker = LocalBroker(registry)
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"

    async def start(self) -> None:
        return None

    async def wait_started(self) -> None:
        return None

    def readiness_problem(self) -> str | None:
        return None

    async def stop(self, before_close: Callable[[], Awaitable[None]] | None = None) -> None:
        if before_close is not None:
            await before_close()

    def invalidate_credentials(self) -> None:
        return None  # this process' own cache is the only one
