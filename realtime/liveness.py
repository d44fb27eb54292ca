"""Server-side liveness and sign-in deadlines, checked by one sweep per process.

One periodic sweep over the open sockets costs far less than a timer per socket rescheduled on
every frame. A socket silent for ``ACTIVITY_TIMEOUT`` gets a ``pusher:ping``; if nothing comes
back within ``PONG_TIMEOUT`` it is closed with 4201 (pusher-protocol.md §1.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from .background import spawn
from .conf import get_settings
from .protocol import errors, frames
from .stats import stats

if TYPE_CHECKING:
    from .consumers import PusherConsumer

_sockets: dict[str, PusherConsumer] = {}
# When the last pusher:ping went to each socket (real clock), for heartbeat_rtt.
_pings: dict[str, float] = {}
_task: asyncio.Task[None] | None = None


def track(socket: PusherConsumer) -> None:
    global _task
    _sockets[socket.socket_id] = socket
    if _task is None or _task.done():
        _task = spawn(_sweep_forever())


def untrack(socket: PusherConsumer) -> None:
    _sockets.pop(socket.socket_id, None)
    _pings.pop(socket.socket_id, None)


def pong_received(socket: PusherConsumer) -> None:
    socket.ping_sent_at = None
    sent = _pings.pop(socket.socket_id, None)
    if sent is not None:
        stats.observe("heartbeat_rtt", time.monotonic() - sent)


def sweep(now: float | None = None) -> None:
    conf = get_settings()
    now = time.monotonic() if now is None else now
    for socket in list(_sockets.values()):
        app = socket.app
        if app is not None and app.enable_user_authentication and socket.user is None:
            deadline = app.user_authentication_timeout
            authorised = any(s.kind.requires_auth for s in socket.subscriptions.values())
            if deadline and not authorised and now - socket.connected_at > deadline:
                socket.terminate(errors.UNAUTHORIZED, "Connection is unauthorized: sign-in timed out")
                continue
        if socket.ping_sent_at is not None:
            if now - socket.ping_sent_at > conf.PONG_TIMEOUT:
                socket.terminate(errors.PONG_NOT_RECEIVED, "Pong reply not received")
        elif now - socket.last_seen > conf.ACTIVITY_TIMEOUT:
            socket.ping_sent_at = now
            _pings[socket.socket_id] = time.monotonic()
            socket.push(frames.PING)


def _interval() -> float:
    conf = get_settings()
    return max(0.05, min(conf.ACTIVITY_TIMEOUT, conf.PONG_TIMEOUT, 5.0) / 4)


async def _sweep_forever() -> None:
    while _sockets:
        await asyncio.sleep(_interval())
        with contextlib.suppress(Exception):
            sweep()
