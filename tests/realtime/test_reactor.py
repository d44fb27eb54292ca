"""DirectDispatchReactor: Twisted's asyncio reactor without the legacy log context per read."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.python import context, log

from realtime.daphne.reactor import DirectDispatchReactor, direct_dispatch


class Selectable:
    """The part of a Twisted FileDescriptor the reactor calls."""

    def __init__(self, sock: socket.socket, fail: bool = False) -> None:
        self.sock = sock
        self.fail = fail
        self.systems: list[Any] = []
        self.lost: list[Any] = []
        self.wrote = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "Selectable"

    def doRead(self) -> Any:
        self.systems.append(context.get(log.ILogContext)["system"])
        self.sock.recv(100)
        if self.fail:
            raise ValueError("protocol bug")
        return None

    def doWrite(self) -> Any:
        self.wrote += 1
        self.reactor.removeWriter(self)
        return None

    def readConnectionLost(self, reason: Any) -> None:
        self.lost.append(reason)

    def connectionLost(self, reason: Any) -> None:
        self.lost.append(reason)


@pytest.fixture
def loop_and_sockets():
    loop = asyncio.new_event_loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield loop, ours, theirs
    ours.close()
    theirs.close()
    loop.close()


def _turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0.05))


def test_a_ready_socket_is_read_without_the_log_context(loop_and_sockets) -> None:
    loop, ours, theirs = loop_and_sockets
    stock = AsyncioSelectorReactor(loop)
    direct = AsyncioSelectorReactor(loop)
    assert direct_dispatch(direct) is True
    assert type(direct) is DirectDispatchReactor

    reader = Selectable(ours)
    stock.addReader(reader)
    theirs.send(b"x")
    _turn(loop)
    stock.removeReader(reader)
    assert reader.systems == ["Selectable"]  # Twisted's: the protocol's log prefix as "system"

    direct.addReader(reader)
    direct.addReader(reader)  # registered once, as with Twisted
    assert direct.getReaders().count(reader) == 1
    theirs.send(b"y")
    _turn(loop)
    assert reader.systems == ["Selectable", "-"]  # the default: no prefix looked up
    direct.removeReader(reader)
    assert reader not in direct.getReaders()
    theirs.send(b"z")
    _turn(loop)
    assert len(reader.systems) == 2


def test_a_writable_socket_is_written(loop_and_sockets) -> None:
    loop, ours, _ = loop_and_sockets
    direct = AsyncioSelectorReactor(loop)
    direct_dispatch(direct)
    writer = Selectable(ours)
    writer.reactor = direct
    direct.addWriter(writer)
    assert direct.getWriters() == [writer]
    _turn(loop)
    assert writer.wrote == 1
    assert direct.getWriters() == []


def test_a_protocol_that_raises_is_disconnected_and_the_loop_goes_on(loop_and_sockets) -> None:
    loop, ours, theirs = loop_and_sockets
    direct = AsyncioSelectorReactor(loop)
    direct_dispatch(direct)
    failing = Selectable(ours, fail=True)
    direct.addReader(failing)
    theirs.send(b"x")
    _turn(loop)
    assert len(failing.lost) == 1
    assert failing.lost[0].check(ValueError)
    assert failing not in direct.getReaders()


def test_direct_dispatch_is_idempotent_and_leaves_other_reactors_alone(loop_and_sockets) -> None:
    loop, _, _ = loop_and_sockets
    direct = AsyncioSelectorReactor(loop)
    assert direct_dispatch(direct) and direct_dispatch(direct)
    assert type(direct) is DirectDispatchReactor

    class OtherReactor(AsyncioSelectorReactor):
        pass

    other = OtherReactor(loop)
    assert direct_dispatch(other) is False
    assert type(other) is OtherReactor
