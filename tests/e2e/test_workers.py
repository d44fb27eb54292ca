"""One process per core: a supervisor and workers sharing the public port through Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import pusher
import pytest

from tests.conftest import APP_ID, APP_KEY, APP_SECRET, ROOT, _base_env
from tests.pusher_client import PusherSocket


@pytest.fixture
def workers_server(redis_server, migrated_db, tmp_path):
    import shutil

    shutil.copy(migrated_db, tmp_path / "db.sqlite3")
    env = _base_env(tmp_path)
    env.update(
        {
            "REDIS_URL": redis_server.url,
            "DEFAULT_APP_ID": APP_ID,
            "DEFAULT_APP_KEY": APP_KEY,
            "DEFAULT_APP_SECRET": APP_SECRET,
            "DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT": "true",
        }
    )
    command = [sys.executable, "manage.py", "realtime_serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--metrics-port", "0", "--workers", "2"]
    # A file, not a pipe: the workers outlive a killed supervisor and must never block on output.
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while log.read_text().count("Listening (metrics)") < 2:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    lines = log.read_text().splitlines(keepends=True)
    port = int(re.search(r"Listening \(public\) on \S+:(\d+) with 2 workers", "".join(lines)).group(1))
    yield process, port, lines
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(20)


async def test_workers_share_the_port_and_the_state(workers_server) -> None:
    _, port, _ = workers_server
    url = f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7"
    clients = await asyncio.gather(*(PusherSocket.connect(url) for _ in range(40)))
    try:
        replies = await asyncio.gather(*(c.subscribe("shared") for c in clients))
        assert all(r["event"] == "pusher_internal:subscription_succeeded" for r in replies)
        sdk = pusher.Pusher(
            app_id=APP_ID, key=APP_KEY, secret=APP_SECRET, host="127.0.0.1", port=port, ssl=False
        )
        info = await asyncio.to_thread(sdk.channel_info, "shared", ["subscription_count"])
        assert info == {"occupied": True, "subscription_count": 40}
        await asyncio.to_thread(sdk.trigger, "shared", "hello", {"n": 1})

        async def hello(client: PusherSocket) -> dict:
            while True:  # subscription_count events may come first
                message = await client.recv()
                if message["event"] == "hello":
                    return json.loads(message["data"])

        received = await asyncio.gather(*(hello(c) for c in clients))
        assert received == [{"n": 1}] * 40
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_sigterm_drains_every_worker(workers_server) -> None:
    process, port, _ = workers_server
    url = f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7"
    clients = await asyncio.gather(*(PusherSocket.connect(url) for _ in range(10)))
    process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(c.closed(timeout=15) for c in clients))
    assert codes == [4200] * 10
    assert await asyncio.to_thread(process.wait, 20) == 0


async def test_workers_exit_when_the_supervisor_is_killed(workers_server) -> None:
    process, port, _ = workers_server
    workers = _children(process.pid)
    assert len(workers) == 2
    client = await PusherSocket.connect(f"ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7")
    process.kill()  # no signal forwarded: the workers must notice on their own
    assert await client.closed(timeout=15) == 4200
    deadline = asyncio.get_running_loop().time() + 15
    while any(os.path.exists(f"/proc/{pid}") for pid in workers):
        assert asyncio.get_running_loop().time() < deadline, "workers outlived their supervisor"
        await asyncio.sleep(0.2)


def _children(parent_pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent_pid:
                children.append(int(entry))
    return children
