"""The admin in a real browser: Debian's headless chromium logs in to a running server and lists the apps.

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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets

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


@needs_chromium
async def test_log_in_and_see_the_app_list(start_server, page: Page, tmp_path: Path) -> None:
    server = start_server()
    await asyncio.to_thread(
        server.manage,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_superuser('admin', 'admin@example.com', '{PASSWORD}')",
    )
    app_id, key, secret = await asyncio.to_thread(
        server.create_app, name="browser-shop", max_connections=5000
    )

    await page.goto(server.url("/admin/login/?next=/admin/realtime/app/"))
    assert await page.evaluate("document.title") == "Log in | Django site admin"
    page.events.clear()
    await page.evaluate(
        "document.getElementById('id_username').value = 'admin';"
        f"document.getElementById('id_password').value = '{PASSWORD}';"
        "document.getElementById('login-form').submit();"
    )
    await page.wait_event("Page.loadEventFired")
    assert await page.evaluate("location.pathname") == "/admin/realtime/app/"

    html = await page.evaluate("document.documentElement.outerHTML")
    rows = await page.evaluate(
        "Array.from(document.querySelectorAll('#result_list tbody tr')).map(r => r.innerText)"
    )
    assert any("browser-shop" in row and app_id in row and key in row for row in rows), rows
    assert any(server.app_id in row for row in rows), rows  # the default app from the environment
    assert secret not in html and server.secret not in html

    shot = await page.call("Page.captureScreenshot", format="png")
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG")
    (tmp_path / "admin-app-list.png").write_bytes(png)
    if target := os.environ.get("REALTIME_SCREENSHOT"):
        Path(target).write_bytes(png)

    # The change page of the app shows the secret only masked.
    await page.goto(server.url(f"/admin/realtime/app/{app_id}/change/"))
    change = await page.evaluate("document.documentElement.outerHTML")
    assert "browser-shop" in change and secret not in change and secret[-4:] in change


def test_the_admin_stylesheets_are_served(server) -> None:
    import requests

    response = requests.get(server.url("/static/admin/css/base.css"), timeout=10)
    assert response.status_code == 200
    assert "text/css" in response.headers["Content-Type"]
