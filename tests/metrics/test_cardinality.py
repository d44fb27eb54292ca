"""Cardinality: what clients choose (app keys, channel names) never becomes a label value.

After one warm-up of each kind (which may create the bounded series for "unknown app" and
"public channel"), 1,000 connections with random unknown keys and 1,000 subscriptions to distinct
channels must not add a single series to the exposition.
"""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest
import websockets

from realtime.protocol.errors import KNOWN_CLOSE_CODES as _KNOWN_CLOSE_CODES

from .conftest import PREFIX, connect, wait_for

COUNT = 1000
KNOWN_CLOSE_CODES = {str(code) for code in _KNOWN_CLOSE_CODES} | {"other"}


def _close_codes(exposition) -> set[str]:
    return {dict(labels)["code"] for name, labels in exposition.series() if "code" in dict(labels)}


def _without_codes(series: set) -> set:
    return {(name, frozenset((k, v) for k, v in labels if k != "code")) for name, labels in series}


async def _refused(server, key: str) -> None:
    async with websockets.connect(server.ws_url(key), open_timeout=10) as ws:
        frame = json.loads(await ws.recv())
        assert frame["event"] == "pusher:error"
        await ws.wait_closed()


async def _unknown_keys(server, count: int) -> None:
    for start in range(0, count, 50):
        await asyncio.gather(
            *(_refused(server, secrets.token_hex(10)) for _ in range(start, min(count, start + 50)))
        )


async def _subscribe_many(server, channels: list[str]) -> None:
    client = await connect(server)
    for channel in channels:
        await client.send("pusher:subscribe", {"channel": channel})
        await client.expect("pusher_internal:subscription_succeeded")
    await client.ws.close()


@pytest.mark.timeout(180)
async def test_unknown_keys_and_channel_names_add_no_series(start_server) -> None:
    server = start_server()
    await _unknown_keys(server, 1)
    await _subscribe_many(server, ["warm-up"])
    settled = lambda e: e.value(PREFIX + "active_connections", app_id=server.app_id) == 0  # noqa: E731
    before = await wait_for(server, settled)

    await _unknown_keys(server, COUNT)
    await _subscribe_many(server, [f"room-{i}-{secrets.token_hex(4)}" for i in range(COUNT)])

    after = await wait_for(server, settled)
    # A refused handshake closes 4001, or 1006 when the TCP connection goes first: close codes are a
    # bounded set of their own, so they are checked against it and left out of the comparison.
    assert _close_codes(after) <= KNOWN_CLOSE_CODES
    assert _without_codes(after.series()) == _without_codes(before.series())
    assert (
        after.total(PREFIX + "connection_errors_total", reason="unknown_app")
        - before.total(PREFIX + "connection_errors_total", reason="unknown_app")
        == COUNT
    )
    assert (
        after.total(PREFIX + "channel_subscriptions_total", channel_type="public")
        - before.total(PREFIX + "channel_subscriptions_total", channel_type="public")
        == COUNT
    )
    # No label value anywhere is a key or a channel the clients made up.
    values = {value for (_, labels) in after.series() for _, value in labels}
    assert not any(value.startswith("room-") for value in values)
    assert all(len(value) < 20 or value == server.app_id for value in values if value.isalnum())
