"""The memory gate: hysteresis as a plain object, then its effect on a runtime's sockets and /ready."""

from __future__ import annotations

import json

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator

from realtime.asgi import realtime_application
from realtime.models import App
from realtime.runtime import get_runtime
from realtime.runtime.memorygate import MIB, MemoryGate, rss_bytes

application = realtime_application()
QUERY = "protocol=7&client=js&version=8.4.0"


def test_closes_at_the_limit_and_opens_below_the_resume_level() -> None:
    readings = iter([50, 99, 100, 95, 91, 89, 95, 120])
    gate = MemoryGate(limit=100, resume=90, read=lambda: next(readings))
    changes = [gate.check() for _ in range(8)]
    assert changes == [None, None, True, None, None, False, None, True]
    assert gate.closed


def test_resume_defaults_to_90_percent_and_off_never_closes() -> None:
    assert MemoryGate.from_megabytes(100, None).resume == 90 * MIB
    assert MemoryGate.from_megabytes(100, 120).resume == 90 * MIB  # above the limit: check E011
    off = MemoryGate.from_megabytes(None, None)
    assert not off.enabled and off.check() is None and not off.closed


def test_rss_is_this_process_memory() -> None:
    rss = rss_bytes()
    ballast = bytearray(64 * MIB)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched, so resident
    assert rss_bytes() >= rss + 32 * MIB
    assert 10 * MIB < rss < 8 * 1024 * MIB
    del ballast


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_runtime")
async def test_a_closed_gate_refuses_new_sockets_with_4100_and_keeps_open_ones() -> None:
    app = await App.objects.acreate(key="gate-key", secret="gate-secret")
    runtime = get_runtime()
    rss = {"now": 10 * MIB}
    runtime.memory = MemoryGate(limit=100 * MIB, resume=90 * MIB, read=lambda: rss["now"])
    open_socket = WebsocketCommunicator(application, f"/app/{app.key}?{QUERY}")
    assert (await open_socket.connect())[0]
    await open_socket.receive_from(timeout=2)  # connection_established
    await open_socket.send_to(text_data=json.dumps({"event": "pusher:subscribe", "data": {"channel": "c"}}))
    await open_socket.receive_from(timeout=2)

    rss["now"] = 100 * MIB
    runtime.check_memory()
    refused = WebsocketCommunicator(application, f"/app/{app.key}?{QUERY}")
    await refused.connect()
    error = json.loads(await refused.receive_from(timeout=2))
    assert json.loads(error["data"])["code"] == 4100
    assert (await refused.receive_output(timeout=2))["code"] == 4100
    for path in ("/ready", "/accept-traffic"):
        response = await HttpCommunicator(application, "GET", path).get_response()
        assert response["status"] == 503 and json.loads(response["body"])["reason"] == "memory"
    assert (await HttpCommunicator(application, "GET", "/health").get_response())["status"] == 200
    await runtime.broker.publish(app.id, ["c"], '{"event":"e","channel":"c","data":"1"}')
    assert json.loads(await open_socket.receive_from(timeout=2))["event"] == "e"

    rss["now"] = 95 * MIB
    runtime.check_memory()
    assert runtime.readiness_problem() == "memory"  # not yet: above the resume level
    rss["now"] = 80 * MIB
    runtime.check_memory()
    assert runtime.readiness_problem() is None
    again = WebsocketCommunicator(application, f"/app/{app.key}?{QUERY}")
    assert (await again.connect())[0]
    assert json.loads(await again.receive_from(timeout=2))["event"] == "pusher:connection_established"
    for comm in (open_socket, again):
        await comm.disconnect()
