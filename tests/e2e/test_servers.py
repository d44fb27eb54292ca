"""The standalone project under every server it supports: realtime_serve, runserver, daphne, uvicorn.

Each server kind runs as one node (state in memory) and as two nodes of that kind sharing a private
redis-server, where clients publish and query through one node and subscribe through the other.
The same protocol, HTTP API, default app, health, private metrics site and log redaction must hold
under all eight. Each deployment is started once and shared by the tests of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pusher
import pytest
import requests
import websockets

from tests.conftest import SERVER_KINDS, ServerProcess, start_any_server, start_redis
from tests.pusher_client import PusherSocket, until_closed
from tests.realtime.api_client import signed_query

# Generous: a deployment (up to two servers and a redis-server) starts in the first test using it,
# on a machine that may be running other tests too.
pytestmark = pytest.mark.timeout(180)

# Set for every deployment, to see the default app taken from the environment under every server.
DEFAULT_APP_ENV = {
    "DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
    "DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT": "true",
    "DEFAULT_APP_MAX_EVENT_PAYLOAD_KB": "2",
}


@dataclass
class Deployment:
    kind: str
    nodes: list[ServerProcess]

    @property
    def publisher(self) -> ServerProcess:
        """The first node: the HTTP API is called here."""
        return self.nodes[0]

    @property
    def subscriber(self) -> ServerProcess:
        """The last node: subscribers connect here (with Redis, another node than the publisher)."""
        return self.nodes[-1]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def is_ready(node: ServerProcess) -> bool:
    return http_get(node.url("/ready"))[0] == 200


def active_connections(node: ServerProcess) -> float:
    """``realtime_active_connections`` of the test app on ``node``'s private metrics site."""
    status, text = http_get(node.metrics_url())
    assert status == 200, text
    pattern = rf'^realtime_active_connections{{app_id="{node.app_id}"}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def eventually(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll ``check`` until it returns something true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return result


