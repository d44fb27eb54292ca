"""Compatibility with the official pusher-js client (running under Node) and the official Python SDK.

Each pusher-js client is a ``node tests/js/agent.js`` process: pytest writes JSON commands to its
stdin and reads JSON lines of what pusher-js observed. Private, presence, encrypted and user
authentication go through a real HTTP auth endpoint served here with the official Python SDK's
``authenticate`` / ``authenticate_user``, exactly as an application server would do it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pusher
import pytest
from websockets.sync import client as ws_sync

from tests.conftest import ROOT, ServerProcess

JS_DIR = ROOT / "tests" / "js"
AGENT = JS_DIR / "agent.js"
WAIT = 5.0
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


# The auth endpoint: the application server side of channel authorization and user authentication.


class AuthEndpoint:
    """``POST /<profile>/auth`` and ``POST /<profile>/user-auth``, answered by the Python SDK."""

    def __init__(self) -> None:
        self.profiles: dict[str, pusher.Pusher] = {}
        self.requests: list[dict[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                profile, _, action = self.path.strip("/").partition("/")
                endpoint.requests.append({"profile": profile, "action": action, **form})
                client = endpoint.profiles.get(profile)
                if client is None:
                    return self._reply(403, {"error": "unknown profile"})
                try:
                    body = endpoint.answer(client, action, form)
                except (KeyError, ValueError) as exc:
                    return self._reply(403, {"error": f"cannot authorize: {exc!r}"})
                self._reply(200, body)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                # The SDK returns shared_secret as base64 *bytes*; an app has to decode it.
                raw = json.dumps(body, default=lambda b: b.decode()).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def answer(client: pusher.Pusher, action: str, form: dict[str, str]) -> dict[str, Any]:
        user_info = json.loads(form["user_info"]) if "user_info" in form else None
        if action == "auth":
            channel = form["channel_name"]
            custom_data = None
            if channel.startswith("presence-"):
                custom_data = {"user_id": form["user_id"]}
                if user_info is not None:
                    custom_data["user_info"] = user_info
            return client.authenticate(channel=channel, socket_id=form["socket_id"], custom_data=custom_data)
        if action == "user-auth":
            user_data: dict[str, Any] = {"id": form["user_id"]}
            if user_info is not None:
                user_data["user_info"] = user_info
            if form.get("watchlist"):
                user_data["watchlist"] = form["watchlist"].split(",")
            return client.authenticate_user(form["socket_id"], user_data)
        raise ValueError(f"unknown action {action}")

    def url(self, profile: str, action: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{profile}/{action}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# One pusher-js client in a node process.


Match = dict[str, Any]


class JsClient:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.records: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [NODE, str(AGENT), json.dumps(options)],
            cwd=JS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"type": "raw", "line": line}
            with self._changed:
                self.records.append(record)
                self._changed.notify_all()
        with self._changed:
            self.records.append({"type": "exited"})
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def send(self, cmd: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()

    def mark(self) -> int:
        with self._changed:
            return len(self.records)

    def find(self, since: int = 0, **match: Any) -> list[dict[str, Any]]:
        with self._changed:
            return [r for r in self.records[since:] if _matches(r, match)]

    def wait_for(self, since: int = 0, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for record in self.records[since:]:
                    if _matches(record, match):
                        return record
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        raise AssertionError(
            f"{self.name}: nothing matched {match} within {timeout}s; observed:\n"
            + "\n".join(json.dumps(r) for r in self.records[since:])
            + ("\nstderr:\n" + "".join(self.stderr) if self.stderr else "")
        )

    def ask(self, cmd: str, reply: str, **fields: Any) -> dict[str, Any]:
        since = self.mark()
        self.send(cmd, **fields)
        return self.wait_for(since, type=reply)

    def connected(self) -> str:
        return self.wait_for(type="state", current="connected")["socket_id"]

    def subscribe(self, channel: str, bind: list[str] | None = None) -> dict[str, Any]:
        since = self.mark()
        self.send("subscribe", channel=channel, bind=bind or [])
        return self.wait_for(
            since,
            type="event",
            channel=channel,
            event=_one_of("pusher:subscription_succeeded", "pusher:subscription_error"),
        )

    def events(self, channel: str, event: str, since: int = 0) -> list[dict[str, Any]]:
        return self.find(since, type="event", channel=channel, event=event)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send("exit")
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _one_of(*values: Any) -> Callable[[Any], bool]:
    return lambda value: value in values


def _matches(record: dict[str, Any], match: Match) -> bool:
    for key, expected in match.items():
        value = record.get(key)
        if callable(expected):
            if not expected(value):
                return False
        elif value != expected:
            return False
    return True


NODE = shutil.which("node") or "node"


@pytest.fixture(scope="module", autouse=True)
def node_modules() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not installed (bin/test installs it)")
    if not (JS_DIR / "node_modules" / "pusher-js").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=300)


@pytest.fixture(scope="module")
def auth() -> Iterator[AuthEndpoint]:
    endpoint = AuthEndpoint()
    yield endpoint
    endpoint.close()


class App:
    def __init__(self, server: ServerProcess, app_id: str, key: str, secret: str) -> None:
        self.server = server
        self.id, self.key, self.secret = app_id, key, secret

    def sdk(self, **options: Any) -> pusher.Pusher:
        """The official Python SDK for this app, able to encrypt for private-encrypted- channels."""
        settings = {"app_id": self.id, "key": self.key, "secret": self.secret}
        settings["encryption_master_key_base64"] = MASTER_KEY
        settings.update(options)
        return self.server.pusher(**settings)


@pytest.fixture(scope="module")
def apps(server: ServerProcess, auth: AuthEndpoint) -> dict[str, App]:
    """``default``: client events on. ``features``: also subscription counting and watchlist events."""
    default = App(server, server.app_id, server.key, server.secret)
    features = App(
        server,
        *server.create_app(
            name="pusher-js features",
            enable_client_messages=True,
            enable_subscription_count=True,
            enable_watchlist_events=True,
        ),
    )
    auth.profiles["default"] = default.sdk()
    auth.profiles["features"] = features.sdk()
    auth.profiles["wrong-secret"] = default.sdk(secret="not-the-app-secret")
    return {"default": default, "features": features}


Connect = Callable[..., JsClient]


@pytest.fixture
def connect(server: ServerProcess, auth: AuthEndpoint, apps: dict[str, App]) -> Iterator[Connect]:
    """Start a pusher-js client and wait until it is connected."""
    started: list[JsClient] = []

    def start(
        name: str = "client",
        app: str = "default",
        profile: str | None = None,
        user: str | None = None,
        user_info: dict[str, Any] | None = None,
        watchlist: list[str] | None = None,
        **extra: Any,
    ) -> JsClient:
        params: dict[str, str] = {}
        if user is not None:
            params["user_id"] = user
        if user_info is not None:
            params["user_info"] = json.dumps(user_info)
        user_params = dict(params)
        if watchlist:
            user_params["watchlist"] = ",".join(watchlist)
        profile = profile or app
        options = {
            "host": server.host,
            "port": server.port,
            "key": apps[app].key,
            "authEndpoint": auth.url(profile, "auth"),
            "userAuthEndpoint": auth.url(profile, "user-auth"),
            "authParams": params,
            "userAuthParams": user_params,
            "lifetime": 40,
            **extra,
        }
        client = JsClient(name, options)
        started.append(client)
        client.connected()
        return client

    yield start
    for client in started:
        client.close()


def trigger(app: App, channel: str, event: str, data: Any, **kwargs: Any) -> None:
    app.sdk().trigger(channel, event, data, **kwargs)


# Public and private channels


def test_public_channel_receives_events_from_the_python_sdk(connect: Connect, apps: dict[str, App]) -> None:
    client = connect()
    assert client.subscribe("js-public")["event"] == "pusher:subscription_succeeded"
    trigger(apps["default"], "js-public", "greeting", {"text": "héllo", "n": 1})
    trigger(apps["default"], "js-public", "plain", "not json")
    assert client.wait_for(type="event", channel="js-public", event="greeting")["data"] == {
        "text": "héllo",
        "n": 1,
    }
    assert client.wait_for(type="event", channel="js-public", event="plain")["data"] == "not json"


def test_python_sdk_socket_id_excludes_the_pusher_js_connection(
    connect: Connect, apps: dict[str, App]
) -> None:
    sender, other = connect("sender"), connect("other")
    for client in (sender, other):
        client.subscribe("js-excluding")
    socket_id = sender.ask("state", "status")["socket_id"]
    trigger(apps["default"], "js-excluding", "not-for-sender", {"n": 1}, socket_id=socket_id)
    trigger(apps["default"], "js-excluding", "barrier", {})
    for client in (sender, other):
        client.wait_for(type="event", channel="js-excluding", event="barrier")
    assert other.events("js-excluding", "not-for-sender")[0]["data"] == {"n": 1}
    assert sender.events("js-excluding", "not-for-sender") == []


def test_private_channel_authorized_by_the_python_sdk(
    connect: Connect, apps: dict[str, App], auth: AuthEndpoint
) -> None:
    client = connect()
    assert client.subscribe("private-js-orders")["event"] == "pusher:subscription_succeeded"
    assert any(r.get("channel_name") == "private-js-orders" for r in auth.requests)
    trigger(apps["default"], "private-js-orders", "created", {"id": 7})
    assert client.wait_for(type="event", channel="private-js-orders", event="created")["data"] == {"id": 7}


def test_private_channel_with_a_wrong_secret_fails_and_the_connection_stays_usable(
    connect: Connect, apps: dict[str, App]
) -> None:
    client = connect(profile="wrong-secret")
    result = client.subscribe("private-js-vault")
    assert result["event"] == "pusher:subscription_error"
    assert result["data"]["status"] == 401
    assert result["data"]["type"] == "AuthError"
    assert client.ask("state", "status")["state"] == "connected"
    assert client.subscribe("js-after-error")["event"] == "pusher:subscription_succeeded"
    trigger(apps["default"], "js-after-error", "still-here", {"ok": True})
    assert client.wait_for(type="event", channel="js-after-error", event="still-here")["data"] == {"ok": True}
    assert not client.find(type="connection_error")
    assert client.find(type="state", current=_one_of("disconnected", "unavailable", "failed")) == []


def test_pusher_js_pings_and_the_server_answers_with_pong(connect: Connect) -> None:
    client = connect(activityTimeout=300, pongTimeout=1000, log=True)
    client.wait_for(type="log", message=lambda m: "Event recd" in m and "pusher:pong" in m)
    since = client.mark()
    client.wait_for(since, type="log", message=lambda m: "Event recd" in m and "pusher:pong" in m)
    assert client.ask("state", "status")["state"] == "connected"
    assert [r["current"] for r in client.find(type="state")] == ["connected"]


def test_client_event_on_a_public_channel_is_rejected_and_the_connection_stays(
    connect: Connect, apps: dict[str, App]
) -> None:
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        client.subscribe("js-lobby", bind=["client-shout"])
    assert alice.ask("trigger", "triggered", channel="js-lobby", event="client-shout", data={})["ok"]
    error = alice.wait_for(type="connection_error")["error"]
    assert error["type"] == "PusherError"
    assert error["data"]["code"] == 4301
    trigger(apps["default"], "js-lobby", "barrier", {})
    for client in (alice, bob):
        client.wait_for(type="event", channel="js-lobby", event="barrier")
    assert bob.find(type="bound", event="client-shout") == []
    assert alice.ask("state", "status")["state"] == "connected"


# Presence


def test_presence_members_added_removed_and_one_user_counted_once(
    connect: Connect, apps: dict[str, App]
) -> None:
    channel = "presence-js-room"
    alice = connect("alice", user="alice", user_info={"name": "Alice"})
    joined = alice.subscribe(channel)
    assert joined["event"] == "pusher:subscription_succeeded"
    assert joined["members"]["count"] == 1
    assert joined["members"]["me"] == {"id": "alice", "info": {"name": "Alice"}}

    since_alice = alice.mark()
    bob = connect("bob", user="bob", user_info={"name": "Bob"})
    members = bob.subscribe(channel)["members"]
    assert members["count"] == 2
    assert members["me"] == {"id": "bob", "info": {"name": "Bob"}}
    assert members["members"] == [
        {"id": "alice", "info": {"name": "Alice"}},
        {"id": "bob", "info": {"name": "Bob"}},
    ]
    added = alice.wait_for(since_alice, type="event", channel=channel, event="pusher:member_added")
    assert added["data"] == {"id": "bob", "info": {"name": "Bob"}}
    assert alice.ask("members", "members", channel=channel)["count"] == 2

    # Alice opens a second tab: counted once, nobody hears member_added for her.
    since_alice, since_bob = alice.mark(), bob.mark()
    alice2 = connect("alice-2", user="alice", user_info={"name": "Alice"})
    members = alice2.subscribe(channel)["members"]
    assert members["count"] == 2
    assert [m["id"] for m in members["members"]] == ["alice", "bob"]
    trigger(apps["default"], channel, "barrier", {})
    for client, since in ((alice, since_alice), (bob, since_bob)):
        client.wait_for(since, type="event", channel=channel, event="barrier")
        assert client.events(channel, "pusher:member_added", since) == []
    assert bob.ask("members", "members", channel=channel)["count"] == 2

    # The second tab leaves: alice is still there, so no member_removed.
    alice2.close()
    time.sleep(0.3)
    trigger(apps["default"], channel, "barrier-2", {})
    bob.wait_for(since_bob, type="event", channel=channel, event="barrier-2")
    assert bob.events(channel, "pusher:member_removed", since_bob) == []

    # Bob leaves: alice hears it once and is alone again.
    since_alice = alice.mark()
    bob.close()
    removed = alice.wait_for(since_alice, type="event", channel=channel, event="pusher:member_removed")
    assert removed["data"] == {"id": "bob", "info": {"name": "Bob"}}
    snapshot = alice.ask("members", "members", channel=channel)
    assert snapshot["count"] == 1
    assert snapshot["members"] == [{"id": "alice", "info": {"name": "Alice"}}]


# Encrypted channels


def test_encrypted_channel_events_from_the_python_sdk_are_decrypted_by_pusher_js(
    connect: Connect, apps: dict[str, App], auth: AuthEndpoint
) -> None:
    channel = "private-encrypted-js-secrets"
    client = connect()
    assert client.subscribe(channel)["event"] == "pusher:subscription_succeeded"
    since = client.mark()
    trigger(apps["default"], channel, "classified", {"code": "4-8-15-16-23-42", "note": "ünïcode"})
    received = client.wait_for(since, type="event", channel=channel, event="classified")
    assert received["data"] == {"code": "4-8-15-16-23-42", "note": "ünïcode"}
    # pusher-js refuses client events on encrypted channels itself.
    triggered = client.ask("trigger", "triggered", channel=channel, event="client-x", data={})
    assert triggered["ok"] is False
    assert "not currently supported" in triggered["error"]


def test_encrypted_channel_payload_is_relayed_as_ciphertext(
    connect: Connect, apps: dict[str, App], server: ServerProcess
) -> None:
    """The server only relays: a raw subscriber sees the SDK's nonce/ciphertext, pusher-js the plaintext."""
    channel = "private-encrypted-js-wire"
    client = connect()
    assert client.subscribe(channel)["event"] == "pusher:subscription_succeeded"
    with ws_sync.connect(server.ws_url(), open_timeout=WAIT) as raw:
        socket_id = json.loads(json.loads(raw.recv(WAIT))["data"])["socket_id"]
        token = apps["default"].sdk().authenticate(channel=channel, socket_id=socket_id)
        raw.send(
            json.dumps({"event": "pusher:subscribe", "data": {"channel": channel, "auth": token["auth"]}})
        )
        assert json.loads(raw.recv(WAIT))["event"] == "pusher_internal:subscription_succeeded"
        trigger(apps["default"], channel, "sealed", {"plain": "text"})
        frame = json.loads(raw.recv(WAIT))
    assert frame["event"] == "sealed"
    assert set(json.loads(frame["data"])) == {"nonce", "ciphertext"}
    assert "plain" not in frame["data"]
    assert client.wait_for(type="event", channel=channel, event="sealed")["data"] == {"plain": "text"}


