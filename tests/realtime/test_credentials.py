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


async def test_reload_reads_every_held_app_again() -> None:
    kept = await App.objects.acreate(key="kept-key", secret="s")
    changed = await App.objects.acreate(key="changed-key", secret="s", enable_client_messages=False)
    gone = await App.objects.acreate(key="gone-key", secret="s")
    cache = CredentialsCache()
    before = {app.id: await cache.by_id(app.id) for app in (kept, changed, gone)}
    assert await cache.by_key("created-key") is None  # remembered as missing
    # Changed behind the cache's back (no signal): what another process would do.
    await App.objects.filter(id=changed.id).aupdate(enable_client_messages=True, key="renamed-key")
    await App.objects.filter(id=gone.id).adelete()
    created = await App.objects.acreate(key="created-key", secret="s")

    fresh = await cache.reload()

    assert fresh[kept.id] is before[kept.id]  # unchanged: the same snapshot object
    assert fresh[changed.id] is not None and fresh[changed.id].enable_client_messages is True
    assert fresh[gone.id] is None
    assert await cache.by_key("changed-key") is None
    assert (await cache.by_key("renamed-key")) is fresh[changed.id]
    assert await cache.by_id(gone.id) is None
    # The missing-key memory is dropped with the reload: a new app is found at once.
    assert (await cache.by_key("created-key")).id == created.id


async def test_reload_loads_apps_asked_for_even_when_not_cached() -> None:
    app = await App.objects.acreate(key="socket-key", secret="s")
    cache = CredentialsCache()
    fresh = await cache.reload([app.id, "no-such-app"])
    assert fresh[app.id] is not None and fresh[app.id].key == "socket-key"
    assert fresh["no-such-app"] is None
    assert cache.cached() == [fresh[app.id]]
