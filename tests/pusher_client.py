"""A small Pusher protocol client over the `websockets` library, for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pusher
import websockets
from websockets.asyncio.client import ClientConnection


class PusherSocket:
    def __init__(self, ws: ClientConnection, established: dict[str, Any]) -> None:
        self.ws = ws
        self.established = established
        self.socket_id: str = established["data"]["socket_id"]

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> PusherSocket:
        ws = await websockets.connect(url, **kwargs)
        established = await _recv(ws, 5)
        if established["event"] != "pusher:connection_established":
            await ws.close()
            raise AssertionError(f"expected connection_established, got {established}")
        return cls(ws, established)

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"event": event, "data": {} if data is None else data}
        if channel is not None:
            frame["channel"] = channel
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        return await _recv(self.ws, timeout)

    async def recv_event(self, event: str, timeout: float = 5) -> dict[str, Any]:
        """The next frame, which must be ``event``."""
        message = await self.recv(timeout)
        assert message["event"] == event, message
        return message

    async def nothing(self, timeout: float = 0.3) -> None:
        try:
            message = await self.recv(timeout)
        except TimeoutError:
            return
        raise AssertionError(f"expected no message, got {message}")

    async def subscribe(
        self, channel: str, sdk: pusher.Pusher | None = None, user: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"channel": channel}
        if sdk is not None:
            # The auth response may also carry shared_secret (encrypted channels): not sent back.
            auth = sdk.authenticate(channel, self.socket_id, user)
            data.update({k: v for k, v in auth.items() if k in {"auth", "channel_data"}})
        await self.send("pusher:subscribe", data)
        return await self.recv()

    async def signin(self, sdk: pusher.Pusher, user_data: dict[str, Any]) -> dict[str, Any]:
        await self.send("pusher:signin", sdk.authenticate_user(self.socket_id, user_data))
        return await self.recv()

    async def closed(self, timeout: float = 5) -> int | None:
        """Wait for the server to close the socket; return its close code."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> PusherSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()


async def _recv(ws: ClientConnection, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        raw = await ws.recv()
    message = json.loads(raw)
    data = message.get("data")
    if isinstance(data, str) and message["event"].startswith(("pusher:", "pusher_internal:")):
        message["data"] = json.loads(data)
    return message


async def until_closed(ws: ClientConnection, timeout: float = 5) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame the server sends before closing, and the close code."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frames.append(json.loads(await ws.recv()))
    except websockets.ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None
