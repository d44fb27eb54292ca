"""This process as one node: its registry, state backend, broker and lifecycle flags.

Created lazily on first use inside the event loop, never at import or in ``AppConfig.ready()``.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from .broker import Broker, LocalBroker
from .conf import get_settings
from .registry import Registry
from .state import MemoryState, State


@dataclass
class Node:
    registry: Registry
    state: State
    broker: Broker
    node_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}")
    accepting: bool = True

    async def start(self) -> None:
        start = getattr(self.broker, "start", None)
        if start is not None:
            await start()

    async def wait_started(self) -> None:
        """Until the node has reached its backend once (at once for the in-process backend)."""
        wait = getattr(self.broker, "wait_started", None)
        if wait is not None:
            await wait()

    async def readiness_problem(self) -> str | None:
        if not self.accepting:
            return "draining"
        check = getattr(self.broker, "readiness_problem", None)
        return await check() if check is not None else None

    async def stop(self) -> None:
        stop = getattr(self.broker, "stop", None)
        if stop is not None:
            await stop()


_node: Node | None = None


def build_node() -> Node:
    conf = get_settings()
    registry = Registry()
    if conf.STATE_BACKEND == "redis":
        from .redis_backend import build_redis_node

        return build_redis_node(registry, conf)
    return Node(registry=registry, state=MemoryState(), broker=LocalBroker(registry))


def get_node() -> Node:
    global _node
    if _node is None:
        _node = build_node()
    return _node


def reset_node() -> None:
    """Forget the node (tests): the next ``get_node()`` builds a fresh one."""
    global _node
    _node = None
