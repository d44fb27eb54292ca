"""Hostile HTTP requests to Realtime's paths, in process: the API's JSON answer, never a 5xx.

Generated paths under the API's prefixes, query strings of any bytes and size, headers of any
bytes, and bodies declared larger than the limit (refused before any of it is read).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.api.asgi import MAX_BODY_BYTES
from realtime.asgi import realtime_application
from realtime.models import App
from realtime.runtime import get_runtime

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_runtime")]
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
async def app() -> App:
    return await App.objects.acreate(id="4242", key="hostile-http-key", secret="hostile-http-secret")


async def call(
    path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None, body: bytes | None = b""
) -> tuple[int, Any]:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "root_path": "",
        "headers": headers or [(b"content-type", b"application/json")],
        "server": ("127.0.0.1", 6001),
        "client": ("127.0.0.1", 5555),
    }
    communicator = ApplicationCommunicator(realtime_application(), scope)
    if body is not None:
        await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(5)
    content = await communicator.receive_output(5)
    await communicator.wait(1)
    assert start["type"] == "http.response.start"
    return start["status"], json.loads(content["body"])


def assert_api_answer(status: int, body: Any) -> None:
    assert status < 500, body
    if status >= 400:
        assert isinstance(body, dict) and isinstance(body.get("error"), str), body


@given(rest=st.text(min_size=0, max_size=60), prefix=st.sampled_from(["/apps/", "/users/"]))
@SETTINGS
async def test_any_path_under_the_api_is_a_json_answer(app: App, prefix: str, rest: str) -> None:
    status, body = await call(prefix + rest)
    assert_api_answer(status, body)


@pytest.mark.parametrize("path", ["/users/x", "/apps/x\ny", "/apps/", "/users/", "/apps/4242/events/extra"])
async def test_unknown_api_paths_are_json_404(app: App, path: str) -> None:
    assert await call(path) == (404, {"error": "Not found"})


@given(query=st.binary(max_size=300))
@SETTINGS
async def test_any_query_string_bytes_are_an_answer(app: App, query: bytes) -> None:
    status, body = await call("/apps/4242/events", query)
    assert_api_answer(status, body)


@given(
    name=st.sampled_from(
        ["auth_timestamp", "auth_key", "auth_version", "auth_signature", "body_md5", "info"]
    ),
    value=st.one_of(
        st.text(max_size=50), st.integers().map(str), st.just("1" + "0" * 309), st.just("9" * 5000)
    ),
)
@SETTINGS
async def test_any_auth_parameter_value_is_an_answer(app: App, name: str, value: str) -> None:
    params = {"auth_key": app.key, "auth_timestamp": "1", "auth_version": "1.0", "auth_signature": "x"}
    params[name] = value
    query = "&".join(f"{k}={v}" for k, v in params.items()).encode("utf-8", "surrogatepass")
    status, body = await call("/apps/4242/events", query)
    assert_api_answer(status, body)


async def test_a_huge_timestamp_is_a_401(app: App) -> None:
    query = f"auth_key={app.key}&auth_timestamp=1{'0' * 309}&auth_version=1.0&auth_signature=x".encode()
    assert await call("/apps/4242/events", query) == (401, {"error": "auth_timestamp must be an integer"})


@given(headers=st.lists(st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=60)), max_size=6))
@SETTINGS
async def test_any_header_bytes_are_an_answer(app: App, headers: list[tuple[bytes, bytes]]) -> None:
    lowered = [(name.lower(), value) for name, value in headers]
    status, body = await call("/apps/4242/events", b"", lowered)
    assert_api_answer(status, body)


@pytest.mark.parametrize("length", [MAX_BODY_BYTES + 1, 10 * 1024 * 1024, 10**30])
async def test_a_body_declared_too_large_is_refused_before_it_is_read(app: App, length: int) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    # No body is sent at all: an answer that waited for it would never come.
    assert await call("/apps/4242/events", b"", headers, body=None) == (
        413,
        {"error": "Request body too large"},
    )


async def test_a_body_streaming_past_the_limit_is_cut_off(app: App) -> None:
    assert await call("/apps/4242/events", body=b"x" * (MAX_BODY_BYTES + 1)) == (
        413,
        {"error": "Request body too large"},
    )


async def test_no_metric_series_from_client_strings(app: App) -> None:
    await call("/apps/4242/whatever-" + "x" * 50)
    await call("/apps/no-such-app/events")
    labels = {value for counter in get_runtime().stats.counters.values() for key in counter for value in key}
    assert not any("whatever" in value or "no-such-app" in value for value in labels), labels
