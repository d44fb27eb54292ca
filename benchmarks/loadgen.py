"""Load generator for Pusher protocol 7 servers: one process, asyncio, loopback only.

Each scenario is bounded in time, prints ONE JSON line on stdout (what compare.py and
the smoke test read) and a readable summary on stderr. Server-side cost is read from
/proc for the pid given with --server-pid and its descendants (RSS, utime+stime), so
several worker processes are accounted for too (more pids after a comma: a Redis the server
uses). --socket-ports spreads the WebSockets over several nodes and --publish-port sends the
HTTP API requests to another node. The generator reports its own CPU utilisation: near
1.0 means it, not the server, was the bottleneck.

    python benchmarks/loadgen.py fanout --port 6001 --app-id app-id --key app-key \
        --secret app-secret --server-pid 1234 --subscribers 1000 --rate 20 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pusher_wire import Publisher, PusherSocket, channel_auth, open_socket

SCENARIOS = ("connect", "fanout", "channels", "publish", "client-events", "presence")
BENCH_EVENT = "bench"
# Benchmark payloads start with this marker so receivers can find sequence number and
# send time with one bytes.find instead of decoding JSON for every delivery.
MARK = b'"data":"~'
MARK_LEN = len(MARK)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# Server process accounting ---------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime seconds) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields start after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class ServerProbe:
    """RSS and CPU of a server's process trees (the server's, a Redis it uses), read from /proc."""

    def __init__(self, pid: int | None, extra_pids: list[int] | None = None) -> None:
        self.pid = pid
        self.extra_pids = extra_pids or []

    def _tree(self) -> dict[int, float]:
        if self.pid is None:
            return {}
        stats: dict[int, tuple[int, float]] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                stat = _proc_stat(int(name))
                if stat is not None:
                    stats[int(name)] = stat
        if self.pid not in stats:
            return {}
        tree = {pid: stats[pid][1] for pid in [self.pid, *self.extra_pids] if pid in stats}
        grew = True
        while grew:
            grew = False
            for pid, (ppid, cpu) in stats.items():
                if ppid in tree and pid not in tree:
                    tree[pid] = cpu
                    grew = True
        return tree

    def sample(self) -> dict[str, Any]:
        tree = self._tree()
        return {
            "rss_kib": sum(_rss_kib(pid) for pid in tree) if tree else None,
            "cpu_s": round(sum(tree.values()), 3) if tree else None,
            "processes": len(tree),
        }


def _cpu_delta(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    if before["cpu_s"] is None or after["cpu_s"] is None:
        return None
    return after["cpu_s"] - before["cpu_s"]


def _machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields)
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """Nearest-rank p50/p95/p99/max (and mean) of `values`, multiplied by `scale`."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[min(n - 1, max(0, int(q * n + 0.5) - 1))] * scale, 3)

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1] * scale, 3),
        "mean": round(sum(ordered) / n * scale, 3),
    }


def _per(total: float | None, count: float, factor: float = 1.0) -> float | None:
    if total is None or count <= 0:
        return None
    return round(total / count * factor, 4)


# Options and connection helpers ----------------------------------------------------


@dataclass
class Options:
    scenario: str
    host: str
    port: int
    # Sockets go round-robin over these (several nodes); HTTP API requests go to publish_port.
    ports: list[int]
    publish_port: int
    app_id: str
    key: str
    secret: str
    server_pid: int | None
    extra_pids: list[int]
    duration: float
    subscribers: int | None
    connections: int
    channels: int | None
    rate: float | None
    flat_duration: float | None
    publishers: int | None
    pairs: int
    channels_per_event: int
    concurrency: int
    drain: float
    timeout: float


