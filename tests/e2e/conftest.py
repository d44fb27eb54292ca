"""Fixtures for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisProcess, ServerProcess
from tests.e2e.nodes import node_env, wait_ready


@pytest.fixture
def cluster(
    start_server: Callable[..., ServerProcess], redis_server: RedisProcess, tmp_path: Path
) -> Iterator[Callable[..., list[ServerProcess]]]:
    """Start n nodes sharing redis_server and one database (so an app saved on one is seen by all)."""
    data_dir = tmp_path / "shared"

    def start(n: int = 3, **env: str) -> list[ServerProcess]:
        options = node_env(redis_server.url, "e2e", **env)
        nodes = [start_server(env=options, data_dir=data_dir) for _ in range(n)]
        for node in nodes:
            wait_ready(node)
        return nodes

    yield start
