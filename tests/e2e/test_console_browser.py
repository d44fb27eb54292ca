"""The admin console in Debian's headless chromium against a running server: a pusher-js client
appears live, a test event published from the form reaches both the stream and the client, the
filters work, and the pages fit 1280 px and a narrow window. Screenshots are kept as artifacts
(``REALTIME_SCREENSHOT_CONSOLE`` names where to copy the console's, for the README)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_pusher_js import JsClient
from tests.realtime.test_admin_browser import Page, _chromium, log_in, needs_chromium


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Page]:
    async for page in _chromium(tmp_path):
        yield page


async def eventually(page: Page, expression: str, what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await page.evaluate(expression)):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)
    return value


ROWS = "Array.from(document.querySelectorAll('#rt-stream tr.rt-record')).map(r => r.innerText)"


@needs_chromium
async def test_watch_a_client_and_publish_from_the_console(
    start_server: Callable[..., Any], browser: Page, tmp_path: Path
) -> None:
    page = browser
    server = start_server({"DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true"})
    console = f"/admin/realtime/app/{server.app_id}/console/"
    await log_in(page, server, console)
    assert await page.evaluate("document.title") == f"Console: {server.app_id} | Realtime"
    await eventually(page, "document.getElementById('rt-status').textContent === 'live'", "stream live")

    client = JsClient("console-client", {"host": server.host, "port": server.port, "key": server.key})
    try:
        socket_id = client.connected()
        client.subscribe("console-news", bind=["test-event"])
        rows = await eventually(
            page,
            f"{ROWS}.filter(r => r.includes('subscribed') && r.includes('console-news'))",
            "subscription",
        )
        assert socket_id in rows[0]
        assert any("connected" in row and socket_id in row for row in await page.evaluate(ROWS))
        await eventually(page, "document.getElementById('fig-connections').textContent === '1'", "figures")

        since = client.mark()
        await page.evaluate(
            "document.getElementById('rt-pub-channel').value = 'console-news';"
            "document.getElementById('rt-pub-event').value = 'test-event';"
            "document.getElementById('rt-pub-data').value = '{\"from\": \"console\"}';"
            "document.querySelector('#rt-publish button[type=submit]').click();"
        )
        result = await eventually(
            page,
            "document.getElementById('rt-publish-result').textContent.startsWith('Published') && "
            "document.getElementById('rt-publish-result').textContent",
            "the publish result",
        )
        assert result == "Published: {}"
        event = client.wait_for(since, type="event", channel="console-news", event="test-event")
        assert event["data"] == {"from": "console"}
        await eventually(
            page, f"{ROWS}.some(r => r.includes('api_event') && r.includes('console-news'))", "api event row"
        )
        # The channel inspector lists the channel with its subscriber.
        await page.evaluate("document.getElementById('rt-refresh').click()")
        await eventually(
            page,
            "document.querySelector('#rt-channels tbody').innerText.includes('console-news')",
            "inspector",
        )

        # Without the navigation sidebar, for the README's picture of the whole console.
        await page.evaluate("document.getElementById('toggle-nav-sidebar').click()")
        rates_shown = "document.getElementById('fig-out').textContent !== '\\u2013'"  # the placeholder
        await eventually(page, rates_shown, "message rates")
        png = await page.screenshot(tmp_path / "admin-console.png")
        if target := os.environ.get("REALTIME_SCREENSHOT_CONSOLE"):
            Path(target).write_bytes(png)

        # Filters: by channel prefix, then by kind.
        await page.evaluate(
            "{ const f = document.getElementById('rt-channel'); f.value = 'nothing-'; "
            "f.dispatchEvent(new Event('input')); }"
        )
        assert await page.evaluate(ROWS) == []
        await page.evaluate(
            "{ const f = document.getElementById('rt-channel'); f.value = 'console-'; "
            "f.dispatchEvent(new Event('input'));"
            "const k = document.getElementById('rt-kind'); k.value = 'api_event'; "
            "k.dispatchEvent(new Event('change')); }"
        )
        rows = await page.evaluate(ROWS)
        assert rows and all("api_event" in row for row in rows)
        html = await page.evaluate("document.documentElement.outerHTML")
        assert server.secret not in html
        fits = "document.documentElement.scrollWidth <= window.innerWidth"
        assert await page.evaluate(fits), "the console scrolls sideways at 1280 px"
        await page.call(
            "Emulation.setDeviceMetricsOverride", width=600, height=900, deviceScaleFactor=1, mobile=False
        )
        assert await page.evaluate(fits), "the console scrolls sideways at 600 px"
        await page.screenshot(tmp_path / "admin-console-narrow.png")
        await page.call("Emulation.clearDeviceMetricsOverride")
    finally:
        client.close()

    # The app list fits 1280 px and shows live connections; the landing page links the admin.
    await page.goto(server.url("/admin/realtime/app/"))
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    headers = await page.evaluate(
        "Array.from(document.querySelectorAll('#result_list thead th')).map(h => h.innerText)"
    )
    assert any("CONNECTIONS" in header.upper() for header in headers), headers
    assert await page.evaluate("document.getElementById('site-name').innerText") == "Realtime"
    await page.goto(server.url("/"))
    assert await page.evaluate("document.querySelector('a[href=\"/admin/\"]') !== null")
    assert "Pusher-compatible" in await page.evaluate("document.body.innerText")


def test_the_stream_refuses_anyone_not_logged_in(server) -> None:
    import requests

    response = requests.get(server.url(f"/admin/realtime/app/{server.app_id}/console/stream/"), timeout=10)
    assert response.status_code == 403
    assert json.loads(response.text) == {"error": "Staff members with access to apps only"}
