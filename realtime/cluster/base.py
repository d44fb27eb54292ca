"""What every cluster backend provides: the state, the broker, a lifecycle, and their errors.

``State`` is the cluster-wide view (occupancy, presence members, signed-in users, cache channels,
connection counts); every change reports what it changed (first subscriber, a user's last
connection, ...) so that events and webhooks follow from the state, not from one node's guess.
``Broker`` delivers a pre-encoded frame to every subscriber of a channel on every node.
``Cluster`` bundles the two with a start/stop lifecycle for the runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

# The reason of the 4009 close that terminate_connections sends.
TERMINATED_REASON = "Connection terminated by the server"


class StateUnavailable(Exception):
    """The shared state or broker cannot be reached (Redis down): nothing was changed.

    ``code`` is the Pusher close code a socket that met it gets: 4200 (reconnect now: the node
    lost its backend, so the client must resubscribe to resync) or 4100 (over capacity: the node
    is known to be down, pusher-js backs off before reconnecting). The HTTP API answers 503.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Removed:
    """One removal from the shared state and what it changed.

    ``kind``: ``"s"`` a channel subscription (``result``: subscriptions left, -1 when it was
    already gone), ``"m"`` a presence connection (``result`` 1 when it was the user's last in
    the channel), ``"u"`` a signed-in connection (``result`` 1 when it was the user's last),
    ``"c"`` a connection (``result`` unused).
    """

    kind: str
    app_id: str
    channel: str
    user_id: str
    result: int


# Called with what a cluster backend removed on its own (a dead node's sockets, this node's
# leftovers after an outage), so that the same events follow as for a local disconnect.
RemovalHandler = Callable[[Iterable[Removed]], Awaitable[None]]


class State(Protocol):
    """The cluster-wide state. Every method may raise ``StateUnavailable``."""

    async def add_connection(self, app_id: str, socket_id: str) -> int:
        """Record a connection; return the app's connection count."""
        ...

    async def remove_connection(self, app_id: str, socket_id: str) -> None:
        """Forget a connection; no error if it was not recorded."""
        ...

    async def connection_count(self, app_id: str) -> int:
        """The app's open connections across the cluster."""
        ...

    async def subscribe(self, app_id: str, channel: str, socket_id: str) -> int:
        """Add a subscription; return the channel's new subscription count."""
        ...

    async def unsubscribe(self, app_id: str, channel: str, socket_id: str) -> int | None:
        """Remove a subscription; return the remaining count, or None if it was not there."""
        ...

    async def subscription_count(self, app_id: str, channel: str) -> int:
        """Sockets subscribed to the channel across the cluster (0 when vacant)."""
        ...

    async def channels(self, app_id: str, prefix: str = "") -> dict[str, int]:
        """Occupied channels whose name starts with ``prefix``, with their subscription counts."""
        ...

    async def add_member(
        self, app_id: str, channel: str, socket_id: str, user_id: str, user_info: Any
    ) -> bool:
        """Record a presence connection; True when it is the user's first in the channel."""
        ...

    async def remove_member(self, app_id: str, channel: str, socket_id: str, user_id: str) -> bool:
        """Forget a presence connection; True when it was the user's last in the channel."""
        ...

    async def members(self, app_id: str, channel: str) -> dict[str, Any]:
        """The channel's members: user id -> user_info."""
        ...

    async def member_count(self, app_id: str, channel: str) -> int:
        """Distinct users present in the presence channel across the cluster."""
        ...

    async def user_connected(
        self, app_id: str, user_id: str, socket_id: str, keep: int | None = None
    ) -> tuple[int, list[str]]:
        """Record the signed-in socket; return the user's signed-in connections now (this one
        included; 1: the first) and, with ``keep`` (the close-oldest policy of a per-user cap),
        the socket ids beyond the newest ``keep`` by sign-in time, oldest first (else [])."""
        ...

    async def user_disconnected(self, app_id: str, user_id: str, socket_id: str) -> bool:
        """True when that was the user's last signed-in connection."""
        ...

    async def online_users(self, app_id: str, user_ids: list[str]) -> set[str]:
        """Those of ``user_ids`` with at least one signed-in connection in the cluster."""
        ...

    async def cache_set(self, app_id: str, channel: str, frame: str, ttl: float) -> None:
        """Keep ``frame`` (the event's text) as the cache channel's last event for ``ttl`` seconds;
        this ends the channel's empty spell (``report_cache_miss``)."""
        ...

    async def cache_get(self, app_id: str, channel: str) -> tuple[str, float] | None:
        """The cache channel's last event and its seconds to live, or None."""
        ...

    async def report(self, app_id: str, channel: str, user_id: str | None, present: bool) -> bool:
        """Record the webhook story of ``channel`` (``user_id`` None: ``channel_occupied`` when
        ``present``, ``channel_vacated`` when not) or of a user in a presence channel
        (``member_added`` / ``member_removed``). True, once cluster-wide, when the report is to be
        sent: it is not the story's last report again and it matches the state now (occupied means
        subscribed now, vacated means nobody subscribed now; likewise for the user). So the two
        events of each pair strictly alternate (HOOKS).
        """
        ...

    async def allow_rate(self, app_id: str, name: str, limit: int, cost: int = 1) -> bool:
        """Count ``cost`` operations of the app's limiter ``name`` in this one-second window, for
        the whole cluster, if they fit ``limit``; whether they did (refused ones are not counted)."""
        ...

    async def allow_address(self, name: str, address: str, limit: int, window: int) -> bool:
        """Count one operation of the per-address limiter ``name`` for ``address`` (a bucket of
        ``addresses.bucket``) in this window of ``window`` seconds, for the whole cluster, if it
        fits ``limit``; whether it did (a refused one is not counted)."""
        ...

    async def report_cache_miss(self, app_id: str, channel: str, ttl: float) -> bool:
        """True for the first miss of the cache channel's empty spell (cluster-wide), False for the
        misses after it until an event is cached (``cache_set``) or ``ttl`` seconds pass: one
        ``cache_miss`` webhook per miss, however many sockets subscribe (HOOKS, CACHE).
        """
        ...


