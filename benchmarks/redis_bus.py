"""Cross-node bus: plain redis.asyncio pub/sub against channels-redis' RedisPubSubChannelLayer.

One publisher process sends pre-encoded ~250-byte frames; each of ``--nodes`` receiver processes
plays a node (one subscription, as RedisBroker has). Reported per mode: publishes/s flat out
(sequential awaits, as the HTTP API does), receiver CPU per message, and publish→receive latency
percentiles at a fixed rate. Needs a redis-server: ``--url`` (default starts one on a free port).

    .venv/bin/python benchmarks/redis_bus.py --messages 20000 --nodes 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FRAME = json.dumps({"event": "tick", "channel": "news", "data": json.dumps({"x": "y" * 180})})
SEP = "\x1f"


def _receiver(mode: str, url: str, count: int, ready: Any, result: Any) -> None:
    async def run() -> None:
        latencies: list[float] = []
        if mode == "plain":
            from redis.asyncio import Redis

            client = Redis.from_url(url, decode_responses=True)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe("bench:bus")
            ready.set()
            received = 0
            cpu = time.process_time()
            while received < count:
                response = await pubsub.parse_response(block=True)
                message = await pubsub.handle_message(response, ignore_subscribe_messages=True)
                if message is None or message["type"] != "message":
                    continue
                # The same split RedisBroker.dispatch does; the send time rides in the except field.
                fields = message["data"].split(SEP, 5)
                sent = float(fields[3])
                received += 1
                if received == 1:
                    cpu = time.process_time()
                latencies.append(time.time() - sent)
            cpu = time.process_time() - cpu
            await client.aclose()
        else:
            from channels_redis.pubsub import RedisPubSubChannelLayer

            layer = RedisPubSubChannelLayer(hosts=[url])
            channel = await layer.new_channel()
            await layer.group_add("bench", channel)
            ready.set()
            received = 0
            cpu = time.process_time()
            while received < count:
                message = await layer.receive(channel)
                received += 1
                if received == 1:
                    cpu = time.process_time()
                latencies.append(time.time() - message["sent"])
            cpu = time.process_time() - cpu
            await layer.flush()
        result.put({"cpu_per_message_us": cpu / max(1, count - 1) * 1e6, "latencies": latencies})

    asyncio.run(run())


async def _publish(mode: str, url: str, count: int, rate: float | None) -> float:
    interval = 1 / rate if rate else 0.0
    started = time.perf_counter()
    if mode == "plain":
        from redis.asyncio import Redis

        client = Redis.from_url(url, decode_responses=True, max_connections=10)
        for i in range(count):
            payload = SEP.join(("p", "origin", "app", repr(time.time()), "news", FRAME))
            await client.publish("bench:bus", payload)
            if interval:
                await asyncio.sleep(max(0.0, started + (i + 1) * interval - time.perf_counter()))
        await client.aclose()
    else:
        from channels_redis.pubsub import RedisPubSubChannelLayer

        layer = RedisPubSubChannelLayer(hosts=[url])
        for i in range(count):
            await layer.group_send("bench", {"type": "event", "text": FRAME, "sent": time.time()})
            if interval:
                await asyncio.sleep(max(0.0, started + (i + 1) * interval - time.perf_counter()))
        await layer.flush()
    return time.perf_counter() - started


def run_mode(mode: str, url: str, count: int, nodes: int, rate: float | None) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    readies = [context.Event() for _ in range(nodes)]
    processes = [
        context.Process(target=_receiver, args=(mode, url, count, ready, result)) for ready in readies
    ]
    for process in processes:
        process.start()
    for ready in readies:
        ready.wait(30)
    time.sleep(0.3)
    cpu = time.process_time()
    elapsed = asyncio.run(_publish(mode, url, count, rate))
    publisher_cpu = time.process_time() - cpu
    reports = [result.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    latencies = sorted(x for report in reports for x in report["latencies"])
    return {
        "mode": mode,
        "rate": rate or "flat out",
        "publishes_per_s": round(count / elapsed),
        "publisher_cpu_per_message_us": round(publisher_cpu / count * 1e6, 1),
        "receiver_cpu_per_message_us": round(statistics.mean(r["cpu_per_message_us"] for r in reports), 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1000.0, help="messages/s for the latency run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = None
    url = args.url
    if not url:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        binary = shutil.which("redis-server") or "redis-server"
        server = subprocess.Popen(
            [binary, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
        )
        time.sleep(0.5)
        url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(args.rounds):
            for mode in ("plain", "channels_redis"):
                print(json.dumps(run_mode(mode, url, args.messages, args.nodes, None)), flush=True)
                count = min(args.messages, int(args.rate * 5))
                print(json.dumps(run_mode(mode, url, count, args.nodes, args.rate)), flush=True)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    os._exit(0)


if __name__ == "__main__":
    main()
