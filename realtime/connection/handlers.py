"""What a socket does with each client request: subscribe, unsubscribe, sign in, client events.

Each handler validates the request with the pure protocol functions, then applies it to the
registry (this node's fan-out) and hands the consequences to ``runtime.changes``. Every refusal
is a ``PusherError`` (reported and handled in one place by the consumer) or, where the protocol
says so, a ``pusher:subscription_error`` for the channel
(https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#subscription-events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import errors, frames
from ..protocol.errors import PusherError
from ..protocol.limits import MAX_WATCHLIST_SIZE
from ..protocol.names import (
    ChannelKind,
    channel_kind,
    channel_name_error,
    event_name_error,
    server_to_user_id,
)
from ..protocol.presence import Member, SignedInUser, parse_channel_data, parse_user_data
from ..protocol.signatures import channel_string_to_sign, user_string_to_sign
from ..runtime import changes

if TYPE_CHECKING:
    from ..credentials import AppCredentials
    from ..ratelimit import WindowLimiter
    from ..runtime import Runtime


@dataclass(slots=True)
class Subscription:
    """One channel a socket joined: its kind, and the user id it joined a presence channel as."""

    kind: ChannelKind
    user_id: str | None = None


class Connection(Protocol):
    """An open socket as the handlers see it (``PusherConsumer`` provides it)."""

    runtime: Runtime
    app: AppCredentials
    socket_id: str
    app_id: str
    subscriptions: dict[str, Subscription]
    user: SignedInUser | None
    client_events: WindowLimiter | None

    def push(self, text: str) -> None: ...
    def deliver(self, message: Any) -> None: ...
    def send_error(self, code: int | None, message: str, channel: str | None = None) -> None: ...
    def terminate(self, code: int, reason: str) -> None: ...
    def watchlist_changed(self, user_id: str, online: bool) -> None: ...
    def sweep(self, now: float) -> None: ...


def data_object(frame: frames.ClientFrame) -> dict[str, Any]:
    """The frame's ``data`` when it is an object, else a ``PusherError`` 4300."""
    data = frame["data"]
    if not isinstance(data, dict):
        raise PusherError(errors.GENERIC_ERROR, f"{frame['event']} needs a data object")
    return data


async def subscribe(conn: Connection, data: dict[str, Any]) -> None:
    """``pusher:subscribe``: check the name, the signature and presence limits, then join."""
    app = conn.app
    runtime = conn.runtime
    channel = data.get("channel")
    reason = channel_name_error(channel, app.max_channel_name_length)
    if reason is not None:
        raise PusherError(errors.GENERIC_ERROR, reason, channel if isinstance(channel, str) else None)
    assert isinstance(channel, str)
    if channel in conn.subscriptions:
        raise PusherError(None, f"Existing subscription to channel {channel}", channel)
    kind = channel_kind(channel)
    if kind.cache and not app.enable_cache_channels:
        return _refuse(conn, channel, "AuthError", "Cache channels are disabled", 403)
    member: Member | None = None
    if kind.user:
        if conn.user is None or server_to_user_id(channel) != conn.user.user_id:
            runtime.stats.incr("authentication_failures", (app.id, "channel"))
            return _refuse(conn, channel, "AuthError", "Only the signed-in user may subscribe", 403)
    elif kind.requires_auth:
        channel_data = data.get("channel_data") if kind.presence else None
        signed = channel_string_to_sign(conn.socket_id, channel, channel_data)
        if not app.verify_token(data.get("auth"), signed):
            runtime.stats.incr("authentication_failures", (app.id, "channel"))
            return _refuse(conn, channel, "AuthError", "Invalid signature", 401)
        if kind.presence:
            try:
                member = parse_channel_data(channel_data, app.max_presence_member_size_kb)
            except PusherError as exc:
                return _refuse(conn, channel, "InvalidChannelData", exc.message, 400)
            if await _presence_full(runtime, app, channel, member.user_id):
                return _refuse(conn, channel, "LimitReached", "Presence channel member limit reached", 403)
    conn.subscriptions[channel] = Subscription(kind, member.user_id if member else None)
    runtime.registry.subscribe(conn, channel)
    await changes.subscribed(runtime, conn, app, channel, kind, member)


