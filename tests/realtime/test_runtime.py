"""The runtime's lifecycle in process: start once, back off after a failure, stop once and for good."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from realtime.conf import RealtimeSettings
from realtime.credentials import AppCredentials
from realtime.runtime import Runtime, runtime_started, runtime_stopping
from realtime.runtime import runtime as module
from realtime.runtime.counts import THROTTLE_ABOVE
from realtime.tasks import TaskSet

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def announcements() -> Any:
    seen: list[str] = []

    def started(sender: Any, runtime: Runtime, **kwargs: Any) -> None:
        seen.append("started")

    def stopping(sender: Any, runtime: Runtime, **kwargs: Any) -> None:
        seen.append("stopping")

    runtime_started.connect(started)
    runtime_stopping.connect(stopping)
    yield seen
    runtime_started.disconnect(started)
    runtime_stopping.disconnect(stopping)


async def test_start_is_shared_and_stop_is_announced_once(announcements) -> None:
    runtime = Runtime(RealtimeSettings())
    await asyncio.gather(runtime.start(), runtime.start(), runtime.start())
    assert runtime.started and runtime.readiness_problem() is None
    await runtime.stop()
    await runtime.stop()
    assert announcements == ["started", "stopping"]
    assert runtime.readiness_problem() == "draining"


async def test_a_stopped_runtime_never_starts_again(announcements) -> None:
    runtime = Runtime(RealtimeSettings())
    await runtime.stop()
    await runtime.start()
    assert not runtime.started
    assert announcements == []  # never started, so never announced as stopping either


async def test_a_failed_start_is_not_retried_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def failing(config: dict[str, Any]) -> None:
        calls.append(config)
        raise ValueError("The default app (DEFAULT_APP_*) is invalid: id: bad")

    monkeypatch.setattr(module, "apply_default_app", failing)
    runtime = Runtime(RealtimeSettings(DEFAULT_APP={"id": "bad id"}))
    for _ in range(3):
        with pytest.raises(ValueError, match="invalid"):
            await runtime.start()
    assert len(calls) == 1
    assert runtime.readiness_problem() == "starting"
    runtime._failed_at -= module.RESTART_AFTER_SECONDS
    with pytest.raises(ValueError):
        await runtime.start()
    assert len(calls) == 2


async def test_a_task_set_refuses_work_once_cancelled() -> None:
    tasks = TaskSet()
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    await tasks.spawn(work())
    await tasks.cancel()
    late = tasks.spawn(work())
    with pytest.raises(asyncio.CancelledError):
        await late
    assert ran == [1]
    assert len(tasks) == 0


def _app(app_id: str = "counts") -> AppCredentials:
    return AppCredentials(
        id=app_id, key="k", secret="s", name="", enabled=True, enable_client_messages=False,
        enable_user_authentication=False, user_authentication_timeout=30, enable_subscription_count=True,
        enable_watchlist_events=False, enable_cache_channels=True, allowed_origins=(), max_connections=None,
        max_connections_per_user=None, user_connections_policy="refuse_newest",
        max_backend_events_per_second=None, max_client_events_per_second=None,
        max_read_requests_per_second=None, max_presence_members_per_channel=None,
        max_presence_member_size_kb=2, max_event_payload_kb=10, max_event_channels_at_once=100,
        max_event_batch_size=10, max_channel_name_length=200, webhooks=(),
    )  # fmt: skip


async def test_subscription_counts_remember_only_throttled_channels() -> None:
    runtime = Runtime(RealtimeSettings())
    counts = runtime.counts
    app = _app()
    for channel in ("a", "b", "c"):
        await counts.changed(app, channel, 5)
    await counts.changed(app, "busy", THROTTLE_ABOVE + 1)
    assert set(counts._last_sent) == {(app.id, "busy")}
    await counts.changed(app, "busy", THROTTLE_ABOVE + 2)  # within the interval: held back
    assert (app.id, "busy") in counts._pending
    await runtime.stop()
    assert counts._pending == {}
    await counts.changed(app, "busy", THROTTLE_ABOVE + 3)
    assert counts._pending == {}  # a stopped runtime schedules nothing