@pytest.fixture(
    scope="module",
    params=[(kind, clustered) for kind in SERVER_KINDS for clustered in (False, True)],
    ids=lambda param: f"{param[0]}-{'redis' if param[1] else 'memory'}",
)
def deployment(
    request: pytest.FixtureRequest, migrated_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    kind, clustered = request.param
    # INFO: runserver logs requests through django.channels.server at INFO (the others log anyway).
    env = {"LOG_LEVEL": "INFO", **DEFAULT_APP_ENV}
    data_dir = tmp_path_factory.mktemp(kind)  # one database, shared by both nodes with Redis
    with contextlib.ExitStack() as stack:
        if clustered:
            redis = start_redis()
            stack.callback(redis.stop)
            env |= {"REDIS_URL": redis.url, "REDIS_PREFIX": "servers"}
        nodes = []
        for _ in range(2 if clustered else 1):
            node = start_any_server(kind, migrated_db, data_dir, env)
            stack.callback(node.stop)
            nodes.append(node)
        for node in nodes:
            # Also starts Realtime under runserver and daphne (no lifespan): the first request to it.
            eventually(partial(is_ready, node), f"{kind} never ready:\n{node.output()[-3000:]}", timeout=60)
        yield Deployment(kind, nodes)


async def call(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


async def next_event(client: PusherSocket, event: str, timeout: float = 10) -> dict[str, Any]:
    """The next frame named ``event``, skipping others (subscription counts)."""
    deadline = time.monotonic() + timeout
    while True:
        message = await client.recv(max(0.01, deadline - time.monotonic()))
        if message["event"] == event:
            return message


async def subscribe(
    client: PusherSocket, channel: str, sdk: pusher.Pusher | None = None, user: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Subscribe and return subscription_succeeded (a subscription count or, from another node, a
    member_added may come first)."""
    reply = await client.subscribe(channel, sdk, user)
    if reply["event"] != "pusher_internal:subscription_succeeded":
        reply = await next_event(client, "pusher_internal:subscription_succeeded")
    assert reply["channel"] == channel, reply
    return reply


async def none_of(client: PusherSocket, event: str, timeout: float = 0.5) -> None:
    with contextlib.suppress(TimeoutError):
        message = await next_event(client, event, timeout)
        raise AssertionError(f"unexpected {message}")


# How a client connected to a server sees it stop on SIGTERM (close code, None: no close frame).
SIGTERM_CLOSE_CODES = {
    # Realtime's drain (pusher-js reconnects at once): realtime_serve's signal handler, or a
    # trigger before the reactor of daphne's command or runserver shuts down.
    "realtime_serve": 4200,
    "runserver": 4200,
    "daphne": 4200,
    "uvicorn": 1012,  # uvicorn closes WebSockets itself, then lifespan shutdown drains Realtime
}
# uvicorn exits with the signal it received, once shut down.
SIGTERM_EXIT_CODES = {"uvicorn": -signal.SIGTERM}


async def stop_with_sigterm(node: ServerProcess, client: PusherSocket) -> None:
    node.process.send_signal(signal.SIGTERM)
    assert await client.closed(timeout=30) == SIGTERM_CLOSE_CODES[node.kind], node.output()[-3000:]
    assert await call(node.process.wait, 30) == SIGTERM_EXIT_CODES.get(node.kind, 0), node.output()[-3000:]
    assert "Traceback" not in node.output(), node.output()[-3000:]


async def test_handshake(deployment: Deployment) -> None:
    for node in deployment.nodes:
        async with await PusherSocket.connect(node.ws_url()) as client:
            assert re.fullmatch(r"\d+\.\d+", client.socket_id)
            assert client.established["data"]["activity_timeout"] > 0
        async with websockets.connect(node.ws_url(key="no-such-key")) as ws:
            frames, code = await until_closed(ws, timeout=10)
        assert code == 4001
        assert frames[0]["event"] == "pusher:error"
        assert json.loads(frames[0]["data"])["code"] == 4001


async def test_sdk_publish_reaches_subscriber(deployment: Deployment) -> None:
    sdk = deployment.publisher.pusher()
    async with await PusherSocket.connect(deployment.subscriber.ws_url()) as client:
        await subscribe(client, "news")
        await call(sdk.trigger, "news", "flash", {"n": 1})
        event = await next_event(client, "flash")
        assert event["channel"] == "news"
        assert json.loads(event["data"]) == {"n": 1}
        await subscribe(client, "private-inbox", sdk)
        await call(sdk.trigger, ["private-inbox", "news"], "both", {"n": 2})
        received = {(await next_event(client, "both"))["channel"] for _ in range(2)}
        assert received == {"private-inbox", "news"}


async def test_presence_members_and_api_queries(deployment: Deployment) -> None:
    sdk = deployment.publisher.pusher()
    channel = "presence-lobby"
    async with await PusherSocket.connect(deployment.subscriber.ws_url()) as watcher:
        reply = await subscribe(watcher, channel, sdk, {"user_id": "watcher"})
        assert reply["data"]["presence"]["ids"] == ["watcher"]
        # With Redis the joiner is on the other node.
        async with await PusherSocket.connect(deployment.publisher.ws_url()) as joiner:
            reply = await subscribe(joiner, channel, sdk, {"user_id": "ann", "user_info": {"n": 1}})
            assert reply["data"]["presence"]["count"] == 2
            added = await next_event(watcher, "pusher_internal:member_added")
            assert added["data"] == {"user_id": "ann", "user_info": {"n": 1}}
            for node in deployment.nodes:  # the HTTP API answers the same on every node
                node_sdk = node.pusher()
                users = await call(node_sdk.users_info, channel)
                assert sorted(user["id"] for user in users["users"]) == ["ann", "watcher"]
                info = await call(node_sdk.channel_info, channel, ["user_count"])
                assert info == {"occupied": True, "user_count": 2}
                listed = await call(node_sdk.channels_info, "presence-", ["user_count"])
                assert listed["channels"] == {channel: {"user_count": 2}}
        removed = await next_event(watcher, "pusher_internal:member_removed")
        assert removed["data"] == {"user_id": "ann"}


async def test_client_event_is_relayed_not_echoed(deployment: Deployment) -> None:
    sdk = deployment.publisher.pusher()
    channel = "private-chat"
    async with (
        await PusherSocket.connect(deployment.publisher.ws_url()) as sender,
        await PusherSocket.connect(deployment.subscriber.ws_url()) as receiver,
    ):
        for client in (sender, receiver):
            await subscribe(client, channel, sdk)
        await sender.send("client-typing", {"who": "sender"}, channel=channel)
        event = await next_event(receiver, "client-typing")
        assert event["channel"] == channel
        assert event["data"] == {"who": "sender"}
        await none_of(sender, "client-typing")


async def test_default_app_from_the_environment(deployment: Deployment) -> None:
    # DEFAULT_APP_ID, _KEY, _SECRET and _ENABLE_CLIENT_MESSAGES are used by every test here; this
    # checks a feature flag and a limit too: the whole default app is applied under every server.
    sdk = deployment.publisher.pusher()
    async with await PusherSocket.connect(deployment.subscriber.ws_url()) as client:
        await subscribe(client, "counted")
        count = await next_event(client, "pusher_internal:subscription_count")
        assert count["data"] == {"subscription_count": 1}

        def counted() -> bool:
            info = sdk.channel_info("counted", ["subscription_count"])
            return info == {"occupied": True, "subscription_count": 1}

        await call(eventually, counted, "subscription_count never reached 1")
    with pytest.raises(pusher.errors.PusherBadStatus, match=r"^413"):
        await call(sdk.trigger, "counted", "big", {"blob": "x" * 3000})
    await call(sdk.trigger, "counted", "small", {"blob": "x" * 1000})


async def test_ready_and_the_private_metrics_site(deployment: Deployment) -> None:
    metrics_ports = {node.metrics_port for node in deployment.nodes}
    assert len(metrics_ports) == len(deployment.nodes)  # one metrics site per process
    async with contextlib.AsyncExitStack() as stack:
        for node in deployment.nodes:
            await stack.enter_async_context(await PusherSocket.connect(node.ws_url()))
        for node in deployment.nodes:
            status, body = await call(http_get, node.url("/ready"))
            assert (status, json.loads(body)) == (200, {"status": "ready"})
            status, _ = await call(http_get, node.url("/metrics"))
            assert status == 404

            def one_connection(node: ServerProcess = node) -> bool:
                # This test's client, once the other tests' closed sockets are gone.
                return active_connections(node) == 1.0

            await call(eventually, one_connection, f"not one connection on {node.metrics_url()}")
            status, _ = await call(http_get, node.metrics_url("/health"))
            assert status == 404  # nothing but the metrics and the usage there
            status, body = await call(http_get, node.metrics_url("/usage"))
            assert status == 200, (status, body)
            usage = json.loads(body)
            assert usage["connections"] == 1, usage
            memory = usage["memory"]
            assert 10 * 2**20 < memory["rss"] <= memory["total"] and 0 < memory["percent"] < 100, usage
            assert memory["free"] <= memory["total"]
            status, _ = await call(http_get, node.url("/usage"))
            assert status == 404  # never on the public port


def test_request_logs_never_show_the_signature(deployment: Deployment) -> None:
    node = deployment.publisher
    body = json.dumps({"name": "logged", "channels": ["news"], "data": "{}"}).encode()
    path = f"/apps/{node.app_id}/events"
    post = signed_query("POST", path, key=node.key, secret=node.secret, body=body)
    response = requests.post(
        node.url(path) + "?" + urlencode(post),
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    path = f"/apps/{node.app_id}/channels/news"
    get = signed_query("GET", path, key=node.key, secret=node.secret)
    response = requests.get(node.url(path) + "?" + urlencode(get), timeout=30)
    assert response.status_code == 200, response.text
    if SERVER_KINDS[deployment.kind].logs_requests:
        # Wait for both request lines, so that the check below reads them.
        for request_path in (f"/apps/{node.app_id}/events?", f"/apps/{node.app_id}/channels/news?"):
            eventually(
                lambda request_path=request_path: request_path in node.output(),
                f"no request log line for {request_path}:\n{node.output()[-3000:]}",
            )
        assert "auth_signature=[redacted]" in node.output()
    for each in deployment.nodes:
        output = each.output()
        assert post["auth_signature"] not in output, output[-3000:]
        assert get["auth_signature"] not in output, output[-3000:]
        # Nor any signature of the SDK's requests in the tests before this one.
        assert not re.search(r"auth_signature=(?!\[redacted\])", output), output[-3000:]


async def test_sigterm_stops_each_node(deployment: Deployment) -> None:
    """The last test of a deployment: stop its nodes with SIGTERM, one client connected to each.

    With Redis, a presence member connected to the first node is gone for the node that remains.
    """
    *others, last = deployment.nodes
    sdk = last.pusher()
    async with await PusherSocket.connect(last.ws_url()) as watcher:
        await subscribe(watcher, "presence-exit", sdk, {"user_id": "watcher"})
        for node in others:
            async with await PusherSocket.connect(node.ws_url()) as member:
                await subscribe(member, "presence-exit", sdk, {"user_id": "member"})
                await next_event(watcher, "pusher_internal:member_added")
                await stop_with_sigterm(node, member)
            # At once: the stopped node drained and left the cluster (not reaped 30 s later).
            removed = await next_event(watcher, "pusher_internal:member_removed", timeout=10)
            assert removed["data"] == {"user_id": "member"}
        await stop_with_sigterm(last, watcher)
