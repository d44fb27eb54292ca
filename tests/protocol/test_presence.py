"""Presence channel_data and sign-in user_data parsing.

Presence limits: https://pusher.com/docs/channels/using_channels/presence-channels/
What is signed ("Presence channels", "User authentication"):
https://pusher.com/docs/channels/library_auth_reference/auth-signatures/
"""

from __future__ import annotations

import json

import pytest

from realtime.protocol import errors, presence
from realtime.protocol.errors import PusherError


def test_numeric_user_id_is_normalised_to_a_string() -> None:
    member = presence.parse_channel_data('{"user_id":10,"user_info":{"name":"Mr. Channels"}}', 2)
    assert member == presence.Member("10", {"name": "Mr. Channels"})


def test_string_user_id_and_missing_user_info() -> None:
    assert presence.parse_channel_data('{"user_id":"abc"}', 2) == presence.Member("abc", None)


@pytest.mark.parametrize(
    "channel_data",
    [
        '{"user_id":true}',
        '{"user_id":1.5}',
        '{"user_id":null}',
        '{"user_id":""}',
        '{"user_id":"a b"}',
        '{"user_id":["1"]}',
        '{"user_info":{}}',
        '{"user_id":"' + "u" * 129 + '"}',
        "[]",
        '"10"',
        "not json",
        "{",
        "[" * 1500,  # deep nesting inside the size limit
        '{"user_id":"1","user_info":"\\ud800"}',
    ],
)
def test_bad_channel_data_is_rejected_without_closing(channel_data: str) -> None:
    with pytest.raises(PusherError) as info:
        presence.parse_channel_data(channel_data, 2)
    assert not info.value.closes


@pytest.mark.parametrize("channel_data", [None, 10, {"user_id": 1}])
def test_channel_data_must_be_a_string(channel_data: object) -> None:
    with pytest.raises(PusherError):
        presence.parse_channel_data(channel_data, 2)


def _channel_data_of_size(size: int, filler: str = "x") -> str:
    base = '{"user_id":"1","user_info":{"f":""}}'
    padding = (size - len(base.encode())) // len(filler.encode())
    text = '{"user_id":"1","user_info":{"f":"' + filler * padding + '"}}'
    assert len(text.encode()) == size
    return text


def test_size_limit_is_in_bytes_and_inclusive() -> None:
    assert presence.parse_channel_data(_channel_data_of_size(2048), 2).user_id == "1"
    with pytest.raises(PusherError, match="larger than 2 KB"):
        presence.parse_channel_data(_channel_data_of_size(2049), 2)
    # Multi-byte characters count by their UTF-8 size.
    with pytest.raises(PusherError):
        presence.parse_channel_data(_channel_data_of_size(2050, "é"), 2)
    assert presence.parse_channel_data(_channel_data_of_size(1024), 1).user_id == "1"
    with pytest.raises(PusherError):
        presence.parse_channel_data(_channel_data_of_size(1025), 1)


def test_user_data_for_sign_in() -> None:
    user = presence.parse_user_data('{"id":"12345","user_info":{"n":1},"watchlist":["2","3","2"]}')
    assert user == presence.SignedInUser("12345", {"n": 1}, ("2", "3"))
    assert presence.parse_user_data('{"id":"1"}').watchlist == ()


@pytest.mark.parametrize(
    "user_data",
    [
        '{"id":12345}',  # sign-in ids must be strings (pusher-js user.ts)
        '{"id":""}',
        "{}",
        '{"id":"a b"}',
        '{"id":"1","watchlist":"2"}',
        '{"id":"1","watchlist":[2]}',
        "[]",
        "nope",
        "[" * 5000,
        '{"id":"\\ud800"}',
        None,
        {"id": "1"},
    ],
)
def test_bad_user_data_is_unauthorized(user_data: object) -> None:
    with pytest.raises(PusherError) as info:
        presence.parse_user_data(user_data)
    assert info.value.code == errors.UNAUTHORIZED
    assert info.value.closes


def test_members_payload() -> None:
    payload = presence.members_payload({"1": {"name": "a"}, "2": None})
    assert payload == {"ids": ["1", "2"], "hash": {"1": {"name": "a"}, "2": None}, "count": 2}
    assert json.loads(json.dumps(payload)) == payload
    assert presence.members_payload({}) == {"ids": [], "hash": {}, "count": 0}
