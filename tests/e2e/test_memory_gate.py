"""The memory gate on real servers: a process past MEMORY_LIMIT_MB refuses new sockets with 4100,
answers 503 on /ready and /accept-traffic, still 200 on /health, and says so on its metrics site.

The limit here (1 MiB) is below any Python process, so the gate is closed from the start; closing
and reopening around open sockets is tested with a controlled RSS reading (``test_memory_gate``
under tests/realtime).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import websockets

from tests.conftest import SERVER_KINDS, start_any_server
from tests.e2e.test_servers import http_get
from tests.pusher_client import until_closed

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("kind", sorted(SERVER_KINDS))
async def test_past_the_memory_limit_new_sockets_get_4100_and_ready_is_503(
    kind: str, migrated_db: Path, tmp_path: Path
) -> None:
    node = start_any_server(kind, migrated_db, tmp_path, {"MEMORY_LIMIT_MB": "1"})
    try:
        for path in ("/ready", "/accept-traffic"):
            status, body = await asyncio.to_thread(http_get, node.url(path))
            assert (status, json.loads(body)) == (503, {"status": "unavailable", "reason": "memory"})
        assert (await asyncio.to_thread(http_get, node.url("/health")))[0] == 200
        async with websockets.connect(node.ws_url()) as ws:
            frames, code = await until_closed(ws)
        assert code == 4100
        assert frames[0]["event"] == "pusher:error" and json.loads(frames[0]["data"])["code"] == 4100
        status, text = await asyncio.to_thread(http_get, node.metrics_url())
        assert status == 200
        assert re.search(r"^realtime_memory_gate_closed 1\.0$", text, re.MULTILINE), text[-2000:]
        assert re.search(r"^realtime_accepting_connections 0\.0$", text, re.MULTILINE)
        assert "memory limit reached" in node.output()
        assert "Traceback" not in node.output(), node.output()[-3000:]
    finally:
        node.stop()
