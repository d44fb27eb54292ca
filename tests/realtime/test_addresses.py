"""Client addresses behind trusted proxies, the buckets per-address limits count, and the window."""

from __future__ import annotations

import pytest

from realtime.addresses import (
    FORWARDED,
    X_FORWARDED_FOR,
    bucket,
    client_address,
    forwarded_chain,
    trusted_networks,
)
from realtime.ratelimit import AddressLimiters

PROXIES = trusted_networks(["10.0.0.0/8", "127.0.0.1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "xff", "expected"),
    [
        # An untrusted peer's headers say nothing.
        ("198.51.100.9", None, "203.0.113.7", "198.51.100.9"),
        ("198.51.100.9", 'for="203.0.113.7"', None, "198.51.100.9"),
        # A trusted proxy: the rightmost address that is not a proxy.
        ("127.0.0.1", None, "203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", None, "6.6.6.6, 203.0.113.7, 10.1.2.3", "203.0.113.7"),  # 6.6.6.6: client-written
        ("10.0.0.2", None, "10.0.0.5, 10.0.0.4", "10.0.0.5"),  # all proxies: the leftmost
        ("127.0.0.1", None, "203.0.113.7:5123", "203.0.113.7"),
        # RFC 7239 section 7.4's examples, IPv6 quoted and bracketed, ports and other parameters.
        ("127.0.0.1", 'for=192.0.2.43, for="[2001:db8:cafe::17]:4711"', None, "2001:db8:cafe::17"),
        ("127.0.0.1", "for=192.0.2.60;proto=http;by=203.0.113.43", None, "192.0.2.60"),
        ("127.0.0.1", 'for="_hidden", for=198.51.100.17', None, "198.51.100.17"),
        # "unknown" stops the walk at what is known.
        ("127.0.0.1", "for=unknown", None, "127.0.0.1"),
        ("127.0.0.1", None, None, "127.0.0.1"),
        (None, None, "203.0.113.7", None),
    ],
)
def test_client_address(
    peer: str | None, forwarded: str | None, xff: str | None, expected: str | None
) -> None:
    header, value = (FORWARDED, forwarded) if forwarded is not None else (X_FORWARDED_FOR, xff)
    assert client_address(peer, header, value, PROXIES) == expected


def test_only_the_configured_header_counts() -> None:
    # A proxy that writes X-Forwarded-For passes a client's Forwarded header through untouched.
    assert client_address("127.0.0.1", X_FORWARDED_FOR, "203.0.113.7", PROXIES) == "203.0.113.7"
    assert client_address("127.0.0.1", FORWARDED, None, PROXIES) == "127.0.0.1"


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("127.0.0.1", X_FORWARDED_FOR, "203.0.113.7", ()) == "127.0.0.1"


def test_an_ipv4_mapped_peer_is_its_ipv4_address() -> None:
    assert client_address("::ffff:10.1.2.3", X_FORWARDED_FOR, "203.0.113.7", PROXIES) == "203.0.113.7"


def test_forwarded_chain_keeps_the_order() -> None:
    assert forwarded_chain(FORWARDED, 'for=a;by=b, for="c"') == ["a", '"c"']
    assert forwarded_chain(X_FORWARDED_FOR, " a , b,") == [" a ", " b"]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_buckets(address: str, expected: str) -> None:
    assert bucket(address) == expected


def test_address_limiter_counts_per_window_and_forgets_the_last_one() -> None:
    limiter = AddressLimiters()
    assert [limiter.allow("c", "a", 2, 60, now=120.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("c", "b", 2, 60, now=121.0)  # another address
    assert limiter.allow("other", "a", 2, 60, now=121.0)  # another limiter
    assert limiter.allow("c", "a", 2, 60, now=180.0)  # the next window
    assert limiter._windows["c"] == (3, {"a": 1})  # the last window's addresses are gone
