"""Twisted's asyncio reactor, calling a ready socket's protocol without the legacy log context.

Twisted's asyncio reactor registers every socket with asyncio through ``callWithLogger``: on each
read and write it asks the protocol for its log prefix, copies a context dict and pushes it on
Twisted's context stack, so that a line logged through Twisted's legacy ``log.msg`` meanwhile
names its "system". Nothing in a server that logs through ``logging`` reads it, and it was 5 % of
a connection's CPU (py-spy, 4,000 sockets connecting). The reactor's own ``_readOrWrite`` already
catches and logs what a protocol raises and disconnects it, as before.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.asyncioreactor import AsyncioSelectorReactor


class DirectDispatchReactor(AsyncioSelectorReactor):
    """``AsyncioSelectorReactor`` whose sockets are registered with asyncio as
    ``_readOrWrite(selectable, read)`` itself. Everything else is Twisted's."""

    def addReader(self, reader: Any) -> None:
        self._register(reader, self._readers, True)

    def addWriter(self, writer: Any) -> None:
        self._register(writer, self._writers, False)

    def _register(self, selectable: Any, registered: dict[Any, int], read: bool) -> None:
        polling = self._continuousPolling
        if selectable in registered or selectable in (polling._readers if read else polling._writers):
            return
        fd = selectable.fileno()
        loop = self._asyncioEventloop
        try:
            if read:
                loop.add_reader(fd, self._readOrWrite, selectable, True)
            else:
                loop.add_writer(fd, self._readOrWrite, selectable, False)
        except OSError:
            # Twisted's own registration knows what to do with each of these (a file epoll cannot
            # watch is polled, a broken pipe is left out, anything else is raised).
            self._unregisterFDInAsyncio(fd)
            (AsyncioSelectorReactor.addReader if read else AsyncioSelectorReactor.addWriter)(self, selectable)
            return
        registered[selectable] = fd


def direct_dispatch(reactor: Any) -> bool:
    """Make the installed reactor ``reactor`` a ``DirectDispatchReactor`` (sockets registered from
    now on skip the log context); True when it is one now. A reactor of another type is left as it
    is. Idempotent."""
    if type(reactor) is AsyncioSelectorReactor:
        reactor.__class__ = DirectDispatchReactor
    return type(reactor) is DirectDispatchReactor
