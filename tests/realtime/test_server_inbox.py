"""SocketInbox: the per-socket ASGI receive queue RealtimeServer uses instead of asyncio.Queue."""

from __future__ import annotations

import asyncio

import pytest

from realtime.daphne.protocol import SocketInbox


async def test_messages_come_out_in_order_whether_queued_or_awaited() -> None:
    inbox = SocketInbox()
    inbox.put_nowait({"n": 1})
    inbox.put_nowait({"n": 2})
    assert await inbox.get() == {"n": 1}
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert await waiting == {"n": 2}
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait({"n": 3})
    inbox.put_nowait({"n": 4})
    assert await waiting == {"n": 3}
    assert await inbox.get() == {"n": 4}


async def test_idle_inbox_holds_no_queue() -> None:
    inbox = SocketInbox()
    inbox.put_nowait({"n": 1})
    await inbox.get()
    assert inbox._messages is None
    assert inbox._waiters is None


async def test_a_cancelled_get_loses_nothing() -> None:
    inbox = SocketInbox()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not inbox._waiters
    inbox.put_nowait({"n": 1})
    assert await inbox.get() == {"n": 1}


async def test_two_getters_each_get_one_message() -> None:
    inbox = SocketInbox()
    first = asyncio.ensure_future(inbox.get())
    second = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait({"n": 1})
    await asyncio.sleep(0)
    inbox.put_nowait({"n": 2})
    got = await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert sorted(m["n"] for m in got) == [1, 2]