# Client events


def test_client_events_on_a_private_channel_reach_others_not_the_sender(connect: Connect) -> None:
    channel = "private-js-chat"
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        assert client.subscribe(channel, bind=["client-msg", "client-reply"])["event"] == (
            "pusher:subscription_succeeded"
        )
    assert alice.ask("trigger", "triggered", channel=channel, event="client-msg", data={"text": "hi"})["ok"]
    got = bob.wait_for(type="bound", channel=channel, event="client-msg")
    assert got["data"] == {"text": "hi"}
    assert "user_id" not in (got["metadata"] or {})
    # Bob answers; once alice has the answer she would also have had her own echo.
    assert bob.ask("trigger", "triggered", channel=channel, event="client-reply", data="pong")["ok"]
    assert alice.wait_for(type="bound", channel=channel, event="client-reply")["data"] == "pong"
    assert alice.find(type="bound", event="client-msg") == []
    assert bob.find(type="bound", event="client-reply") == []


def test_client_events_on_a_presence_channel_carry_the_sender_user_id(connect: Connect) -> None:
    channel = "presence-js-chat"
    alice = connect("alice", user="alice")
    bob = connect("bob", user="bob")
    for client in (alice, bob):
        assert client.subscribe(channel, bind=["client-typing"])["event"] == "pusher:subscription_succeeded"
    alice.wait_for(type="event", channel=channel, event="pusher:member_added")
    assert alice.ask("trigger", "triggered", channel=channel, event="client-typing", data={"on": True})["ok"]
    got = bob.wait_for(type="bound", channel=channel, event="client-typing")
    assert got["data"] == {"on": True}
    assert got["metadata"] == {"user_id": "alice"}


