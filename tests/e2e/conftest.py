"""Fixtures for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisProcess, ServerProcess
from tests.e2e.nodes import DEAD_NODE_TIMEOUT, wait_ready


@pytest.fixture
def cluster(
    start_server: Callable[..., ServerProcess], redis_server: RedisProcess, tmp_path: Path
) -> Iterator[Callable[..., list[ServerProcess]]]:
    """Start n nodes sharing redis_server and one database (so an app saved on one is seen by all)."""
    data_dir = tmp_path / "shared"

    def start(n: int = 3, **env: str) -> list[ServerProcess]:
        options = {
            "REDIS_URL": redis_server.url,
            "REDIS_PREFIX": "e2e",
            "REDIS_SOCKET_TIMEOUT": "1",
            "DEAD_NODE_TIMEOUT": str(DEAD_NODE_TIMEOUT),
            "SHUTDOWN_GRACE_SECONDS": "5",
            **env,
        }
        nodes = [start_server(env=options, data_dir=data_dir) for _ in range(n)]
        for node in nodes:
            wait_ready(node)
        return nodes

    yield start
