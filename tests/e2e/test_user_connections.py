"""The per-user connection cap (max_connections_per_user) on real servers, both policies: the
newest connection refused with 4004, or the user's oldest closed with 4009; on one node, and
across nodes through Redis (the oldest connection may be on another node)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import websockets

from tests.conftest import ServerProcess
from tests.pusher_client import PusherSocket


async def closed_with(client: PusherSocket) -> tuple[int | None, str]:
    """The close code and reason the server closed ``client`` with (after its pusher:error)."""
    error = await client.recv()
    assert error["event"] == "pusher:error", error
    try:
        while True:
            await client.ws.recv()
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None
        assert error["data"] == {"code": closed.rcvd.code, "message": closed.rcvd.reason}
        return closed.rcvd.code, closed.rcvd.reason


async def sign_in(node: ServerProcess, key: str, sdk, user: str) -> PusherSocket:
    client = await PusherSocket.connect(node.ws_url(key=key))
    reply = await client.signin(sdk, {"id": user})
    assert reply["event"] == "pusher:signin_success", reply
    return client


async def refuse_newest(nodes: list[ServerProcess]) -> None:
    first = nodes[0]
    app_id, key, secret = first.create_app(enable_user_authentication=True, max_connections_per_user=2)
    sdk = first.pusher(app_id=app_id, key=key, secret=secret)
    tabs = [await sign_in(nodes[i % len(nodes)], key, sdk, "ann") for i in range(2)]
    other_user = await sign_in(nodes[-1], key, sdk, "bob")
    newest = await PusherSocket.connect(nodes[-1].ws_url(key=key))
    await newest.send("pusher:signin", sdk.authenticate_user(newest.socket_id, {"id": "ann"}))
    assert await closed_with(newest) == (4004, "User is over its connection quota")
    for tab in (*tabs, other_user):
        await tab.send("pusher:ping")
        assert (await tab.recv())["event"] == "pusher:pong"  # the others stay
    await tabs[0].close()
    # A slot is free again, once the closing node has removed the closed connection.
    deadline = time.monotonic() + 5
    while True:
        again = await PusherSocket.connect(nodes[-1].ws_url(key=key))
        reply = await again.signin(sdk, {"id": "ann"})
        if reply["event"] == "pusher:signin_success":
            break
        await again.close()
        assert time.monotonic() < deadline, reply
        await asyncio.sleep(0.1)
    for client in (again, tabs[1], other_user):
        await client.close()


async def close_oldest(nodes: list[ServerProcess]) -> None:
    first = nodes[0]
    app_id, key, secret = first.create_app(
        enable_user_authentication=True, max_connections_per_user=2, user_connections_policy="close_oldest"
    )
    sdk = first.pusher(app_id=app_id, key=key, secret=secret)
    oldest = await sign_in(nodes[0], key, sdk, "ann")
    middle = await sign_in(nodes[-1], key, sdk, "ann")
    newest = await sign_in(nodes[-1], key, sdk, "ann")  # on another node than the oldest, with Redis
    assert await closed_with(oldest) == (4009, "Closed for a newer connection of the same user")
    for tab in (middle, newest):
        await tab.send("pusher:ping")
        assert (await tab.recv())["event"] == "pusher:pong"
    latest = await sign_in(nodes[0], key, sdk, "ann")
    assert await closed_with(middle) == (4009, "Closed for a newer connection of the same user")
    for client in (newest, latest):
        await client.close()


@pytest.mark.parametrize("policy", [refuse_newest, close_oldest])
async def test_on_one_node(start_server: Callable[..., ServerProcess], policy) -> None:
    await policy([start_server()])


@pytest.mark.parametrize("policy", [refuse_newest, close_oldest])
async def test_across_nodes(cluster, policy) -> None:
    await policy(cluster(2))
