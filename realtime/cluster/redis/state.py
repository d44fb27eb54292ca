"""``RedisState``: the ``State`` protocol kept in Redis, so that every node sees the whole cluster.

Every socket-level fact is one hash field whose value is the id of the node that holds the socket
(connections, channel subscriptions, presence connections, signed-in users), and the same fact is
an entry in that node's index set. Counts are ``HLEN``s, so any node answers the HTTP API from Redis
alone without asking the other nodes. Changes that must be decided once for the whole cluster
(first subscriber, a user's first or last connection to a presence channel) are Lua scripts, so two
nodes can never both see "first". A node that dies without cleaning up is reaped from its index by
the survivors: each entry goes through the same removal script as a normal unsubscribe, and the
script's ``HDEL`` is what makes every member_removed happen exactly once (``reap``).

Keys (``P`` is ``REDIS_PREFIX``, ``A`` an app id). ``{A}`` is a hash tag: in a Redis Cluster all of
an app's keys share one slot, so every script's keys (all declared) do, and apps spread over the
shards::

    P:app:{A}:conns                hash  socket id -> node id
    P:app:{A}:sub:CHANNEL          hash  socket id -> node id
    P:app:{A}:channels             zset  occupied channel names (score 0, listed by prefix with ZRANGEBYLEX)
    P:app:{A}:presence:CHANNEL     hash  user id -> user_info (JSON)
    P:app:{A}:psock:CHANNEL:USER   hash  socket id -> node id (the user's connections to the channel)
    P:app:{A}:user:USER            hash  socket id -> node id (signed-in connections)
    P:app:{A}:usersince:USER       zset, expiring: their sign-in times, for a close-oldest per-user cap
    P:app:{A}:cache:CHANNEL        string, expiring: the last event of a cache channel
    P:app:{A}:miss:CHANNEL         string, expiring: a cache channel's empty spell was reported
    P:app:{A}:rate:NAME            hash, expiring: a rate limiter's window (Redis' second) and count
    P:app:{A}:reported             hash  CHANNEL, or CHANNEL SEP USER -> 1: the webhook story says
                                         occupied / member added
    P:app:{A}:node:NODE            set   index entries of what NODE holds in the app
    P:ip:{ADDRESS}:NAME            hash, expiring: a per-address limiter's window and count
    P:node:NODE:apps               set   the apps NODE has written an index entry in (written first)

The keys of the whole cluster are tagged with the prefix instead (``shared_key``): ``{P}:nodes``
and ``{P}:reaping`` (``backend``), which one script uses together, and the bus ``{P}:bus``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis

from ..base import Removed

T = TypeVar("T")

SEP = "\x1f"  # never in an app id, channel name or socket id; a user id is always last


def shared_key(prefix: str, name: str) -> str:
    """``{prefix}:name``: a key (or pub/sub channel) of the whole cluster, tagged with the prefix so
    that all of them share one slot of a Redis Cluster."""
    return f"{{{prefix}}}:{name}"


_ADD = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return redis.call('HLEN', KEYS[1])
"""

# Removals name the node expected to hold the entry (ARGV[2]) and its index (the last key): an entry
# held by another node id is left alone, so reaping an id never touches a live id's entries, and an
# entry written under an earlier up period's id is removed by that id's reaping, once.
_REMOVE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[3])
return redis.call('HLEN', KEYS[1])
"""

_SUBSCRIBE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[4])
return redis.call('HLEN', KEYS[1])
"""

_UNSUBSCRIBE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[3])
local left = redis.call('HLEN', KEYS[1])
if left == 0 then redis.call('ZREM', KEYS[2], ARGV[4]) end
return left
"""

_ADD_MEMBER = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
if redis.call('HLEN', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
  return 1
end
return 0
"""

_REMOVE_MEMBER = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[3])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[2], ARGV[4])
  return 1
end
return 0
"""


# A sign-in under a close-oldest per-user cap: _ADD on the user hash (KEYS[1], index KEYS[2]),
# and the sign-in order in KEYS[3] (socket id -> Redis time, ms). Removals leave the order alone:
# entries of gone sockets are dropped here, and connections missing from it (after it expired)
# count as the oldest. Returns the count, then the ids beyond the newest ARGV[4], oldest first.
_SIGN_IN = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if redis.call('HEXISTS', KEYS[1], member) == 0 then redis.call('ZREM', KEYS[3], member) end
end
for _, member in ipairs(redis.call('HKEYS', KEYS[1])) do
  redis.call('ZADD', KEYS[3], 'NX', 0, member)
end
redis.call('EXPIRE', KEYS[3], 86400)
local count = redis.call('HLEN', KEYS[1])
local result = {count}
local beyond = count - tonumber(ARGV[4])
if beyond > 0 then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, beyond - 1)) do
    table.insert(result, member)
  end
end
return result
"""