# User authentication


def _signin(client: JsClient, user: str) -> None:
    done = client.ask("signin", "signin_done")
    assert done["user_data"]["id"] == user
    deadline = time.monotonic() + WAIT
    while not client.ask("user_channel", "user_channel")["subscribed"]:
        assert time.monotonic() < deadline, f"{client.name}: #server-to-user-{user} never subscribed"
        time.sleep(0.05)


def test_signin_and_send_to_user_reaches_every_connection_of_the_user(
    connect: Connect, apps: dict[str, App]
) -> None:
    carol = connect("carol", user="carol", user_info={"name": "Carol"})
    carol2 = connect("carol-2", user="carol")
    other = connect("dave", user="dave")
    for client, user in ((carol, "carol"), (carol2, "carol"), (other, "dave")):
        _signin(client, user)
    assert carol.ask("user_channel", "user_channel")["name"] == "#server-to-user-carol"
    apps["default"].sdk().send_to_user("carol", "notice", {"text": "for carol"})
    apps["default"].sdk().send_to_user("dave", "notice", {"text": "for dave"})
    for client in (carol, carol2):
        assert client.wait_for(type="user_event", event="notice")["data"] == {"text": "for carol"}
    assert other.wait_for(type="user_event", event="notice")["data"] == {"text": "for dave"}
    assert [r["data"] for r in carol.find(type="user_event")] == [{"text": "for carol"}]


