"""Webhook delivery: signed POSTs of channel and member events to an app's URLs.

Each delivery is ``{"time_ms", "events": [event]}`` signed with the app secret over the exact
bytes sent (``X-Pusher-Key``, ``X-Pusher-Signature``), retried with exponential backoff for
``WEBHOOK_RETRY_SECONDS`` on anything but a 2xx. ``channel_vacated`` and ``member_removed``
wait ``WEBHOOK_DELAY_SECONDS`` and are dropped if the channel or member came back meanwhile
(https://pusher.com/docs/channels/server_api/webhooks/).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from ..cluster.base import State, StateUnavailable
from ..credentials import AppCredentials, WebhookTarget
from ..protocol.signatures import webhook_signature
from ..stats import Stats
from ..tasks import TaskSet

if TYPE_CHECKING:
    from ..conf import RealtimeSettings

logger = logging.getLogger(__name__)


class Webhooks:
    """The webhook deliveries of one process; ``state`` answers whether a delayed event still holds."""

    def __init__(self, conf: RealtimeSettings, state: State, stats: Stats) -> None:
        self.conf = conf
        self.state = state
        self.stats = stats
        self._tasks = TaskSet()

    def emit(self, app: AppCredentials, name: str, channel: str, **fields: Any) -> None:
        """Send the event ``name`` (with ``fields``) to each of the app's webhooks that wants it."""
        targets = [t for t in app.webhooks if t.wants(name, channel)]
        if not targets:
            return
        event = {"name": name, "channel": channel, **fields}
        body = json.dumps({"time_ms": int(time.time() * 1000), "events": [event]}).encode()
        for target in targets:
            self._spawn(self._deliver(app, target, name, body))

    def emit_later(self, app: AppCredentials, name: str, channel: str, **fields: Any) -> None:
        """``emit`` after ``WEBHOOK_DELAY_SECONDS`` if it still holds (channel_vacated, member_removed)."""
        if not any(t.wants(name, channel) for t in app.webhooks):
            return
        self._spawn(self._emit_if_still_true(app, name, channel, fields))

    def pending(self) -> int:
        """Deliveries queued or in flight."""
        return len(self._tasks)

    async def stop(self) -> None:
        """Drop what is still pending (deliveries are in memory only)."""
        await self._tasks.cancel()

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)
        self.stats.incr("queue_jobs_added", ("webhooks",))

    async def _emit_if_still_true(
        self, app: AppCredentials, name: str, channel: str, fields: dict[str, Any]
    ) -> None:
        await asyncio.sleep(self.conf.WEBHOOK_DELAY_SECONDS)
        state = self.state
        try:
            if name == "channel_vacated" and await state.subscription_count(app.id, channel):
                return
            if name == "member_removed" and fields["user_id"] in await state.members(app.id, channel):
                return
        except StateUnavailable:
            # Redis is away: when it is back, this node's entries are reaped and the reaper sends
            # the webhooks that are still true then.
            return
        self.emit(app, name, channel, **fields)

    async def _deliver(self, app: AppCredentials, target: WebhookTarget, name: str, body: bytes) -> None:
        conf = self.conf
        stats = self.stats
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


def _post(target: WebhookTarget, headers: dict[str, str], body: bytes, timeout: float) -> int:
    # The URL is validated as http(s) by the Webhook model (URLField); never a file: URL.
    request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (admin-set URL)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