async def _presence_full(runtime: Runtime, app: AppCredentials, channel: str, user_id: str) -> bool:
    """Whether the channel is at the app's member limit and ``user_id`` is not one of them yet."""
    limit = app.max_presence_members_per_channel
    if limit is None or await runtime.state.member_count(app.id, channel) < limit:
        return False
    return user_id not in await runtime.state.members(app.id, channel)


def _refuse(conn: Connection, channel: str, error_type: str, message: str, status: int) -> None:
    conn.push(frames.subscription_error(channel, error_type, message, status))


async def unsubscribe(conn: Connection, channel: str) -> None:
    """``pusher:unsubscribe`` (or a disconnect): leave the channel if subscribed."""
    subscription = conn.subscriptions.pop(channel, None)
    if subscription is None:
        return
    conn.runtime.registry.unsubscribe(conn, channel)
    await changes.unsubscribed(
        conn.runtime, conn.socket_id, conn.app, channel, subscription.kind, subscription.user_id
    )


async def signin(conn: Connection, data: dict[str, Any]) -> None:
    """``pusher:signin``: a bad signature closes with 4009; the watchlist is capped at 100 ids; past
    the app's per-user connection cap, 4004 for this socket or 4009 for the user's oldest."""
    app = conn.app
    runtime = conn.runtime
    user_data = data.get("user_data")
    signed = user_string_to_sign(conn.socket_id, user_data if isinstance(user_data, str) else "")
    if not isinstance(user_data, str) or not app.verify_token(data.get("auth"), signed):
        runtime.stats.incr("authentication_failures", (app.id, "signin"))
        raise PusherError(errors.UNAUTHORIZED, "Invalid signature")
    user = parse_user_data(user_data)
    if conn.user is not None:
        if conn.user.user_id != user.user_id:
            raise PusherError(errors.UNAUTHORIZED, "Already signed in as another user")
        return conn.push(frames.signin_success(user_data))
    watchlist_over = len(user.watchlist) > MAX_WATCHLIST_SIZE
    if watchlist_over:
        user = SignedInUser(user.user_id, user.user_info, user.watchlist[:MAX_WATCHLIST_SIZE])
    if not app.enable_watchlist_events:
        user = SignedInUser(user.user_id, user.user_info, ())
    first = await changes.signed_in(runtime, conn, app, user)
    # Indexed only now: no server-to-user or watchlist event reaches a socket ahead of its
    # signin_success, or at all when the per-user cap refuses it.
    conn.user = user
    runtime.registry.sign_in(conn, user.user_id, user.watchlist)
    conn.push(frames.signin_success(user_data))
    if watchlist_over and app.enable_watchlist_events:
        conn.send_error(
            errors.WATCHLIST_LIMIT,
            f"Watchlist limit exceeded. Only the first {MAX_WATCHLIST_SIZE} user IDs are accepted.",
        )
    await changes.announce_sign_in(runtime, conn, app, user, first)


async def client_event(conn: Connection, frame: frames.ClientFrame) -> None:
    """A ``client-*`` event: relayed to the channel's other subscribers when every rule allows it."""
    app = conn.app
    event = frame["event"]
    channel = frame["channel"]
    if not app.enable_client_messages:
        raise PusherError(errors.CLIENT_EVENT_REJECTED, "Client events are not enabled for this app", channel)
    if event_name_error(event) is not None:
        raise PusherError(errors.CLIENT_EVENT_REJECTED, "Invalid event name", channel)
    subscription = conn.subscriptions.get(channel) if channel else None
    if subscription is None:
        raise PusherError(errors.CLIENT_EVENT_REJECTED, "Not subscribed to the channel", channel)
    if not subscription.kind.client_events:
        raise PusherError(
            errors.CLIENT_EVENT_REJECTED,
            "Client events are only supported on private and presence channels",
            channel,
        )
    data = frame["data"]
    encoded = frames.dumps(data)
    if len(encoded.encode()) > app.max_event_payload_kb * 1024:
        raise PusherError(errors.CLIENT_EVENT_REJECTED, "Client event payload too large", channel)
    limiter = conn.client_events
    if limiter is not None and not limiter.allow():
        conn.runtime.stats.incr("rate_limit_triggered", (app.id, "client_events"))
        raise PusherError(errors.CLIENT_EVENT_REJECTED, "Client event rejected due to rate limit", channel)
    await changes.client_event(conn.runtime, conn, app, channel, event, data, subscription.user_id)
