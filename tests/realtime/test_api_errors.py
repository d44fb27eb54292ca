"""Every error path of the HTTP API with hand-signed requests: status, JSON ``error``, never a 500.

Status codes: https://pusher.com/docs/channels/library_auth_reference/rest-api/#general
Request signing: https://pusher.com/docs/channels/library_auth_reference/rest-api/#authentication
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
import requests

from .api_client import Api, check_response, signed_query

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


@pytest.fixture(scope="module")
def api(server) -> Api:
    return Api(server)


def event(**overrides: object) -> dict[str, object]:
    return {"name": "e", "channel": "errors-test", "data": "x", **overrides}


def error_of(response: requests.Response) -> str:
    return response.json()["error"]


# --- signing ------------------------------------------------------------------------------------


def test_a_correctly_signed_request_succeeds(api: Api) -> None:
    response = api.trigger(event())
    assert (response.status_code, response.json()) == (200, {})


def test_bad_signature(api: Api) -> None:
    response = api.trigger(event(), secret="not-the-secret")
    assert response.status_code == 401
    assert "signature" in error_of(response).lower()


def test_signature_over_another_path_or_method_fails(api: Api) -> None:
    assert api.trigger(event(), sign_path=api.app_path("/batch_events")).status_code == 401
    body = json.dumps(event()).encode()
    query = signed_query("GET", api.app_path("/events"), key=api.key, secret=api.secret, body=body)
    assert api.request("POST", api.app_path("/events"), body=body, query=query).status_code == 401


def test_tampered_parameters_fail(api: Api) -> None:
    query = signed_query("GET", api.app_path("/channels"), key=api.key, secret=api.secret)
    query["filter_by_prefix"] = "presence-"
    assert api.request("GET", api.app_path("/channels"), query=query, content_type=None).status_code == 401


@pytest.mark.parametrize("skew", [-601, 601, -10_000])
def test_stale_or_future_timestamp(api: Api, skew: int) -> None:
    response = api.trigger(event(), timestamp=int(time.time()) + skew)
    assert response.status_code == 401
    assert "timestamp" in error_of(response).lower()


@pytest.mark.parametrize("skew", [-590, 590])
def test_timestamp_inside_the_600_second_window(api: Api, skew: int) -> None:
    assert api.trigger(event(), timestamp=int(time.time()) + skew).status_code == 200


@pytest.mark.parametrize("timestamp", ["abc", "", "1.5"])
def test_malformed_timestamp(api: Api, timestamp: str) -> None:
    assert api.trigger(event(), timestamp=timestamp).status_code == 401  # type: ignore[arg-type]


def test_wrong_body_md5(api: Api) -> None:
    response = api.trigger(event(), body_md5="0" * 32)
    assert response.status_code == 401
    assert "body_md5" in error_of(response)


def test_body_md5_is_required_for_a_body(api: Api) -> None:
    assert api.trigger(event(), body_md5=None).status_code == 401


def test_body_md5_of_another_body_fails(api: Api) -> None:
    """The signature covers body_md5, and body_md5 covers the body: a swapped body is caught."""
    other = json.dumps(event(data="y")).encode()
    query = signed_query(
        "POST", api.app_path("/events"), key=api.key, secret=api.secret, body=json.dumps(event()).encode()
    )
    assert api.request("POST", api.app_path("/events"), body=other, query=query).status_code == 401


def test_get_with_body_md5_of_the_empty_body_is_accepted(api: Api) -> None:
    """pusher-http-python adds body_md5 to every request, GETs included."""
    response = api.get("/channels", body_md5=EMPTY_MD5)
    assert (response.status_code, response.json()) == (200, {"channels": response.json()["channels"]})
    assert api.get("/channels").status_code == 200
    assert api.get("/channels", body_md5="0" * 32).status_code == 401


@pytest.mark.parametrize("missing", ["auth_key", "auth_timestamp", "auth_version", "auth_signature"])
def test_missing_auth_params(api: Api, missing: str) -> None:
    body = json.dumps(event()).encode()
    query = signed_query("POST", api.app_path("/events"), key=api.key, secret=api.secret, body=body)
    del query[missing]
    response = api.request("POST", api.app_path("/events"), body=body, query=query)
    assert response.status_code == 401
    assert missing in error_of(response)


def test_no_query_at_all(api: Api) -> None:
    response = api.request("GET", api.app_path("/channels"), query={}, content_type=None)
    assert response.status_code == 401


def test_unsupported_auth_version(api: Api) -> None:
    body = json.dumps(event()).encode()
    query = signed_query(
        "POST",
        api.app_path("/events"),
        key=api.key,
        secret=api.secret,
        body=body,
        params={"auth_version": "2.0"},
    )
    assert api.request("POST", api.app_path("/events"), body=body, query=query).status_code == 401


def test_key_of_another_app(server, api: Api) -> None:
    _, other_key, other_secret = server.create_app()
    assert api.trigger(event(), key=other_key, secret=other_secret).status_code == 401


def test_unknown_app(server) -> None:
    response = Api(server, app_id="no-such-app").trigger(event())
    assert response.status_code == 404
    assert Api(server, app_id="no-such-app").get("/channels").status_code == 404


def test_disabled_app(server) -> None:
    app_id, key, secret = server.create_app(disabled=True)
    disabled = Api(server, app_id=app_id, key=key, secret=secret)
    response = disabled.trigger(event())
    assert response.status_code == 403
    assert "disabled" in error_of(response).lower()
    assert disabled.get("/channels").status_code == 403
    # A bad signature is still a 401: a disabled app does not tell strangers it exists.
    assert disabled.trigger(event(), secret="wrong").status_code == 401


# --- the unprefixed terminate route resolves the app from auth_key ---------------------------------


def test_unprefixed_terminate_route(api: Api) -> None:
    path = "/users/someone/terminate_connections"
    assert api.request("POST", path, json_body={}).status_code == 200
    assert api.request("POST", path, json_body={}, secret="wrong").status_code == 401
    assert api.request("POST", path, json_body={}, key="unknown-key").status_code == 404
    query = signed_query("POST", path, key=api.key, secret=api.secret, body=b"{}")
    del query["auth_key"]
    assert api.request("POST", path, body=b"{}", query=query).status_code == 401


def test_terminate_signed_over_the_wrong_route_fails(api: Api) -> None:
    response = api.request(
        "POST",
        api.app_path("/users/someone/terminate_connections"),
        json_body={},
        sign_path="/users/someone/terminate_connections",
    )
    assert response.status_code == 401


# --- limits ------------------------------------------------------------------------------------


def test_101_channels(api: Api) -> None:
    response = api.trigger({"name": "e", "channels": [f"c{i}" for i in range(101)], "data": "x"})
    assert response.status_code == 400
    assert "100" in error_of(response)
    assert (
        api.trigger({"name": "e", "channels": [f"c{i}" for i in range(100)], "data": "x"}).status_code == 200
    )


def test_11_event_batch(api: Api) -> None:
    response = api.batch([event() for _ in range(11)])
    assert response.status_code == 400
    assert "10" in error_of(response)
    assert api.batch([event() for _ in range(10)]).status_code == 200


def test_data_over_10_kb(api: Api) -> None:
    response = api.trigger(event(data="x" * (10 * 1024 + 1)))
    assert response.status_code == 413
    assert api.batch([event(), event(data="x" * (10 * 1024 + 1))]).status_code == 413
    # Bytes, not characters: 5,121 two-byte characters are 10,242 bytes.
    assert api.trigger(event(data="é" * 5121)).status_code == 413


def test_data_of_exactly_10_kb(api: Api) -> None:
    assert api.trigger(event(data="x" * (10 * 1024))).status_code == 200
    assert api.batch([event(data="x" * (10 * 1024))] * 10).status_code == 200


def test_a_body_larger_than_django_accepts(api: Api) -> None:
    response = api.trigger(event(data="x" * (3 * 1024 * 1024)))
    assert response.status_code == 413


def test_per_app_limits(server) -> None:
    app_id, key, secret = server.create_app(
        max_event_payload_kb=1,
        max_event_channels_at_once=2,
        max_event_batch_size=2,
        max_channel_name_length=10,
    )
    small = Api(server, app_id=app_id, key=key, secret=secret)
    assert small.trigger(event(channel="c", data="x" * 1024)).status_code == 200
    assert small.trigger(event(channel="c", data="x" * 1025)).status_code == 413
    assert small.trigger({"name": "e", "channels": ["a", "b"], "data": "x"}).status_code == 200
    assert small.trigger({"name": "e", "channels": ["a", "b", "c"], "data": "x"}).status_code == 400
    assert small.batch([event(channel="c")] * 2).status_code == 200
    assert small.batch([event(channel="c")] * 3).status_code == 400
    assert small.trigger(event(channel="a" * 10)).status_code == 200
    assert small.trigger(event(channel="a" * 11)).status_code == 400


def test_backend_event_rate_limit(server) -> None:
    app_id, key, secret = server.create_app(max_backend_events_per_second=3)
    limited = Api(server, app_id=app_id, key=key, secret=secret)
    statuses = [limited.trigger(event()).status_code for _ in range(8)]
    assert 429 in statuses and statuses[0] == 200


def test_read_request_rate_limit(server) -> None:
    app_id, key, secret = server.create_app(max_read_requests_per_second=3)
    limited = Api(server, app_id=app_id, key=key, secret=secret)
    statuses = [limited.get("/channels").status_code for _ in range(8)]
    assert 429 in statuses and statuses[0] == 200


# --- bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"",
        b"not json",
        b"[]",
        b'"a string"',
        b"[" * 100_000,  # RecursionError in the stdlib parser
        b'{"name":"e","channel":"c","data":"\\ud800"}',  # a lone surrogate cannot be relayed
        b'{"name":"e","channel":"c","data":"\xff"}',  # not UTF-8
        b'{"name":"e","channel":"c","data":' + b"9" * 5000 + b"}",
    ],
)
def test_malformed_json(api: Api, body: bytes) -> None:
    assert api.request("POST", api.app_path("/events"), body=body).status_code == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type(api: Api, content_type: str | None) -> None:
    body = json.dumps(event()).encode()
    response = api.request("POST", api.app_path("/events"), body=body, content_type=content_type)
    assert response.status_code == 415


def test_content_type_with_charset_is_json(api: Api) -> None:
    body = json.dumps(event()).encode()
    response = api.request(
        "POST", api.app_path("/events"), body=body, content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"channel": "c", "data": "x"},  # no name
        {"name": "", "channel": "c", "data": "x"},
        {"name": "e" * 201, "channel": "c", "data": "x"},
        {"name": 5, "channel": "c", "data": "x"},
        {"name": "e", "channel": "c"},  # no data
        {"name": "e", "channel": "c", "data": {"an": "object"}},  # data must be a string
        {"name": "e", "data": "x"},  # no channel
        {"name": "e", "channels": [], "data": "x"},
        {"name": "e", "channels": "c", "data": "x"},
        {"name": "e", "channel": "c", "channels": ["c"], "data": "x"},
        {"name": "e", "channel": "bad channel", "data": "x"},
        {"name": "e", "channel": "a#b", "data": "x"},
        {"name": "e", "channel": "a" * 201, "data": "x"},
        {"name": "e", "channel": 5, "data": "x"},
        {"name": "e", "channels": ["private-encrypted-a", "private-encrypted-b"], "data": "x"},
        {"name": "e", "channel": "c", "data": "x", "socket_id": "abc"},
        {"name": "e", "channel": "c", "data": "x", "socket_id": "1.2\n"},
        {"name": "e", "channel": "c", "data": "x", "info": "user_count"},  # not presence
        {"name": "e", "channel": "c", "data": "x", "info": "subscription_count"},  # app setting off
        {"name": "e", "channel": "c", "data": "x", "info": "bogus"},
        {"name": "e", "channel": "c", "data": "x", "info": 5},
    ],
)
def test_invalid_events(api: Api, payload: dict[str, object]) -> None:
    assert api.trigger(payload).status_code == 400
    batch_item = {k: v for k, v in payload.items() if k != "channels"}
    if "channels" not in payload:
        assert api.batch([event(), batch_item]).status_code == 400


@pytest.mark.parametrize("batch", [None, [], "x", [1], [[]], {"name": "e"}])
def test_invalid_batches(api: Api, batch: object) -> None:
    assert api.request("POST", api.app_path("/batch_events"), json_body={"batch": batch}).status_code == 400


def test_send_to_user_channel_is_accepted_by_the_api(api: Api) -> None:
    """sockudo once rejected it (sockudo/sockudo#115); the SDKs' send_to_user posts exactly this."""
    assert api.trigger(event(channel="#server-to-user-42")).status_code == 200


def test_trigger_info_counts(api: Api) -> None:
    response = api.trigger(event(channel="presence-info-test", info="user_count"))
    assert response.json() == {"channels": {"presence-info-test": {"user_count": 0}}}
    response = api.batch([event(channel="presence-info-test", info="user_count"), event()])
    assert response.json() == {"batch": [{"user_count": 0}, {}]}


# --- queries ------------------------------------------------------------------------------------


def test_user_count_in_channel_lists_needs_the_presence_prefix(api: Api) -> None:
    assert api.get("/channels", params={"info": "user_count"}).status_code == 400
    assert (
        api.get("/channels", params={"info": "user_count", "filter_by_prefix": "private-"}).status_code == 400
    )
    response = api.get("/channels", params={"info": "user_count", "filter_by_prefix": "presence-"})
    assert response.status_code == 200
    assert api.get("/channels", params={"info": "subscription_count"}).status_code == 400


def test_users_on_a_non_presence_channel(api: Api) -> None:
    for channel in ("public-a", "private-a", "cache-a", "private-encrypted-a"):
        response = api.get(f"/channels/{channel}/users")
        assert response.status_code == 400, channel
    assert api.get("/channels/presence-a/users").json() == {"users": []}


def test_channel_info_attributes(api: Api) -> None:
    assert api.get("/channels/public-a", params={"info": "user_count"}).status_code == 400
    assert api.get("/channels/presence-a", params={"info": "subscription_count"}).status_code == 400
    assert api.get("/channels/public-a", params={"info": "cache"}).status_code == 400
    assert api.get("/channels/cache-a", params={"info": "cache"}).json() == {"occupied": False, "cache": None}
    assert api.get("/channels/bad%20name").status_code == 400
    assert api.get("/channels/" + "a" * 201).status_code == 400


def test_cache_channel_info_returns_the_last_event(api: Api) -> None:
    assert api.trigger(event(channel="cache-info-test", data="cached!")).status_code == 200
    info = api.get("/channels/cache-info-test", params={"info": "cache"}).json()
    assert info["cache"]["data"] == "cached!"
    assert 0 < info["cache"]["ttl"] <= 1800


@pytest.mark.parametrize(
    ("method", "rest"),
    [
        ("GET", "/events"),
        ("PUT", "/events"),
        ("POST", "/channels"),
        ("DELETE", "/channels/a"),
        ("BREW", "/events"),
    ],
)
def test_wrong_method(api: Api, method: str, rest: str) -> None:
    response = api.request(method, api.app_path(rest), json_body={})
    assert response.status_code == 405


@pytest.mark.parametrize("rest", ["/nope", "/events/", "/channels/a/b/c", ""])
def test_unknown_api_paths_answer_json(api: Api, rest: str) -> None:
    assert api.request("POST", api.app_path(rest), json_body={}).status_code == 404
    assert api.get(rest).status_code == 404


def test_too_many_query_parameters(api: Api) -> None:
    params = {f"p{i}": "1" for i in range(1500)}
    assert api.get("/channels", params=params).status_code == 400


def test_raw_garbage_requests(server) -> None:
    session = requests.Session()
    url = server.url(f"/apps/{server.app_id}/events")
    for response in (
        session.post(url, data=b"\x00\x01", timeout=10),
        session.post(url + "?" + urlencode({"auth_key": server.key}), timeout=10),
        session.get(url + "?auth_key=%ff%fe&auth_signature=%00", timeout=10),
    ):
        check_response(response)
        assert response.status_code in {401, 405}


def test_no_500_and_no_secret_in_the_server_output(server) -> None:
    output = server.output()
    assert server.secret not in output
    assert "Traceback" not in output, output
    assert "Internal server error" not in output