# A fixed window of ARGV[3] seconds on Redis' clock, shared by every node: count ARGV[1] if the
# window's count stays within ARGV[2].
_RATE = """
local window = tostring(math.floor(tonumber(redis.call('TIME')[1]) / tonumber(ARGV[3])))
local state = redis.call('HMGET', KEYS[1], 'w', 'n')
local count = 0
if state[1] == window then count = tonumber(state[2]) end
local cost = tonumber(ARGV[1])
if count + cost > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'w', window, 'n', count + cost)
redis.call('EXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return 1
"""

# KEYS: the reported hash, the hash whose non-emptiness is the live fact (sub:CHANNEL or
# psock:CHANNEL:USER). ARGV: the story's field, "1" to report present or "0" absent.
_REPORT = """
local live = redis.call('EXISTS', KEYS[2]) == 1
if ARGV[2] == '1' then
  if not live then return 0 end
  return redis.call('HSETNX', KEYS[1], ARGV[1], '1')
end
if live then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


class Link(Protocol):
    """What the state needs from the backend: the client, this node's id, and a guarded call."""

    client: Redis
    # What REDIS_URL names (``connect.RedisTarget``): whether it is a cluster.
    target: Any
    prefix: str
    node_id: str

    async def call(self, operation: str, command: Callable[[], Awaitable[T]]) -> T:
        """Run ``command`` (one Redis round trip), counted and timed under ``operation`` (a metric label).
        Raises ``StateUnavailable`` when the node is down or the command meets an outage.
        """
        ...

    async def call_removal(self, operation: str, command: Callable[[], Awaitable[T]], default: T) -> T:
        """``call`` for a removal: ``default`` instead of ``StateUnavailable``, since everything this node
        id holds is reaped once Redis is back.
        """
        ...