class Broker(Protocol):
    """Delivery to every node: each node fans a message out to its own sockets."""

    async def publish(
        self, app_id: str, channels: list[str], text: str, except_socket_id: str | None = None
    ) -> None:
        """Deliver ``text`` (a server frame, encoded once) to every subscriber of ``channels``
        but ``except_socket_id``. Events published one after another (each awaited) reach every
        subscriber in that order, whichever node published each."""
        ...

    async def terminate_user(self, app_id: str, user_id: str) -> None:
        """Close every connection signed in as ``user_id`` with 4009, on every node."""
        ...

    async def watchlist_changed(self, app_id: str, user_id: str, online: bool) -> None:
        """Tell every socket watching ``user_id`` that it came online or went offline."""
        ...

    async def terminate_socket(self, app_id: str, socket_id: str, code: int, reason: str) -> None:
        """Close the app's connection ``socket_id`` with ``code`` and ``reason``, on whichever node
        holds it (nothing if none does)."""
        ...


class Cluster(Protocol):
    """A backend as the runtime owns it."""

    state: State
    broker: Broker
    # Identifies this process for its lifetime (with Redis, the origin of its bus messages).
    instance: str

    async def start(self) -> None:
        """Begin connecting; returns at once (``wait_started`` waits for the first connection)."""
        ...

    async def wait_started(self) -> None:
        """Until the backend has been reached once (at once for the in-process backend)."""
        ...

    def readiness_problem(self) -> str | None:
        """Why the node cannot serve now (``"redis unavailable"``, ...), or None."""
        ...

    async def stop(self, before_close: Callable[[], Awaitable[None]] | None = None) -> None:
        """Leave the cluster: remove what this node still holds, await ``before_close`` (what
        follows the removals that still needs the state: the delayed webhooks), then close
        connections."""
        ...

    def invalidate_credentials(self) -> None:
        """Tell every other node that app credentials changed (sync: called from model signals)."""
        ...
