"""Realtime under stock daphne (the ``daphne`` command, ``runserver``): drain as the reactor stops.

daphne sends no ASGI lifespan events, and its own shutdown does not reach the applications either
(daphne 4.2.3's ``kill_all_applications`` stops at the first connection without an application,
such as the HTTP side of an upgraded WebSocket, with a KeyError). So Realtime registers a Twisted
"before shutdown" trigger when its runtime starts under a running reactor: on SIGTERM/SIGINT
every socket gets 4200 and the node leaves the cluster, as under ``realtime_serve``, and Twisted
waits for it before stopping.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from ..runtime import Runtime


def drain_at_reactor_shutdown(sender: Any, runtime: Runtime, **kwargs: Any) -> None:
    """``runtime_started`` receiver: make a running Twisted reactor's shutdown drain ``runtime``.

    Nothing under ``realtime_serve`` (it drains on its own signal handlers) or when no reactor
    runs (uvicorn drains through lifespan). Never installs a reactor: only a running one counts.
    """
    if runtime.serve_options.get("server") == "realtime_serve":
        return
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not getattr(reactor, "running", False):
        return
    from twisted.internet.defer import Deferred

    def drain() -> Deferred[None]:
        return Deferred.fromFuture(asyncio.ensure_future(runtime.drain()))

    reactor.addSystemEventTrigger("before", "shutdown", drain)
