"""The admin console across nodes: a console open on node A shows what happens on node B (its
sockets, subscriptions, API events and message rates) through the Redis bus, on one Redis and on
a Redis Cluster."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import requests

from tests.conftest import ServerProcess
from tests.pusher_client import PusherSocket

PASSWORD = "console-test-password-0123"


def logged_in(node: ServerProcess) -> requests.Session:
    node.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_superuser('admin', 'admin@example.com', '{PASSWORD}')",
    )
    session = requests.Session()
    session.get(node.url("/admin/login/"), timeout=10)
    answer = session.post(
        node.url("/admin/login/"),
        data={
            "username": "admin",
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": node.url("/admin/login/")},
        timeout=10,
    )
    assert answer.ok and "sessionid" in session.cookies
    return session


class Stream:
    """The console's server-sent events, read by a thread into ``events`` as (name, data)."""

    def __init__(self, session: requests.Session, url: str) -> None:
        self.response = session.get(url, stream=True, timeout=30)
        assert self.response.status_code == 200, self.response.text[:500]
        self.events: list[tuple[str, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        name = "message"
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    self.events.append((name, json.loads(line[len("data: ") :])))
        except (requests.RequestException, AttributeError, ValueError):
            return

    def wait(self, check: Any, what: str, timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = [data for name, data in list(self.events) if check(name, data)]
            if found:
                return found
            assert time.monotonic() < deadline, f"{what}: {self.events[-20:]}"
            time.sleep(0.05)

    def close(self) -> None:
        self.response.close()


async def test_a_console_on_one_node_shows_another_nodes_events(cluster) -> None:
    a, b = cluster(2)
    session = logged_in(a)
    stream = Stream(session, a.url(f"/admin/realtime/app/{a.app_id}/console/stream/"))
    try:
        stream.wait(lambda name, _: name == "hello", "the stream opened")
        time.sleep(0.2)  # node B hears of the console
        async with await PusherSocket.connect(b.ws_url()) as client:
            await client.subscribe("console-remote")
            b.pusher().trigger("console-remote", "remote-event", {"n": 1})
            [subscribed] = stream.wait(
                lambda name, r: (
                    name == "record" and r["kind"] == "subscribed" and r["channel"] == "console-remote"
                ),
                "node B's subscription",
            )
            assert subscribed["socket_id"] == client.socket_id
            [published] = stream.wait(
                lambda name, r: (
                    name == "record" and r["kind"] == "api_event" and r["channel"] == "console-remote"
                ),
                "node B's API event",
            )
            assert published["node"] == subscribed["node"]  # both on B
            assert published["event"] == "remote-event" and json.loads(published["data"]) == {"n": 1}
            figures = stream.wait(
                lambda name, f: name == "figures" and f.get("connections") == 1 and f.get("nodes") == 2,
                "cluster-wide figures from both nodes",
            )
            assert figures[-1]["channels"] == {"public": 1}
    finally:
        stream.close()
