"""Channel, sign-in, HTTP API and webhook signatures against the official worked examples.

SIG: https://pusher.com/docs/channels/library_auth_reference/auth-signatures/
REST: https://pusher.com/docs/channels/library_auth_reference/rest-api/#authentication
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from realtime.protocol import signatures

# The credentials of every worked example in the official docs (SIG, REST).
KEY = "278d425bdf160c739803"
SECRET = "7ad3773142a6692b25b8"
SOCKET_ID = "1234.1234"


def test_private_channel_example() -> None:
    """SIG "Worked examples": private-foobar."""
    auth = signatures.channel_auth(KEY, SECRET, SOCKET_ID, "private-foobar")
    assert auth == f"{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    assert signatures.channel_string_to_sign(SOCKET_ID, "private-foobar") == "1234.1234:private-foobar"


@pytest.mark.parametrize(
    ("name", "digest"),
    [
        # The digest SIG prints belongs to "Mr. Pusher"; the text was renamed to "Mr. Channels"
        # but the digest never was (SIG "Presence channels"; checked with Python's hmac).
        ("Mr. Pusher", "afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"),
        ("Mr. Channels", "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"),
    ],
)
def test_presence_channel_example(name: str, digest: str) -> None:
    channel_data = '{"user_id":10,"user_info":{"name":"' + name + '"}}'
    auth = signatures.channel_auth(KEY, SECRET, SOCKET_ID, "presence-foobar", channel_data)
    assert auth == f"{KEY}:{digest}"
    assert signatures.verify_token(
        KEY, SECRET, auth, signatures.channel_string_to_sign(SOCKET_ID, "presence-foobar", channel_data)
    )


def test_presence_stale_published_digest_does_not_verify_the_published_text() -> None:
    channel_data = '{"user_id":10,"user_info":{"name":"Mr. Channels"}}'
    stale = f"{KEY}:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"
    message = signatures.channel_string_to_sign(SOCKET_ID, "presence-foobar", channel_data)
    assert not signatures.verify_token(KEY, SECRET, stale, message)


def test_presence_signature_covers_the_raw_channel_data() -> None:
    """The server verifies the exact string the client sent, not a re-serialisation of it."""
    compact = '{"user_id":10}'
    spaced = '{"user_id": 10}'
    auth = signatures.channel_auth(KEY, SECRET, SOCKET_ID, "presence-foobar", compact)
    assert signatures.verify_token(
        KEY, SECRET, auth, signatures.channel_string_to_sign(SOCKET_ID, "presence-foobar", compact)
    )
    assert not signatures.verify_token(
        KEY, SECRET, auth, signatures.channel_string_to_sign(SOCKET_ID, "presence-foobar", spaced)
    )


def test_user_sign_in_example() -> None:
    """SIG "User authentication": two colons around ``user``."""
    user_data = '{"id":"12345"}'
    assert signatures.user_string_to_sign(SOCKET_ID, user_data) == '1234.1234::user::{"id":"12345"}'
    auth = signatures.user_auth(KEY, SECRET, SOCKET_ID, user_data)
    assert auth == f"{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"


@pytest.mark.parametrize(
    "token",
    [
        f"{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a5",  # last digit off
        "other-key:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",  # another app
        "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",  # no key
        f"{KEY}:",
        "",
        None,
        42,
        [f"{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"],
    ],
)
def test_verify_token_rejects(token: object) -> None:
    assert not signatures.verify_token(KEY, SECRET, token, "1234.1234:private-foobar")


def test_verify_token_accepts_the_example() -> None:
    token = f"{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    assert signatures.verify_token(KEY, SECRET, token, "1234.1234:private-foobar")
    # Another socket or channel must not reuse the token.
    assert not signatures.verify_token(KEY, SECRET, token, "1234.1235:private-foobar")
    assert not signatures.verify_token(KEY, SECRET, token, "1234.1234:private-foobaz")


def test_verify_is_constant_time_compare_of_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: object, b: object) -> bool:
        calls.append((a, b))
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(signatures.hmac, "compare_digest", spy)
    assert signatures.verify(SECRET, "x", signatures.sign(SECRET, "x"))
    assert calls


# REST "Authentication" worked example.
REST_BODY = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
REST_PARAMS = {
    "auth_key": KEY,
    "auth_timestamp": "1353088179",
    "auth_version": "1.0",
    "body_md5": "ec365a775a4cd0599faeb73354201b6f",
}


def test_rest_example_body_md5() -> None:
    assert signatures.body_md5(REST_BODY) == "ec365a775a4cd0599faeb73354201b6f"


def test_rest_example_string_to_sign_and_signature() -> None:
    assert signatures.api_string_to_sign("POST", "/apps/3/events", REST_PARAMS) == (
        "POST\n/apps/3/events\n"
        "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0"
        "&body_md5=ec365a775a4cd0599faeb73354201b6f"
    )
    assert (
        signatures.api_signature(SECRET, "POST", "/apps/3/events", REST_PARAMS)
        == "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    )


def test_rest_signature_ignores_auth_signature_param_order_and_key_case() -> None:
    shuffled = {k: v for k, v in REST_PARAMS.items() if k != "body_md5"}
    shuffled = {"BODY_MD5": REST_PARAMS["body_md5"], **shuffled}
    shuffled["auth_signature"] = "anything"
    assert (
        signatures.api_signature(SECRET, "post", "/apps/3/events", shuffled)
        == "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    )


def test_rest_string_to_sign_does_not_url_escape() -> None:
    text = signatures.api_string_to_sign("GET", "/apps/3/channels", {"info": "user_count,subscription_count"})
    assert text.endswith("info=user_count,subscription_count")
    text = signatures.api_string_to_sign("GET", "/apps/3/channels/#server-to-user-1", {"a": "b c"})
    assert text == "GET\n/apps/3/channels/#server-to-user-1\na=b c"


def test_empty_body_md5_is_what_the_python_sdk_sends_on_get() -> None:
    assert signatures.body_md5(b"") == "d41d8cd98f00b204e9800998ecf8427e"


def test_webhook_signature_is_hmac_of_the_exact_body() -> None:
    body = b'{"time_ms":1,"events":[{"name":"channel_occupied","channel":"a"}]}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signatures.webhook_signature(SECRET, body) == expected
    assert signatures.webhook_signature(SECRET, body + b" ") != expected


def test_sign_accepts_bytes_and_str_alike() -> None:
    assert signatures.sign(SECRET, "é") == signatures.sign(SECRET, "é".encode())
