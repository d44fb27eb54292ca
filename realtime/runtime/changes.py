"""What follows each change of the shared state: frames to sockets, webhooks, counts.

The state reports what a change did (first subscriber, a user's last presence connection, ...)
and this module turns that into ``member_added``/``member_removed``, subscription counts,
watchlist events and webhooks, the same way whether the state is one node's dicts or Redis
shared by several nodes. ``after_removals`` is the one place for what follows a removal, whether
a socket unsubscribed or disconnected here, this node drained, or a dead node was reaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..cluster.base import Removed
from ..cluster.registry import LocalSocket
from ..credentials import AppCredentials
from ..models import CLOSE_OLDEST
from ..protocol import errors, frames
from ..protocol.errors import PusherError
from ..protocol.names import ChannelKind, channel_kind
from ..protocol.presence import Member, SignedInUser, members_payload

# The reasons of a per-user connection cap's 4004 (the new socket) and 4009 (the oldest ones).
USER_QUOTA_REFUSED = "User is over its connection quota"
USER_QUOTA_CLOSED = "Closed for a newer connection of the same user"

if TYPE_CHECKING:
    from .runtime import Runtime


async def subscribed(
    runtime: Runtime,
    socket: LocalSocket,
    app: AppCredentials,
    channel: str,
    kind: ChannelKind,
    member: Member | None,
) -> None:
    """``socket`` (already in the registry, held back) subscribed to ``channel``: record it, answer
    ``subscription_succeeded`` (with the members of a presence channel), replay a cache channel's
    last event, then let the channel's events through."""
    state = runtime.state
    stats = runtime.stats
    count = await state.subscribe(app.id, channel, socket.socket_id)
    stats.incr("channel_subscriptions", (app.id, kind.label))
    runtime.console.record(app.id, "subscribed", channel=channel, socket_id=socket.socket_id)
    # The story flags are kept whenever the app has webhooks, so that occupied and vacated (added
    # and removed) alternate whichever of them a webhook asks for.
    if count == 1 and app.webhooks and await state.report(app.id, channel, None, True):
        runtime.webhooks.emit(app, "channel_occupied", channel)
    if member is not None:
        first = await state.add_member(app.id, channel, socket.socket_id, member.user_id, member.user_info)
        members = await state.members(app.id, channel)
        socket.push(frames.subscription_succeeded(channel, members_payload(members)))
        if first:
            runtime.console.record(app.id, "member_added", channel=channel, user_id=member.user_id)
            stats.incr("presence_events", (app.id, "member_added"))
            added = frames.member_added(channel, member.user_id, member.user_info)
            await runtime.broker.publish(app.id, [channel], added, socket.socket_id)
            if app.webhooks and await state.report(app.id, channel, member.user_id, True):
                runtime.webhooks.emit(app, "member_added", channel, user_id=member.user_id)
    else:
        socket.push(frames.subscription_succeeded(channel))
    if kind.cache:
        cached = await state.cache_get(app.id, channel)
        if cached is not None:
            stats.incr("cache_hits", ("channel",))
            socket.push(cached[0])
        else:
            stats.incr("cache_misses", ("channel",))
            socket.push(frames.cache_miss(channel))
            webhooks = runtime.webhooks
            if webhooks.wanted(app, "cache_miss", channel) and await state.report_cache_miss(
                app.id, channel, runtime.conf.CACHE_TTL
            ):
                webhooks.emit(app, "cache_miss", channel)
    runtime.registry.acknowledge(socket, channel)
    if app.enable_subscription_count and not kind.presence:
        await runtime.counts.changed(app, channel, count)


async def unsubscribed(
    runtime: Runtime,
    socket_id: str,
    app: AppCredentials,
    channel: str,
    kind: ChannelKind,
    user_id: str | None,
) -> None:
    """The socket ``socket_id`` of this node left ``channel`` (unsubscribe or disconnect)."""
    state = runtime.state
    remaining = await state.unsubscribe(app.id, channel, socket_id)
    if remaining is None:
        return
    runtime.stats.incr("channel_unsubscriptions", (app.id, kind.label))
    runtime.console.record(app.id, "unsubscribed", channel=channel, socket_id=socket_id)
    removals = [Removed("s", app.id, channel, "", remaining)]
    if user_id is not None:
        last = await state.remove_member(app.id, channel, socket_id, user_id)
        removals.insert(0, Removed("m", app.id, channel, user_id, int(last)))
    await after_removals(runtime, removals, app)


async def signed_in(runtime: Runtime, socket: LocalSocket, app: AppCredentials, user: SignedInUser) -> bool:
    """Record ``socket`` as signed in as ``user``, within the app's per-user connection cap:
    past it, raise ``PusherError`` 4004 for this socket (policy refuse_newest, its record undone)
    or close the user's oldest connections with 4009 on whichever node (close_oldest). Returns
    whether it is the user's first signed-in connection."""
    cap = app.max_connections_per_user
    keep = cap if cap is not None and app.user_connections_policy == CLOSE_OLDEST else None
    count, oldest = await runtime.state.user_connected(app.id, user.user_id, socket.socket_id, keep)
    if cap is None:
        return count == 1
    stats = runtime.stats
    stats.incr("rate_limit_checks", (app.id, "user_connections", "allowed" if count <= cap else "rejected"))
    if count > cap:
        stats.incr("rate_limit_triggered", (app.id, "user_connections"))
        if keep is None:
            await runtime.state.user_disconnected(app.id, user.user_id, socket.socket_id)
            raise PusherError(errors.OVER_CONNECTION_QUOTA, USER_QUOTA_REFUSED)
        for socket_id in oldest:
            await runtime.broker.terminate_socket(app.id, socket_id, errors.UNAUTHORIZED, USER_QUOTA_CLOSED)
    return count == 1


