"""The admin in a real browser: Debian's headless chromium logs in to a running server, lists the apps,
and redelivers a failed webhook delivery from the delivery log.

Driven through the DevTools protocol over a WebSocket (no selenium): log in through the form,
open the app list, read the DOM and take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.pusher_client import PusherSocket
from tests.webhook_receiver import Answer, Receiver, hooks

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASSWORD = "browser-test-password-0123"

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (bin/test.d/chromium.sh)"
)


class Page:
    """One page target: send DevTools commands, wait for their results and for page events."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if message.get("id") == call_id:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    async def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(index)
            message = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic()))
            self.events.append(message)

    async def goto(self, url: str) -> None:
        self.events.clear()
        await self.call("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def follow(self, expression: str) -> None:
        """Evaluate ``expression`` (a click, a submit) and wait for the page it leads to."""
        self.events.clear()
        await self.evaluate(expression)
        await self.wait_event("Page.loadEventFired")

    async def screenshot(self, path: Path) -> bytes:
        shot = await self.call("Page.captureScreenshot", format="png")
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG")
        path.write_bytes(png)
        return png


async def _chromium(tmp_path: Path) -> AsyncIterator[Page]:
    assert CHROMIUM is not None
    log = tmp_path / "chromium.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=1280,800",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # chromium's helpers share the group, so one killpg ends them all
        )
    try:
        browser_url = None
        for _ in range(300):
            found = re.search(r"DevTools listening on (ws://\S+)", log.read_text(errors="replace"))
            if found:
                browser_url = found.group(1)
                break
            await asyncio.sleep(0.1)
        assert browser_url, log.read_text(errors="replace")
        port = re.search(r":(\d+)/", browser_url).group(1)  # type: ignore[union-attr]
        targets = await asyncio.to_thread(_json_list, port)
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with websockets.connect(page_url, max_size=None) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            yield page
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _json_list(port: str) -> list[dict[str, Any]]:
    import requests

    return requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async for page in _chromium(tmp_path):
        yield page


async def log_in(page: Page, server: Any, path: str) -> None:
    """Make a superuser on ``server``, log in as it through the form and land on ``path``."""
    await asyncio.to_thread(
        server.manage,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_superuser('admin', 'admin@example.com', '{PASSWORD}')",
    )
    await page.goto(server.url(f"/admin/login/?next={path}"))
    assert await page.evaluate("document.title") == "Log in | Realtime"
    await page.follow(
        "document.getElementById('id_username').value = 'admin';"
        f"document.getElementById('id_password').value = '{PASSWORD}';"
        "document.getElementById('login-form').submit();"
    )
    assert await page.evaluate("location.pathname") == path


@needs_chromium
async def test_log_in_and_see_the_app_list(start_server, page: Page, tmp_path: Path) -> None:
    server = start_server()
    app_id, key, secret = await asyncio.to_thread(
        server.create_app, name="browser-shop", max_connections=5000
    )
    await log_in(page, server, "/admin/realtime/app/")

    html = await page.evaluate("document.documentElement.outerHTML")
    rows = await page.evaluate(
        "Array.from(document.querySelectorAll('#result_list tbody tr')).map(r => r.innerText)"
    )
    assert any("browser-shop" in row and app_id in row and key in row for row in rows), rows
    assert any(server.app_id in row for row in rows), rows  # the default app from the environment
    assert secret not in html and server.secret not in html

    png = await page.screenshot(tmp_path / "admin-app-list.png")
    if target := os.environ.get("REALTIME_SCREENSHOT"):
        Path(target).write_bytes(png)

    # The change page of the app shows the secret only masked.
    await page.goto(server.url(f"/admin/realtime/app/{app_id}/change/"))
    change = await page.evaluate("document.documentElement.outerHTML")
    assert "browser-shop" in change and secret not in change and secret[-4:] in change


@pytest.fixture
def failing_receiver(receivers: Callable[..., Receiver]) -> Receiver:
    """A loopback webhook endpoint answering 500 (until its ``default`` is changed)."""
    return receivers(default=Answer(500))


async def rows_text(page: Page) -> list[str]:
    return await page.evaluate(
        "Array.from(document.querySelectorAll('#result_list tbody tr')).map(r => r.innerText)"
    )


@needs_chromium
async def test_redeliver_a_failed_delivery(
    start_server, failing_receiver: Receiver, page: Page, tmp_path: Path
) -> None:
    receiver = failing_receiver
    # Retried for 2 s at most: the delivery fails for good after a few attempts.
    server = start_server(
        {
            "DEFAULT_APP_WEBHOOKS": hooks(receiver.url, ["channel_occupied"]),
            "WEBHOOK_RETRY_SECONDS": "2",
            "WEBHOOK_POLL_SECONDS": "0.2",
        }
    )
    async with await PusherSocket.connect(server.ws_url()) as client:
        await client.subscribe("browser-hooked")
    log = "/admin/realtime/webhookdelivery/"
    await log_in(page, server, log)

    await page.follow(
        "document.querySelector('#changelist-filter a[href=\"?status__exact=failed\"]').click()"
    )
    assert await page.evaluate("location.search") == "?status__exact=failed"
    deadline = time.monotonic() + 20
    while not await rows_text(page):
        assert time.monotonic() < deadline, "the delivery did not fail"
        await asyncio.sleep(0.5)
        await page.goto(server.url(log + "?status__exact=failed"))
    [row] = await rows_text(page)
    assert "channel_occupied" in row and receiver.url in row and "HTTP 500" in row
    delivery_id = await page.evaluate("document.querySelector('#result_list input.action-select').value")
    attempts = receiver.snapshot()
    assert attempts and all(hit.status == 500 for hit in attempts)
    assert {hit.delivery_id for hit in attempts} == {delivery_id}

    receiver.default = Answer(200)  # the receiver is back
    await page.evaluate(f"document.querySelector('input.action-select[value=\"{delivery_id}\"]').click()")
    await page.evaluate("document.querySelector('select[name=action]').value = 'redeliver'")
    await page.follow("document.querySelector('button[name=index]').click()")
    messages = await page.evaluate("document.querySelector('ul.messagelist').innerText")
    assert "1 failed delivery queued for redelivery" in messages

    await receiver.wait(
        lambda: any(hit.status == 200 for hit in receiver.snapshot()), "the redelivery", timeout=10
    )
    [redelivered] = [hit for hit in receiver.snapshot() if hit.status == 200]
    assert redelivered.delivery_id == delivery_id
    assert redelivered.body == attempts[0].body  # the same request, sent again

    deadline = time.monotonic() + 10
    while True:
        await page.goto(server.url(f"{log}?q={delivery_id}"))
        [row] = await rows_text(page)
        if "delivered" in row:
            break
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.3)
    assert "HTTP 200" in row
    # Without the navigation sidebar the whole row fits the screenshot.
    await page.evaluate("document.getElementById('toggle-nav-sidebar').click()")
    await page.screenshot(tmp_path / "admin-delivery-log.png")
    await page.goto(server.url(f"{log}{delivery_id}/change/"))
    detail = await page.evaluate("document.getElementById('content').innerText")
    assert "delivered" in detail and "browser-hooked" in detail
    assert server.secret not in await page.evaluate("document.documentElement.outerHTML")


def test_the_admin_stylesheets_are_served(server) -> None:
    import requests

    response = requests.get(server.url("/static/admin/css/base.css"), timeout=10)
    assert response.status_code == 200
    assert "text/css" in response.headers["Content-Type"]
