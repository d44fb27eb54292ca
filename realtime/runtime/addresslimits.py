"""Per-address limits: new WebSocket connections and HTTP API requests per minute from one client.

Off unless ``IP_CONNECTIONS_PER_MINUTE`` / ``IP_API_REQUESTS_PER_MINUTE`` is set. The client is
the peer, or what a proxy in ``TRUSTED_PROXIES`` forwarded in ``FORWARDED_HEADER``
(``addresses``); an IPv6 client counts as its /64. Counted in the cluster's state: per node
without Redis, for the whole cluster (one atomic script per check) with it. Each decision is a
``rate_limit_checks`` sample with an empty ``app_id`` (the limit is the node's, not an app's) and
the limiter's name.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..addresses import FORWARDED, X_FORWARDED_FOR, Network, bucket, client_address, trusted_networks

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger(__name__)

# The fixed window of both limits, in seconds.
WINDOW_SECONDS = 60
CONNECTIONS = "ip_connections"
API_REQUESTS = "ip_api_requests"


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    values = [value.decode("latin1") for key, value in scope.get("headers", ()) if key == name]
    return ", ".join(values) if values else None


class AddressLimits:
    """The per-address limits of one runtime (``check`` counts and decides)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        conf = runtime.conf
        self.limits = {
            CONNECTIONS: conf.IP_CONNECTIONS_PER_MINUTE,
            API_REQUESTS: conf.IP_API_REQUESTS_PER_MINUTE,
        }
        self.header = FORWARDED if conf.FORWARDED_HEADER.lower() == FORWARDED else X_FORWARDED_FOR
        try:
            self.networks: tuple[Network, ...] = trusted_networks(conf.TRUSTED_PROXIES)
        except ValueError:
            self.networks = ()  # check realtime.E009 reports it; no proxy is trusted meanwhile

    def enabled(self, name: str) -> bool:
        return self.limits.get(name) is not None

    def address_of_scope(self, scope: dict[str, Any]) -> str | None:
        """The client address of an ASGI connection scope (None: unknown, as for a Unix socket)."""
        client = scope.get("client")
        peer = client[0] if client else None
        return client_address(peer, self.header, _header(scope, self.header.encode()), self.networks)

    def address_of_request(self, meta: dict[str, Any]) -> str | None:
        """The client address of a Django request (its ``META``)."""
        return client_address(
            meta.get("REMOTE_ADDR"),
            meta.get("HTTP_FORWARDED"),
            meta.get("HTTP_X_FORWARDED_FOR"),
            self.networks,
        )

    async def check(self, name: str, address: str | None) -> bool:
        """Count one operation of ``address`` against the limit ``name`` (``CONNECTIONS``,
        ``API_REQUESTS``); whether it is allowed. No limit, or no address known: always allowed.
        Raises ``StateUnavailable`` as the state does."""
        limit = self.limits.get(name)
        if limit is None or not address:
            return True
        allowed = await self.runtime.state.allow_address(name, bucket(address), limit, WINDOW_SECONDS)
        stats = self.runtime.stats
        stats.incr("rate_limit_checks", ("", name, "allowed" if allowed else "rejected"))
        if not allowed:
            stats.incr("rate_limit_triggered", ("", name))
        return allowed

    @staticmethod
    def retry_after() -> int:
        """Whole seconds until the current window ends (the ``Retry-After`` of a refusal), at least 1."""
        return max(1, WINDOW_SECONDS - int(time.time()) % WINDOW_SECONDS)
