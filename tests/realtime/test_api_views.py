"""HTTP API views in process: what the wrapper counts and answers before any app is involved."""

from __future__ import annotations

import json

import pytest
from channels.testing import HttpCommunicator

from realtime.asgi import realtime_application
from realtime.runtime import get_runtime

pytestmark = pytest.mark.usefixtures("fresh_runtime")


async def request(method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    headers = [(b"content-type", b"application/json")]
    response = await HttpCommunicator(realtime_application(), method, path, body, headers).get_response()
    return response["status"], json.loads(response["body"])


async def test_unknown_methods_are_one_bounded_label() -> None:
    """Clients may send any method token; it must never become a metric label value."""
    for method in ("BREW", "PROPFIND", "X" * 100):
        status, body = await request(method, "/apps/1/events")
        assert status == 405
        assert "error" in body
    counted = get_runtime().stats.counters["http_requests"]
    labels = {labels[0] for labels in counted}
    assert "BREW" not in labels and "PROPFIND" not in labels
    assert ("other", "events", "405") in counted


async def test_unknown_api_path_is_json_404() -> None:
    assert await request("POST", "/apps/1/whatever/else", b"{}") == (404, {"error": "Not found"})
    assert ("POST", "not_found", "404") in get_runtime().stats.counters["http_requests"]


async def test_health_answers_without_the_host_application() -> None:
    assert await request("GET", "/health") == (200, {"status": "ok"})
    assert await request("GET", "/elsewhere") == (404, {"error": "Not found"})


@pytest.mark.django_db(transaction=True)
async def test_ready_starts_the_runtime_on_first_use() -> None:
    runtime = get_runtime()
    assert not runtime.started
    assert await request("GET", "/ready") == (200, {"status": "ready"})
    assert runtime.started
    await runtime.stop()
    assert await request("GET", "/ready") == (503, {"status": "unavailable", "reason": "draining"})
