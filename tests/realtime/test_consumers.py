"""Fast consumer tests through Channels' WebsocketCommunicator (the websocket.send fallback path)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from channels.testing import WebsocketCommunicator

from realtime.asgi import realtime_application
from realtime.models import App
from realtime.protocol.signatures import channel_auth
from realtime.runtime import get_runtime

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_runtime")]

application = realtime_application()
QUERY = "protocol=7&client=js&version=8.4.0"


@pytest.fixture
async def app() -> App:
    return await App.objects.acreate(key="unit-key", secret="unit-secret", enable_client_messages=True)


async def receive(comm: WebsocketCommunicator) -> dict:
    message = json.loads(await comm.receive_from(timeout=2))
    if isinstance(message.get("data"), str) and message["event"].startswith("pusher"):
        message["data"] = json.loads(message["data"])
    return message


@pytest.fixture
async def connected(app: App) -> AsyncIterator[tuple[WebsocketCommunicator, str]]:
    comm = WebsocketCommunicator(application, f"/app/{app.key}?{QUERY}")
    connected, _ = await comm.connect()
    assert connected
    established = await receive(comm)
    assert established["event"] == "pusher:connection_established"
    yield comm, established["data"]["socket_id"]
    await comm.disconnect()


async def test_unknown_key_closes_4001(app: App) -> None:
    comm = WebsocketCommunicator(application, f"/app/nope?{QUERY}")
    await comm.connect()
    error = await receive(comm)
    assert error["data"]["code"] == 4001
    closed = await comm.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": 4001, "reason": "Application does not exist"}


async def test_subscribe_and_fan_out(connected, app: App) -> None:
    comm, _ = connected
    await comm.send_to(text_data=json.dumps({"event": "pusher:subscribe", "data": {"channel": "c"}}))
    assert (await receive(comm))["event"] == "pusher_internal:subscription_succeeded"
    runtime = get_runtime()
    delivered = await runtime.broker.publish(app.id, ["c"], '{"event":"e","channel":"c","data":"1"}')
    assert delivered == 1
    assert await receive(comm) == {"event": "e", "channel": "c", "data": "1"}


async def test_private_auth_checked(connected, app: App) -> None:
    comm, socket_id = connected
    bad = {"channel": "private-a", "auth": f"{app.key}:{'0' * 64}"}
    await comm.send_to(text_data=json.dumps({"event": "pusher:subscribe", "data": bad}))
    assert (await receive(comm))["event"] == "pusher:subscription_error"
    good = {"channel": "private-a", "auth": channel_auth(app.key, app.secret, socket_id, "private-a")}
    await comm.send_to(text_data=json.dumps({"event": "pusher:subscribe", "data": good}))
    assert (await receive(comm))["event"] == "pusher_internal:subscription_succeeded"


async def test_bad_json_is_an_error_not_a_crash(connected) -> None:
    comm, _ = connected
    await comm.send_to(text_data="{nope")
    assert (await receive(comm))["event"] == "pusher:error"
    await comm.send_to(text_data=json.dumps({"event": "pusher:ping", "data": {}}))
    assert (await receive(comm))["event"] == "pusher:pong"


async def test_cleanup_on_disconnect(connected, app: App) -> None:
    comm, _ = connected
    await comm.send_to(text_data=json.dumps({"event": "pusher:subscribe", "data": {"channel": "gone"}}))
    await receive(comm)
    runtime = get_runtime()
    assert await runtime.state.subscription_count(app.id, "gone") == 1
    await comm.disconnect()
    assert await runtime.state.subscription_count(app.id, "gone") == 0
    assert await runtime.state.connection_count(app.id) == 0
    assert runtime.registry.sockets == {}
    assert runtime.registry.channels == {}
