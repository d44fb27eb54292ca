"""Helpers for the HTTP API tests: hand-signed requests, a small WebSocket client.

Request signing: https://pusher.com/docs/channels/library_auth_reference/rest-api/#authentication

The signing here is written from the spec on purpose, not imported from ``realtime.protocol``,
so a mistake in the server's signing cannot cancel out in the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import requests
import websockets

_DEFAULT = object()


def signed_query(
    method: str,
    path: str,
    *,
    key: str,
    secret: str,
    body: bytes = b"",
    params: Mapping[str, str] | None = None,
    timestamp: int | None = None,
    body_md5: object = _DEFAULT,
) -> dict[str, str]:
    """The query parameters of a signed request; ``body_md5`` defaults to the MD5 of a non-empty body."""
    query = {
        "auth_key": key,
        "auth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "auth_version": "1.0",
        **(params or {}),
    }
    if body_md5 is _DEFAULT:
        if body:
            query["body_md5"] = hashlib.md5(body).hexdigest()
    elif body_md5 is not None:
        query["body_md5"] = str(body_md5)
    to_sign = "&".join(f"{k.lower()}={v}" for k, v in sorted(query.items()))
    message = f"{method.upper()}\n{path}\n{to_sign}"
    query["auth_signature"] = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return query


class Api:
    """Raw signed requests against one server, checking the invariants every answer must hold."""

    def __init__(
        self, server: Any, app_id: str | None = None, key: str | None = None, secret: str | None = None
    ):
        self.server = server
        self.app_id = app_id or server.app_id
        self.key = key or server.key
        self.secret = secret or server.secret
        self.session = requests.Session()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        content_type: str | None = "application/json",
        params: Mapping[str, str] | None = None,
        sign_path: str | None = None,
        query: Mapping[str, str] | None = None,
        **sign: Any,
    ) -> requests.Response:
        if json_body is not None:
            body = json.dumps(json_body).encode()
        body = body or b""
        if query is None:
            query = signed_query(
                method,
                sign_path or path,
                key=sign.pop("key", self.key),
                secret=sign.pop("secret", self.secret),
                body=body,
                params=params,
                **sign,
            )
        headers = {"Content-Type": content_type} if content_type else {}
        url = self.server.url(quote(path, safe="/;,=@")) + "?" + urlencode(query)
        response = self.session.request(method, url, data=body, headers=headers, timeout=30)
        check_response(response)
        return response

    def app_path(self, rest: str) -> str:
        return f"/apps/{self.app_id}{rest}"

    def trigger(self, payload: Any, **kwargs: Any) -> requests.Response:
        return self.request("POST", self.app_path("/events"), json_body=payload, **kwargs)

    def batch(self, events: list[Any], **kwargs: Any) -> requests.Response:
        return self.request("POST", self.app_path("/batch_events"), json_body={"batch": events}, **kwargs)

    def get(self, rest: str, params: Mapping[str, str] | None = None, **kwargs: Any) -> requests.Response:
        return self.request("GET", self.app_path(rest), params=params, content_type=None, **kwargs)


def check_response(response: requests.Response) -> None:
    """Every API answer is JSON; errors carry an "error" key; nothing is ever a 500."""
    assert response.status_code < 500, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:200]
    body = response.json()
    assert isinstance(body, dict)
    if response.status_code >= 400:
        assert isinstance(body.get("error"), str) and body["error"], body


class Socket:
    """A pusher-js-like WebSocket client: just enough to subscribe and wait for events."""

    def __init__(self, ws: Any, socket_id: str) -> None:
        self.ws = ws
        self.socket_id = socket_id

    async def send(self, event: str, data: Any, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"event": event, "data": data}
        if channel is not None:
            frame["channel"] = channel
        await self.ws.send(json.dumps(frame))

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def wait_for(self, event: str, channel: str | None = None, timeout: float = 5) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            frame = await self.next(max(remaining, 0.01))
            if frame["event"] == event and (channel is None or frame.get("channel") == channel):
                return frame

    async def nothing(self, within: float = 0.5) -> None:
        """Assert no frame (other than a pong) arrives within ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            while True:
                frame = await self.next(within)
                assert frame["event"] == "pusher:pong", frame

    async def subscribe(self, channel: str, **extra: Any) -> dict[str, Any]:
        await self.send("pusher:subscribe", {"channel": channel, **extra})
        frame = await self.next()
        assert frame["event"] == "pusher_internal:subscription_succeeded", frame
        assert frame["channel"] == channel
        return frame

    async def subscribe_presence(
        self, server: Any, channel: str, user_id: str, info: Any = None
    ) -> dict[str, Any]:
        custom: dict[str, Any] = {"user_id": user_id}
        if info is not None:
            custom["user_info"] = info
        auth = server.pusher().authenticate(channel, self.socket_id, custom)
        return await self.subscribe(channel, auth=auth["auth"], channel_data=auth["channel_data"])

    async def sign_in(self, server: Any, user_id: str) -> None:
        auth = server.pusher().authenticate_user(self.socket_id, {"id": user_id})
        await self.send("pusher:signin", {"auth": auth["auth"], "user_data": auth["user_data"]})
        frame = await self.wait_for("pusher:signin_success")
        assert json.loads(json.loads(frame["data"])["user_data"])["id"] == user_id


@contextlib.asynccontextmanager
async def connect(server: Any, key: str | None = None) -> AsyncIterator[Socket]:
    async with websockets.connect(server.ws_url(key)) as ws:
        established = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert established["event"] == "pusher:connection_established", established
        yield Socket(ws, json.loads(established["data"])["socket_id"])
