"""Fixtures for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess
from tests.e2e.nodes import node_env, wait_ready


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every multi-node test runs on one Redis and on a Redis Cluster, but those that stop and
    # start the single redis_server themselves.
    if "cluster" in metafunc.fixturenames:
        single_only = "redis_server" in metafunc.fixturenames
        metafunc.parametrize("redis_backend", ["redis"] if single_only else ["redis", "redis-cluster"])


@pytest.fixture
def cluster(
    start_server: Callable[..., ServerProcess],
    redis_backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Callable[..., list[ServerProcess]]]:
    """Start n nodes sharing one Redis (``redis_server``) or a Redis Cluster (``redis_cluster``),
    and one database (so an app saved on one is seen by all)."""
    data_dir = tmp_path / "shared"
    redis = request.getfixturevalue("redis_server" if redis_backend == "redis" else "redis_cluster")

    def start(n: int = 3, **env: str) -> list[ServerProcess]:
        options = node_env(redis.url, "e2e", **env)
        nodes = [start_server(env=options, data_dir=data_dir) for _ in range(n)]
        for node in nodes:
            wait_ready(node)
        return nodes

    yield start
