"""Helpers for the metrics tests: scrape a live server and read its exposition, open Pusher clients."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import websockets
from prometheus_client.parser import text_string_to_metric_families

from metrics.catalogue import FAMILIES

PREFIX = "realtime_"
GAUGES = {PREFIX + f.name for f in FAMILIES if f.type == "gauge"}

SeriesKey = tuple[str, frozenset[tuple[str, str]]]


class Exposition:
    """One scrape, parsed with prometheus_client's own parser (so it is also a validity check)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples: dict[SeriesKey, float] = {}
        for family in self.families.values():
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def total(self, name: str, **labels: str) -> float:
        """Sum of every series of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def series(self, prefix: str = PREFIX) -> set[SeriesKey]:
        return {key for key in self.samples if key[0].startswith(prefix)}

    def gauges(self) -> dict[SeriesKey, float]:
        return {key: value for key, value in self.samples.items() if key[0] in GAUGES}


def fetch(url: str, timeout: float = 10) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; HTTP errors are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def scrape(server: Any) -> Exposition:
    status, _, body = fetch(server.metrics_url())
    assert status == 200, body
    return Exposition(body)


async def ascrape(server: Any) -> Exposition:
    return await asyncio.to_thread(scrape, server)


async def wait_for(server: Any, predicate: Callable[[Exposition], bool], timeout: float = 10) -> Exposition:
    """Scrape until ``predicate`` holds; the last scrape either way (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        exposition = await ascrape(server)
        if predicate(exposition) or time.monotonic() > deadline:
            return exposition
        await asyncio.sleep(0.05)


@dataclass
class Client:
    ws: Any
    socket_id: str
    sent_bytes: int = 0
    sent_frames: int = 0

    async def send(self, event: str, data: dict[str, Any]) -> None:
        text = json.dumps({"event": event, "data": data})
        self.sent_bytes += len(text)
        self.sent_frames += 1
        await self.ws.send(text)

    async def expect(self, event: str, timeout: float = 5) -> dict[str, Any]:
        """The next frame named ``event``, skipping others (member_added and the like)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame["event"] == event:
                    return frame
                if frame["event"] == "pusher:error":
                    raise AssertionError(f"pusher:error while waiting for {event}: {frame}")


async def connect(server: Any, key: str | None = None) -> Client:
    ws = await websockets.connect(server.ws_url(key), open_timeout=10)
    frame = json.loads(await ws.recv())
    assert frame["event"] == "pusher:connection_established", frame
    return Client(ws, json.loads(frame["data"])["socket_id"])
