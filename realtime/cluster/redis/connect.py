"""What ``REDIS_URL`` points at, and the clients Realtime opens to it.

Two forms:

- ``redis://``, ``rediss://``, ``unix://``: one Redis primary, as redis-py reads the URL;
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``: the primary
  that these Sentinels name for ``service_name``, found again by redis-py on every new connection,
  so after a failover the nodes' reconnect reaches the promoted replica. The credentials are the
  primary's (the Sentinels are asked without them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis://", "rediss://", "unix://", f"{SENTINEL_SCHEME}://")


@dataclass(frozen=True)
class RedisTarget:
    """``REDIS_URL`` read: ``url`` for one primary, or ``sentinels`` and ``service`` (with ``db``
    and the primary's ``username``/``password``) for Sentinel."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        """Read ``url``; ValueError saying what is wrong with it."""
        if not url.startswith(SCHEMES):
            raise ValueError(f"REDIS_URL must start with one of {', '.join(SCHEMES)}")
        if not url.startswith(f"{SENTINEL_SCHEME}://"):
            return cls(url=url)
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2]
        sentinels = []
        for address in hosts.split(","):
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"REDIS_URL: Sentinel address {address!r} is not host:port")
            sentinels.append((host.strip("[]"), int(port)))
        path = [part for part in parts.path.split("/") if part]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError("REDIS_URL: a Sentinel URL ends with /service_name or /service_name/db")
        return cls(
            sentinels=tuple(sentinels),
            service=unquote(path[0]),
            db=int(path[1]) if len(path) == 2 else 0,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def sentinel(self) -> bool:
        return bool(self.sentinels)

    def _auth(self) -> dict[str, Any]:
        return {"db": self.db, "username": self.username, "password": self.password}

    def _sentinel(self, options: dict[str, Any]) -> Sentinel:
        timeouts = {key: value for key, value in options.items() if key.startswith("socket_")}
        return Sentinel(list(self.sentinels), sentinel_kwargs=timeouts)

    def pooled(self, max_connections: int, timeout: float, **options: Any) -> Redis:
        """The client for commands: a pool of at most ``max_connections`` that waits up to
        ``timeout`` seconds for a free connection (``options``: redis-py connection options)."""
        if not self.sentinel:
            pool = BlockingConnectionPool.from_url(
                self.url, max_connections=max_connections, timeout=timeout, **options
            )
            return Redis(connection_pool=pool)
        return self._sentinel(options).master_for(
            self.service,
            connection_pool_class=_BlockingSentinelPool,
            max_connections=max_connections,
            timeout=timeout,
            **self._auth(),
            **options,
        )

    def single(self, **options: Any) -> Redis:
        """A client for one long-lived connection (the pub/sub bus)."""
        if not self.sentinel:
            return Redis.from_url(self.url, **options)
        return self._sentinel(options).master_for(self.service, **self._auth(), **options)

    def publish_once(self, channel: str, message: str, timeout: float) -> None:
        """PUBLISH from synchronous code (a model signal), on a connection of its own; raises
        ``redis.RedisError`` or ``OSError``."""
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if self.sentinel:
            from redis.sentinel import Sentinel as SyncSentinel

            timeouts = {key: value for key, value in options.items() if key.startswith("socket_")}
            client = SyncSentinel(list(self.sentinels), sentinel_kwargs=timeouts).master_for(
                self.service, **self._auth(), **options
            )
        else:
            client = redis.Redis.from_url(self.url, **options)
        try:
            client.publish(channel, message)
        finally:
            client.close()


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (the primary looked up per connection) with the blocking pool's wait for
    a free connection instead of an error when all are in use."""
