"""Socket ids: ``\\d+.\\d+`` as the server SDKs validate them, and unguessable.

https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#connection-events
The SDKs' check: ``socket_id_re`` in https://github.com/pusher/pusher-http-python/blob/master/pusher/util.py
"""

from __future__ import annotations

import re

import pytest

from realtime.protocol.socket_ids import is_valid_socket_id, new_socket_id


def test_new_socket_ids_have_the_sdk_format_and_do_not_repeat() -> None:
    ids = {new_socket_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    for socket_id in ids:
        assert re.fullmatch(r"[0-9]+\.[0-9]+", socket_id)
        assert is_valid_socket_id(socket_id)


@pytest.mark.parametrize("value", ["1234.1234", "0.0", "123456789012.1"])
def test_valid(value: str) -> None:
    assert is_valid_socket_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1234",
        "1234.",
        ".1234",
        "1.2.3",
        "a.b",
        " 1.2",
        "1.2 ",
        "1.2\n",
        "-1.2",
        "1,2",
        "١٢.٣",  # Arabic-Indic digits match \d but are not socket ids
        None,
        12.5,
        b"1.2",
    ],
)
def test_invalid(value: object) -> None:
    assert not is_valid_socket_id(value)
