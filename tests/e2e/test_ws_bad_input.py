"""Bad input from a client gets the protocol's error; that connection and every other keeps working."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.pusher_client import PusherSocket


async def still_works(client: PusherSocket) -> None:
    await client.send("pusher:ping")
    await client.recv_event("pusher:pong")


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '"a string"',
        "{}",
        '{"event": 5}',
        '{"event": "pusher:subscribe", "data": "not an object"}',
        '{"event": "pusher:subscribe", "data": {"channel": 7}}',
        '{"event": "pusher:subscribe", "channel": ["x"], "data": {}}',
        '{"event": "pusher:no_such_event", "data": {}}',
        '{"event": "not-a-client-event", "data": {}}',
        '{"event": "pusher:signin", "data": []}',
        '{"event": "client-x", "data": {}}',
        '{"event": "pusher:subscribe", "data": {"channel": "presence-p", "auth": 5}}',
    ],
)
async def test_malformed_frames(server, raw: str) -> None:
    async with (
        await PusherSocket.connect(server.ws_url()) as client,
        await PusherSocket.connect(server.ws_url()) as bystander,
    ):
        await bystander.subscribe("bystanders")
        await client.ws.send(raw)
        reply = await client.recv()
        assert reply["event"] in {"pusher:error", "pusher:subscription_error"}, reply
        await still_works(client)
        await asyncio.to_thread(server.pusher().trigger, "bystanders", "ok", "1")
        await bystander.recv_event("ok")


async def test_binary_frame(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.ws.send(b"\x00\x01binary")
        error = await client.recv_event("pusher:error")
        assert "Binary" in error["data"]["message"]
        await still_works(client)


async def test_oversized_frame(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.ws.send(json.dumps({"event": "pusher:ping", "data": {"x": "y" * 100_000}}))
        error = await client.recv_event("pusher:error")
        assert "too large" in error["data"]["message"]
        await still_works(client)


async def test_presence_without_channel_data(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        auth = server.pusher().authenticate("presence-x", client.socket_id, {"user_id": "a"})
        await client.send("pusher:subscribe", {"channel": "presence-x", "auth": auth["auth"]})
        reply = await client.recv()
        assert reply["event"] == "pusher:subscription_error"
        await still_works(client)


async def test_error_frames_never_close_with_43xx(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        for _ in range(5):
            await client.ws.send("garbage")
            error = await client.recv_event("pusher:error")
            assert not 4000 <= (error["data"]["code"] or 0) < 4300
        await still_works(client)
