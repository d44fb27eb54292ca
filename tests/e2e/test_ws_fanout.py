"""Many subscribers receive every broadcast, nothing lost, in order."""

from __future__ import annotations

import asyncio
import json

from tests.pusher_client import PusherSocket


async def test_200_subscribers_receive_every_event(server) -> None:
    clients = await asyncio.gather(*(PusherSocket.connect(server.ws_url()) for _ in range(200)))
    try:
        replies = await asyncio.gather(*(c.subscribe("crowd") for c in clients))
        assert all(r["event"] == "pusher_internal:subscription_succeeded" for r in replies)
        info = await asyncio.to_thread(server.pusher().channel_info, "crowd", [])
        assert info["occupied"] is True
        sdk = server.pusher()
        for i in range(5):
            await asyncio.to_thread(sdk.trigger, "crowd", "tick", {"i": i})

        async def receive_all(client: PusherSocket) -> list[int]:
            return [json.loads((await client.recv_event("tick"))["data"])["i"] for _ in range(5)]

        received = await asyncio.gather(*(receive_all(c) for c in clients))
        assert received == [[0, 1, 2, 3, 4]] * 200
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_batch_reaches_each_channel(server) -> None:
    async with (
        await PusherSocket.connect(server.ws_url()) as a,
        await PusherSocket.connect(server.ws_url()) as b,
    ):
        await a.subscribe("batch-a")
        await b.subscribe("batch-b")
        batch = [
            {"channel": "batch-a", "name": "one", "data": "1"},
            {"channel": "batch-b", "name": "two", "data": "2"},
        ]
        await asyncio.to_thread(server.pusher().trigger_batch, batch)
        assert (await a.recv_event("one"))["data"] == "1"
        assert (await b.recv_event("two"))["data"] == "2"
        await a.nothing()
