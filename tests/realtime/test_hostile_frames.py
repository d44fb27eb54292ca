"""Hostile frames through a real consumer: the protocol's own answer, never "Internal error".

Each kind is driven with generated variants through Channels' communicator (the websocket.send
fallback path), with a well-behaved subscriber on the same channel that must keep working.
"""

from __future__ import annotations

import json
import logging

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.asgi import realtime_application
from realtime.models import App
from realtime.protocol.limits import MAX_JSON_DEPTH
from realtime.protocol.signatures import channel_auth
from realtime.runtime import get_runtime

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_runtime")]

QUERY = "protocol=7&client=js&version=8.4.0"
application = realtime_application()


@pytest.fixture
async def app() -> App:
    return await App.objects.acreate(
        key="hostile-key", secret="hostile-secret", enable_user_authentication=True
    )


async def receive(comm: WebsocketCommunicator) -> dict:
    message = json.loads(await comm.receive_from(timeout=2))
    if isinstance(message.get("data"), str) and message["event"].startswith("pusher"):
        message["data"] = json.loads(message["data"])
    return message


async def connect(app: App) -> tuple[WebsocketCommunicator, str]:
    comm = WebsocketCommunicator(application, f"/app/{app.key}?{QUERY}")
    assert (await comm.connect())[0]
    established = await receive(comm)
    return comm, established["data"]["socket_id"]


async def send(comm: WebsocketCommunicator, event: str, data: object) -> None:
    await comm.send_to(text_data=json.dumps({"event": event, "data": data}))


def no_internal_errors(records: list[logging.LogRecord]) -> None:
    assert not [r for r in records if r.levelno >= logging.ERROR], [r.getMessage() for r in records]
    assert get_runtime().stats.counters["errors"] == {}


@given(signature=st.text(min_size=1, max_size=80))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_channel_signature_is_a_subscription_error(app: App, caplog, signature: str) -> None:
    comm, _ = await connect(app)
    await send(comm, "pusher:subscribe", {"channel": "private-x", "auth": f"{app.key}:{signature}"})
    answer = await receive(comm)
    assert answer["event"] == "pusher:subscription_error", answer
    assert answer["data"]["status"] == 401
    await comm.disconnect()
    no_internal_errors(caplog.records)


# Lone surrogates excluded: a client cannot send them (an escaped one is refused as bad JSON, 4300).
@given(
    signature=st.text(
        alphabet=st.characters(min_codepoint=0x80, exclude_categories=("Cs",)), min_size=1, max_size=40
    )
)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_signin_signature_closes_with_4009(app: App, caplog, signature: str) -> None:
    comm, _ = await connect(app)
    user_data = json.dumps({"id": "u1"})
    await send(comm, "pusher:signin", {"user_data": user_data, "auth": f"{app.key}:{signature}"})
    answer = await receive(comm)
    assert answer["event"] == "pusher:error" and answer["data"]["code"] == 4009, answer
    closed = await comm.receive_output(timeout=2)
    assert closed["type"] == "websocket.close" and closed["code"] == 4009
    no_internal_errors(caplog.records)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 970, 5000])
async def test_a_deep_member_cannot_break_a_presence_channel(app: App, caplog, depth: int) -> None:
    channel = "presence-room"
    hostile, hostile_id = await connect(app)
    channel_data = '{"user_id":"deep","user_info":' + "[" * depth + "]" * depth + "}"
    auth = channel_auth(app.key, app.secret, hostile_id, channel, channel_data)
    await send(hostile, "pusher:subscribe", {"channel": channel, "auth": auth, "channel_data": channel_data})
    answer = await receive(hostile)
    assert answer["event"] == "pusher:subscription_error"
    assert answer["data"]["status"] == 400
    assert await get_runtime().state.members(app.id, channel) == {}  # nothing stored

    fine, fine_id = await connect(app)
    channel_data = json.dumps({"user_id": "fine", "user_info": {"name": "ok"}})
    auth = channel_auth(app.key, app.secret, fine_id, channel, channel_data)
    await send(fine, "pusher:subscribe", {"channel": channel, "auth": auth, "channel_data": channel_data})
    succeeded = await receive(fine)
    assert succeeded["event"] == "pusher_internal:subscription_succeeded"
    assert succeeded["data"]["presence"]["ids"] == ["fine"]
    await hostile.disconnect()
    await fine.disconnect()
    no_internal_errors(caplog.records)


@pytest.mark.parametrize("text", ['{"event":"pusher:ping","data":NaN}', '{"event":"x","data":[1e400]}'])
async def test_json_that_is_not_json_is_a_protocol_error(app: App, caplog, text: str) -> None:
    comm, _ = await connect(app)
    await comm.send_to(text_data=text)
    answer = await receive(comm)
    assert answer["event"] == "pusher:error" and answer["data"]["code"] == 4300
    assert answer["data"]["message"] != "Internal error"
    await send(comm, "pusher:ping", {})
    assert (await receive(comm))["event"] == "pusher:pong"  # still open
    await comm.disconnect()
    no_internal_errors(caplog.records)