async def announce_sign_in(
    runtime: Runtime, socket: LocalSocket, app: AppCredentials, user: SignedInUser, first: bool
) -> None:
    """After ``signed_in``: the socket's watchlist's state, and ``online`` for the user's watchers
    when ``first``."""
    if user.watchlist:
        online = await runtime.state.online_users(app.id, list(user.watchlist))
        events = [
            {"name": "online", "user_ids": [u for u in user.watchlist if u in online]},
            {"name": "offline", "user_ids": [u for u in user.watchlist if u not in online]},
        ]
        socket.push(frames.watchlist_events([e for e in events if e["user_ids"]]))
    if first and app.enable_watchlist_events:
        await runtime.broker.watchlist_changed(app.id, user.user_id, True)


async def signed_out(runtime: Runtime, socket_id: str, app: AppCredentials, user: SignedInUser) -> None:
    """The signed-in socket ``socket_id`` of this node closed."""
    last = await runtime.state.user_disconnected(app.id, user.user_id, socket_id)
    await after_removals(runtime, [Removed("u", app.id, "", user.user_id, int(last))], app)


async def after_removals(
    runtime: Runtime, removals: Iterable[Removed], app: AppCredentials | None = None
) -> None:
    """Everything that follows removals from the shared state, each exactly once.

    ``member_removed`` to the channel and its webhook (delayed, dropped if the user is back) for a
    user's last presence connection; ``channel_vacated`` (delayed likewise) for a channel's last
    subscriber; one subscription count per channel that is still occupied; ``offline`` to the
    watchers of a user's last signed-in connection. ``app`` is the app of every removal when the
    caller knows it; otherwise each app is looked up (a reaped node's entries span apps).
    """
    apps: dict[str, AppCredentials | None] = {} if app is None else {app.id: app}
    counts: dict[tuple[str, str], int] = {}
    for removed in removals:
        if removed.app_id not in apps:
            apps[removed.app_id] = await runtime.credentials.by_id(removed.app_id)
        owner = apps[removed.app_id]
        if owner is None:
            continue  # the app was deleted: nobody is left to tell
        channel = removed.channel
        if removed.kind == "m" and removed.result:
            runtime.console.record(owner.id, "member_removed", channel=channel, user_id=removed.user_id)
            runtime.stats.incr("presence_events", (owner.id, "member_removed"))
            removal = frames.member_removed(channel, removed.user_id)
            await runtime.broker.publish(owner.id, [channel], removal)
            runtime.webhooks.emit_later(owner, "member_removed", channel, user_id=removed.user_id)
        elif removed.kind == "s":
            if removed.result == 0:
                runtime.webhooks.emit_later(owner, "channel_vacated", channel)
            elif (
                removed.result > 0 and owner.enable_subscription_count and not channel_kind(channel).presence
            ):
                # Removals only lower a count: the lowest is the newest, in whatever order a reap
                # that ran its removals concurrently lists them.
                key = (owner.id, channel)
                counts[key] = min(counts.get(key, removed.result), removed.result)
        elif removed.kind == "u" and removed.result and owner.enable_watchlist_events:
            await runtime.broker.watchlist_changed(owner.id, removed.user_id, False)
    for (app_id, channel), count in counts.items():
        owner = apps[app_id]
        if owner is not None:
            await runtime.counts.changed(owner, channel, count)


async def client_event(
    runtime: Runtime,
    socket: LocalSocket,
    app: AppCredentials,
    channel: str,
    event: str,
    data: Any,
    user_id: str | None,
) -> None:
    """Relay a client event to the channel's other subscribers, and its webhook."""
    # Relayed as the client sent it (object or string), with user_id from the sender's auth.
    frame: dict[str, Any] = {"event": event, "channel": channel, "data": data}
    if user_id is not None:
        frame["user_id"] = user_id
    await runtime.broker.publish(app.id, [channel], frames.dumps(frame), socket.socket_id)
    runtime.stats.incr("client_events", (app.id,))
    runtime.console.record(
        app.id, "client_event", channel=channel, event=event, socket_id=socket.socket_id, data=data
    )
    extra = {"event": event, "data": data if isinstance(data, str) else frames.dumps(data)}
    extra["socket_id"] = socket.socket_id
    if user_id is not None:
        extra["user_id"] = user_id
    runtime.webhooks.emit(app, "client_event", channel, **extra)


async def published(runtime: Runtime, app: AppCredentials, channel: str, text: str) -> None:
    """After an HTTP API publish to ``channel``: keep the last event of a cache channel."""
    if channel_kind(channel).cache:
        await runtime.state.cache_set(app.id, channel, text, runtime.conf.CACHE_TTL)
        runtime.stats.incr("cache_writes", ("channel",))
