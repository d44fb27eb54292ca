"""Webhooks as production runs them: the outbox in a real PostgreSQL (started by the test), delivered
by a separate ``realtime_webhooks`` worker, and by a surviving node after another was SIGKILLed."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PYTHON, ROOT, _base_env, free_port
from tests.postgres import PostgresServer, postgres_server
from tests.pusher_client import PusherSocket

EVENTS = ["channel_occupied"]


class Receiver:
    """A webhook receiver on a port chosen up front, so it can be down first and come up later."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.httpd: ThreadingHTTPServer | None = None

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def channels(self) -> dict[str, set[str]]:
        """Channel -> delivery ids of the requests that carried its channel_occupied."""
        seen: dict[str, set[str]] = {}
        for headers, body in self.requests:
            for event in json.loads(body)["events"]:
                seen.setdefault(event["channel"], set()).add(headers["X-Realtime-Delivery-Id"])
        return seen

    async def wait_for_channels(self, channels: set[str], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not channels <= set(self.channels()):
                await asyncio.sleep(0.05)

    def down(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.down()


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


async def occupy(server, channels: list[str]) -> PusherSocket:
    client = await PusherSocket.connect(server.ws_url())
    for channel in channels:
        await client.subscribe(channel)
    return client


async def test_an_external_worker_delivers_what_servers_commit(
    start_server, database: str, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.up()
    hooks = json.dumps([{"url": receiver.url, "event_types": EVENTS}])
    env = {"DATABASE_URL": database, "DEFAULT_APP_WEBHOOKS": hooks, "WEBHOOK_WORKER": "external"}
    server = start_server(env)
    channels = [f"external-{n}" for n in range(5)]
    client = await occupy(server, channels)
    await asyncio.sleep(1.0)
    # Committed, not delivered: the server only writes the outbox.
    assert statuses(database) and set(statuses(database)) == {"pending"}
    assert receiver.requests == []
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
        await receiver.wait_for_channels(set(channels))
        assert set(statuses(database)) == {"delivered"}
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
        await client.close()
    assert worker.returncode == 0, output
    for headers, body in receiver.requests:
        assert server.pusher().validate_webhook(server.key, headers["X-Pusher-Signature"], body.decode())


async def test_a_surviving_node_delivers_a_killed_nodes_events(
    start_server, database: str, receiver: Receiver, redis_server
) -> None:
    hooks = json.dumps([{"url": receiver.url, "event_types": EVENTS}])
    env = {
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "DEFAULT_APP_WEBHOOKS": hooks,
        "WEBHOOK_LEASE_SECONDS": "2",
        "WEBHOOK_POLL_SECONDS": "0.2",
    }
    node_a, node_b = start_server(env), start_server(env)
    channels = [f"killed-{n}" for n in range(20)]
    await occupy(node_a, channels)  # the receiver is down: node A holds them, retrying
    await asyncio.sleep(1.0)
    node_a.kill()
    receiver.up()
    await receiver.wait_for_channels(set(channels))
    # One row per request: every channel's event went out under one delivery id, from node B.
    assert all(len(ids) == 1 for ids in receiver.channels().values())
    assert set(statuses(database)) == {"delivered"}
    assert node_b.process.poll() is None


async def test_sigterm_commits_everything_and_hands_back_what_it_could_not_deliver(
    start_server, receiver: Receiver, tmp_path: Path
) -> None:
    hooks = json.dumps([{"url": receiver.url, "event_types": ["channel_occupied", "channel_vacated"]}])
    # Vacated waits far longer than the test: SIGTERM must decide it instead of dropping it.
    env = {"DEFAULT_APP_WEBHOOKS": hooks, "WEBHOOK_DELAY_SECONDS": "60", "SHUTDOWN_GRACE_SECONDS": "3"}
    data_dir = tmp_path / "node"
    server = start_server(env, data_dir=data_dir)
    channels = [f"drained-{n}" for n in range(3)]
    client = await occupy(server, channels)
    await client.close()
    await asyncio.sleep(0.5)
    assert server.stop(signal.SIGTERM) == 0
    with sqlite3.connect(data_dir / "db.sqlite3") as connection:
        rows = connection.execute("SELECT status, lease_owner, body FROM realtime_webhookdelivery").fetchall()
    names = sorted(event["name"] for _, _, body in rows for event in json.loads(body)["events"])
    assert names == ["channel_occupied"] * 3 + ["channel_vacated"] * 3
    # Undelivered (the receiver is down) and released: nobody has to wait for a lease to run out.
    assert {(status, owner) for status, owner, _ in rows} == {("pending", "")}
    receiver.up()
    # The default lease is 30 s: delivery within a few seconds shows the rows were handed back.
    start_server(env, data_dir=data_dir)
    async with asyncio.timeout(10):
        while (
            sorted(event["name"] for _, body in receiver.requests for event in json.loads(body)["events"])
            != names
        ):
            await asyncio.sleep(0.05)


async def test_a_node_leaving_decides_its_delayed_events_while_redis_is_there(
    start_server, receiver: Receiver, redis_server
) -> None:
    receiver.up()
    hooks = json.dumps([{"url": receiver.url, "event_types": ["channel_occupied", "channel_vacated"]}])
    env = {"REDIS_URL": redis_server.url, "DEFAULT_APP_WEBHOOKS": hooks, "WEBHOOK_DELAY_SECONDS": "60"}
    node_a, node_b = start_server(env), start_server(env)

    def story() -> list[str]:
        return [event["name"] for _, body in receiver.requests for event in json.loads(body)["events"]]

    client = await occupy(node_a, ["leaving"])
    await client.close()
    await asyncio.sleep(0.3)
    assert story() == ["channel_occupied"]
    assert node_a.stop(signal.SIGTERM) == 0
    async with asyncio.timeout(10):
        while story() != ["channel_occupied", "channel_vacated"]:
            await asyncio.sleep(0.05)
    # The story flag was cleared in Redis: the next subscriber, on the other node, is news again.
    again = await occupy(node_b, ["leaving"])
    async with asyncio.timeout(10):
        while story() != ["channel_occupied", "channel_vacated", "channel_occupied"]:
            await asyncio.sleep(0.05)
    await again.close()
