"""Webhooks: signed POSTs of channel and member events to the app's URLs (pusher-protocol.md §8).

Each delivery is ``{"time_ms", "events": [event]}`` signed with the app secret over the exact
bytes sent (``X-Pusher-Key``, ``X-Pusher-Signature``), retried with exponential backoff for
``WEBHOOK_RETRY_SECONDS`` on anything but a 2xx. ``channel_vacated`` and ``member_removed``
wait ``WEBHOOK_DELAY_SECONDS`` and are dropped if the channel or member came back meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from .conf import get_settings
from .credentials import AppCredentials, WebhookTarget
from .protocol.signatures import webhook_signature
from .state import BackendUnavailable
from .stats import stats

logger = logging.getLogger(__name__)

_tasks: set[asyncio.Task[None]] = set()


def emit(app: AppCredentials, name: str, channel: str, **fields: Any) -> None:
    targets = [t for t in app.webhooks if t.wants(name, channel)]
    if not targets:
        return
    event = {"name": name, "channel": channel, **fields}
    body = json.dumps({"time_ms": int(time.time() * 1000), "events": [event]}).encode()
    for target in targets:
        _spawn(_deliver(app, target, name, body))


def emit_later(app: AppCredentials, name: str, channel: str, **fields: Any) -> None:
    if not any(t.wants(name, channel) for t in app.webhooks):
        return
    _spawn(_emit_if_still_true(app, name, channel, fields))


def pending() -> int:
    return len(_tasks)


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    stats.incr("queue_jobs_added", ("webhooks",))
    task.add_done_callback(_tasks.discard)


async def _emit_if_still_true(app: AppCredentials, name: str, channel: str, fields: dict[str, Any]) -> None:
    from .node import get_node

    await asyncio.sleep(get_settings().WEBHOOK_DELAY_SECONDS)
    state = get_node().state
    try:
        if name == "channel_vacated" and await state.subscription_count(app.id, channel):
            return
        if name == "member_removed" and fields["user_id"] in await state.members(app.id, channel):
            return
    except BackendUnavailable:
        # Redis is away: when it is back, this node's entries are reaped and the reaper sends
        # the webhooks that are still true then.
        return
    emit(app, name, channel, **fields)


def _post(target: WebhookTarget, headers: dict[str, str], body: bytes, timeout: float) -> int:
    # The URL is validated as http(s) by the Webhook model (URLField); never a file: URL.
    request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (admin-set URL)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def _deliver(app: AppCredentials, target: WebhookTarget, name: str, body: bytes) -> None:
    conf = get_settings()
    headers = dict(target.headers)
    headers.update(
        {
            "Content-Type": "application/json",
            "X-Pusher-Key": app.key,
            "X-Pusher-Signature": webhook_signature(app.secret, body),
        }
    )
    deadline = time.monotonic() + conf.WEBHOOK_RETRY_SECONDS
    delay = 1.0
    started = time.perf_counter()
    while True:
        attempt_started = time.perf_counter()
        try:
            status = await asyncio.to_thread(_post, target, headers, body, conf.WEBHOOK_TIMEOUT)
        except (OSError, ValueError):
            status = 0
        stats.observe("webhook_duration", time.perf_counter() - attempt_started)
        if 200 <= status < 300:
            stats.incr("webhooks_sent", (app.id, name))
            stats.incr("queue_jobs_processed", ("webhooks",))
            stats.observe("queue_job_duration", time.perf_counter() - started, ("webhooks",))
            return
        if time.monotonic() + delay > deadline:
            stats.incr("webhooks_failed", (app.id, name))
            stats.incr("queue_jobs_failed", ("webhooks",))
            logger.warning(
                "webhook delivery failed", extra={"app_id": app.id, "event": name, "status": status}
            )
            return
        stats.incr("webhook_retries", (app.id, name))
        await asyncio.sleep(delay)
        delay = min(delay * 2, 60.0)
