"""Client addresses: the peer, or what a trusted reverse proxy says the client was.

A proxy in ``TRUSTED_PROXIES`` (addresses or CIDRs) appends the address it received a request
from to one header: ``X-Forwarded-For`` (nginx, HAProxy, most load balancers) or ``Forwarded:
for=`` (RFC 7239), as ``FORWARDED_HEADER`` says. Only that header is read: a proxy passes the
other one through as the client wrote it. It counts only from a trusted peer, and then only up to
the first address that is not a trusted proxy, read from the right (everything left of it was
written by the client).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# A client with an IPv6 address usually holds a whole /64: limits count the /64, not the address.
IPV6_BUCKET_PREFIX = 64

_FORWARDED_FOR = re.compile(r'(?:^|[;,\s])for=("[^"]*"|[^;,\s]*)', re.IGNORECASE)


def trusted_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """``TRUSTED_PROXIES`` as networks; raises ValueError naming an entry that is not a CIDR."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES: {cidr!r} is not an address or CIDR") from None
    return tuple(networks)


def is_trusted(host: object, networks: tuple[Any, ...]) -> bool:
    """Whether the peer address ``host`` lies in one of ``networks``."""
    address = _parse(host) if isinstance(host, str) else None
    return address is not None and any(address in network for network in networks)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a header entry: ``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:80``,
    ``"[2001:db8::1]"``, ``2001:db8::1``; None for ``unknown``, obfuscated names and junk."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: the same client as a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# FORWARDED_HEADER's values.
X_FORWARDED_FOR = "x-forwarded-for"
FORWARDED = "forwarded"


def forwarded_chain(header: str, value: str | None) -> list[str]:
    """The addresses a request passed through, client first, from the value of ``header``
    (``X_FORWARDED_FOR``: a comma-separated list; ``FORWARDED``: its ``for=`` parameters, RFC 7239
    section 5.2)."""
    if not value:
        return []
    if header == FORWARDED:
        return [match.group(1) for match in _FORWARDED_FOR.finditer(value)]
    return [entry for entry in value.split(",") if entry.strip()]


def client_address(
    peer: str | None, header: str, value: str | None, networks: tuple[Network, ...]
) -> str | None:
    """The client's address as text: ``peer`` unless it is a trusted proxy, then the rightmost
    address in the forwarding ``header``'s ``value`` that is not one (the leftmost if all are).
    None when ``peer`` is unknown (a Unix socket, a test client)."""
    if not peer:
        return None
    if not networks or not is_trusted(peer, networks):
        return peer
    chain = forwarded_chain(header, value)
    client = peer
    for entry in reversed(chain):
        address = _parse(entry)
        if address is None:
            break  # "unknown" or junk: the last address known is the best there is
        client = str(address)
        if not any(address in network for network in networks):
            break
    return client


def bucket(address: str) -> str:
    """What a per-address limit counts: an IPv4 address itself, an IPv6 address' /64 (an
    IPv4-mapped IPv6 address as IPv4); text that is no address, as it is."""
    parsed = _parse(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_BUCKET_PREFIX}", strict=False))
    return str(parsed)
