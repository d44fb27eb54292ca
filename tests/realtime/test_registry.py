"""The local registry: fan-out, exclusion, and events held back until a subscription is acknowledged."""

from __future__ import annotations

from realtime.cluster.registry import Outbound, Registry
from realtime.stats import Stats


class Socket:
    def __init__(self, socket_id: str) -> None:
        self.socket_id = socket_id
        self.app_id = "app"
        self.received: list[str] = []

    def deliver(self, message: Outbound) -> None:
        self.received.append(message.text)

    def terminate(self, code: int, reason: str) -> None:
        raise AssertionError("not expected")

    def watchlist_changed(self, user_id: str, online: bool) -> None:
        raise AssertionError("not expected")


def subscribed(registry: Registry, socket_id: str, channel: str = "c") -> Socket:
    socket = Socket(socket_id)
    registry.add(socket)
    registry.subscribe(socket, channel)
    registry.acknowledge(socket, channel)
    return socket


def test_one_outbound_reaches_every_subscriber_but_the_excluded() -> None:
    registry = Registry(Stats())
    a, b, c = (subscribed(registry, s) for s in ("1.1", "1.2", "1.3"))
    message = Outbound('{"event":"e"}')
    assert registry.deliver("app", "c", message, except_socket_id="1.2") == 2
    assert (a.received, b.received, c.received) == (['{"event":"e"}'], [], ['{"event":"e"}'])
    assert message.frame == b"\x81\x0d" + b'{"event":"e"}'


def test_events_wait_for_the_acknowledgement() -> None:
    registry = Registry(Stats())
    socket = Socket("2.1")
    registry.add(socket)
    registry.subscribe(socket, "c")
    registry.deliver("app", "c", Outbound("early"))
    assert socket.received == []
    assert registry.local_subscription_count("app", "c") == 0
    registry.acknowledge(socket, "c")
    registry.deliver("app", "c", Outbound("late"))
    assert socket.received == ["early", "late"]
    assert registry.pending == {}


def test_unsubscribe_while_pending_drops_held_events() -> None:
    registry = Registry(Stats())
    socket = Socket("3.1")
    registry.add(socket)
    registry.subscribe(socket, "c")
    registry.deliver("app", "c", Outbound("held"))
    registry.unsubscribe(socket, "c")
    registry.acknowledge(socket, "c")
    registry.deliver("app", "c", Outbound("after"))
    assert socket.received == []
    assert registry.pending == {} and registry.channels == {}
