"""Per-address limits on real servers: new connections (4100) and HTTP API requests (429 with
Retry-After) per minute from one client, the client read through a trusted proxy's headers only,
and with Redis the limit holding for the sum of the nodes."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlencode

import websockets

from tests.conftest import ServerProcess
from tests.pusher_client import PusherSocket, until_closed
from tests.realtime.api_client import signed_query


def fresh_window() -> None:
    """Start in a minute's first 45 s, so the limits' one-minute window cannot roll over mid-test."""
    if time.time() % 60 > 45:
        time.sleep(60.5 - time.time() % 60)


def api_get(node: ServerProcess, forwarded_for: str | None = None) -> tuple[int, dict, dict[str, str]]:
    path = f"/apps/{node.app_id}/channels"
    query = urlencode(signed_query("GET", path, key=node.key, secret=node.secret))
    request = urllib.request.Request(node.url(f"{path}?{query}"))
    if forwarded_for is not None:
        request.add_header("X-Forwarded-For", forwarded_for)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


async def refused_code(node: ServerProcess, forwarded_for: str | None = None) -> int | None:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    async with websockets.connect(node.ws_url(), additional_headers=headers) as ws:
        frames, code = await until_closed(ws)
    assert frames[0]["event"] == "pusher:error" and json.loads(frames[0]["data"])["code"] == code
    return code


async def test_one_address_over_its_limits_gets_4100_and_429(
    start_server: Callable[..., ServerProcess],
) -> None:
    node = start_server(env={"IP_CONNECTIONS_PER_MINUTE": "3", "IP_API_REQUESTS_PER_MINUTE": "4"})
    fresh_window()
    clients = [await PusherSocket.connect(node.ws_url()) for _ in range(3)]
    try:
        assert await refused_code(node) == 4100
        assert await refused_code(node, forwarded_for="203.0.113.9") == 4100  # no trusted proxy: ignored
    finally:
        for client in clients:
            await client.close()
    assert [api_get(node)[0] for _ in range(4)] == [200] * 4
    status, body, headers = api_get(node, forwarded_for="203.0.113.9")
    assert status == 429 and body == {"error": "Too many requests from this address"}
    assert 1 <= int(headers["Retry-After"]) <= 60
    with urllib.request.urlopen(node.metrics_url(), timeout=10) as response:
        metrics = response.read().decode()
    for limiter, refused in (("ip_connections", 2.0), ("ip_api_requests", 1.0)):
        pattern = rf'^realtime_rate_limit_triggered_total{{app_id="",limiter="{limiter}"}} (\S+)$'
        assert float(re.search(pattern, metrics, re.MULTILINE).group(1)) == refused


async def test_behind_a_trusted_proxy_each_forwarded_client_counts_alone(
    start_server: Callable[..., ServerProcess],
) -> None:
    node = start_server(
        env={
            "TRUSTED_PROXIES": "127.0.0.1",
            "IP_CONNECTIONS_PER_MINUTE": "1",
            "IP_API_REQUESTS_PER_MINUTE": "2",
        }
    )
    fresh_window()
    headers = {"X-Forwarded-For": "203.0.113.1"}
    async with await PusherSocket.connect(node.ws_url(), additional_headers=headers):
        assert await refused_code(node, "203.0.113.1") == 4100
        # A client that writes its own X-Forwarded-For: the proxy appends the real one, which counts.
        assert await refused_code(node, "198.51.100.50, 203.0.113.1") == 4100
        async with await PusherSocket.connect(
            node.ws_url(), additional_headers={"X-Forwarded-For": "203.0.113.2"}
        ):
            pass
    assert [api_get(node, "203.0.113.1")[0] for _ in range(3)] == [200, 200, 429]
    assert api_get(node, "203.0.113.2")[0] == 200
    # IPv6 clients count per /64.
    assert [api_get(node, "2001:db8:1:2::a")[0], api_get(node, "2001:db8:1:2::b")[0]] == [200, 200]
    assert api_get(node, "2001:db8:1:2::c")[0] == 429
    assert api_get(node, "2001:db8:1:3::a")[0] == 200


async def test_the_limits_hold_for_the_sum_of_the_nodes(cluster) -> None:
    a, b = cluster(2, IP_CONNECTIONS_PER_MINUTE="2", IP_API_REQUESTS_PER_MINUTE="3")
    fresh_window()
    async with await PusherSocket.connect(a.ws_url()), await PusherSocket.connect(b.ws_url()):
        assert await refused_code(a) == 4100
        assert await refused_code(b) == 4100
    assert [api_get(a)[0], api_get(a)[0], api_get(b)[0]] == [200, 200, 200]
    assert api_get(b)[0] == 429
    assert api_get(a)[0] == 429
