"""The credentials cache: one database load per key however many sockets ask at once."""

from __future__ import annotations

import asyncio

import pytest

from realtime import credentials as module
from realtime.credentials import CredentialsCache
from realtime.models import App

pytestmark = pytest.mark.django_db(transaction=True)


async def test_concurrent_misses_share_one_load(monkeypatch: pytest.MonkeyPatch) -> None:
    app = await App.objects.acreate(key="burst-key", secret="s")
    loads: list[tuple[str, str]] = []
    real_load = module._load

    def counting_load(field: str, value: str):
        loads.append((field, value))
        return real_load(field, value)

    monkeypatch.setattr(module, "_load", counting_load)
    cache = CredentialsCache()
    found = await asyncio.gather(*(cache.by_key("burst-key") for _ in range(50)))
    assert {f.id for f in found} == {app.id}
    assert loads == [("key", "burst-key")]
    missing = await asyncio.gather(*(cache.by_key("nope") for _ in range(20)))
    assert missing == [None] * 20
    assert loads.count(("key", "nope")) == 1


async def test_invalidation_during_a_load_is_not_overwritten(monkeypatch: pytest.MonkeyPatch) -> None:
    await App.objects.acreate(key="racy-key", secret="old")
    cache = CredentialsCache()
    real_load = module._load

    def load_then_invalidate(field: str, value: str):
        result = real_load(field, value)
        cache.invalidate()  # an admin save landed while this load was in flight
        return result

    monkeypatch.setattr(module, "_load", load_then_invalidate)
    assert (await cache.by_key("racy-key")).secret == "old"
    assert cache.cached() == []
