"""The smallest end-to-end path: connect, subscribe, publish with the official SDK, receive."""

from __future__ import annotations

import asyncio
import json

import websockets


async def test_publish_reaches_subscriber(server) -> None:
    async with websockets.connect(server.ws_url()) as ws:
        established = json.loads(await ws.recv())
        assert established["event"] == "pusher:connection_established"
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": "news"}}))
        assert json.loads(await ws.recv())["event"] == "pusher_internal:subscription_succeeded"
        await asyncio.to_thread(server.pusher().trigger, "news", "flash", {"n": 1})
        message = json.loads(await ws.recv())
        assert message["event"] == "flash"
        assert json.loads(message["data"]) == {"n": 1}


def test_nodes_starting_together_share_one_database(start_server, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        servers = list(pool.map(lambda _: start_server(data_dir=tmp_path), range(3)))
    assert all(s.process.poll() is None for s in servers)
    assert len({s.port for s in servers}) == 3
