"""One publisher's events keep their order on every node, whichever node each request goes to.

A publish that a node has answered must not be overtaken by a later publish through another node:
the publisher here alternates between the nodes and awaits each request, as a backend behind a
load balancer does, and every subscriber (one per node) must see the events in publish order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from tests.conftest import ServerProcess
from tests.e2e.nodes import call
from tests.pusher_client import PusherSocket

EVENTS = 300
BATCH = 10
CHANNEL = "ordered"


async def _collect(client: PusherSocket, received: list[int]) -> None:
    while len(received) < EVENTS:
        message = await client.recv(10)
        if message["event"] == "seq":
            received.append(json.loads(message["data"])["n"])


@pytest.mark.parametrize("count", [2, 3])
async def test_one_publishers_order_holds_across_nodes(
    cluster: Callable[..., list[ServerProcess]], count: int
) -> None:
    nodes = cluster(count)
    publishers = [node.pusher() for node in nodes]
    for run in range(3):
        clients = [await PusherSocket.connect(node.ws_url()) for node in nodes]
        try:
            for client in clients:
                await client.subscribe(CHANNEL)
            received: list[list[int]] = [[] for _ in clients]
            readers = [asyncio.ensure_future(_collect(c, r)) for c, r in zip(clients, received, strict=True)]

            def publish() -> None:
                for first in range(0, EVENTS, BATCH):
                    batch = [
                        {"channel": CHANNEL, "name": "seq", "data": json.dumps({"n": n})}
                        for n in range(first, first + BATCH)
                    ]
                    # Each request answered before the next goes, to the next node in turn.
                    publishers[(first // BATCH) % count].trigger_batch(batch)

            await call(publish)
            await asyncio.wait_for(asyncio.gather(*readers), 20)
            for node, sequence in zip(nodes, received, strict=True):
                assert sequence == list(range(EVENTS)), (run, node.port, _first_disorder(sequence))
        finally:
            for client in clients:
                await client.close()


def _first_disorder(sequence: list[int]) -> tuple[int, int, int] | None:
    for index in range(1, len(sequence)):
        if sequence[index] < sequence[index - 1]:
            return index, sequence[index - 1], sequence[index]
    return None
