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
