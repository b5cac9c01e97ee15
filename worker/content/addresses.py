"""Which network addresses the worker may fetch an image from: a host read the way resolvers read it, and
every address classified, with the IPv4 address hidden inside an IPv6 one classified as itself.

Pure. ``parse_host`` turns a URL's host into the address a resolver would connect to when the host is
numeric in any notation (``127.0.0.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``, ``[::1]``),
or ``None`` for a DNS name. ``classify`` names what an address is; ``AddressPolicy`` says which classes may be
fetched from (public only, unless a test widens it on purpose).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressClass(StrEnum):
    """What an address is; everything but ``public`` is refused by the default policy."""

    PUBLIC = "public"
    PRIVATE = "private"
    LOOPBACK = "loopback"
    LINK_LOCAL = "link_local"
    CGNAT = "cgnat"
    MULTICAST = "multicast"
    RESERVED = "reserved"
    UNSPECIFIED = "unspecified"
    CLOUD_METADATA = "cloud_metadata"


# Instance metadata and platform endpoints: a fetch of one of these can hand out credentials.
# 169.254.169.254 (AWS, Azure IMDS, GCP), fd00:ec2::254 (AWS over IPv6), 168.63.129.16 (Azure WireServer,
# in public address space), 100.100.100.200 (Alibaba Cloud).
CLOUD_METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(text)
    for text in ("169.254.169.254", "fd00:ec2::254", "168.63.129.16", "100.100.100.200")
)
_CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64: Final = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_IPV4_LIMITS: Final = (0xFFFFFFFF, 0xFFFFFF, 0xFFFF, 0xFF)


def parse_host(host: str) -> IPAddress | None:
    """The address a numeric ``host`` names, as ``inet_aton`` and ``getaddrinfo`` read it, else ``None``.

    IPv4 takes one to four dot-separated parts, each decimal, octal (leading ``0``) or hex (``0x``); the
    last part fills the remaining bytes (``127.1`` is ``127.0.0.1``, ``2130706433`` is too). IPv6 may be
    bracketed and carry a zone (``fe80::1%eth0``). A trailing dot is ignored. A name that only looks numeric
    in part (``1.2.3.4.5``, ``0x7g``) is a DNS name: ``None``.
    """
    text = host.strip().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.partition("%")[0])
        except ValueError:
            return None
    return _parse_ipv4(text)


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _number(part)
        if number is None:
            return None
        numbers.append(number)
    *leading, last = numbers
    if any(number > 0xFF for number in leading) or last > _IPV4_LIMITS[len(leading)]:
        return None
    value = 0
    for index, number in enumerate(leading):
        value |= number << (24 - 8 * index)
    return ipaddress.IPv4Address(value | last)


def _number(part: str) -> int | None:
    """One part of a numeric IPv4 host in C notation, or ``None`` if it is not one."""
    lowered = part.lower()
    try:
        if lowered.startswith("0x"):
            return int(lowered[2:] or "0", 16)
        if len(lowered) > 1 and lowered.startswith("0"):
            return int(lowered[1:], 8)
        return int(lowered, 10) if lowered.isdigit() else None
    except ValueError:
        return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches through a translation mechanism, if any.

    IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``, deprecated but still routed by some
    stacks), NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``: the last 32 bits), 6to4 (``2002:AABB:CCDD::/48``)
    and Teredo (``2001:0::/32``: the client address, bit-inverted in the last 32 bits).
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.teredo is not None:
        return address.teredo[1]
    if address.sixtofour is not None:
        return address.sixtofour
    value = int(address)
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and value > 1:  # :: and ::1 are themselves, not IPv4-compatible
        return ipaddress.IPv4Address(value)
    return None


def classify(address: IPAddress) -> AddressClass:
    """What ``address`` is. An IPv6 address that carries an IPv4 one (``embedded_ipv4``) is what the IPv4
    address is: traffic to it ends there."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return _own_class(inner)
    return _own_class(address)


def _own_class(address: IPAddress) -> AddressClass:
    checks = (
        (address in CLOUD_METADATA_ADDRESSES, AddressClass.CLOUD_METADATA),
        (address.is_unspecified, AddressClass.UNSPECIFIED),
        (address.is_loopback, AddressClass.LOOPBACK),
        (address.is_multicast, AddressClass.MULTICAST),
        (address.is_link_local, AddressClass.LINK_LOCAL),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, AddressClass.CGNAT),
        (address.is_private, AddressClass.PRIVATE),
        (address.is_reserved, AddressClass.RESERVED),
    )
    for hit, address_class in checks:
        if hit:
            return address_class
    return AddressClass.PUBLIC if address.is_global else AddressClass.RESERVED


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses may be fetched from: the ``allowed`` classes, plus the ``exceptions`` named one by one.

    The default allows public addresses only. Tests that fetch from a local server name its one address
    in ``exceptions`` rather than allowing every loopback address.
    """

    allowed: frozenset[AddressClass] = frozenset({AddressClass.PUBLIC})
    exceptions: frozenset[IPAddress] = field(default_factory=frozenset)

    def refusal(self, address: IPAddress) -> AddressClass | None:
        """``None`` when ``address`` may be fetched from, else its class (the reason it may not)."""
        if address in self.exceptions:
            return None
        address_class = classify(address)
        return None if address_class in self.allowed else address_class

    def first_refusal(self, addresses: Iterable[IPAddress]) -> tuple[IPAddress, AddressClass] | None:
        """The first of ``addresses`` that may not be fetched from, with its class; ``None`` if all may."""
        for address in addresses:
            address_class = self.refusal(address)
            if address_class is not None:
                return address, address_class
        return None


PUBLIC_ONLY: Final = AddressPolicy()
