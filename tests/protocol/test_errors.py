"""Error codes and the close policy by range.

https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#connection-closure
https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#error-codes
"""

from __future__ import annotations

import pytest

from realtime.protocol import errors
from realtime.protocol.errors import PusherError, closes_connection


@pytest.mark.parametrize(
    "code",
    [
        errors.TLS_ONLY,
        errors.APP_NOT_FOUND,
        errors.APP_DISABLED,
        errors.OVER_CONNECTION_QUOTA,
        errors.PATH_NOT_FOUND,
        errors.INVALID_VERSION,
        errors.UNSUPPORTED_PROTOCOL,
        errors.NO_PROTOCOL,
        errors.UNAUTHORIZED,
        errors.OVER_CAPACITY,
        errors.RECONNECT,
        errors.PONG_NOT_RECEIVED,
        errors.CLOSED_AFTER_INACTIVITY,
    ],
)
def test_4000_to_4299_close_the_socket(code: int) -> None:
    assert 4000 <= code <= 4299
    assert closes_connection(code)
    assert PusherError(code, "x").closes


def test_43xx_never_closes() -> None:
    """pusher-js treats a 43xx close code as "refused": 43xx is an error frame only."""
    for code in range(4300, 4400):
        assert not closes_connection(code)
        assert not PusherError(code, "x").closes
    assert errors.CLIENT_EVENT_REJECTED == 4301
    assert errors.WATCHLIST_LIMIT == 4302
    assert errors.GENERIC_ERROR == 4300


@pytest.mark.parametrize("code", [None, 0, 1000, 1002, 3999, 4400, 4999])
def test_other_codes_do_not_close(code: int | None) -> None:
    assert not closes_connection(code)


def test_the_exact_codes_of_the_protocol() -> None:
    assert (errors.TLS_ONLY, errors.APP_NOT_FOUND, errors.APP_DISABLED, errors.OVER_CONNECTION_QUOTA) == (
        4000,
        4001,
        4003,
        4004,
    )
    assert (errors.PATH_NOT_FOUND, errors.INVALID_VERSION, errors.UNSUPPORTED_PROTOCOL) == (4005, 4006, 4007)
    assert (errors.NO_PROTOCOL, errors.UNAUTHORIZED, errors.OVER_CAPACITY) == (4008, 4009, 4100)
    assert (errors.RECONNECT, errors.PONG_NOT_RECEIVED, errors.CLOSED_AFTER_INACTIVITY) == (4200, 4201, 4202)


def test_pusher_error_carries_code_message_and_channel() -> None:
    error = PusherError(None, "Invalid signature", "private-a")
    assert (error.code, error.message, error.channel, str(error)) == (
        None,
        "Invalid signature",
        "private-a",
        "Invalid signature",
    )
    assert not error.closes