async def open_many(
    opts: Options,
    count: int,
    setup: Callable[[PusherSocket, int], Awaitable[object]],
) -> tuple[list[PusherSocket], list[str]]:
    """Open `count` sockets, `opts.concurrency` handshakes in flight, and run `setup` on each.

    Returns the sockets that completed setup and the failure messages of the others.
    """
    gate = asyncio.Semaphore(opts.concurrency)
    socks: list[PusherSocket | None] = [None] * count
    failures: list[str] = []

    async def one(index: int) -> None:
        async with gate:
            sock: PusherSocket | None = None
            try:
                sock = await open_socket(opts.host, opts.ports[index % len(opts.ports)], opts.key)
                await asyncio.wait_for(setup(sock, index), 10.0)
                socks[index] = sock
            except (TimeoutError, OSError, RuntimeError, ValueError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                if sock is not None:
                    sock.abort()

    await asyncio.gather(*(one(i) for i in range(count)))
    return [s for s in socks if s is not None], failures


async def close_all(socks: list[PusherSocket]) -> None:
    for sock in socks:
        sock.close()
    # Let the server see the closes before the next scenario measures anything.
    await asyncio.sleep(0.2)


def _subscribe_public(channel_of: Callable[[int], str]) -> Callable[[PusherSocket, int], Any]:
    def setup(sock: PusherSocket, index: int) -> Awaitable[object]:
        sock.tag = index
        return sock.subscribe(channel_of(index))

    return setup


# Delivery accounting ---------------------------------------------------------------


@dataclass
class Phase:
    """Events of one publishing phase: what each should reach and what arrived."""

    name: str
    first_seq: int
    expected: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    publish_latencies: list[float] = field(default_factory=list)
    publish_errors: list[str] = field(default_factory=list)
    outstanding: int = 0
    published: int = 0
    started: float = 0.0
    last_delivery: float = 0.0


class Tracker:
    """Routes benchmark deliveries to the phase that published them."""

    def __init__(self) -> None:
        self.phases: list[Phase] = []
        self._starts: list[int] = []
        self.next_seq = 0
        self.unknown = 0

    def new_phase(self, name: str) -> Phase:
        phase = Phase(name, self.next_seq)
        phase.started = time.perf_counter()
        self.phases.append(phase)
        self._starts.append(self.next_seq)
        return phase

    def allocate(self, phase: Phase, expected: int) -> int:
        seq = self.next_seq
        self.next_seq += 1
        phase.expected.append(expected)
        phase.received.append(0)
        phase.outstanding += expected
        return seq

    def cancel(self, phase: Phase, seq: int) -> None:
        index = seq - phase.first_seq
        phase.outstanding -= phase.expected[index] - min(phase.received[index], phase.expected[index])
        phase.expected[index] = 0

    def record(self, seq: int, sent: float, now: float) -> None:
        phases = self.phases
        if seq >= self.next_seq or not phases:
            self.unknown += 1
            return
        phase = phases[-1]
        if seq < phase.first_seq:
            where = bisect.bisect_right(self._starts, seq) - 1
            if where < 0:
                self.unknown += 1
                return
            phase = phases[where]
        index = seq - phase.first_seq
        count = phase.received[index] + 1
        phase.received[index] = count
        if count <= phase.expected[index]:
            phase.outstanding -= 1
        phase.latencies.append(now - sent)
        phase.last_delivery = now

    def raw_hook(self, sock: PusherSocket, payload: bytes, now: float) -> bool:
        start = payload.find(MARK)
        if start < 0:
            return False
        start += MARK_LEN
        space = payload.find(b" ", start)
        end = payload.find(b'"', space)
        self.record(int(payload[start:space]), float(payload[space + 1 : end]), now)
        return True

    def event_hook(self, sock: PusherSocket, message: dict[str, Any], now: float) -> None:
        # Reached only when a server formats frames differently from the fast path.
        data = message.get("data")
        if message.get("event") == BENCH_EVENT and isinstance(data, str) and data[:1] == "~":
            seq, sent = data[1:].split(" ")
            self.record(int(seq), float(sent), now)

    def attach(self, sock: PusherSocket) -> None:
        sock.raw_hook = self.raw_hook
        sock.event_hook = self.event_hook


def _payload(seq: int) -> str:
    return f"~{seq} {time.perf_counter():.6f}"


async def _publish_one(
    tracker: Tracker, phase: Phase, pub: Publisher, channels: list[str], expected: int
) -> None:
    seq = tracker.allocate(phase, expected)
    started = time.perf_counter()
    try:
        status, body = await pub.trigger(channels, BENCH_EVENT, _payload(seq))
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
        tracker.cancel(phase, seq)
        phase.publish_errors.append(f"{type(exc).__name__}: {exc}")
        return
    if status != 200:
        tracker.cancel(phase, seq)
        phase.publish_errors.append(f"HTTP {status}: {body[:200]!r}")
        return
    phase.published += 1
    phase.publish_latencies.append(time.perf_counter() - started)


async def run_phase(
    opts: Options,
    tracker: Tracker,
    name: str,
    targets: list[tuple[list[str], int]],
    rate: float,
    duration: float,
    publishers: int,
    probe: ServerProbe,
) -> dict[str, Any]:
    """Publish to `targets` round-robin, at `rate` events/s or flat out when rate is 0.

    Each target is (channels, deliveries expected per event). After `duration` the
    phase waits up to `opts.drain` seconds for outstanding deliveries, then reports.
    """
    pool = [
        Publisher(opts.host, opts.publish_port, opts.app_id, opts.key, opts.secret) for _ in range(publishers)
    ]
    before = probe.sample()
    cpu0 = _self_cpu()
    phase = tracker.new_phase(name)
    deadline = phase.started + duration
    if rate > 0:
        idle: asyncio.Queue[Publisher] = asyncio.Queue()
        for pub in pool:
            idle.put_nowait(pub)
        tasks: list[asyncio.Task[None]] = []
        behind = 0

        async def fire(pub: Publisher, channels: list[str], expected: int) -> None:
            try:
                await _publish_one(tracker, phase, pub, channels, expected)
            finally:
                idle.put_nowait(pub)

        total = int(rate * duration)
        for k in range(total):
            due = phase.started + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                behind += 1
            pub = await idle.get()
            channels, expected = targets[k % len(targets)]
            tasks.append(asyncio.create_task(fire(pub, channels, expected)))
        await asyncio.gather(*tasks)
    else:
        behind = 0
        counter = iter(range(10**9))

        async def worker(pub: Publisher) -> None:
            while time.perf_counter() < deadline:
                channels, expected = targets[next(counter) % len(targets)]
                await _publish_one(tracker, phase, pub, channels, expected)

        await asyncio.gather(*(worker(pub) for pub in pool))
    published_end = time.perf_counter()
    drain_until = published_end + opts.drain
    while phase.outstanding > 0 and time.perf_counter() < drain_until:
        await asyncio.sleep(0.02)
    after = probe.sample()
    cpu1 = _self_cpu()
    connects = sum(pub.http.connects for pub in pool)
    for pub in pool:
        pub.close()

    events = phase.published
    expected_total = sum(phase.expected)
    delivered = sum(min(r, e) for r, e in zip(phase.received, phase.expected, strict=True))
    duplicates = sum(max(0, r - e) for r, e in zip(phase.received, phase.expected, strict=True))
    end = phase.last_delivery if phase.last_delivery > phase.started else published_end
    elapsed = max(end - phase.started, 1e-9)
    cpu = _cpu_delta(before, after)
    return {
        "rate": rate if rate > 0 else "flat",
        "publishers": publishers,
        "events": events,
        "events_per_s": round(events / max(published_end - phase.started, 1e-9), 1),
        "publish_errors": len(phase.publish_errors),
        "publish_error_sample": phase.publish_errors[:3],
        "schedule_slips": behind,
        "expected": expected_total,
        "delivered": delivered,
        "lost": expected_total - delivered,
        "duplicates": duplicates,
        "deliveries_per_s": round(delivered / elapsed, 1),
        "latency_ms": percentiles(phase.latencies),
        "publish_latency_ms": percentiles(phase.publish_latencies),
        # One per request means the server closed every connection (no keep-alive).
        "http_connects": connects,
        "server_cpu_s": None if cpu is None else round(cpu, 3),
        "server_cpu_ms_per_1000_deliveries": _per(cpu, delivered / 1000, 1000),
        "loadgen_cpu_util": round((cpu1 - cpu0) / max(time.perf_counter() - phase.started, 1e-9), 3),
    }


# Scenarios -------------------------------------------------------------------------


async def scenario_connect(opts: Options, probe: ServerProbe) -> dict[str, Any]:
    before = probe.sample()
    started = time.perf_counter()
    socks, failures = await open_many(
        opts, opts.connections, _subscribe_public(lambda i: f"connect-{i % 100}")
    )
    elapsed = time.perf_counter() - started
    # Give the server a moment to finish per-connection allocations before reading RSS.
    await asyncio.sleep(0.5)
    after = probe.sample()
    await close_all(socks)
    rss = None
    if before["rss_kib"] is not None and after["rss_kib"] is not None:
        rss = after["rss_kib"] - before["rss_kib"]
    cpu = _cpu_delta(before, after)
    return {
        "connections": opts.connections,
        "connected": len(socks),
        "failures": len(failures),
        "failure_sample": failures[:3],
        "connect_s": round(elapsed, 3),
        "connections_per_s": round(len(socks) / elapsed, 1),
        "server_rss_kib_before": before["rss_kib"],
        "server_rss_kib_after": after["rss_kib"],
        "rss_kib_per_connection": _per(rss, len(socks)),
        "server_cpu_ms_per_connection": _per(cpu, len(socks), 1000),
    }


async def _fanout_like(
    opts: Options,
    probe: ServerProbe,
    subscribers: int,
    channel_of: Callable[[int], str],
    targets: list[tuple[list[str], int]],
    rate: float,
    publishers: int,
) -> dict[str, Any]:
    tracker = Tracker()
    socks, failures = await open_many(opts, subscribers, _subscribe_public(channel_of))
    for sock in socks:
        tracker.attach(sock)
    result: dict[str, Any] = {
        "subscribers": subscribers,
        "subscribed": len(socks),
        "failures": len(failures),
        "failure_sample": failures[:3],
        "server_rss_kib": probe.sample()["rss_kib"],
    }
    if len(socks) < subscribers:
        # Expected counts assume every subscriber is there; say so rather than report loss.
        await close_all(socks)
        result["lost"] = None
        return result
    flat_duration = opts.duration if opts.flat_duration is None else opts.flat_duration
    lost = 0
    if rate > 0:
        result["fixed"] = await run_phase(
            opts, tracker, "fixed", targets, rate, opts.duration, max(2, publishers // 2), probe
        )
        lost += result["fixed"]["lost"]
    if flat_duration > 0:
        result["flat"] = await run_phase(opts, tracker, "flat", targets, 0, flat_duration, publishers, probe)
        lost += result["flat"]["lost"]
    result["lost"] = lost
    result["unknown_deliveries"] = tracker.unknown
    await close_all(socks)
    return result


async def scenario_fanout(opts: Options, probe: ServerProbe) -> dict[str, Any]:
    subscribers = opts.subscribers or 1000
    return await _fanout_like(
        opts,
        probe,
        subscribers,
        lambda i: "fanout",
        [(["fanout"], subscribers)],
        20.0 if opts.rate is None else opts.rate,
        opts.publishers or 4,
    )


async def scenario_channels(opts: Options, probe: ServerProbe) -> dict[str, Any]:
    """Many small channels; each event names `--channels-per-event` consecutive channels."""
    channels = opts.channels or 1000
    per_channel = opts.subscribers or 2
    per_event = max(1, min(opts.channels_per_event, channels, 100))
    groups = [[f"ch-{(c + k) % channels}" for k in range(per_event)] for c in range(0, channels, per_event)]
    result = await _fanout_like(
        opts,
        probe,
        channels * per_channel,
        lambda i: f"ch-{i // per_channel}",
        [(group, len(group) * per_channel) for group in groups],
        100.0 if opts.rate is None else opts.rate,
        opts.publishers or 8,
    )
    result["channels"] = channels
    result["subscribers_per_channel"] = per_channel
    result["channels_per_event"] = per_event
    return result


async def scenario_publish(opts: Options, probe: ServerProbe) -> dict[str, Any]:
    subscribers = opts.subscribers or 0
    publishers = opts.publishers or 4
    tracker = Tracker()
    socks, failures = await open_many(opts, subscribers, _subscribe_public(lambda i: "publish"))
    for sock in socks:
        tracker.attach(sock)
    phase = await run_phase(
        opts, tracker, "flat", [(["publish"], len(socks))], 0, opts.duration, publishers, probe
    )
    await close_all(socks)
    requests = phase["events"] + phase["publish_errors"]
    return {
        "publishers": publishers,
        "subscribers": subscribers,
        "failures": len(failures) + phase["publish_errors"],
        "failure_sample": failures[:3] + phase["publish_error_sample"],
        "requests": requests,
        "requests_per_s": phase["events_per_s"],
        "latency_ms": phase["publish_latency_ms"],
        "lost": phase["lost"],
        "server_cpu_ms_per_request": _per(phase["server_cpu_s"], phase["events"], 1000),
        "http_connects": phase["http_connects"],
        "loadgen_cpu_util": phase["loadgen_cpu_util"],
    }


async def scenario_client_events(opts: Options, probe: ServerProbe) -> dict[str, Any]:
    """Closed-loop round trips: A sends client-ping, B answers client-pong, A sends again."""
    pairs = opts.pairs
    rtts: list[float] = []
    state = {"sent": 0, "received": 0, "running": True}

    def ping_frame(channel: str) -> bytes:
        return json.dumps(
            {"event": "client-ping", "channel": channel, "data": f"~0 {time.perf_counter():.6f}"},
            separators=(",", ":"),
        ).encode()

    def b_hook(sock: PusherSocket, payload: bytes, now: float) -> bool:
        start = payload.find(MARK)
        if start < 0:
            return False
        end = payload.find(b'"', start + len(MARK))
        data = payload[start + len(MARK) - 1 : end].decode()
        sock.send_text(
            json.dumps({"event": "client-pong", "channel": sock.tag, "data": data}, separators=(",", ":"))
        )
        return True

    def a_hook(sock: PusherSocket, payload: bytes, now: float) -> bool:
        start = payload.find(MARK)
        if start < 0:
            return False
        end = payload.find(b'"', start + len(MARK))
        sent = float(payload[start + len(MARK) : end].split(b" ")[1])
        rtts.append(now - sent)
        state["received"] += 1
        if state["running"]:
            state["sent"] += 1
            sock.send_text(ping_frame(sock.tag))
        return True

    def setup(sock: PusherSocket, index: int) -> Awaitable[object]:
        channel = f"private-pair-{index // 2}"
        sock.tag = channel
        sock.raw_hook = a_hook if index % 2 == 0 else b_hook
        return sock.subscribe(channel, channel_auth(opts.key, opts.secret, sock.socket_id, channel))

    socks, failures = await open_many(opts, pairs * 2, setup)
    ready = {s.tag for s in socks if s.raw_hook is a_hook} & {s.tag for s in socks if s.raw_hook is b_hook}
    before = probe.sample()
    cpu0 = _self_cpu()
    started = time.perf_counter()
    for sock in socks:
        if sock.raw_hook is a_hook and sock.tag in ready:
            state["sent"] += 1
            sock.send_text(ping_frame(sock.tag))
    await asyncio.sleep(opts.duration)
    state["running"] = False
    measured = time.perf_counter() - started
    completed = state["received"]
    drain_until = time.perf_counter() + opts.drain
    while state["received"] < state["sent"] and time.perf_counter() < drain_until:
        await asyncio.sleep(0.02)
    after = probe.sample()
    cpu1 = _self_cpu()
    errors = [e for s in socks for e in s.errors]
    await close_all(socks)
    cpu = _cpu_delta(before, after)
    return {
        "pairs": pairs,
        "pairs_ready": len(ready),
        "failures": len(failures) + len(errors),
        "failure_sample": failures[:3] + [json.dumps(e)[:200] for e in errors[:3]],
        "round_trips": completed,
        "round_trips_per_s": round(completed / measured, 1),
        "client_events_per_s": round(2 * completed / measured, 1),
        "lost": state["sent"] - state["received"],
        "rtt_ms": percentiles(rtts),
        "server_cpu_ms_per_round_trip": _per(cpu, state["received"], 1000),
        "loadgen_cpu_util": round((cpu1 - cpu0) / max(time.perf_counter() - started, 1e-9), 3),
    }


async def scenario_presence(opts: Options, probe: ServerProbe) -> dict[str, Any]:
    """Churners join and leave presence channels; one watcher per channel sees each change."""
    channels = opts.channels or 10
    churners = opts.subscribers or 100
    pending: dict[tuple[str, str], asyncio.Future[float]] = {}
    joins: list[float] = []
    leaves: list[float] = []
    timeouts: list[str] = []

    def watcher_hook(sock: PusherSocket, message: dict[str, Any], now: float) -> None:
        event = message.get("event")
        if event not in ("pusher_internal:member_added", "pusher_internal:member_removed"):
            return
        user_id = str(json.loads(message["data"])["user_id"])
        waiter = pending.pop((event, user_id), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)

    def watcher_setup(sock: PusherSocket, index: int) -> Awaitable[object]:
        channel = f"presence-bench-{index}"
        sock.event_hook = watcher_hook
        data = json.dumps({"user_id": f"watcher-{index}"})
        return sock.subscribe(
            channel, channel_auth(opts.key, opts.secret, sock.socket_id, channel, data), data
        )

    watchers, watcher_failures = await open_many(opts, channels, watcher_setup)
    churn_socks, churn_failures = await open_many(opts, churners, lambda s, i: asyncio.sleep(0))
    loop = asyncio.get_running_loop()
    deadline = 0.0

    async def churn(sock: PusherSocket, index: int) -> None:
        channel = f"presence-bench-{index % channels}"
        cycle = 0
        while time.perf_counter() < deadline:
            user_id = f"u{index}-{cycle}"
            cycle += 1
            data = json.dumps({"user_id": user_id, "user_info": {"n": index}})
            added = pending[("pusher_internal:member_added", user_id)] = loop.create_future()
            started = time.perf_counter()
            try:
                await asyncio.wait_for(
                    sock.subscribe(
                        channel, channel_auth(opts.key, opts.secret, sock.socket_id, channel, data), data
                    ),
                    5.0,
                )
                joins.append(await asyncio.wait_for(added, 5.0) - started)
            except (TimeoutError, RuntimeError, ConnectionError) as exc:
                timeouts.append(f"join {user_id}: {type(exc).__name__} {exc}")
                pending.pop(("pusher_internal:member_added", user_id), None)
                return
            removed = pending[("pusher_internal:member_removed", user_id)] = loop.create_future()
            started = time.perf_counter()
            sock.unsubscribe(channel)
            try:
                leaves.append(await asyncio.wait_for(removed, 5.0) - started)
            except TimeoutError:
                timeouts.append(f"leave {user_id}: timeout")
                pending.pop(("pusher_internal:member_removed", user_id), None)
                return

    ok = len(watchers) == channels
    before = probe.sample()
    cpu0 = _self_cpu()
    started = time.perf_counter()
    deadline = started + opts.duration
    if ok:
        await asyncio.gather(*(churn(s, i) for i, s in enumerate(churn_socks)))
    elapsed = time.perf_counter() - started
    after = probe.sample()
    cpu1 = _self_cpu()
    errors = [e for s in watchers + churn_socks for e in s.errors]
    await close_all(watchers + churn_socks)
    cpu = _cpu_delta(before, after)
    failures = watcher_failures + churn_failures + [json.dumps(e)[:200] for e in errors]
    return {
        "channels": channels,
        "churners": churners,
        "failures": len(failures),
        "failure_sample": failures[:3],
        "joins": len(joins),
        "leaves": len(leaves),
        "joins_per_s": round(len(joins) / elapsed, 1),
        "leaves_per_s": round(len(leaves) / elapsed, 1),
        "lost": len(timeouts) if ok else None,
        "lost_sample": timeouts[:3],
        "member_added_ms": percentiles(joins),
        "member_removed_ms": percentiles(leaves),
        "server_cpu_ms_per_join_leave": _per(cpu, len(leaves), 1000),
        "loadgen_cpu_util": round((cpu1 - cpu0) / max(elapsed, 1e-9), 3),
    }


RUNNERS: dict[str, Callable[[Options, ServerProbe], Awaitable[dict[str, Any]]]] = {
    "connect": scenario_connect,
    "fanout": scenario_fanout,
    "channels": scenario_channels,
    "publish": scenario_publish,
    "client-events": scenario_client_events,
    "presence": scenario_presence,
}


# Output and CLI --------------------------------------------------------------------


def _fmt_lat(lat: dict[str, float | None]) -> str:
    if lat.get("p50") is None:
        return "no samples"
    return f"p50 {lat['p50']:.2f} / p95 {lat['p95']:.2f} / p99 {lat['p99']:.2f} / max {lat['max']:.2f} ms"


def summary(result: dict[str, Any]) -> str:
    """A few readable lines about a scenario result."""
    lines = [f"== {result['scenario']} against {result['target']} ({result['wall_s']} s)"]
    scenario = result["scenario"]
    if scenario == "connect":
        lines.append(
            f"   {result['connected']}/{result['connections']} connected, "
            f"{result['connections_per_s']} conn/s, {result['failures']} failures, "
            f"RSS {result['rss_kib_per_connection']} KiB/conn, "
            f"CPU {result['server_cpu_ms_per_connection']} ms/conn"
        )
    elif scenario in ("fanout", "channels"):
        lines.append(f"   {result['subscribed']}/{result['subscribers']} subscribed, lost {result['lost']}")
        for name in ("fixed", "flat"):
            phase = result.get(name)
            if phase:
                lines.append(
                    f"   {name:5} rate={phase['rate']}: {phase['events']} events, "
                    f"{phase['deliveries_per_s']} deliveries/s, lost {phase['lost']}, "
                    f"latency {_fmt_lat(phase['latency_ms'])}, "
                    f"server CPU {phase['server_cpu_ms_per_1000_deliveries']} ms/1000 deliveries, "
                    f"loadgen CPU {phase['loadgen_cpu_util']}"
                )
    elif scenario == "publish":
        lines.append(
            f"   {result['requests_per_s']} requests/s with {result['publishers']} clients, "
            f"{result['failures']} failures, latency {_fmt_lat(result['latency_ms'])}, "
            f"server CPU {result['server_cpu_ms_per_request']} ms/request"
        )
    elif scenario == "client-events":
        lines.append(
            f"   {result['round_trips_per_s']} round trips/s over {result['pairs_ready']} pairs, "
            f"lost {result['lost']}, {result['failures']} failures, rtt {_fmt_lat(result['rtt_ms'])}"
        )
    elif scenario == "presence":
        lines.append(
            f"   {result['joins_per_s']} joins/s, {result['leaves_per_s']} leaves/s, lost {result['lost']}, "
            f"{result['failures']} failures, member_added {_fmt_lat(result['member_added_ms'])}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--socket-ports",
        default=None,
        help="comma list: WebSockets round-robin over these ports (several nodes); default --port",
    )
    parser.add_argument(
        "--publish-port",
        type=int,
        default=None,
        help="HTTP API requests go to this port (another node); default --port",
    )
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument(
        "--server-pid",
        default=None,
        help="pid to read RSS and CPU of (with its children); a comma list adds more trees, e.g. a Redis",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured phase")
    parser.add_argument(
        "--flat-duration", type=float, default=None, help="flat-out phase (default --duration; 0 skips)"
    )
    parser.add_argument(
        "--subscribers",
        type=int,
        default=None,
        help="fanout: 1000; channels: per channel, 2; presence: churners, 100; publish: 0",
    )
    parser.add_argument("--connections", type=int, default=2000, help="connect scenario")
    parser.add_argument("--channels", type=int, default=None, help="channels: 1000; presence: 10")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="fixed-rate phase events/s (fanout 20, channels 100; 0 skips)",
    )
    parser.add_argument("--publishers", type=int, default=None, help="concurrent keep-alive HTTP clients")
    parser.add_argument(
        "--channels-per-event", type=int, default=10, help="channels scenario: channels named per publish"
    )
    parser.add_argument("--pairs", type=int, default=100, help="client-events pairs")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight")
    parser.add_argument("--drain", type=float, default=5.0, help="max seconds to wait for stragglers")
    parser.add_argument("--timeout", type=float, default=180.0, help="hard cap on the whole scenario")
    args = parser.parse_args(argv)
    host = args.host
    pids = args.server_pid.split(",") if args.server_pid else []
    # Load goes to this machine only.
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        parser.error("--host must be a loopback address")
    return Options(
        scenario=args.scenario,
        host=host,
        port=args.port,
        ports=[int(p) for p in args.socket_ports.split(",")] if args.socket_ports else [args.port],
        publish_port=args.publish_port or args.port,
        app_id=args.app_id,
        key=args.key,
        secret=args.secret,
        server_pid=int(pids[0]) if pids else None,
        extra_pids=[int(pid) for pid in pids[1:]],
        duration=args.duration,
        subscribers=args.subscribers,
        connections=args.connections,
        channels=args.channels,
        rate=args.rate,
        flat_duration=args.flat_duration,
        publishers=args.publishers,
        pairs=args.pairs,
        channels_per_event=args.channels_per_event,
        concurrency=args.concurrency,
        drain=args.drain,
        timeout=args.timeout,
    )


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(opts: Options) -> dict[str, Any]:
    """Run one scenario under its hard time cap and return its result dict."""
    probe = ServerProbe(opts.server_pid, opts.extra_pids)
    started = time.perf_counter()
    busy0, self0, server0 = _machine_busy(), _self_cpu(), probe.sample()
    result: dict[str, Any] = {"scenario": opts.scenario, "target": f"{opts.host}:{opts.port}"}
    if opts.ports != [opts.port] or opts.publish_port != opts.port:
        result["socket_ports"], result["publish_port"] = opts.ports, opts.publish_port
    try:
        result.update(await asyncio.wait_for(RUNNERS[opts.scenario](opts, probe), opts.timeout))
        result["ok"] = True
    except TimeoutError:
        result.update({"ok": False, "error": f"timed out after {opts.timeout} s"})
    except OSError as exc:
        result.update({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    wall = time.perf_counter() - started
    result["wall_s"] = round(wall, 2)
    server1 = probe.sample()
    result["server"] = {"pid": opts.server_pid, **server1}
    # Cores kept busy by anything but the server and this generator: on a shared 2-core
    # machine a value much above 0 means the run was disturbed and should be repeated.
    others = _machine_busy() - busy0 - (_self_cpu() - self0) - (_cpu_delta(server0, server1) or 0.0)
    result["other_cpu_util"] = round(max(0.0, others) / max(wall, 1e-9), 3)
    return result


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    _raise_fd_limit()
    result = asyncio.run(run(opts))
    print(json.dumps(result, separators=(",", ":")), flush=True)
    print(summary(result) if result["ok"] else f"== {opts.scenario}: {result['error']}", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
