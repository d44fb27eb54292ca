"""Webhooks as production runs them: the outbox in a real PostgreSQL (started by the test), delivered
by a separate ``realtime_webhooks`` worker, and by a surviving node after another was SIGKILLed."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PYTHON, ROOT, _base_env
from tests.postgres import PostgresServer, postgres_server
from tests.pusher_client import PusherSocket
from tests.webhook_receiver import Receiver, assert_one_delivery_per_event, assert_signed, hooks

EVENTS = ["channel_occupied"]


@pytest.fixture
def receiver(receivers: Callable[..., Receiver]) -> Receiver:
    """A receiver that is down until the test brings it up (on the port its URL names)."""
    return receivers(up=False)


def names(receiver: Receiver) -> list[str]:
    """The names of the events received, in order."""
    return [event["name"] for _, event in receiver.events()]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    yield from postgres_server(tmp_path_factory)


@pytest.fixture
def database(postgres: PostgresServer, tmp_path: Path) -> str:
    """A fresh, migrated database on the test's PostgreSQL; its URL."""
    name = f"realtime_{tmp_path.name.lower().replace('-', '_')}"[:60]
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = postgres.url.rsplit("/", 1)[0] + "/" + name
    env = {**_base_env(tmp_path), "DATABASE_URL": url}
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    return url


def statuses(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute("SELECT status FROM realtime_webhookdelivery")]


async def wait_delivered(url: str, timeout: float = 5) -> None:
    """Until every outbox row is delivered: outcomes are written together, a moment (50 ms) after
    the receiver answered."""
    deadline = time.monotonic() + timeout
    while (found := set(statuses(url))) != {"delivered"}:
        assert time.monotonic() < deadline, f"outbox rows not all delivered: {found}"
        await asyncio.sleep(0.05)


async def occupy(server, channels: list[str]) -> PusherSocket:
    client = await PusherSocket.connect(server.ws_url())
    for channel in channels:
        await client.subscribe(channel)
    return client


async def test_an_external_worker_delivers_what_servers_commit(
    start_server, database: str, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.up()
    env = {
        "DATABASE_URL": database,
        "DEFAULT_APP_WEBHOOKS": hooks(receiver.url, EVENTS),
        "WEBHOOK_WORKER": "external",
    }
    server = start_server(env)
    channels = [f"external-{n}" for n in range(5)]
    client = await occupy(server, channels)
    await asyncio.sleep(1.0)
    # Committed, not delivered: the server only writes the outbox.
    assert statuses(database) and set(statuses(database)) == {"pending"}
    assert receiver.snapshot() == []
    worker_env = {**server.env, "WEBHOOK_POLL_SECONDS": "0.2"}
    worker = subprocess.Popen(
        [PYTHON, "manage.py", "realtime_webhooks"],
        cwd=ROOT,
        env=worker_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        await receiver.wait_channels("channel_occupied", set(channels), timeout=20)
        await wait_delivered(database)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
        await client.close()
    assert worker.returncode == 0, output
    assert_signed(receiver.snapshot(), server.key, server.pusher())


async def test_a_surviving_node_delivers_a_killed_nodes_events(
    start_server, database: str, receiver: Receiver, redis_server
) -> None:
    env = {
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "DEFAULT_APP_WEBHOOKS": hooks(receiver.url, EVENTS),
        "WEBHOOK_LEASE_SECONDS": "2",
        "WEBHOOK_POLL_SECONDS": "0.2",
    }
    node_a, node_b = start_server(env), start_server(env)
    channels = [f"killed-{n}" for n in range(20)]
    await occupy(node_a, channels)  # the receiver is down: node A holds them, retrying
    await asyncio.sleep(1.0)
    node_a.kill()
    receiver.up()
    await receiver.wait_channels("channel_occupied", set(channels), timeout=20)
    # One row per request: every channel's event went out under one delivery id, from node B.
    assert set(assert_one_delivery_per_event(receiver, "channel_occupied")) == set(channels)
    await wait_delivered(database)
    assert node_b.process.poll() is None


async def test_sigterm_commits_everything_and_hands_back_what_it_could_not_deliver(
    start_server, receiver: Receiver, tmp_path: Path
) -> None:
    hooked = hooks(receiver.url, ["channel_occupied", "channel_vacated"])
    # Vacated waits far longer than the test: SIGTERM must decide it instead of dropping it.
    env = {"DEFAULT_APP_WEBHOOKS": hooked, "WEBHOOK_DELAY_SECONDS": "60", "SHUTDOWN_GRACE_SECONDS": "3"}
    data_dir = tmp_path / "node"
    server = start_server(env, data_dir=data_dir)
    channels = [f"drained-{n}" for n in range(3)]
    client = await occupy(server, channels)
    await client.close()
    await asyncio.sleep(0.5)
    assert server.stop(signal.SIGTERM) == 0
    with sqlite3.connect(data_dir / "db.sqlite3") as connection:
        rows = connection.execute("SELECT status, lease_owner, body FROM realtime_webhookdelivery").fetchall()
    expected = sorted(event["name"] for _, _, body in rows for event in json.loads(body)["events"])
    assert expected == ["channel_occupied"] * 3 + ["channel_vacated"] * 3
    # Undelivered (the receiver is down) and released: nobody has to wait for a lease to run out.
    assert {(status, owner) for status, owner, _ in rows} == {("pending", "")}
    receiver.up()
    # The default lease is 30 s: delivery within a few seconds shows the rows were handed back.
    start_server(env, data_dir=data_dir)
    await receiver.wait(lambda: sorted(names(receiver)) == expected, "every event, delivered", timeout=10)


async def test_a_node_leaving_decides_its_delayed_events_while_redis_is_there(
    start_server, receiver: Receiver, redis_server
) -> None:
    receiver.up()
    hooked = hooks(receiver.url, ["channel_occupied", "channel_vacated"])
    env = {"REDIS_URL": redis_server.url, "DEFAULT_APP_WEBHOOKS": hooked, "WEBHOOK_DELAY_SECONDS": "60"}
    node_a, node_b = start_server(env), start_server(env)
    client = await occupy(node_a, ["leaving"])
    await client.close()
    await asyncio.sleep(0.3)
    assert names(receiver) == ["channel_occupied"]
    assert node_a.stop(signal.SIGTERM) == 0
    stopped = ["channel_occupied", "channel_vacated"]
    await receiver.wait(lambda: names(receiver) == stopped, "channel_vacated", timeout=10)
    # The story flag was cleared in Redis: the next subscriber, on the other node, is news again.
    again = await occupy(node_b, ["leaving"])
    await receiver.wait(lambda: names(receiver) == [*stopped, "channel_occupied"], "news again", timeout=10)
    await again.close()
