"""Helpers for tests that run several realtime_serve nodes sharing Redis."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.conftest import ServerProcess
from tests.pusher_client import PusherSocket

# Short for the tests, yet several heartbeats (a third of it each) so a busy CI machine does not
# declare a live node dead.
DEAD_NODE_TIMEOUT = 2.0


def node_env(redis_url: str, prefix: str, **env: str) -> dict[str, str]:
    """The environment of a test node sharing ``redis_url``: short timeouts, ``env`` on top."""
    return {
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "REDIS_SOCKET_TIMEOUT": "1",
        "DEAD_NODE_TIMEOUT": str(DEAD_NODE_TIMEOUT),
        "SHUTDOWN_GRACE_SECONDS": "5",
        **env,
    }


def http_status(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_ready(node: ServerProcess, ready: bool = True, timeout: float = 15) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        status, _ = http_status(node.url("/ready"))
        if (status == 200) == ready:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"/ready never became {'200' if ready else '503'}:\n{node.output()[-3000:]}")


async def call(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


async def next_event(client: PusherSocket, event: str, timeout: float = 5) -> dict[str, Any]:
    """The next frame named ``event``, skipping others (subscription counts, pings)."""
    deadline = time.monotonic() + timeout
    while True:
        message = await client.recv(max(0.01, deadline - time.monotonic()))
        if message["event"] == event:
            return message
