"""Structured logs: JSON lines, and never a secret, a signature or a payload, even at DEBUG.

A server with distinctive credentials is driven through every path that logs (failing webhooks,
bad signatures on the socket and the HTTP API, malformed frames, client events, shutdown) with
payloads carrying a marker; then its whole output is searched for any of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import free_port

from .conftest import connect, fetch

SECRET = "sekrit-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MARK = "PAYLOADMARK"


def _signed_garbage(server) -> str:
    query = {
        "auth_key": server.key,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "auth_signature": "f" * 64,
    }
    return server.url(f"/apps/{server.app_id}/channels?{urllib.parse.urlencode(query)}")


@pytest.mark.timeout(90)
async def test_json_logs_carry_no_secret_signature_or_payload(start_server) -> None:
    hooks = [
        {
            "url": f"http://127.0.0.1:{free_port()}/hook",
            "event_types": [
                "channel_occupied",
                "channel_vacated",
                "member_added",
                "member_removed",
                "client_event",
            ],
        }
    ]
    server = start_server(
        env={
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "DEFAULT_APP_SECRET": SECRET,
            "DEFAULT_APP_WEBHOOKS": json.dumps(hooks),
            "WEBHOOK_RETRY_SECONDS": "0.1",
            "WEBHOOK_DELAY_SECONDS": "0",
        }
    )
    pusher = server.pusher()
    signatures: list[str] = ["f" * 64]

    client = await connect(server)
    member = {"user_id": "logger", "user_info": {"note": MARK + "-member"}}
    auth = pusher.authenticate("presence-logs", client.socket_id, member)
    signatures.append(auth["auth"].split(":", 1)[1])
    await client.send("pusher:subscribe", {"channel": "presence-logs", **auth})
    await client.expect("pusher_internal:subscription_succeeded")
    await client.send("client-note", {"text": MARK + "-client"})  # no channel: an error reply
    await client.expect("pusher:error")
    await client.ws.send(
        json.dumps({"event": "client-note", "channel": "presence-logs", "data": MARK + "-ce"})
    )
    bad = "x" * 64
    signatures.append(bad)
    await client.send("pusher:subscribe", {"channel": "private-logs", "auth": f"{server.key}:{bad}"})
    await client.expect("pusher:subscription_error")
    await client.send("pusher:signin", {"user_data": json.dumps({"id": MARK}), "auth": f"{server.key}:{bad}"})
    await client.expect("pusher:error")
    client = await connect(server)  # the failed sign-in closed the first one
    await client.ws.send('{"event": "pusher:subscribe", "data": "' + MARK + "-malformed")
    await client.expect("pusher:error")
    await asyncio.to_thread(pusher.trigger, "presence-logs", "news", {"text": MARK + "-api"})
    assert (await asyncio.to_thread(fetch, _signed_garbage(server)))[0] == 401
    await client.ws.close()
    await asyncio.sleep(1.5)  # webhook attempts fail and are logged
    server.stop(signal.SIGTERM)
    output = server.output()

    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert records, output
    messages = {record["message"] for record in records}
    assert "webhook delivery failed" in messages
    assert any(record["level"] == "DEBUG" for record in records)
    for line in output.splitlines():
        if line.startswith("{"):
            assert {"time", "level", "logger", "message"} <= set(json.loads(line)), line
    for forbidden in [SECRET, MARK, *signatures, hmac.new(SECRET.encode(), b"", hashlib.sha256).hexdigest()]:
        assert forbidden not in output, forbidden


def test_text_format_and_level(start_server) -> None:
    info = start_server(env={"LOG_FORMAT": "text", "LOG_LEVEL": "INFO"})
    quiet = start_server(env={"LOG_FORMAT": "text", "LOG_LEVEL": "WARNING"})
    for server in (info, quiet):
        server.stop(signal.SIGTERM)
    assert " INFO daphne.server " in info.output()
    assert not any(line.startswith("{") for line in info.output().splitlines())
    assert " INFO " not in quiet.output()
