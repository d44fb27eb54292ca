"""Client frame decoding and server frame encoding.

Double encoding and the event catalogue:
https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#double-encoding
https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#events
"""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.protocol import errors, frames, wsframe
from realtime.protocol.errors import PusherError


def test_decode_a_subscribe_frame() -> None:
    frame = frames.decode_client_frame('{"event":"pusher:subscribe","data":{"channel":"a"}}')
    assert frame == {"event": "pusher:subscribe", "channel": None, "data": {"channel": "a"}}


def test_decode_a_client_event_with_string_data() -> None:
    frame = frames.decode_client_frame('{"event":"client-x","channel":"private-a","data":"{\\"a\\":1}"}')
    assert frame == {"event": "client-x", "channel": "private-a", "data": '{"a":1}'}


def test_decode_ignores_unknown_fields_and_missing_data() -> None:
    frame = frames.decode_client_frame('{"event":"pusher:ping","extra":1}')
    assert frame == {"event": "pusher:ping", "channel": None, "data": None}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{",
        '{"event":"x",}',
        "[]",
        '"pusher:ping"',
        "1",
        "null",
        "{}",
        '{"event":null}',
        '{"event":""}',
        '{"event":1}',
        '{"event":["x"]}',
        '{"event":"x","channel":1}',
        '{"event":"x","channel":{"a":1}}',
        # Deep nesting raises RecursionError in the stdlib parser: it must still be a protocol error.
        '{"event":"x","data":' + "[" * 5000 + "]" * 5000 + "}",
        "[" * 100_000,
        # A lone surrogate parses but could never be relayed as UTF-8.
        '{"event":"client-x","channel":"private-a","data":"\\ud800"}',
        '{"event":"client-x","channel":"private-a","data":{"\\udfff":1}}',
        '{"event":"x","data":' + "9" * 5000 + "}",  # int too long to convert
    ],
)
def test_decode_errors_are_pusher_errors_that_keep_the_socket_open(text: str) -> None:
    with pytest.raises(PusherError) as info:
        frames.decode_client_frame(text)
    assert info.value.code == errors.GENERIC_ERROR
    assert not info.value.closes


def test_decode_accepts_a_valid_surrogate_pair_escape() -> None:
    frame = frames.decode_client_frame('{"event":"client-x","data":"\\ud83d\\ude00 \\\\ud800"}')
    assert frame["data"] == "\U0001f600 \\ud800"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_decode_never_raises_anything_but_pusher_error(text: str) -> None:
    try:
        frames.decode_client_frame(text)
    except PusherError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=20,
    )
)
def test_client_data_round_trips(data: object) -> None:
    text = json.dumps({"event": "client-x", "channel": "private-a", "data": data})
    assert frames.decode_client_frame(text)["data"] == data


def test_loads_turns_every_failure_into_value_error() -> None:
    for text in ("[" * 3000, '"\\udc00"', "{", "1e999999999999x"):
        with pytest.raises(ValueError):
            frames.loads(text)
    assert frames.loads('{"a":[1,2]}') == {"a": [1, 2]}


def test_server_data_objects_are_double_encoded() -> None:
    text = frames.encode_event("pusher_internal:subscription_count", "a", {"subscription_count": 3})
    frame = json.loads(text)
    assert isinstance(frame["data"], str)
    assert json.loads(frame["data"]) == {"subscription_count": 3}


def test_string_data_is_sent_exactly_as_published() -> None:
    published = '{"some":"data"}'
    frame = json.loads(frames.encode_event("my-event", "my-channel", published))
    assert frame == {"event": "my-event", "channel": "my-channel", "data": published}


def test_encoding_is_compact_and_keeps_unicode() -> None:
    text = frames.encode_event("e", "c", "héllo ✓")
    assert text == '{"event":"e","channel":"c","data":"héllo ✓"}'


def test_optional_fields_are_omitted() -> None:
    assert json.loads(frames.encode_event("e")) == {"event": "e"}
    relayed = json.loads(frames.encode_event("client-x", "presence-a", "d", user_id="7"))
    assert relayed == {"event": "client-x", "channel": "presence-a", "data": "d", "user_id": "7"}


def test_connection_established() -> None:
    frame = json.loads(frames.connection_established("123.456", 120))
    assert frame["event"] == "pusher:connection_established"
    assert isinstance(frame["data"], str)
    assert json.loads(frame["data"]) == {"socket_id": "123.456", "activity_timeout": 120}


def test_error_frames() -> None:
    frame = json.loads(frames.error(4301, "rate limited", "private-a"))
    assert frame["event"] == "pusher:error"
    assert frame["channel"] == "private-a"
    assert json.loads(frame["data"]) == {"code": 4301, "message": "rate limited"}
    # The hosted service sends code null for e.g. a bad subscription signature.
    assert json.loads(json.loads(frames.error(None, "Invalid signature"))["data"])["code"] is None


def test_subscription_frames() -> None:
    public = json.loads(frames.subscription_succeeded("a"))
    assert public == {"event": "pusher_internal:subscription_succeeded", "channel": "a", "data": "{}"}
    presence = {"ids": ["1"], "hash": {"1": {"name": "x"}}, "count": 1}
    frame = json.loads(frames.subscription_succeeded("presence-a", presence))
    assert json.loads(frame["data"]) == {"presence": presence}
    error = json.loads(frames.subscription_error("private-a", "AuthError", "bad", 401))
    assert error["event"] == "pusher:subscription_error"
    assert json.loads(error["data"]) == {"type": "AuthError", "error": "bad", "status": 401}
    assert json.loads(frames.cache_miss("cache-a")) == {"event": "pusher:cache_miss", "channel": "cache-a"}


def test_presence_member_frames() -> None:
    added = json.loads(frames.member_added("presence-a", "1", {"name": "x"}))
    assert added["event"] == "pusher_internal:member_added"
    assert json.loads(added["data"]) == {"user_id": "1", "user_info": {"name": "x"}}
    assert json.loads(json.loads(frames.member_added("presence-a", "1", None))["data"]) == {"user_id": "1"}
    removed = json.loads(frames.member_removed("presence-a", "1"))
    assert json.loads(removed["data"]) == {"user_id": "1"}


def test_ping_pong_signin_and_watchlist() -> None:
    assert json.loads(frames.PING) == {"event": "pusher:ping", "data": "{}"}
    assert json.loads(frames.PONG) == {"event": "pusher:pong", "data": "{}"}
    user_data = '{"id":"12345"}'
    signin = json.loads(frames.signin_success(user_data))
    assert json.loads(signin["data"]) == {"user_data": user_data}
    events = [{"name": "online", "user_ids": ["1"]}]
    watch = json.loads(frames.watchlist_events(events))
    assert watch["event"] == "pusher_internal:watchlist_events"
    assert json.loads(watch["data"]) == {"events": events}


@pytest.mark.parametrize(("length", "header"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_websocket_text_frame(length: int, header: int) -> None:
    payload = b"x" * length
    frame = wsframe.text_frame(payload)
    assert frame[0] == 0x81  # FIN + text opcode
    assert frame[1] & 0x80 == 0  # server frames are not masked
    assert len(frame) == header + length
    assert frame[header:] == payload
    if header == 2:
        assert frame[1] == length
    elif header == 4:
        assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == length
    else:
        assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == length
