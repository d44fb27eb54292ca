"""Fixtures for in-process tests of the realtime app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from realtime.runtime import get_runtime, reset_runtime


@pytest.fixture
async def fresh_runtime() -> AsyncIterator[None]:
    """A runtime of the test's own: reset before, stopped (leaving nothing running) and reset after."""
    reset_runtime()
    yield
    await get_runtime().stop()
    reset_runtime()
