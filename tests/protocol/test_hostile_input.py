"""What any client may send to the pure protocol functions: an answer, never an exception.

Generated inputs of each kind: tokens and signatures of any characters, JSON the standard does not
allow (NaN, Infinity, numbers out of range), nesting past the documented limit, and arbitrary text.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.protocol import frames, presence, signatures
from realtime.protocol.errors import PusherError
from realtime.protocol.limits import MAX_JSON_DEPTH

KEY, SECRET = "key", "secret"


@given(st.text())
def test_any_signature_is_an_answer(signature: str) -> None:
    assert signatures.verify(SECRET, "1.1:private-x", signature) is False


@given(st.text(), st.text())
def test_any_token_is_an_answer(key: str, signature: str) -> None:
    assert signatures.verify_token(KEY, SECRET, f"{key}:{signature}", "1.1:private-x") is False


@given(st.text(alphabet=st.characters(min_codepoint=0x80)))
def test_non_ascii_in_a_token_next_to_the_right_signature_fails(extra: str) -> None:
    good = signatures.channel_auth(KEY, SECRET, "1.1", "private-x")
    assert signatures.verify_token(KEY, SECRET, good, "1.1:private-x") is True
    assert signatures.verify_token(KEY, SECRET, good + extra, "1.1:private-x") is (extra == "")


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_any_text_decodes_or_is_a_value_error(text: str) -> None:
    try:
        value = frames.loads(text)
    except ValueError:
        return
    frames.dumps(value).encode()  # whatever is accepted can be relayed


@pytest.mark.parametrize(
    "text",
    ["NaN", "-Infinity", '{"a":Infinity}', "[1e400]", "-1e999", '{"n":' + "9" * 5000 + "}"],
)
def test_what_json_does_not_allow_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        frames.loads(text)


@given(st.integers(min_value=MAX_JSON_DEPTH + 1, max_value=5000), st.sampled_from(["[", '{"a":']))
@settings(max_examples=40)
def test_nesting_past_the_limit_is_refused(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    with pytest.raises(ValueError):
        frames.loads(opener * depth + "1" + closer * depth)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    depth = MAX_JSON_DEPTH
    assert frames.loads("[" * depth + "1" + "]" * depth) is not None
    # Many brackets side by side are not depth.
    assert len(frames.loads("[" + ",".join(["[]"] * 500) + "]")) == 500


@given(st.integers(min_value=MAX_JSON_DEPTH, max_value=2000))
@settings(max_examples=30)
def test_a_deep_presence_member_is_refused_with_the_protocols_error(depth: int) -> None:
    info = "[" * depth + "]" * depth
    channel_data = '{"user_id":"u","user_info":' + info + "}"
    with pytest.raises(PusherError):
        presence.parse_channel_data(channel_data, 1024)


@given(st.text(max_size=200))
def test_any_client_frame_decodes_or_is_a_pusher_error(text: str) -> None:
    try:
        frames.decode_client_frame(text)
    except PusherError:
        pass


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(), st.lists, max_leaves=20))
def test_any_value_as_frame_data_decodes_or_is_a_pusher_error(data: object) -> None:
    text = json.dumps({"event": "client-x", "channel": "private-a", "data": data})
    try:
        frames.decode_client_frame(text)
    except PusherError:
        pass
