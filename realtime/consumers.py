"""PusherConsumer: one WebSocket connection speaking Pusher protocol 7.

The connection is a small state machine (connecting → open → closed). Each inbound frame is
parsed by ``protocol.frames``, checked by the pure protocol functions, then applied to the
registry (local sockets), the state (cluster view) and the broker (fan-out). Every protocol
error is a ``PusherError`` caught in one place (``_receive_text``); nothing escapes the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer

from . import events, liveness
from .background import spawn
from .conf import get_settings
from .credentials import AppCredentials, credentials
from .node import Node, get_node
from .origins import origin_allowed
from .protocol import errors, frames
from .protocol.errors import PusherError
from .protocol.names import (
    ChannelKind,
    channel_kind,
    channel_name_error,
    event_name_error,
    is_client_event,
    server_to_user_id,
)
from .protocol.presence import SignedInUser, parse_channel_data, parse_user_data
from .protocol.signatures import channel_string_to_sign, user_string_to_sign, verify_token
from .protocol.socket_ids import new_socket_id
from .ratelimit import WindowLimiter
from .registry import Outbound
from .stats import stats

logger = logging.getLogger(__name__)

WRITER_EXTENSION = "realtime.writer"
# How long a socket arriving while the node still connects to Redis waits before a 4100.
STARTUP_WAIT_SECONDS = 5.0


@dataclass(slots=True)
class Subscription:
    kind: ChannelKind
    user_id: str | None = None


class PusherConsumer(AsyncConsumer):
    """A Channels consumer without a per-consumer channel layer: fan-out goes through the broker."""

    # One per open socket: slots instead of a 0.8 KiB __dict__ (tracemalloc, 2,000 idle sockets).
    # AsyncConsumer has no slots, so an attribute missing here still works (in a __dict__).
    __slots__ = (
        "_cleaned",
        "_client_events",
        "_flush_task",
        "_outbox",
        "_writer",
        "app",
        "app_id",
        "base_send",
        "channel_layer",
        "closing",
        "connected_at",
        "last_seen",
        "node",
        "open",
        "ping_sent_at",
        "scope",
        "socket_id",
        "subscriptions",
        "user",
    )

    socket_id: str
    app_id: str

    def __init__(self) -> None:
        self.app: AppCredentials | None = None
        self.app_id = ""
        self.socket_id = ""
        self.node: Node | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.user: SignedInUser | None = None
        self.open = False
        self.closing = False
        self.last_seen = time.monotonic()
        self.ping_sent_at: float | None = None
        self.connected_at = self.last_seen
        self._client_events: WindowLimiter | None = None
        self._writer: Any = None
        # Only sockets without the direct writer queue text (~0.7 KiB per socket for an empty deque).
        self._outbox: deque[str] | None = None
        self._flush_task: asyncio.Future[None] | None = None
        self._cleaned = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels would create a layer channel per consumer; the broker replaces it.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                # No local for the message: an idle socket would keep its last one alive.
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            await self._cleanup()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch hops to a thread per message to close DB connections; the hot
        # path here never touches the ORM, so that hop is pure cost (DESIGN §3).
        kind = message["type"]
        if kind == "websocket.receive":
            self.last_seen = time.monotonic()
            self.ping_sent_at = None
            text = message.get("text")
            if text is None:
                self.send_error(errors.GENERIC_ERROR, "Binary frames are not supported")
                stats.incr("websocket_errors", ("binary_frame",))
                return
            await self._receive_text(text)
        elif kind == "websocket.connect":
            await self._connect()
        elif kind == "websocket.disconnect":
            stats.incr("connection_closed", (self.app_id, _close_code_label(message.get("code"))))
            raise StopConsumer

    async def _connect(self) -> None:
        await self.base_send({"type": "websocket.accept"})
        self._writer = self.scope.get("extensions", {}).get(WRITER_EXTENSION)
        try:
            await self._handshake()
        except PusherError as exc:
            stats.incr("connection_errors", (self.app_id or "", _handshake_reason(exc.code)))
            self.send_error(exc.code, exc.message)
            await self._close(exc.code or errors.GENERIC_ERROR, exc.message)
        except Exception:
            logger.exception("websocket handshake failed")
            stats.incr("errors", ("handshake",))
            await self._close(errors.RECONNECT, "Internal error")
        # The handshake was the last reader of the request headers; an open socket kept them
        # for its whole life (~0.8 KiB per socket measured with tracemalloc).
        self.scope["headers"] = ()

    async def _handshake(self) -> None:
        key = self.scope.get("url_route", {}).get("kwargs", {}).get("app_key")
        if key is None:
            raise PusherError(errors.PATH_NOT_FOUND, "Path not found")
        node = self.node = get_node()
        if not node.accepting:
            raise PusherError(errors.RECONNECT, "Server is shutting down, reconnect")
        app = await credentials.by_key(key)
        if app is None:
            raise PusherError(errors.APP_NOT_FOUND, "Application does not exist")
        self.app_id = app.id
        if not app.enabled:
            raise PusherError(errors.APP_DISABLED, "Application disabled")
        self._check_protocol()
        if not origin_allowed(app.allowed_origins, _header(self.scope, b"origin")):
            raise PusherError(errors.UNAUTHORIZED, "Origin not allowed")
        self.socket_id = new_socket_id()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STARTUP_WAIT_SECONDS):
                await node.wait_started()
        count = await node.state.add_connection(app.id, self.socket_id)
        self.app = app
        if app.max_connections is not None and count > app.max_connections:
            await node.state.remove_connection(app.id, self.socket_id)
            self.app = None
            raise PusherError(errors.OVER_CONNECTION_QUOTA, "Application is over connection quota")
        self.open = True
        if app.max_client_events_per_second is not None:
            self._client_events = WindowLimiter(app.max_client_events_per_second, (app.id, "client_events"))
        node.registry.add(self)
        liveness.track(self)
        stats.incr("connection_established", (app.id,))
        conf = get_settings()
        self.push(frames.connection_established(self.socket_id, conf.ACTIVITY_TIMEOUT))

    def _check_protocol(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        values = query.get("protocol")
        if not values:
            raise PusherError(errors.NO_PROTOCOL, "No protocol version supplied")
        conf = get_settings()
        try:
            version = int(values[0])
        except ValueError:
            raise PusherError(errors.UNSUPPORTED_PROTOCOL, "Unsupported protocol version") from None
        if not conf.MIN_PROTOCOL <= version <= conf.MAX_PROTOCOL:
            raise PusherError(errors.UNSUPPORTED_PROTOCOL, "Unsupported protocol version")

    # Inbound frames

    async def _receive_text(self, text: str) -> None:
        if not self.open:
            return
        app_id = self.app_id
        # ASCII-only frames (nearly all) have as many bytes as characters: no encode needed.
        size = len(text) if text.isascii() else len(text.encode())
        stats.incr("messages_received", (app_id,))
        stats.incr("socket_received_bytes", (app_id,), size)
        started = time.perf_counter()
        try:
            if size > get_settings().MAX_CLIENT_FRAME_BYTES:
                raise PusherError(errors.GENERIC_ERROR, "Message too large")
            frame = frames.decode_client_frame(text)
            await self._handle(frame)
        except PusherError as exc:
            self.send_error(exc.code, exc.message, exc.channel)
            if exc.closes:
                await self._close(exc.code or errors.GENERIC_ERROR, exc.message)
        except Exception:
            logger.exception("error handling a client frame", extra={"app_id": app_id})
            stats.incr("errors", ("consumer",))
            self.send_error(errors.GENERIC_ERROR, "Internal error")
        finally:
            stats.observe("message_processing_duration", time.perf_counter() - started, ("frame",))
            stats.observe("message_size", size, ("in",), unit="bytes")

    async def _handle(self, frame: frames.ClientFrame) -> None:
        event = frame["event"]
        if event == "pusher:ping":
            self.push(frames.PONG)
        elif event == "pusher:pong":
            liveness.pong_received(self)
        elif event == "pusher:subscribe":
            await self._subscribe(_data_object(frame))
        elif event == "pusher:unsubscribe":
            channel = _data_object(frame).get("channel")
            if isinstance(channel, str):
                await self._unsubscribe(channel)
        elif event == "pusher:signin":
            await self._signin(_data_object(frame))
        elif is_client_event(event):
            await self._client_event(frame)
        else:
            raise PusherError(errors.GENERIC_ERROR, f"Unsupported event: {event[:50]}")

    async def _subscribe(self, data: dict[str, Any]) -> None:
        app = self.app
        node = self.node
        assert app is not None and node is not None
        channel = data.get("channel")
        reason = channel_name_error(channel, app.max_channel_name_length)
        if reason is not None:
            raise PusherError(errors.GENERIC_ERROR, reason, channel if isinstance(channel, str) else None)
        assert isinstance(channel, str)
        if channel in self.subscriptions:
            raise PusherError(None, f"Existing subscription to channel {channel}", channel)
        kind = channel_kind(channel)
        if kind.cache and not app.enable_cache_channels:
            return self._subscription_error(channel, "AuthError", "Cache channels are disabled", 403)
        member = None
        if kind.user:
            if self.user is None or server_to_user_id(channel) != self.user.user_id:
                stats.incr("authentication_failures", (app.id, "channel"))
                return self._subscription_error(
                    channel, "AuthError", "Only the signed-in user may subscribe", 403
                )
        elif kind.requires_auth:
            channel_data = data.get("channel_data") if kind.presence else None
            signed = channel_string_to_sign(self.socket_id, channel, channel_data)
            if not verify_token(app.key, app.secret, data.get("auth"), signed):
                stats.incr("authentication_failures", (app.id, "channel"))
                return self._subscription_error(channel, "AuthError", "Invalid signature", 401)
            if kind.presence:
                try:
                    member = parse_channel_data(channel_data, app.max_presence_member_size_kb)
                except PusherError as exc:
                    return self._subscription_error(channel, "InvalidChannelData", exc.message, 400)
                limit = app.max_presence_members_per_channel
                if limit is not None and await node.state.member_count(app.id, channel) >= limit:
                    members = await node.state.members(app.id, channel)
                    if member.user_id not in members:
                        return self._subscription_error(
                            channel, "LimitReached", "Presence channel member limit reached", 403
                        )
        self.subscriptions[channel] = Subscription(kind, member.user_id if member else None)
        node.registry.subscribe(self, channel)
        await events.subscribed(self, app, channel, kind, member)

    def _subscription_error(self, channel: str, error_type: str, message: str, status: int) -> None:
        self.push(frames.subscription_error(channel, error_type, message, status))

    async def _unsubscribe(self, channel: str) -> None:
        subscription = self.subscriptions.pop(channel, None)
        if subscription is None or self.app is None or self.node is None:
            return
        self.node.registry.unsubscribe(self, channel)
        await events.unsubscribed(self, self.app, channel, subscription.kind, subscription.user_id)

    async def _signin(self, data: dict[str, Any]) -> None:
        app = self.app
        assert app is not None and self.node is not None
        user_data = data.get("user_data")
        signed = user_string_to_sign(self.socket_id, user_data if isinstance(user_data, str) else "")
        if not isinstance(user_data, str) or not verify_token(app.key, app.secret, data.get("auth"), signed):
            stats.incr("authentication_failures", (app.id, "signin"))
            raise PusherError(errors.UNAUTHORIZED, "Invalid signature")
        user = parse_user_data(user_data)
        if self.user is not None:
            if self.user.user_id != user.user_id:
                raise PusherError(errors.UNAUTHORIZED, "Already signed in as another user")
            return self.push(frames.signin_success(user_data))
        watchlist_over = len(user.watchlist) > 100
        if watchlist_over:
            user = SignedInUser(user.user_id, user.user_info, user.watchlist[:100])
        if not app.enable_watchlist_events:
            user = SignedInUser(user.user_id, user.user_info, ())
        self.user = user
        self.node.registry.sign_in(self, user.user_id, user.watchlist)
        self.push(frames.signin_success(user_data))
        if watchlist_over and app.enable_watchlist_events:
            self.send_error(
                errors.WATCHLIST_LIMIT,
                "Watchlist limit exceeded. Only the first 100 user IDs are accepted.",
            )
        await events.signed_in(self, app, user)

    async def _client_event(self, frame: frames.ClientFrame) -> None:
        app = self.app
        assert app is not None and self.node is not None
        event = frame["event"]
        channel = frame["channel"]
        if not app.enable_client_messages:
            raise PusherError(
                errors.CLIENT_EVENT_REJECTED, "Client events are not enabled for this app", channel
            )
        if event_name_error(event) is not None:
            raise PusherError(errors.CLIENT_EVENT_REJECTED, "Invalid event name", channel)
        subscription = self.subscriptions.get(channel) if channel else None
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
        if self._client_events is not None and not self._client_events.allow():
            stats.incr("rate_limit_triggered", (app.id, "client_events"))
            raise PusherError(
                errors.CLIENT_EVENT_REJECTED, "Client event rejected due to rate limit", channel
            )
        await events.client_event(self, app, channel, event, data, subscription.user_id)

    # Outbound

    def push(self, text: str) -> None:
        message = Outbound(text)
        stats.incr("messages_sent", (self.app_id,))
        stats.incr("socket_transmitted_bytes", (self.app_id,), message.size)
        self.deliver(message)

    def deliver(self, message: Outbound) -> None:
        if self.closing:
            return
        writer = self._writer
        if writer is not None:
            if writer.buffered() > get_settings().MAX_SOCKET_BUFFER_BYTES:
                stats.incr("websocket_errors", ("slow_consumer",))
                self.terminate(errors.RECONNECT, "Slow consumer")
                return
            writer.write(message.frame)
            return
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append(message.text)
        if self._flush_task is None:
            self._flush_task = spawn(self._flush())

    async def _flush(self) -> None:
        try:
            while self._outbox:
                text = self._outbox.popleft()
                await self.base_send({"type": "websocket.send", "text": text})
        except Exception:
            logger.debug("send failed on a closing socket", exc_info=True)
        finally:
            self._flush_task = None
            if not self._outbox:
                self._outbox = None

    def send_error(self, code: int | None, message: str, channel: str | None = None) -> None:
        self.push(frames.error(code, message, channel))

    def terminate(self, code: int, reason: str) -> None:
        """Close from outside the consumer's own task (terminate, shutdown, liveness)."""
        if self.closing:
            return
        self.send_error(code, reason)
        spawn(self._close(code, reason))

    def watchlist_changed(self, user_id: str, online: bool) -> None:
        self.push(
            frames.watchlist_events([{"name": "online" if online else "offline", "user_ids": [user_id]}])
        )

    async def _close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        # Flush what was queued first: the pusher:error must arrive before the close frame.
        if self._flush_task is not None:
            await self._flush_task
        self.closing = True
        with contextlib.suppress(Exception):
            await self.base_send({"type": "websocket.close", "code": code, "reason": reason[:120]})
        await self._cleanup()

    async def _cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        self.open = False
        self.closing = True
        app, node = self.app, self.node
        if app is None or node is None:
            return
        liveness.untrack(self)
        try:
            for channel in list(self.subscriptions):
                await self._unsubscribe(channel)
            if self.user is not None:
                node.registry.sign_out(self, self.user.user_id, self.user.watchlist)
                await events.signed_out(self, app, self.user)
        except Exception:
            logger.exception("cleanup failed", extra={"app_id": app.id})
            stats.incr("errors", ("cleanup",))
        finally:
            node.registry.remove(self)
            with contextlib.suppress(Exception):
                await node.state.remove_connection(app.id, self.socket_id)


def _data_object(frame: frames.ClientFrame) -> dict[str, Any]:
    data = frame["data"]
    if not isinstance(data, dict):
        raise PusherError(errors.GENERIC_ERROR, f"{frame['event']} needs a data object")
    return data


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin1")
    return None


_KNOWN_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1012}
    | {4000, 4001, 4003, 4004, 4005, 4006, 4007, 4008, 4009, 4100, 4200, 4201, 4202}
)


def _close_code_label(code: object) -> str:
    return str(code) if code in _KNOWN_CLOSE_CODES else "other"


_HANDSHAKE_REASONS = {
    errors.APP_NOT_FOUND: "unknown_app",
    errors.APP_DISABLED: "app_disabled",
    errors.OVER_CONNECTION_QUOTA: "over_quota",
    errors.PATH_NOT_FOUND: "bad_path",
    errors.UNSUPPORTED_PROTOCOL: "bad_protocol",
    errors.NO_PROTOCOL: "bad_protocol",
    errors.UNAUTHORIZED: "origin",
    errors.RECONNECT: "draining",
}


def _handshake_reason(code: int | None) -> str:
    return _HANDSHAKE_REASONS.get(code or 0, "other")
