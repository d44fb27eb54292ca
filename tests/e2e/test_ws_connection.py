"""Connection handshake, refusals with the right codes, ping/pong and server-side liveness."""

from __future__ import annotations

import json
import re

import pytest
import websockets

from tests.pusher_client import PusherSocket, until_closed


async def test_connection_established(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        raw = client.established
        assert re.fullmatch(r"\d+\.\d+", client.socket_id)
        assert isinstance(raw["data"]["activity_timeout"], int)
        assert raw["data"]["activity_timeout"] > 0


async def test_handshake_data_is_a_string(server) -> None:
    async with websockets.connect(server.ws_url()) as ws:
        frame = json.loads(await ws.recv())
        assert isinstance(frame["data"], str)


async def test_socket_ids_are_unique(server) -> None:
    ids = set()
    for _ in range(20):
        async with await PusherSocket.connect(server.ws_url()) as client:
            ids.add(client.socket_id)
    assert len(ids) == 20


async def refused(url: str) -> tuple[list[dict], int | None]:
    async with websockets.connect(url) as ws:
        return await until_closed(ws)


async def test_unknown_key_is_refused_with_4001(server) -> None:
    async with websockets.connect(server.ws_url(key="no-such-key")) as ws:
        frames, code = await until_closed(ws)
        assert ws.close_reason == "Application does not exist"
    assert code == 4001
    assert frames[0]["event"] == "pusher:error"
    assert json.loads(frames[0]["data"])["code"] == 4001


async def test_disabled_app_is_refused_with_4003(server) -> None:
    _, key, _ = server.create_app(disabled=True)
    _, code = await refused(server.ws_url(key=key))
    assert code == 4003


async def test_connection_quota_is_4004(server) -> None:
    _, key, _ = server.create_app(max_connections=2)
    async with (
        await PusherSocket.connect(server.ws_url(key=key)),
        await PusherSocket.connect(server.ws_url(key=key)),
    ):
        frames, code = await refused(server.ws_url(key=key))
        assert code == 4004
        assert json.loads(frames[0]["data"])["code"] == 4004
    # The quota frees up once the others are gone.
    async with await PusherSocket.connect(server.ws_url(key=key)) as client:
        assert client.socket_id


async def test_wrong_path_is_4005(server) -> None:
    _, code = await refused(f"ws://127.0.0.1:{server.port}/not/app")
    assert code == 4005


@pytest.mark.parametrize("query", ["protocol=3", "protocol=8", "protocol=seven"])
async def test_unsupported_protocol_is_4007(server, query: str) -> None:
    _, code = await refused(server.ws_url(query=query))
    assert code == 4007


@pytest.mark.parametrize("version", ["", "latest", "8.4.0;drop", "1.2.3.4.5", "9" * 12])
async def test_a_client_version_that_is_not_one_is_4006(server, version: str) -> None:
    frames, code = await refused(server.ws_url(query=f"client=js&version={version}&protocol=7"))
    assert code == 4006
    assert frames[0]["event"] == "pusher:error" and json.loads(frames[0]["data"])["code"] == 4006


@pytest.mark.parametrize("version", ["8.4.0", "8.4.0-rc2", "10.1", "7.0.3%2Bbuild.5"])
async def test_the_official_clients_versions_are_accepted(server, version: str) -> None:
    async with await PusherSocket.connect(
        server.ws_url(query=f"client=js&version={version}&protocol=7")
    ) as client:
        assert client.socket_id


async def test_missing_protocol_is_4008(server) -> None:
    _, code = await refused(server.ws_url(query="client=js"))
    assert code == 4008


async def test_origin_not_allowed_is_4009(server) -> None:
    _, key, _ = server.create_app(allowed_origin="https://good.example")
    _, code = await refused_with_origin(server.ws_url(key=key), "https://evil.example")
    assert code == 4009
    async with await PusherSocket.connect(server.ws_url(key=key), origin="https://good.example") as client:
        assert client.socket_id


async def refused_with_origin(url: str, origin: str) -> tuple[list[dict], int | None]:
    async with websockets.connect(url, origin=origin) as ws:
        return await until_closed(ws)


async def test_ping_pong(server) -> None:
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.send("pusher:ping")
        pong = await client.recv_event("pusher:pong")
        assert pong["data"] == {}


async def test_silent_client_is_pinged_then_closed_with_4201(start_server) -> None:
    fast = start_server({"ACTIVITY_TIMEOUT": "1", "PONG_TIMEOUT": "1"})
    async with await PusherSocket.connect(fast.ws_url()) as client:
        assert client.established["data"]["activity_timeout"] == 1
        await client.recv_event("pusher:ping", timeout=4)
        error = await client.recv_event("pusher:error", timeout=4)
        assert error["data"]["code"] == 4201
        assert await client.closed() == 4201


async def test_client_that_pongs_stays_open(start_server) -> None:
    fast = start_server({"ACTIVITY_TIMEOUT": "1", "PONG_TIMEOUT": "1"})
    async with await PusherSocket.connect(fast.ws_url()) as client:
        for _ in range(3):
            await client.recv_event("pusher:ping", timeout=4)
            await client.send("pusher:pong")
        await client.send("pusher:ping")
        await client.recv_event("pusher:pong")
