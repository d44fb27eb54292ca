"""What ``REDIS_URL`` points at, and the clients Realtime opens to it.

Two forms:

- ``redis://``, ``rediss://``, ``unix://``: one Redis primary, as redis-py reads the URL;
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``: the primary
  that these Sentinels name for ``service_name``, found again by redis-py on every new connection,
  so after a failover the nodes' reconnect reaches the promoted replica. The credentials are the
  primary's (the Sentinels are asked without them).
- ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis Cluster, through redis-py's
  cluster client from these startup nodes. An app's keys share its hash tag, so each script's
  keys share a slot and apps spread over the shards (``state``); the bus is a sharded channel
  (``SPUBLISH``/``SSUBSCRIBE``), read from the shard that owns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
SCHEMES = ("redis://", "rediss://", "unix://", f"{SENTINEL_SCHEME}://", f"{CLUSTER_SCHEME}://")


@dataclass(frozen=True)
class RedisTarget:
    """``REDIS_URL`` read: ``url`` for one primary, ``sentinels`` and ``service`` (with ``db``
    and the primary's ``username``/``password``) for Sentinel, or ``cluster`` startup nodes."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    cluster: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        """Read ``url``; ValueError saying what is wrong with it."""
        if not url.startswith(SCHEMES):
            raise ValueError(f"REDIS_URL must start with one of {', '.join(SCHEMES)}")
        sentinel = url.startswith(f"{SENTINEL_SCHEME}://")
        if not sentinel and not url.startswith(f"{CLUSTER_SCHEME}://"):
            return cls(url=url)
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2]
        addresses = []
        for address in hosts.split(","):
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"REDIS_URL: address {address!r} is not host:port")
            addresses.append((host.strip("[]"), int(port)))
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        path = [part for part in parts.path.split("/") if part]
        if not sentinel:
            if path:
                raise ValueError("REDIS_URL: a Cluster URL has no path (a cluster has one database)")
            return cls(cluster=tuple(addresses), username=username, password=password)
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError("REDIS_URL: a Sentinel URL ends with /service_name or /service_name/db")
        return cls(
            sentinels=tuple(addresses),
            service=unquote(path[0]),
            db=int(path[1]) if len(path) == 2 else 0,
            username=username,
            password=password,
        )

    @property
    def sentinel(self) -> bool:
        return bool(self.sentinels)

    def _cluster(self, options: dict[str, Any]) -> ClusterClient:
        nodes = [ClusterNode(host, port) for host, port in self.cluster]
        return ClusterClient(startup_nodes=nodes, username=self.username, password=self.password, **options)

    def _auth(self) -> dict[str, Any]:
        return {"db": self.db, "username": self.username, "password": self.password}

    def _sentinel(self, options: dict[str, Any]) -> Sentinel:
        return Sentinel(list(self.sentinels), sentinel_kwargs=_socket_options(options))

    def pooled(self, max_connections: int, timeout: float, **options: Any) -> Redis:
        """The client for commands: a pool of at most ``max_connections`` that waits up to
        ``timeout`` seconds for a free connection (``options``: redis-py connection options)."""
        if self.cluster:
            # One pool per shard; redis-py's cluster client has no blocking pool.
            return self._cluster({"max_connections": max_connections, **options})
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
        """A client for one long-lived connection (the pub/sub bus; in a cluster, ``bus``)."""
        if self.cluster:
            return self._cluster(options)  # only its shard map is used: see ``bus``
        if not self.sentinel:
            return Redis.from_url(self.url, **options)
        return self._sentinel(options).master_for(self.service, **self._auth(), **options)

    async def bus(self, client: Any, channel: str, **options: Any) -> tuple[Any, Any]:
        """``(pubsub, its own client or None)``: ``client`` (from ``single``) subscribed to
        ``channel``; in a cluster, a connection of its own to the shard that owns the sharded
        channel, found anew each time (a failover or resharding moves it)."""
        if not self.cluster:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(channel)
            return pubsub, None
        await client.initialize()
        node = client.get_node_from_key(channel)
        own = Redis(host=node.host, port=node.port, username=self.username, password=self.password, **options)
        pubsub = own.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.ssubscribe(channel)
        except BaseException:
            await own.aclose()
            raise
        return pubsub, own

    async def publish(self, client: Any, channel: str, message: str) -> Any:
        """PUBLISH ``message`` on ``channel`` (SPUBLISH in a cluster: to the owning shard only)."""
        if self.cluster:
            return await client.spublish(channel, message)
        return await client.publish(channel, message)

    def publish_once(self, channel: str, message: str, timeout: float) -> None:
        """PUBLISH from synchronous code (a model signal), on a connection of its own; raises
        ``redis.RedisError`` or ``OSError``."""
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if self.cluster:
            from redis.cluster import ClusterNode as SyncClusterNode
            from redis.cluster import RedisCluster as SyncCluster

            nodes = [SyncClusterNode(host, port) for host, port in self.cluster]
            cluster = SyncCluster(
                startup_nodes=nodes, username=self.username, password=self.password, **options
            )
            try:
                cluster.spublish(channel, message)
            finally:
                cluster.close()
            return
        if self.sentinel:
            from redis.sentinel import Sentinel as SyncSentinel

            client = SyncSentinel(list(self.sentinels), sentinel_kwargs=_socket_options(options)).master_for(
                self.service, **self._auth(), **options
            )
        else:
            client = redis.Redis.from_url(self.url, **options)
        try:
            client.publish(channel, message)
        finally:
            client.close()


def _socket_options(options: dict[str, Any]) -> dict[str, Any]:
    """The socket timeouts among ``options``: what the Sentinels themselves are asked with."""
    return {key: value for key, value in options.items() if key.startswith("socket_")}


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (the primary looked up per connection) with the blocking pool's wait for
    a free connection instead of an error when all are in use."""
