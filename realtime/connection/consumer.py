"""PusherConsumer: one WebSocket connection speaking Pusher protocol 7.

The connection is a small state machine (connecting → open → closed). Each inbound frame is
parsed by ``protocol.frames``, checked by the pure protocol functions and handled in
``handlers``; every protocol error is a ``PusherError`` and every backend outage a
``StateUnavailable``, both caught in one place (``_receive_text``): nothing escapes the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer

from ..cluster.base import StateUnavailable
from ..cluster.registry import Outbound
from ..credentials import AppCredentials
from ..protocol import errors, frames
from ..protocol.errors import PusherError
from ..protocol.names import is_client_event
from ..protocol.presence import SignedInUser
from ..protocol.socket_ids import new_socket_id
from ..ratelimit import WindowLimiter
from ..runtime import Runtime, changes, get_runtime
from ..runtime.addresslimits import CONNECTIONS
from ..runtime.memorygate import OVER_CAPACITY_REASON
from ..runtime.runtime import SHUTDOWN_REASON
from . import handlers, handshake, liveness
from .handlers import Subscription

logger = logging.getLogger(__name__)

# The scope extension a server puts a frame writer under (``realtime.daphne`` does): an object
# with ``write(frame: bytes)`` and ``buffered() -> int`` (bytes not yet sent).
WRITER_EXTENSION = "realtime.writer"
# How long a socket arriving while the node still connects to Redis waits before a 4100.
STARTUP_WAIT_SECONDS = 5.0
# The 4100 reason for a client address over IP_CONNECTIONS_PER_MINUTE.
ADDRESS_REFUSED = "Too many new connections from this address, reconnect later"


class PusherConsumer(AsyncConsumer):
    """A Channels consumer without a per-consumer channel layer: fan-out goes through the broker."""

    # One per open socket: slots instead of a 0.8 KiB __dict__ (tracemalloc, 2,000 idle sockets).
    # AsyncConsumer has no slots, so an attribute missing here still works (in a __dict__).
    __slots__ = (
        "_cleaned",
        "_flush_task",
        "_outbox",
        "_writer",
        "app",
        "app_id",
        "base_send",
        "channel_layer",
        "client_events",
        "closing",
        "connected_at",
        "key",
        "last_seen",
        "open",
        "ping_sent_at",
        "runtime",
        "scope",
        "socket_id",
        "subscriptions",
        "user",
    )

    app: AppCredentials
    # The key this socket connected with (one of the app's).
    key: str
    runtime: Runtime

    def __init__(self) -> None:
        self.app_id = ""
        self.socket_id = ""
        self.subscriptions: dict[str, Subscription] = {}
        self.user: SignedInUser | None = None
        self.open = False
        self.closing = False
        self.last_seen = time.monotonic()
        self.ping_sent_at: float | None = None
        self.connected_at = self.last_seen
        self.client_events: WindowLimiter | None = None
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
        self.runtime = get_runtime()
        try:
            while True:
                # No local for the message: an idle socket would keep its last one alive.
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            # The server stops this connection's application (daphne at shutdown does): tell the
            # client to reconnect, as a drain would, before the cleanup.
            if self.open and not self.closing:
                self.send_error(errors.RECONNECT, SHUTDOWN_REASON)
                await self._close(errors.RECONNECT, SHUTDOWN_REASON)
            raise
        finally:
            await self._cleanup()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch hops to a thread per message to close DB connections; the hot
        # path here never touches the ORM, so that hop is pure cost (docs/architecture.md, "Data flow").
        kind = message["type"]
        if kind == "websocket.receive":
            self.last_seen = time.monotonic()
            text = message.get("text")
            if text is None:
                self.send_error(errors.GENERIC_ERROR, "Binary frames are not supported")
                self.runtime.stats.incr("websocket_errors", ("binary_frame",))
            else:
                await self._receive_text(text)
            # Any frame shows the client alive (after a pusher:pong has read when the ping went).
            self.ping_sent_at = None
        elif kind == "websocket.connect":
            await self._connect()
        elif kind == "websocket.disconnect":
            code = errors.close_code_label(message.get("code"))
            self.runtime.stats.incr("connection_closed", (self.app_id, code))
            if self.socket_id:
                self.runtime.console.record(self.app_id, "disconnected", socket_id=self.socket_id, code=code)
            raise StopConsumer

    # The handshake

    async def _connect(self) -> None:
        await self.base_send({"type": "websocket.accept"})
        self._writer = self.scope.get("extensions", {}).get(WRITER_EXTENSION)
        try:
            await self._handshake()
        except (PusherError, StateUnavailable) as exc:
            code = exc.code or errors.GENERIC_ERROR
            self.runtime.stats.incr("connection_errors", (self.app_id, handshake.refusal_reason(code)))
            self.send_error(code, exc.message)
            await self._close(code, exc.message)
        except Exception:
            self.runtime.errors.exception(logger, "handshake", "websocket handshake failed")
            self.runtime.stats.incr("errors", ("handshake",))
            await self._close(errors.RECONNECT, "Internal error")
        # The handshake was the last reader of the request headers; an open socket kept them
        # for its whole life (~0.8 KiB per socket measured with tracemalloc).
        self.scope["headers"] = ()

    async def _handshake(self) -> None:
        runtime = self.runtime
        key = self.scope.get("url_route", {}).get("kwargs", {}).get("app_key")
        if key is None:
            raise PusherError(errors.PATH_NOT_FOUND, "Path not found")
        await runtime.start()
        if not runtime.accepting:
            raise PusherError(errors.RECONNECT, SHUTDOWN_REASON)
        if runtime.memory.closed:
            raise PusherError(errors.OVER_CAPACITY, OVER_CAPACITY_REASON)
        app = await runtime.credentials.by_key(key)
        if app is None:
            raise PusherError(errors.APP_NOT_FOUND, "Application does not exist")
        self.app_id = app.id
        if not app.enabled:
            raise PusherError(errors.APP_DISABLED, "Application disabled")
        conf = runtime.conf
        handshake.check_protocol(self.scope.get("query_string", b""), conf.MIN_PROTOCOL, conf.MAX_PROTOCOL)
        if not handshake.origin_allowed(app.allowed_origins, handshake.header(self.scope, b"origin")):
            raise PusherError(errors.UNAUTHORIZED, "Origin not allowed")
        self.socket_id = new_socket_id()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STARTUP_WAIT_SECONDS):
                await runtime.wait_started()
        limits = runtime.address_limits
        if limits.enabled(CONNECTIONS) and not await limits.check(
            CONNECTIONS, limits.address_of_scope(self.scope)
        ):
            raise PusherError(errors.OVER_CAPACITY, ADDRESS_REFUSED)
        count = await runtime.state.add_connection(app.id, self.socket_id)
        if app.max_connections is not None and count > app.max_connections:
            await runtime.state.remove_connection(app.id, self.socket_id)
            raise PusherError(errors.OVER_CONNECTION_QUOTA, "Application is over connection quota")
        if not runtime.accepting:
            # A drain began during the awaits above: it would not see this socket.
            await runtime.state.remove_connection(app.id, self.socket_id)
            raise PusherError(errors.RECONNECT, SHUTDOWN_REASON)
        self.app = app
        # The app's own string object, not the path's: one fewer string kept per socket.
        self.key = next(k for k in app.keys if k == key)
        self.open = True
        if app.max_client_events_per_second is not None:
            limit = app.max_client_events_per_second
            self.client_events = WindowLimiter(limit, (app.id, "client_events"), runtime.stats)
        runtime.registry.add(self)
        runtime.stats.incr("connection_established", (app.id,))
        runtime.console.record(app.id, "connected", socket_id=self.socket_id)
        self.push(frames.connection_established(self.socket_id, conf.ACTIVITY_TIMEOUT))

    # Inbound frames

    async def _receive_text(self, text: str) -> None:
        if not self.open:
            return
        app_id = self.app_id
        stats = self.runtime.stats
        # ASCII-only frames (nearly all) have as many bytes as characters: no encode needed.
        size = len(text) if text.isascii() else len(text.encode())
        stats.incr("messages_received", (app_id,))
        stats.incr("socket_received_bytes", (app_id,), size)
        started = time.perf_counter()
        try:
            if size > self.runtime.conf.MAX_CLIENT_FRAME_BYTES:
                raise PusherError(errors.GENERIC_ERROR, "Message too large")
            await self._handle(frames.decode_client_frame(text))
        except PusherError as exc:
            self.send_error(exc.code, exc.message, exc.channel)
            if exc.closes:
                await self._close(exc.code or errors.GENERIC_ERROR, exc.message)
        except StateUnavailable as exc:
            # Pub/sub is at most once: a socket that met an outage must resubscribe to resync.
            self.send_error(exc.code, exc.message)
            await self._close(exc.code, exc.message)
        except Exception:
            self.runtime.errors.exception(logger, "frame", "error handling a client frame", app_id=app_id)
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
            liveness.pong_received(self, self.runtime.stats)
        elif event == "pusher:subscribe":
            await handlers.subscribe(self, handlers.data_object(frame))
        elif event == "pusher:unsubscribe":
            channel = handlers.data_object(frame).get("channel")
            if isinstance(channel, str):
                await handlers.unsubscribe(self, channel)
        elif event == "pusher:signin":
            await handlers.signin(self, handlers.data_object(frame))
        elif is_client_event(event):
            await handlers.client_event(self, frame)
        else:
            raise PusherError(errors.GENERIC_ERROR, f"Unsupported event: {event[:50]}")

    def sweep(self, now: float) -> None:
        conf = self.runtime.conf
        liveness.check(self, now, conf.ACTIVITY_TIMEOUT, conf.PONG_TIMEOUT)

    # Outbound

    def push(self, text: str) -> None:
        """Send a frame of this socket's own, counted as one message."""
        message = Outbound(text)
        stats = self.runtime.stats
        stats.incr("messages_sent", (self.app_id,))
        stats.incr("socket_transmitted_bytes", (self.app_id,), message.size)
        self.deliver(message)

    def deliver(self, message: Outbound) -> None:
        """Send ``message`` (counted by the caller): framed bytes through the server's writer when
        it has one, else ``websocket.send``. A socket whose unsent bytes pass
        ``MAX_SOCKET_BUFFER_BYTES`` is a slow consumer: closed with 4200 and counted."""
        if self.closing:
            return
        writer = self._writer
        if writer is not None:
            if writer.buffered() > self.runtime.conf.MAX_SOCKET_BUFFER_BYTES:
                # Once: terminate's pusher:error comes back here, as does every frame until _close
                # runs; without the writer they queue for websocket.send, which keeps their order.
                self._writer = None
                self.runtime.stats.incr("websocket_errors", ("slow_consumer",))
                self.terminate(errors.RECONNECT, "Slow consumer")
                return
            writer.write(message.frame)
            return
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append(message.text)
        if self._flush_task is None:
            self._flush_task = self.runtime.tasks.spawn(self._flush())

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
        self.runtime.console.record(
            self.app_id, "error", socket_id=self.socket_id, code=code, message=message, channel=channel
        )

    def terminate(self, code: int, reason: str) -> None:
        """Close from outside the consumer's own task (terminate, shutdown, liveness)."""
        if self.closing:
            return
        self.send_error(code, reason)
        self.runtime.tasks.spawn(self._close(code, reason))

    def app_changed(self, app: AppCredentials | None) -> None:
        """The app this socket belongs to changed (``app``: its new snapshot; None: deleted).
        Deleted or disabled: the socket is closed (4001, 4003). Its key gone: closed with 4200,
        so the client reconnects with the key it now has. Otherwise the new limits and flags
        apply from the next frame on."""
        if not self.open or self.closing or app is self.app:
            return
        if app is None:
            self.terminate(errors.APP_NOT_FOUND, "Application does not exist")
        elif not app.enabled:
            self.terminate(errors.APP_DISABLED, "Application disabled")
        elif self.key not in app.keys:
            self.terminate(errors.RECONNECT, "Application key revoked, reconnect")
        else:
            limit = app.max_client_events_per_second
            if limit != self.app.max_client_events_per_second:
                stats = self.runtime.stats
                self.client_events = (
                    None if limit is None else WindowLimiter(limit, (app.id, "client_events"), stats)
                )
            self.app = app

    def watchlist_changed(self, user_id: str, online: bool) -> None:
        name = "online" if online else "offline"
        self.push(frames.watchlist_events([{"name": name, "user_ids": [user_id]}]))

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
        was_open = self.open
        self.open = False
        self.closing = True
        if not was_open:
            return
        runtime = self.runtime
        app = self.app
        # Each step on its own: one that fails (Redis gone) must not leave this socket in the
        # registry's indexes, where fan-out would keep finding it.
        for channel in list(self.subscriptions):
            await self._cleanup_step(handlers.unsubscribe(self, channel))
        user = self.user
        if user is not None:
            runtime.registry.sign_out(self, user.user_id, user.watchlist)
            await self._cleanup_step(changes.signed_out(runtime, self.socket_id, app, user))
        runtime.registry.remove(self)
        await self._cleanup_step(runtime.state.remove_connection(app.id, self.socket_id))

    async def _cleanup_step(self, step: Any) -> None:
        try:
            await step
        except StateUnavailable:
            pass  # what this node held is reaped once Redis is back
        except Exception:
            self.runtime.errors.exception(logger, "cleanup", "cleanup failed", app_id=self.app_id)
            self.runtime.stats.incr("errors", ("cleanup",))