def test_terminate_user_connections_disconnects_only_that_user(
    connect: Connect, apps: dict[str, App]
) -> None:
    erin, frank = connect("erin", user="erin"), connect("frank", user="frank")
    _signin(erin, "erin")
    _signin(frank, "frank")
    since = erin.mark()
    apps["default"].sdk().terminate_user_connections("erin")
    erin.wait_for(since, type="state", current="disconnected")
    error = erin.wait_for(since, type="connection_error")
    assert error["error"]["data"]["code"] == 4009
    # 4009 is in the 4000-4099 "do not reconnect" range: pusher-js stays disconnected.
    time.sleep(0.5)
    assert erin.ask("state", "status")["state"] == "disconnected"
    assert erin.find(since, type="state", current="connecting") == []
    assert frank.ask("state", "status")["state"] == "connected"
    apps["default"].sdk().send_to_user("frank", "still", {"ok": True})
    assert frank.wait_for(type="user_event", event="still")["data"] == {"ok": True}


# Subscription count, cache channels, watchlist


def test_subscription_count_is_reported_to_pusher_js(connect: Connect, apps: dict[str, App]) -> None:
    channel = "js-counted"
    alice = connect("alice", app="features")
    alice.subscribe(channel)
    first = alice.wait_for(type="event", channel=channel, event="pusher:subscription_count")
    assert first["data"] == {"subscription_count": 1}
    assert first["subscription_count"] == 1

    since_alice = alice.mark()
    bob = connect("bob", app="features")
    bob.subscribe(channel)
    for client, since in ((alice, since_alice), (bob, 0)):
        got = client.wait_for(since, type="event", channel=channel, event="pusher:subscription_count")
        assert got["data"] == {"subscription_count": 2}
        assert got["subscription_count"] == 2

    since_alice = alice.mark()
    bob.send("unsubscribe", channel=channel)
    got = alice.wait_for(since_alice, type="event", channel=channel, event="pusher:subscription_count")
    assert got["data"] == {"subscription_count": 1}

    # Presence channels have member counts instead.
    carol = connect("carol", app="features", user="carol")
    carol.subscribe("presence-js-counted")
    dan = connect("dan", app="features", user="dan")
    dan.subscribe("presence-js-counted")
    carol.wait_for(type="event", channel="presence-js-counted", event="pusher:member_added")
    trigger(apps["features"], "presence-js-counted", "barrier", {})
    for client in (carol, dan):
        client.wait_for(type="event", channel="presence-js-counted", event="barrier")
        assert client.events("presence-js-counted", "pusher:subscription_count") == []


