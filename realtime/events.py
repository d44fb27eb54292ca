"""What follows a subscription, an unsubscription, a sign-in or a client event.

The state reports what changed (first subscriber, a user's first connection, ...) and this
module turns that into frames for the sockets and events for the webhooks, so that the same
rules hold whether the state is one node's dicts or Redis shared by several nodes.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from . import webhooks
from .background import spawn
from .conf import get_settings
from .credentials import AppCredentials
from .protocol import frames
from .protocol.names import ChannelKind, channel_kind
from .protocol.presence import Member, SignedInUser, members_payload
from .state import BackendUnavailable
from .stats import stats

if TYPE_CHECKING:
    from .consumers import PusherConsumer

# Above this many subscribers, subscription_count is sent at most once per interval (EVENTS).
SUBSCRIPTION_COUNT_THROTTLE_ABOVE = 100
SUBSCRIPTION_COUNT_INTERVAL = 5.0


async def subscribed(
    socket: PusherConsumer,
    app: AppCredentials,
    channel: str,
    kind: ChannelKind,
    member: Member | None,
) -> None:
    node = socket.node
    assert node is not None
    count = await node.state.subscribe(app.id, channel, socket.socket_id)
    stats.incr("channel_subscriptions", (app.id, kind.label))
    if count == 1:
        webhooks.emit(app, "channel_occupied", channel)
    if member is not None:
        first = await node.state.add_member(
            app.id, channel, socket.socket_id, member.user_id, member.user_info
        )
        members = await node.state.members(app.id, channel)
        socket.push(frames.subscription_succeeded(channel, members_payload(members)))
        if first:
            stats.incr("presence_events", (app.id, "member_added"))
            await node.broker.publish(
                app.id,
                [channel],
                frames.member_added(channel, member.user_id, member.user_info),
                socket.socket_id,
            )
            webhooks.emit(app, "member_added", channel, user_id=member.user_id)
    else:
        socket.push(frames.subscription_succeeded(channel))
    if kind.cache:
        cached = await node.state.cache_get(app.id, channel)
        if cached is not None:
            stats.incr("cache_hits", ("channel",))
            socket.push(cached[0])
        else:
            stats.incr("cache_misses", ("channel",))
            socket.push(frames.cache_miss(channel))
            webhooks.emit(app, "cache_miss", channel)
    node.registry.acknowledge(socket, channel)
    if app.enable_subscription_count and not kind.presence:
        await _subscription_count_changed(socket, app, channel, count)


async def unsubscribed(
    socket: PusherConsumer, app: AppCredentials, channel: str, kind: ChannelKind, user_id: str | None
) -> None:
    node = socket.node
    assert node is not None
    remaining = await node.state.unsubscribe(app.id, channel, socket.socket_id)
    if remaining is None:
        return
    stats.incr("channel_unsubscriptions", (app.id, kind.label))
    if user_id is not None and await node.state.remove_member(app.id, channel, socket.socket_id, user_id):
        stats.incr("presence_events", (app.id, "member_removed"))
        await node.broker.publish(app.id, [channel], frames.member_removed(channel, user_id))
        webhooks.emit_later(app, "member_removed", channel, user_id=user_id)
    if remaining == 0:
        webhooks.emit_later(app, "channel_vacated", channel)
    elif app.enable_subscription_count and not kind.presence:
        await _subscription_count_changed(socket, app, channel, remaining)


async def signed_in(socket: PusherConsumer, app: AppCredentials, user: SignedInUser) -> None:
    node = socket.node
    assert node is not None
    first = await node.state.user_connected(app.id, user.user_id, socket.socket_id)
    if user.watchlist:
        online = await node.state.online_users(app.id, list(user.watchlist))
        events = [
            {"name": "online", "user_ids": [u for u in user.watchlist if u in online]},
            {"name": "offline", "user_ids": [u for u in user.watchlist if u not in online]},
        ]
        socket.push(frames.watchlist_events([e for e in events if e["user_ids"]]))
    if first and app.enable_watchlist_events:
        await node.broker.watchlist_changed(app.id, user.user_id, True)


async def signed_out(socket: PusherConsumer, app: AppCredentials, user: SignedInUser) -> None:
    node = socket.node
    assert node is not None
    last = await node.state.user_disconnected(app.id, user.user_id, socket.socket_id)
    if last and app.enable_watchlist_events:
        await node.broker.watchlist_changed(app.id, user.user_id, False)


async def client_event(
    socket: PusherConsumer,
    app: AppCredentials,
    channel: str,
    event: str,
    data: Any,
    user_id: str | None,
) -> None:
    node = socket.node
    assert node is not None
    # Relayed as the client sent it (object or string), with user_id from the sender's auth.
    frame: dict[str, Any] = {"event": event, "channel": channel, "data": data}
    if user_id is not None:
        frame["user_id"] = user_id
    await node.broker.publish(app.id, [channel], frames.dumps(frame), socket.socket_id)
    stats.incr("client_events", (app.id,))
    extra = {"event": event, "data": data if isinstance(data, str) else frames.dumps(data)}
    extra["socket_id"] = socket.socket_id
    if user_id is not None:
        extra["user_id"] = user_id
    webhooks.emit(app, "client_event", channel, **extra)


async def published(app: AppCredentials, channels: list[str], text: str) -> None:
    """After an HTTP API publish: keep the last event of cache channels."""
    from .node import get_node

    node = get_node()
    ttl = get_settings().CACHE_TTL
    for channel in channels:
        if channel_kind(channel).cache:
            await node.state.cache_set(app.id, channel, text, ttl)
            stats.incr("cache_writes", ("channel",))


_last_count_sent: dict[tuple[str, str], float] = {}
_pending_count: dict[tuple[str, str], asyncio.TimerHandle] = {}


async def _subscription_count_changed(
    socket: PusherConsumer, app: AppCredentials, channel: str, count: int
) -> None:
    node = socket.node
    assert node is not None
    key = (app.id, channel)
    now = time.monotonic()
    if count > SUBSCRIPTION_COUNT_THROTTLE_ABOVE:
        last = _last_count_sent.get(key, 0.0)
        if now - last < SUBSCRIPTION_COUNT_INTERVAL:
            if key not in _pending_count:
                delay = SUBSCRIPTION_COUNT_INTERVAL - (now - last)
                loop = asyncio.get_running_loop()
                _pending_count[key] = loop.call_later(
                    delay, lambda: spawn(_send_latest_count(node, app, channel))
                )
            return
    _last_count_sent[key] = now
    await node.broker.publish(app.id, [channel], frames.subscription_count(channel, count))
    webhooks.emit(app, "subscription_count", channel, subscription_count=count)


async def _send_latest_count(node: Any, app: AppCredentials, channel: str) -> None:
    key = (app.id, channel)
    _pending_count.pop(key, None)
    try:
        count = await node.state.subscription_count(app.id, channel)
        _last_count_sent[key] = time.monotonic()
        if count:
            await node.broker.publish(app.id, [channel], frames.subscription_count(channel, count))
            webhooks.emit(app, "subscription_count", channel, subscription_count=count)
        else:
            _last_count_sent.pop(key, None)
    except BackendUnavailable:
        # Its sockets were closed with 4200; they resubscribe and get a fresh count.
        _last_count_sent.pop(key, None)
