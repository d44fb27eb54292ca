"""Graceful shutdown of ``realtime_serve``: SIGTERM/SIGINT drain the runtime, then stop daphne."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from daphne.server import Server
from twisted.internet import reactor

from ..runtime import Runtime

logger = logging.getLogger(__name__)


def install_shutdown_handlers(server: Server, runtime: Runtime) -> Callable[[], None]:
    """SIGTERM/SIGINT: stop accepting, close every socket with 4200 over a jittered window, exit.

    A second signal stops at once. Returns the function that starts the shutdown, for other
    triggers (a worker's supervisor dying).
    """
    loop = asyncio.get_event_loop()
    state = {"stopping": False}

    async def drain_then_stop() -> None:
        try:
            await runtime.drain()
        finally:
            server.stop()

    def on_signal() -> None:
        if state["stopping"]:
            logger.warning("second signal: stopping now")
            reactor.stop()
            return
        state["stopping"] = True
        runtime.tasks.spawn(drain_then_stop())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    return on_signal


async def exit_with_parent(shutdown: Callable[[], None], parent: int, interval: float = 1.0) -> None:
    """A worker drains and exits when its supervisor is gone (killed without forwarding a signal).

    ``parent`` comes from the supervisor itself: reading our parent pid here instead would race
    with a supervisor that dies while this worker starts (we would read init's pid).
    """
    while os.getppid() == parent:  # noqa: ASYNC110 (no event exists for a parent exiting)
        await asyncio.sleep(interval)
    logger.warning("supervisor gone, shutting down")
    shutdown()
