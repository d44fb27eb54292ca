"""The webhook story kept by the state: occupied/vacated and added/removed strictly alternate, and a
cache channel's empty spell is reported once; in one process and across nodes sharing Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from realtime.cluster.memory import MemoryState
from tests.realtime.test_redis_state import APP, nodes  # noqa: F401 (the fixture)


async def channel_story(a: Any, b: Any) -> None:
    """``a`` and ``b`` are two nodes' views of one state (the same object for one node)."""
    channel = "story"
    assert await a.report(APP, channel, None, True) is False  # nobody subscribed: not occupied
    await a.subscribe(APP, channel, "1.1")
    assert await a.report(APP, channel, None, True) is True
    await b.subscribe(APP, channel, "2.1")
    assert await b.report(APP, channel, None, True) is False  # already reported occupied
    await a.unsubscribe(APP, channel, "1.1")
    assert await a.report(APP, channel, None, False) is False  # 2.1 is still there
    await b.unsubscribe(APP, channel, "2.1")
    # A reconnect inside the vacate delay: the delayed check finds the channel occupied again and
    # the new first subscriber finds occupied already reported, so neither event goes out.
    await b.subscribe(APP, channel, "2.2")
    assert await b.report(APP, channel, None, True) is False
    assert await a.report(APP, channel, None, False) is False
    await b.unsubscribe(APP, channel, "2.2")
    assert await a.report(APP, channel, None, False) is True
    assert await b.report(APP, channel, None, False) is False  # a second delayed check: once only
    await a.subscribe(APP, channel, "1.2")
    assert await b.report(APP, channel, None, True) is True


async def member_story(a: Any, b: Any) -> None:
    channel = "presence-story"
    await a.add_member(APP, channel, "1.1", "u1", None)
    assert await a.report(APP, channel, "u1", True) is True
    assert await a.report(APP, channel, "u2", True) is False  # u2 is not there
    await b.add_member(APP, channel, "2.1", "u1", None)
    assert await b.report(APP, channel, "u1", True) is False
    await a.remove_member(APP, channel, "1.1", "u1")
    assert await a.report(APP, channel, "u1", False) is False  # still connected on b
    await b.remove_member(APP, channel, "2.1", "u1")
    assert await b.report(APP, channel, "u1", False) is True
    assert await a.report(APP, channel, "u1", False) is False


async def cache_miss_story(a: Any, b: Any) -> None:
    channel = "cache-story"
    results = await asyncio.gather(*(node.report_cache_miss(APP, channel, 60) for node in (a, b, a, b, a)))
    assert sorted(results) == [False, False, False, False, True]
    await b.cache_set(APP, channel, '{"event":"x"}', 60)
    assert await a.report_cache_miss(APP, channel, 60) is True  # a new spell after an event was cached
    assert await b.report_cache_miss(APP, channel, 60) is False
    assert await a.report_cache_miss(APP, "cache-other", 0.05) is True
    await asyncio.sleep(0.1)
    assert await b.report_cache_miss(APP, "cache-other", 0.05) is True  # the spell's report expired


@pytest.mark.parametrize("story", [channel_story, member_story, cache_miss_story])
async def test_story_in_one_process(story: Any) -> None:
    state = MemoryState()
    await story(state, state)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("story", [channel_story, member_story, cache_miss_story])
async def test_story_across_nodes(story: Any, nodes) -> None:  # noqa: F811 (the fixture)
    a, b = await nodes(), await nodes()
    await story(a.state, b.state)
