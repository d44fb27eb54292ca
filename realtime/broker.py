"""Publishing to every node: the same pre-encoded frame reaches each node once, which fans it out locally.

``LocalBroker`` is the embedded single node: a publish is a direct call into the registry.
``RedisBroker`` (several nodes) sends one pub/sub message per publish, never one per subscriber.
"""

from __future__ import annotations

from typing import Protocol

from .registry import Outbound, Registry


class Broker(Protocol):
    async def publish(
        self, app_id: str, channels: list[str], text: str, except_socket_id: str | None = None
    ) -> int:
        """Deliver ``text`` to every subscriber of ``channels``; return local deliveries."""
        ...

    async def terminate_user(self, app_id: str, user_id: str) -> None: ...
    async def watchlist_changed(self, app_id: str, user_id: str, online: bool) -> None: ...


TERMINATED_CODE = 4009
TERMINATED_REASON = "Connection terminated by the server"


class LocalBroker:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def publish(
        self, app_id: str, channels: list[str], text: str, except_socket_id: str | None = None
    ) -> int:
        message = Outbound(text)
        deliver = self.registry.deliver
        return sum(deliver(app_id, channel, message, except_socket_id) for channel in channels)

    async def terminate_user(self, app_id: str, user_id: str) -> None:
        self.registry.terminate_user(app_id, user_id, TERMINATED_CODE, TERMINATED_REASON)

    async def watchlist_changed(self, app_id: str, user_id: str, online: bool) -> None:
        self.registry.watchlist_changed(app_id, user_id, online)
