"""Server-side liveness and the sign-in deadline of one socket, checked by the runtime's sweep.

A socket silent for ``ACTIVITY_TIMEOUT`` gets a ``pusher:ping``; if nothing comes back within
``PONG_TIMEOUT`` it is closed with 4201. With user authentication required, a socket that has
neither signed in nor joined a private channel within the app's timeout is closed with 4009
(https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#ping-and-pong-messages).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from ..protocol import errors, frames
from ..stats import Stats

SIGN_IN_TIMED_OUT = "Connection is unauthorized: sign-in timed out"
PONG_NOT_RECEIVED = "Pong reply not received"


class Watched(Protocol):
    """What the checks read and change on a socket (``PusherConsumer`` provides it)."""

    app: Any
    user: Any
    subscriptions: dict[str, Any]
    connected_at: float
    last_seen: float
    ping_sent_at: float | None

    def push(self, text: str) -> None: ...
    def terminate(self, code: int, reason: str) -> None: ...


def check(socket: Watched, now: float, activity_timeout: float, pong_timeout: float) -> None:
    """Apply the deadlines to ``socket`` at ``now`` (monotonic seconds): ping, or close, or nothing."""
    app = socket.app
    if app is not None and app.enable_user_authentication and socket.user is None:
        deadline = app.user_authentication_timeout
        authorised = any(s.kind.requires_auth for s in socket.subscriptions.values())
        if deadline and not authorised and now - socket.connected_at > deadline:
            socket.terminate(errors.UNAUTHORIZED, SIGN_IN_TIMED_OUT)
            return
    if socket.ping_sent_at is not None:
        if now - socket.ping_sent_at > pong_timeout:
            socket.terminate(errors.PONG_NOT_RECEIVED, PONG_NOT_RECEIVED)
    elif now - socket.last_seen > activity_timeout:
        socket.ping_sent_at = now
        socket.push(frames.PING)


def pong_received(socket: Watched, stats: Stats) -> None:
    """A ``pusher:pong``: the ping is answered; its round trip is observed once."""
    sent = socket.ping_sent_at
    socket.ping_sent_at = None
    if sent is not None:
        rtt = time.monotonic() - sent
        if rtt >= 0:
            stats.observe("heartbeat_rtt", rtt)
