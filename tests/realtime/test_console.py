"""The admin console: the hub's recording rules as plain objects, then its views in-process
(permissions, the stream's first events, test events through the API's publish, the inspector).
The browser and two-node tests are tests/e2e/test_console_browser.py and test_console_multinode.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.test import AsyncClient, Client

from realtime.models import App
from realtime.runtime import get_runtime
from realtime.runtime.console import MAX_DATA_CHARS, MAX_RECORDS_PER_SECOND, ConsoleHub
from realtime.stats import Stats

pytestmark = pytest.mark.usefixtures("fresh_runtime")


def test_nothing_is_kept_while_nobody_watches() -> None:
    hub = ConsoleHub(Stats(), "node-1")
    hub.record("a", "connected", socket_id="1.1")
    assert hub.recent("a") == [] and hub.backlog == {} and hub._window == {}


async def test_a_watcher_gets_its_apps_records_cut_short() -> None:
    hub = ConsoleHub(Stats(), "node-1")
    watcher = hub.watch("a")
    hub.record("a", "api_event", channel="c", event="e", data="x" * (MAX_DATA_CHARS + 10))
    hub.record("b", "api_event", channel="c", event="e", data="y")
    [record] = watcher.take()
    assert (record["kind"], record["channel"], record["node"]) == ("api_event", "c", "node-1")
    assert record["data"].startswith("x" * MAX_DATA_CHARS) and "10 more characters" in record["data"]
    assert len(hub.recent("a")) == 1
    hub.unwatch(watcher)
    assert hub.recent("a") == []


async def test_past_the_rate_records_are_counted_not_kept() -> None:
    hub = ConsoleHub(Stats(), "node-1")
    watcher = hub.watch("a")
    for _ in range(MAX_RECORDS_PER_SECOND + 50):
        hub.record("a", "client_event", channel="c")
    kept = watcher.take()
    assert len(kept) <= MAX_RECORDS_PER_SECOND
    second = int(time.monotonic())
    while int(time.monotonic()) == second:
        await asyncio.sleep(0.05)
    hub.record("a", "client_event", channel="c")
    sampled = [r for r in watcher.take() if r["kind"] == "sampled"]
    assert sampled and sampled[0]["skipped"] >= 50 - (MAX_RECORDS_PER_SECOND - len(kept))


async def test_leases_from_other_nodes_start_and_end_the_recording() -> None:
    sent: list[str] = []

    async def send(message: str) -> None:
        sent.append(message)

    remote = ConsoleHub(Stats(), "node-2")
    remote.send = send
    remote.received("node-1", json.dumps({"type": "watch", "app": "a"}))
    remote.record("a", "subscribed", channel="c", socket_id="2.1")
    await asyncio.sleep(0)
    [message] = [json.loads(m) for m in sent]
    assert message["type"] == "record" and message["record"]["channel"] == "c"
    # The watching node shows it; a malformed message is dropped.
    local = ConsoleHub(Stats(), "node-1")
    watcher = local.watch("a")
    local.received("node-2", json.dumps(message))
    local.received("node-2", "{not json")
    assert [r["node"] for r in watcher.take()] == ["node-2"]
    remote.leases["a"] = time.monotonic() - 1  # the lease ran out
    sent.clear()
    remote.record("a", "subscribed", channel="c", socket_id="2.1")
    await asyncio.sleep(0)
    assert sent == [] and "a" not in remote.leases


# The views


@pytest.fixture
def app(db: Any) -> App:
    return App.objects.create(id="7007", key="console-key", secret="console-secret-0123456789")


def staff(username: str, *permissions: str) -> User:
    user = User.objects.create_user(username, password="pw-0123456789", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


URL = "/admin/realtime/app/7007/console/"


@pytest.mark.django_db(transaction=True)
def test_who_may_see_the_console(app: App) -> None:
    client = Client()
    assert client.get(URL).status_code == 302  # to the login page
    client.force_login(User.objects.create_user("visitor", password="pw-0123456789"))
    assert client.get(URL).status_code == 302  # not staff
    for path in ("stream/", "channels/"):
        assert client.get(URL + path).status_code == 403
    client.force_login(staff("no-apps"))
    assert client.get(URL).status_code == 403
    assert client.get(URL + "channels/").status_code == 403
    client.force_login(staff("viewer", "view_app"))
    page = client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "console-key" in html and "console-secret" not in html
    assert "Publishing needs permission to change apps" in html
    refused = client.post(URL + "publish/", "{}", content_type="application/json")
    assert refused.status_code == 403
    assert client.get("/admin/realtime/app/nope/console/").status_code == 302  # no such app
    client.force_login(staff("editor-only", "change_app"))  # change implies view, as in the admin
    assert client.get(URL).status_code == 200  # its endpoints: test_stream_publish_and_inspect


@pytest.mark.django_db(transaction=True)
async def test_stream_publish_and_inspect(app: App) -> None:
    user = await sync_to_async(staff)("editor", "view_app", "change_app")
    client = AsyncClient(enforce_csrf_checks=False)
    await client.aforce_login(user)
    response = await client.get(URL + "stream/")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    chunks = response.streaming_content
    first = (await anext(chunks)).decode()
    assert "event: hello" in first
    runtime = get_runtime()
    assert app.id in runtime.console.watchers

    answer = await client.post(
        URL + "publish/",
        json.dumps({"channel": "news", "event": "test-event", "data": '{"n": 1}'}),
        content_type="application/json",
    )
    assert answer.status_code == 200 and answer.json() == {"published": True, "answer": {}}
    bad = await client.post(
        URL + "publish/",
        json.dumps({"channel": "bad channel", "event": "e", "data": "x"}),
        content_type="application/json",
    )
    assert bad.status_code == 400 and "error" in bad.json()
    text = ""
    while "api_event" not in text:
        text += (await asyncio.wait_for(anext(chunks), 5)).decode()
    record = next(
        json.loads(line[len("data: ") :])
        for line in text.splitlines()
        if line.startswith("data: ") and "api_event" in line
    )
    assert (record["channel"], record["event"], record["data"]) == ("news", "test-event", '{"n": 1}')
    # The browser goes away: the server cancels the response, and the stream stops watching.
    reading = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.05)
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reading
    assert app.id not in runtime.console.watchers

    await runtime.state.subscribe(app.id, "presence-room", "1.1")
    await runtime.state.add_member(app.id, "presence-room", "1.1", "ann", {"name": "Ann"})
    listed = await client.get(URL + "channels/")
    assert listed.json() == {"channels": {"presence-room": {"type": "presence", "subscription_count": 1}}}
    members = await client.get(URL + "channels/?channel=presence-room")
    assert members.json() == {"channel": "presence-room", "members": {"ann": {"name": "Ann"}}}
    assert (await client.get(URL + "channels/?channel=news")).status_code == 400
    await client.aforce_login(await sync_to_async(staff)("changer", "change_app"))
    assert (await client.get(URL + "channels/")).status_code == 200  # change implies view


def test_a_malformed_message_from_another_node_is_dropped() -> None:
    hub = ConsoleHub(Stats(), "node-1")
    watcher = hub.watch("a")
    for message in (
        json.dumps({"type": "rates", "app": "a", "rates": ["x", 1]}),
        json.dumps({"type": "rates", "app": "a", "rates": [10**400, 1]}),
        '{"type": "rates", "app": "a", "rates": [NaN, 1]}',
        json.dumps({"type": "rates", "app": "a", "rates": [1, 2, 3]}),
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"type": "watch"}),
    ):
        hub.received("node-2", message)  # raises nothing
    assert watcher.rates == {}
    hub.received("node-2", json.dumps({"type": "rates", "app": "a", "rates": [1.5, 2]}))
    assert watcher.rates["node-2"][:2] == (1.5, 2.0)


def test_a_webhook_attempt_shows_the_receivers_origin_only() -> None:
    from realtime.webhooks.delivery import _attempt_shown

    url = "https://user:pw@hooks.example:8443/services/T0/B0/SECRET?token=x"
    shown = _attempt_shown(url, ["member_added"], None, f"cannot connect to {url}", 2)
    assert shown["url"] == "https://hooks.example:8443"
    assert "SECRET" not in json.dumps(shown) and "pw" not in json.dumps(shown)
    assert shown["error"] == "cannot connect to https://hooks.example:8443"
