"""Fast consumer tests through Channels' WebsocketCommunicator (the websocket.send fallback path)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from channels.testing import WebsocketCommunicator

from realtime.asgi import realtime_application
from realtime.models import App
from realtime.protocol.signatures import channel_auth
from realtime.runtime import get_runtime, reset_runtime

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
    await runtime.broker.publish(app.id, ["c"], '{"event":"e","channel":"c","data":"1"}')
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


async def _closed_with(comm: WebsocketCommunicator, code: int) -> None:
    error = await receive(comm)
    assert error["event"] == "pusher:error" and error["data"]["code"] == code, error
    closed = await comm.receive_output(timeout=2)
    assert closed["type"] == "websocket.close" and closed["code"] == code


async def test_disabling_the_app_closes_its_open_sockets_with_4003(connected, app: App) -> None:
    comm, _ = connected
    app.enabled = False
    await app.asave()  # as the admin saves it: the change reaches the open socket at once
    await _closed_with(comm, 4003)


async def test_deleting_the_app_closes_its_open_sockets_with_4001(connected, app: App) -> None:
    comm, _ = connected
    await app.adelete()
    await _closed_with(comm, 4001)


async def test_changed_flags_apply_to_open_sockets(connected, app: App) -> None:
    comm, socket_id = connected
    channel = "private-flags"
    auth = channel_auth(app.key, app.secret, socket_id, channel)
    subscribe = {"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}
    await comm.send_to(text_data=json.dumps(subscribe))
    assert (await receive(comm))["event"] == "pusher_internal:subscription_succeeded"
    app.enable_client_messages = False
    await app.asave()
    runtime = get_runtime()
    for _ in range(100):
        socket = next(iter(runtime.registry.sockets.values()))
        if not socket.app.enable_client_messages:
            break
        await asyncio.sleep(0.01)
    await comm.send_to(text_data=json.dumps({"event": "client-x", "channel": channel, "data": {}}))
    error = await receive(comm)
    assert error["event"] == "pusher:error" and error["data"]["code"] == 4301, error


async def test_a_change_no_signal_reached_applies_after_credentials_ttl(app: App, settings) -> None:
    settings.REALTIME = {**settings.REALTIME, "CREDENTIALS_TTL": 0.2}
    reset_runtime()  # a runtime built with the short period
    comm = WebsocketCommunicator(application, f"/app/{app.key}?{QUERY}")
    assert (await comm.connect())[0]
    assert (await receive(comm))["event"] == "pusher:connection_established"
    await App.objects.filter(id=app.id).aupdate(enabled=False)  # another process: no signal here
    await _closed_with(comm, 4003)
    await comm.disconnect()
