"""A webhook receiver for benchmarks: answers every POST 200 at once and counts requests and events.

    python benchmarks/webhook_receiver.py --port 9700   # then point DEFAULT_APP_WEBHOOKS at it

On SIGTERM or SIGINT it prints one JSON line: requests, events, and events by name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9700)
    args = parser.parse_args()
    counts: Counter[str] = Counter()
    requests = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal requests
        body = await request.json()
        requests += 1
        counts.update(event["name"] for event in body["events"])
        return web.Response(status=200)

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await runner.cleanup()
        total = sum(counts.values())
        print(json.dumps({"requests": requests, "events": total, "by_name": dict(counts)}), file=sys.stdout)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