class RedisState:
    """``State`` in Redis: any node answers for the whole cluster (the keys are listed above)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        client = link.client
        self._scripts = [
            _ADD,
            _REMOVE,
            _SUBSCRIBE,
            _UNSUBSCRIBE,
            _ADD_MEMBER,
            _REMOVE_MEMBER,
            _REPORT,
            _RATE,
            _SIGN_IN,
        ]
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._subscribe = client.register_script(_SUBSCRIBE)
        self._unsubscribe = client.register_script(_UNSUBSCRIBE)
        self._add_member = client.register_script(_ADD_MEMBER)
        self._remove_member = client.register_script(_REMOVE_MEMBER)
        self._report = client.register_script(_REPORT)
        self._rate = client.register_script(_RATE)
        self._sign_in = client.register_script(_SIGN_IN)
        # node id (this process' current and earlier ones) -> the apps named in its app set.
        self._apps: dict[str, set[str]] = {}

    # Keys

    def _app(self, app_id: str) -> str:
        return f"{self.link.prefix}:app:{{{app_id}}}:"

    def _index(self, app_id: str, node_id: str) -> str:
        """``P:app:{A}:node:NODE``: what ``node_id`` holds in the app (in the app's slot)."""
        return f"{self._app(app_id)}node:{node_id}"

    def node_key(self, node_id: str) -> str:
        """``P:node:NODE:apps``: the apps in which ``node_id`` holds entries (where ``reap`` looks)."""
        return f"{self.link.prefix}:node:{node_id}:apps"

    async def _indexed(self, app_id: str) -> tuple[str, str]:
        """``(this node's index key in the app, the node id it is for)``, after making sure the
        node's app set names the app (first, so that reaping finds every entry even if the node
        dies right after writing it). The apps are also remembered per id, for reaping this
        node's own earlier ids: a reaper that took the id for dead may have deleted the set."""
        link = self.link
        node_id = link.node_id
        apps = self._apps.setdefault(node_id, set())
        if app_id not in apps:
            key = self.node_key(node_id)
            await link.call("index_app", lambda: link.client.sadd(key, app_id))
            apps.add(app_id)
        return self._index(app_id, node_id), node_id

    # Connections

    async def add_connection(self, app_id: str, socket_id: str) -> int:
        index, node_id = await self._indexed(app_id)
        keys = [self._app(app_id) + "conns", index]
        args = [socket_id, node_id, SEP.join(("c", app_id, socket_id))]
        return int(await self.link.call("add_connection", lambda: self._add(keys, args)))

    async def remove_connection(self, app_id: str, socket_id: str) -> None:
        node_id = self.link.node_id
        await self.link.call_removal(
            "remove_connection", lambda: self._remove_connection(app_id, socket_id, node_id), -1
        )

    def _remove_connection(
        self, app_id: str, socket_id: str, node_id: str, client: Any = None
    ) -> Awaitable[Any]:
        keys = [self._app(app_id) + "conns", self._index(app_id, node_id)]
        args = [socket_id, node_id, SEP.join(("c", app_id, socket_id))]
        return self._remove(keys, args, client=client)

    async def connection_count(self, app_id: str) -> int:
        key = self._app(app_id) + "conns"
        return int(await self.link.call("connection_count", lambda: self.link.client.hlen(key)))

    # Subscriptions

    async def subscribe(self, app_id: str, channel: str, socket_id: str) -> int:
        app = self._app(app_id)
        index, node_id = await self._indexed(app_id)
        keys = [f"{app}sub:{channel}", app + "channels", index]
        args = [socket_id, node_id, SEP.join(("s", app_id, channel, socket_id)), channel]
        return int(await self.link.call("subscribe", lambda: self._subscribe(keys, args)))

    async def unsubscribe(self, app_id: str, channel: str, socket_id: str) -> int | None:
        node_id = self.link.node_id
        left = await self.link.call_removal(
            "unsubscribe", lambda: self._unsubscribe_entry(app_id, channel, socket_id, node_id), -1
        )
        return None if int(left) < 0 else int(left)

    def _unsubscribe_entry(
        self, app_id: str, channel: str, socket_id: str, node_id: str, client: Any = None
    ) -> Awaitable[Any]:
        app = self._app(app_id)
        keys = [f"{app}sub:{channel}", app + "channels", self._index(app_id, node_id)]
        args = [socket_id, node_id, SEP.join(("s", app_id, channel, socket_id)), channel]
        return self._unsubscribe(keys, args, client=client)

    async def subscription_count(self, app_id: str, channel: str) -> int:
        key = f"{self._app(app_id)}sub:{channel}"
        return int(await self.link.call("subscription_count", lambda: self.link.client.hlen(key)))

    async def channels(self, app_id: str, prefix: str = "") -> dict[str, int]:
        app = self._app(app_id)
        client = self.link.client

        async def run() -> dict[str, int]:
            # Channel names are ASCII, so "\xff" sorts after every name with this prefix.
            low, high = ("-", "+") if not prefix else (f"[{prefix}", f"[{prefix}\xff")
            names = await client.zrangebylex(app + "channels", low, high)
            if not names:
                return {}
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hlen(f"{app}sub:{name}")
                counts = await pipe.execute()
            return {name: int(count) for name, count in zip(names, counts, strict=True) if count}

        return await self.link.call("channels", run)

    # Presence

    async def add_member(
        self, app_id: str, channel: str, socket_id: str, user_id: str, user_info: Any
    ) -> bool:
        app = self._app(app_id)
        index, node_id = await self._indexed(app_id)
        keys = [f"{app}psock:{channel}:{user_id}", f"{app}presence:{channel}", index]
        entry = SEP.join(("m", app_id, channel, socket_id, user_id))
        args = [socket_id, node_id, entry, user_id, json.dumps(user_info, separators=(",", ":"))]
        return bool(await self.link.call("add_member", lambda: self._add_member(keys, args)))

    async def remove_member(self, app_id: str, channel: str, socket_id: str, user_id: str) -> bool:
        node_id = self.link.node_id
        last = await self.link.call_removal(
            "remove_member",
            lambda: self._remove_member_entry(app_id, channel, socket_id, user_id, node_id),
            0,
        )
        return bool(last)

    def _remove_member_entry(
        self, app_id: str, channel: str, socket_id: str, user_id: str, node_id: str, client: Any = None
    ) -> Awaitable[Any]:
        app = self._app(app_id)
        keys = [f"{app}psock:{channel}:{user_id}", f"{app}presence:{channel}", self._index(app_id, node_id)]
        entry = SEP.join(("m", app_id, channel, socket_id, user_id))
        return self._remove_member(keys, [socket_id, node_id, entry, user_id], client=client)

    async def members(self, app_id: str, channel: str) -> dict[str, Any]:
        key = f"{self._app(app_id)}presence:{channel}"
        raw = await self.link.call("members", lambda: self.link.client.hgetall(key))
        return {user_id: json.loads(info) for user_id, info in raw.items()}

    async def member_count(self, app_id: str, channel: str) -> int:
        key = f"{self._app(app_id)}presence:{channel}"
        return int(await self.link.call("member_count", lambda: self.link.client.hlen(key)))

    # Signed-in users

    async def user_connected(
        self, app_id: str, user_id: str, socket_id: str, keep: int | None = None
    ) -> tuple[int, list[str]]:
        link = self.link
        app = self._app(app_id)
        index, node_id = await self._indexed(app_id)
        keys = [f"{app}user:{user_id}", index]
        args = [socket_id, node_id, SEP.join(("u", app_id, socket_id, user_id))]
        if keep is None:
            return int(await link.call("user_connected", lambda: self._add(keys, args))), []
        keys.append(f"{app}usersince:{user_id}")
        result = await link.call("user_connected", lambda: self._sign_in(keys, [*args, keep]))
        return int(result[0]), [str(socket) for socket in result[1:]]

    async def user_disconnected(self, app_id: str, user_id: str, socket_id: str) -> bool:
        node_id = self.link.node_id
        left = await self.link.call_removal(
            "user_disconnected", lambda: self._user_entry(app_id, user_id, socket_id, node_id), -1
        )
        return int(left) == 0

    def _user_entry(
        self, app_id: str, user_id: str, socket_id: str, node_id: str, client: Any = None
    ) -> Awaitable[Any]:
        keys = [f"{self._app(app_id)}user:{user_id}", self._index(app_id, node_id)]
        args = [socket_id, node_id, SEP.join(("u", app_id, socket_id, user_id))]
        return self._remove(keys, args, client=client)

    async def online_users(self, app_id: str, user_ids: list[str]) -> set[str]:
        if not user_ids:
            return set()
        app = self._app(app_id)
        client = self.link.client

        async def run() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.exists(f"{app}user:{user_id}")
                return await pipe.execute()

        found = await self.link.call("online_users", run)
        return {user_id for user_id, exists in zip(user_ids, found, strict=True) if exists}

    async def load_scripts(self) -> None:
        """Load every script into Redis (each shard of a cluster) ahead of use: a pipeline that runs
        one (reaping) cannot load it on the way, and a restarted or promoted Redis has none."""
        for script in self._scripts:
            await self.link.client.script_load(script)

    # Cache channels

    async def cache_set(self, app_id: str, channel: str, frame: str, ttl: float) -> None:
        app = self._app(app_id)
        milliseconds = max(1, int(ttl * 1000))
        client = self.link.client

        async def run() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(f"{app}cache:{channel}", frame, px=milliseconds)
                pipe.delete(f"{app}miss:{channel}")
                return await pipe.execute()

        await self.link.call("cache_set", run)

    async def cache_get(self, app_id: str, channel: str) -> tuple[str, float] | None:
        key = f"{self._app(app_id)}cache:{channel}"
        client = self.link.client

        async def run() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                return await pipe.execute()

        frame, pttl = await self.link.call("cache_get", run)
        if frame is None or pttl is None or pttl == -2:
            return None
        return frame, (pttl / 1000 if pttl >= 0 else float("inf"))

    # Webhook stories

    async def report(self, app_id: str, channel: str, user_id: str | None, present: bool) -> bool:
        app = self._app(app_id)
        if user_id is None:
            keys, field = [app + "reported", f"{app}sub:{channel}"], channel
        else:
            keys, field = [app + "reported", f"{app}psock:{channel}:{user_id}"], channel + SEP + user_id
        args = [field, "1" if present else "0"]
        return bool(await self.link.call("report", lambda: self._report(keys, args)))

    async def allow_rate(self, app_id: str, name: str, limit: int, cost: int = 1) -> bool:
        keys, args = [f"{self._app(app_id)}rate:{name}"], [cost, limit, 1]
        return bool(await self.link.call("rate_limit", lambda: self._rate(keys, args)))

    async def allow_address(self, name: str, address: str, limit: int, window: int) -> bool:
        # Tagged by the address: addresses spread over a cluster's shards.
        keys, args = [f"{self.link.prefix}:ip:{{{address}}}:{name}"], [1, limit, window]
        return bool(await self.link.call("rate_limit", lambda: self._rate(keys, args)))

    async def report_cache_miss(self, app_id: str, channel: str, ttl: float) -> bool:
        key = f"{self._app(app_id)}miss:{channel}"
        milliseconds = max(1, int(ttl * 1000))
        client = self.link.client
        command = lambda: client.set(key, "1", nx=True, px=milliseconds)  # noqa: E731
        return bool(await self.link.call("report_cache_miss", command))

    # Dead nodes

    def _removals(
        self, node_id: str, entries: list[str], client: Any
    ) -> tuple[list[tuple[str, str, str, str]], list[Any]]:
        """For ``node_id``'s index ``entries``: what each removes (kind, app, channel, user) and the
        script call that removes it on ``client`` (a pipeline queues it)."""
        parsed: list[tuple[str, str, str, str]] = []
        calls = []
        for entry in entries:
            parts = entry.split(SEP, 4)
            kind = parts[0]
            if kind == "c" and len(parts) == 3:
                calls.append(self._remove_connection(parts[1], parts[2], node_id, client=client))
                parsed.append(("c", parts[1], "", ""))
            elif kind == "s" and len(parts) == 4:
                calls.append(self._unsubscribe_entry(parts[1], parts[2], parts[3], node_id, client=client))
                parsed.append(("s", parts[1], parts[2], ""))
            elif kind == "m" and len(parts) == 5:
                calls.append(
                    self._remove_member_entry(parts[1], parts[2], parts[3], parts[4], node_id, client=client)
                )
                parsed.append(("m", parts[1], parts[2], parts[4]))
            elif kind == "u" and len(parts) == 4:
                calls.append(self._user_entry(parts[1], parts[3], parts[2], node_id, client=client))
                parsed.append(("u", parts[1], "", parts[3]))
        return parsed, calls

    async def reap(self, node_id: str, batch: int = 200) -> AsyncIterator[list[Removed]]:
        """Remove everything ``node_id`` held, app by app and a batch at a time, yielding what each
        removal changed.

        Safe to run on several nodes at once and to resume after a crash: an entry's removal script
        finds its hash field gone (or held by another id) the second time and reports nothing, so
        every change (and the events that follow from it) happens once. The app set goes last.
        For this process' own earlier ids, the apps it remembers writing to are reaped too.
        """
        client = self.link.client
        apps_key = self.node_key(node_id)
        # An id of this process: the apps it wrote to, even if a reaper deleted the set meanwhile.
        known = set(self._apps.get(node_id, ()))
        if node_id != self.link.node_id:
            self._apps.pop(node_id, None)
        for app_id in sorted(set(await client.smembers(apps_key)) | known):
            index = self._index(app_id, node_id)
            while True:
                entries: list[str] = await client.srandmember(index, batch)
                if not entries:
                    break
                yield await self._reap_batch(node_id, index, entries)
            await client.delete(index)
            await client.srem(apps_key, app_id)
        await client.delete(apps_key)

    async def _reap_batch(self, node_id: str, index: str, entries: list[str]) -> list[Removed]:
        client = self.link.client
        if self.link.target.cluster:
            # A cluster client refuses scripts in a pipeline: the same calls, concurrently.
            parsed, calls = self._removals(node_id, entries, client)
            results = list(await asyncio.gather(*calls))
            await client.srem(index, *entries)
        else:
            # Queued in the pipeline (awaiting a script call on a pipeline only queues it).
            async with client.pipeline(transaction=False) as pipe:
                parsed, calls = self._removals(node_id, entries, pipe)
                for call in calls:
                    await call
                # Entries whose hash field was already gone are not removed by their script.
                pipe.srem(index, *entries)
                results = await pipe.execute()
        removed = []
        for (kind, app_id, channel, user_id), result in zip(parsed, results, strict=False):
            value = int(result)
            if kind == "u":
                value = 1 if value == 0 else 0
            removed.append(Removed(kind, app_id, channel, user_id, value))
        return removed
