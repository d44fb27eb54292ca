"""``pusher_internal:subscription_count``: sent on every change, throttled on large channels.

Above ``THROTTLE_ABOVE`` subscribers a channel gets at most one count per ``INTERVAL`` seconds,
the latest one, as the hosted service does
(https://pusher.com/docs/channels/using_channels/events/#subscription_count-events).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..cluster.base import StateUnavailable
from ..credentials import AppCredentials
from ..protocol import frames

if TYPE_CHECKING:
    from .runtime import Runtime

THROTTLE_ABOVE = 100
INTERVAL = 5.0


class SubscriptionCounts:
    """When each channel's count was last sent, and the delayed sends of throttled channels."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._last_sent: dict[tuple[str, str], float] = {}
        self._pending: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._cancelled = False

    async def changed(self, app: AppCredentials, channel: str, count: int) -> None:
        """The channel now has ``count`` subscribers: send it now, or once the interval is over."""
        key = (app.id, channel)
        now = time.monotonic()
        if count > THROTTLE_ABOVE:
            last = self._last_sent.get(key, 0.0)
            if now - last < INTERVAL:
                if key not in self._pending and not self._cancelled:
                    delay = INTERVAL - (now - last)
                    runtime = self.runtime
                    self._pending[key] = asyncio.get_running_loop().call_later(
                        delay, lambda: runtime.tasks.spawn(self._send_latest(app, channel))
                    )
                return
            self._last_sent[key] = now
        else:
            # Only throttled channels are remembered: one entry per busy channel, not per channel.
            self._last_sent.pop(key, None)
        await self._send(app, channel, count)

    def cancel(self) -> None:
        """Drop the delayed sends and schedule no more (the runtime is stopping)."""
        self._cancelled = True
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    async def _send(self, app: AppCredentials, channel: str, count: int) -> None:
        runtime = self.runtime
        await runtime.broker.publish(app.id, [channel], frames.subscription_count(channel, count))
        runtime.webhooks.emit(app, "subscription_count", channel, subscription_count=count)

    async def _send_latest(self, app: AppCredentials, channel: str) -> None:
        key = (app.id, channel)
        self._pending.pop(key, None)
        try:
            count = await self.runtime.state.subscription_count(app.id, channel)
            if count > THROTTLE_ABOVE:
                self._last_sent[key] = time.monotonic()
            else:
                self._last_sent.pop(key, None)
            if count:
                await self._send(app, channel, count)
        except StateUnavailable:
            # Its sockets were closed with 4200; they resubscribe and get a fresh count.
            self._last_sent.pop(key, None)
