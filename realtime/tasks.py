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

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Schedule ``coro`` on the running loop; returns its task."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel(self) -> None:
        """Cancel every task still running (but the caller's own) and wait until they have finished."""
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
