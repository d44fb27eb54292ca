"""The handshake's query checks, as plain functions: protocol (4007, 4008) and client version (4006)."""

from __future__ import annotations

import pytest

from realtime.connection.handshake import check_protocol, refusal_reason
from realtime.protocol import errors
from realtime.protocol.errors import PusherError


def code_of(query: str) -> int | None:
    try:
        check_protocol(query.encode(), 5, 7)
    except PusherError as exc:
        return exc.code
    return None


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("protocol=7&client=js&version=8.4.0", None),
        ("protocol=7", None),  # clients that send no version are not refused
        ("protocol=5&version=8.4.0-rc2", None),
        ("protocol=7&version=7.0.3%2Bbuild.5", None),
        ("protocol=7&version=7.0.3+build.5", None),  # an unencoded "+" arrives as a space
        ("protocol=7&version=v2.1.0", None),
        ("protocol=7&version=", errors.INVALID_VERSION),
        ("protocol=7&version=abc", errors.INVALID_VERSION),
        ("protocol=7&version=1..2", errors.INVALID_VERSION),
        ("protocol=7&version=1.2%0A", errors.INVALID_VERSION),
        ("protocol=8&version=8.4.0", errors.UNSUPPORTED_PROTOCOL),
        ("protocol=&version=8.4.0", errors.NO_PROTOCOL),
        ("version=8.4.0", errors.NO_PROTOCOL),
    ],
)
def test_check_protocol(query: str, code: int | None) -> None:
    assert code_of(query) == code


def test_an_invalid_version_has_its_own_metric_reason() -> None:
    assert refusal_reason(errors.INVALID_VERSION) == "bad_version"