def test_subscription_count_is_not_sent_when_the_app_has_not_enabled_it(
    connect: Connect, apps: dict[str, App]
) -> None:
    client = connect()
    client.subscribe("js-not-counted")
    trigger(apps["default"], "js-not-counted", "barrier", {})
    client.wait_for(type="event", channel="js-not-counted", event="barrier")
    assert client.events("js-not-counted", "pusher:subscription_count") == []


def test_cache_channel_replays_the_last_event_and_signals_a_miss(
    connect: Connect, apps: dict[str, App]
) -> None:
    client = connect()
    assert client.subscribe("cache-js-empty")["event"] == "pusher:subscription_succeeded"
    miss = client.wait_for(type="event", channel="cache-js-empty", event="pusher:cache_miss")
    assert miss["data"] is None

    trigger(apps["default"], "cache-js-news", "headline", {"v": 1})
    trigger(apps["default"], "cache-js-news", "headline", {"v": 2})
    late = connect("late")
    since = late.mark()
    late.subscribe("cache-js-news")
    replayed = late.wait_for(since, type="event", channel="cache-js-news", event="headline")
    assert replayed["data"] == {"v": 2}
    events = [r["event"] for r in late.find(since, type="event", channel="cache-js-news")]
    assert events == ["pusher:subscription_succeeded", "headline"]


