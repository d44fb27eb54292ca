"""Fire-and-forget tasks kept referenced until done, so the event loop cannot drop them mid-flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class TaskSet:
    """The background tasks of one owner (the runtime, a cluster backend): spawned, counted, cancelled.

    asyncio keeps only a weak reference to a task; one that nothing else references can be
    garbage-collected before it finishes. ``spawn`` holds it here until it is done.
    """

    __slots__ = ("_cancelled", "_tasks")

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()
        self._cancelled = False

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Schedule ``coro`` on the running loop; returns its task (cancelled at once, and the
        coroutine never run, once the owner has cancelled its tasks)."""
        task = asyncio.ensure_future(coro)
        if self._cancelled:
            task.cancel()
            return task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait_idle(self) -> None:
        """Until every task spawned so far, and any spawned meanwhile, has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every task still running (but the caller's own), refuse new ones, and wait until
        the cancelled ones have finished."""
        self._cancelled = True
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
