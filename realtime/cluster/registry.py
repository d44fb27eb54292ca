"""This process's sockets, indexed by (app, channel) and by (app, user), and the local fan-out.

A published event arrives here as one ``Outbound`` (text encoded once, framed once on first
use) and the same object is handed to every local subscriber: nothing per subscriber that could
be done once per event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..protocol.names import server_to_user_id
from ..protocol.wsframe import text_frame
from ..stats import Stats

if TYPE_CHECKING:
    from ..credentials import AppCredentials


class Outbound:
    """One server frame: its text, and its WebSocket framing built at most once."""

    __slots__ = ("_frame", "payload", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.payload = text.encode()
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The text as one unmasked WebSocket text frame (bytes), built on first use and then shared."""
        if self._frame is None:
            self._frame = text_frame(self.payload)
        return self._frame

    @property
    def size(self) -> int:
        """Payload bytes, as socket_transmitted_bytes counts them (without WebSocket framing)."""
        return len(self.payload)


class LocalSocket(Protocol):
    """An open socket of this process, as fan-out and the runtime see it."""

    socket_id: str
    app_id: str

    def deliver(self, message: Outbound) -> None:
        """Send a frame that is the same for every subscriber (counted by the caller)."""
        ...

    def push(self, text: str) -> None:
        """Send a frame of this socket's own (counted here)."""
        ...

    def terminate(self, code: int, reason: str) -> None:
        """Send ``pusher:error`` ``code`` and close with it, from outside the socket's own task."""
        ...

    def app_changed(self, app: AppCredentials | None) -> None:
        """Its app changed (``app``: the new snapshot, None once deleted): close or carry on."""
        ...

    def watchlist_changed(self, user_id: str, online: bool) -> None:
        """Send ``pusher_internal:watchlist_events``: ``user_id`` came online (True) or went offline."""
        ...

    def sweep(self, now: float) -> None:
        """The periodic liveness and sign-in deadline check (``now``: monotonic seconds)."""
        ...