def test_watchlist_online_and_offline_events(connect: Connect) -> None:
    gina = connect("gina", app="features", user="gina")
    _signin(gina, "gina")
    watcher = connect("watcher", app="features", user="watcher", watchlist=["gina", "hank"])
    watcher.send("signin")
    initial = {
        r["name"]: r["event"]["user_ids"]
        for r in (
            watcher.wait_for(type="watchlist", name="online"),
            watcher.wait_for(type="watchlist", name="offline"),
        )
    }
    assert initial == {"online": ["gina"], "offline": ["hank"]}

    since = watcher.mark()
    hank = connect("hank", app="features", user="hank")
    _signin(hank, "hank")
    online = watcher.wait_for(since, type="watchlist", name="online")
    assert online["event"] == {"name": "online", "user_ids": ["hank"]}

    since = watcher.mark()
    gina.close()
    offline = watcher.wait_for(since, type="watchlist", name="offline")
    assert offline["event"] == {"name": "offline", "user_ids": ["gina"]}


# Key rotation


def test_a_client_on_a_new_key_pair_stays_while_the_old_pair_is_revoked(
    server: ServerProcess, connect: Connect, apps: dict[str, App], auth: AuthEndpoint
) -> None:
    app_id, key, secret = server.create_app(name="rotation")
    printed = server.manage("realtime_rotatesecret", app_id)
    new_key = printed.split("key:")[1].split()[0]
    new_secret = printed.split("secret:")[1].split()[0]
    apps["rotation-old"] = old = App(server, app_id, key, secret)
    apps["rotation-new"] = new = App(server, app_id, new_key, new_secret)
    auth.profiles["rotation-old"], auth.profiles["rotation-new"] = old.sdk(), new.sdk()
    # Each pair signs its own subscriptions and publishes: both work during the overlap.
    on_old, on_new = connect("on-old", app="rotation-old"), connect("on-new", app="rotation-new")
    for client in (on_old, on_new):
        assert client.subscribe("private-rotation")["event"] == "pusher:subscription_succeeded"
    trigger(old, "private-rotation", "through-old", {"n": 1})
    trigger(new, "private-rotation", "through-new", {"n": 2})
    for client in (on_old, on_new):
        client.wait_for(type="event", channel="private-rotation", event="through-new")
        assert client.events("private-rotation", "through-old")[0]["data"] == {"n": 1}

    since = on_new.mark()
    server.manage("realtime_rotatesecret", app_id, "--revoke", key)
    # The server reads the change within CREDENTIALS_TTL: the old key's socket is told to
    # reconnect (4200), and its key no longer exists (4001).
    on_old.wait_for(type="state", current=_one_of("connecting", "unavailable", "failed"), timeout=15)
    deadline = time.monotonic() + 15
    while True:
        try:
            trigger(old, "private-rotation", "after-revoke", {})
        except pusher.errors.PusherBadAuth:
            break
        assert time.monotonic() < deadline, "the revoked pair still publishes"
        time.sleep(0.2)
    trigger(new, "private-rotation", "still-here", {"n": 3})
    still = on_new.wait_for(since, type="event", channel="private-rotation", event="still-here")
    assert still["data"] == {"n": 3}
    assert on_new.find(since, type="state") == []  # never left "connected"
    assert on_new.events("private-rotation", "after-revoke") == []