class Registry:
    """Local sockets by id, by (app, channel), by (app, user) and by (app, watched user)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.sockets: dict[str, LocalSocket] = {}
        self.channels: dict[tuple[str, str], dict[str, LocalSocket]] = {}
        self.users: dict[tuple[str, str], dict[str, LocalSocket]] = {}
        # (app, watched user id) -> watching sockets
        self.watchers: dict[tuple[str, str], dict[str, LocalSocket]] = {}
        # Subscriptions not yet acknowledged: events for them wait here, so that a client never
        # sees a channel event before its own subscription_succeeded (the state is updated
        # between the two, and with Redis that is an await other events can overtake).
        self.pending: dict[tuple[str, str], dict[str, tuple[LocalSocket, list[Outbound]]]] = {}

    def add(self, socket: LocalSocket) -> None:
        """Index an open socket by its socket id."""
        self.sockets[socket.socket_id] = socket

    def remove(self, socket: LocalSocket) -> None:
        """Forget the socket by its id (no error if absent); its channels and user go through
        ``unsubscribe`` and ``sign_out`` first.
        """
        self.sockets.pop(socket.socket_id, None)

    def subscribe(self, socket: LocalSocket, channel: str) -> None:
        """Start receiving ``channel``'s events, held back until ``acknowledge``."""
        self.pending.setdefault((socket.app_id, channel), {})[socket.socket_id] = (socket, [])

    def acknowledge(self, socket: LocalSocket, channel: str) -> None:
        """The subscription was acknowledged: deliver what was held back, then go live."""
        key = (socket.app_id, channel)
        waiting = self.pending.get(key)
        entry = waiting.pop(socket.socket_id, None) if waiting is not None else None
        if waiting is not None and not waiting:
            del self.pending[key]
        if entry is None:
            return
        for message in entry[1]:
            socket.deliver(message)
        self.channels.setdefault(key, {})[socket.socket_id] = socket

    def unsubscribe(self, socket: LocalSocket, channel: str) -> None:
        """Stop handing ``channel``'s events to the socket, whether live or still held back; no error
        if it was not subscribed.
        """
        key = (socket.app_id, channel)
        _discard(self.channels, key, socket.socket_id)
        waiting = self.pending.get(key)
        if waiting is not None:
            waiting.pop(socket.socket_id, None)
            if not waiting:
                del self.pending[key]

    def sign_in(self, socket: LocalSocket, user_id: str, watchlist: tuple[str, ...]) -> None:
        """Index the socket under ``user_id`` (for ``terminate_user``) and as a watcher of each id in
        ``watchlist`` (for ``watchlist_changed``).
        """
        self.users.setdefault((socket.app_id, user_id), {})[socket.socket_id] = socket
        for watched in watchlist:
            self.watchers.setdefault((socket.app_id, watched), {})[socket.socket_id] = socket

    def sign_out(self, socket: LocalSocket, user_id: str, watchlist: tuple[str, ...]) -> None:
        """Undo ``sign_in`` with the same ``user_id`` and ``watchlist``; missing entries are ignored."""
        _discard(self.users, (socket.app_id, user_id), socket.socket_id)
        for watched in watchlist:
            _discard(self.watchers, (socket.app_id, watched), socket.socket_id)

    def deliver(
        self, app_id: str, channel: str, message: Outbound, except_socket_id: str | None = None
    ) -> int:
        """Hand ``message`` to every local subscriber of the channel but one; return how many.

        A ``#server-to-user-<id>`` event goes to every local socket signed in as the user, subscribed
        to that channel or not (the official clients subscribe, others only sign in), once each:
        only a socket signed in as the user can subscribe to its channel.
        """
        if channel[:1] == "#":
            user_id = server_to_user_id(channel)
            if user_id is not None:
                return self._deliver_to_user(app_id, user_id, message, except_socket_id)
        if self.pending:
            self._hold(app_id, channel, message, except_socket_id)
        subscribers = self.channels.get((app_id, channel))
        if not subscribers:
            return 0
        excluded = subscribers.get(except_socket_id) if except_socket_id else None
        for socket in list(subscribers.values()):
            if socket is not excluded:
                socket.deliver(message)
        return self._sent(app_id, len(subscribers) - (excluded is not None), message)

    def _sent(self, app_id: str, sent: int, message: Outbound) -> int:
        stats = self.stats
        stats.incr("messages_sent", (app_id,), sent)
        stats.incr("socket_transmitted_bytes", (app_id,), sent * message.size)
        return sent

    def _deliver_to_user(
        self, app_id: str, user_id: str, message: Outbound, except_socket_id: str | None
    ) -> int:
        sockets = self.users.get((app_id, user_id))
        if not sockets:
            return 0
        sent = 0
        for socket in list(sockets.values()):
            if socket.socket_id != except_socket_id:
                socket.deliver(message)
                sent += 1
        return self._sent(app_id, sent, message)

    def _hold(self, app_id: str, channel: str, message: Outbound, except_socket_id: str | None) -> None:
        for socket_id, (_, held) in self.pending.get((app_id, channel), {}).items():
            if socket_id != except_socket_id:
                held.append(message)

    def terminate_user(self, app_id: str, user_id: str, code: int, reason: str) -> int:
        """Terminate every local socket signed in as ``user_id`` with ``code`` and ``reason``; return
        how many there were.
        """
        sockets = list(self.users.get((app_id, user_id), {}).values())
        for socket in sockets:
            socket.terminate(code, reason)
        return len(sockets)

    def terminate_socket(self, app_id: str, socket_id: str, code: int, reason: str) -> bool:
        """Terminate the app's local socket ``socket_id`` with ``code`` and ``reason``; whether it
        is here."""
        socket = self.sockets.get(socket_id)
        if socket is None or socket.app_id != app_id:
            return False
        socket.terminate(code, reason)
        return True

    def watchlist_changed(self, app_id: str, user_id: str, online: bool) -> None:
        """Tell every local socket whose watchlist holds ``user_id`` that it came online (True) or went
        offline.
        """
        for socket in list(self.watchers.get((app_id, user_id), {}).values()):
            socket.watchlist_changed(user_id, online)

    def local_subscription_count(self, app_id: str, channel: str) -> int:
        """Live (acknowledged) subscribers of ``channel`` on this node only, not the cluster's count."""
        return len(self.channels.get((app_id, channel), ()))


def _discard(
    index: dict[tuple[str, str], dict[str, LocalSocket]], key: tuple[str, str], socket_id: str
) -> None:
    members = index.get(key)
    if members is not None:
        members.pop(socket_id, None)
        if not members:
            del index[key]
