"""Reading a URL's host the way resolvers read it, and classifying the address it names."""

from __future__ import annotations

import ipaddress

import pytest

from worker.content.addresses import PUBLIC_ONLY, AddressClass, AddressPolicy, classify, parse_host


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.0x10000", "10.1.0.0"),
        ("0", "0.0.0.0"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ],
)
def test_numeric_hosts_read_as_inet_aton_reads_them(host: str, address: str) -> None:
    """Decimal, octal, hex, short forms and bracketed IPv6 with a zone all name one address."""
    assert ipaddress.ip_address(address) == parse_host(host)


@pytest.mark.parametrize(
    "host", ["example.com", "1.2.3.4.5", "0x7g.0.0.1", "256.0.0.1", "1.2.3.16777216", "08.0.0.1", "", "[::1"]
)
def test_names_and_malformed_numbers_are_dns_names(host: str) -> None:
    """What is not a whole numeric address is left to DNS (whose answers are checked in turn)."""
    assert parse_host(host) is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("8.8.8.8", AddressClass.PUBLIC),
        ("2606:4700:4700::1111", AddressClass.PUBLIC),
        ("127.0.0.1", AddressClass.LOOPBACK),
        ("::1", AddressClass.LOOPBACK),
        ("10.0.0.1", AddressClass.PRIVATE),
        ("172.31.255.255", AddressClass.PRIVATE),
        ("192.168.1.1", AddressClass.PRIVATE),
        ("fd12:3456::1", AddressClass.PRIVATE),
        ("100.64.0.1", AddressClass.CGNAT),
        ("100.127.255.254", AddressClass.CGNAT),
        ("169.254.1.1", AddressClass.LINK_LOCAL),
        ("fe80::1", AddressClass.LINK_LOCAL),
        ("224.0.0.1", AddressClass.MULTICAST),
        ("ff05::2", AddressClass.MULTICAST),
        ("0.0.0.0", AddressClass.UNSPECIFIED),
        ("::", AddressClass.UNSPECIFIED),
        ("169.254.169.254", AddressClass.CLOUD_METADATA),
        ("fd00:ec2::254", AddressClass.CLOUD_METADATA),
        ("168.63.129.16", AddressClass.CLOUD_METADATA),
        ("100.100.100.200", AddressClass.CLOUD_METADATA),
        ("::ffff:169.254.169.254", AddressClass.CLOUD_METADATA),
        ("::ffff:8.8.8.8", AddressClass.PUBLIC),
        ("::127.0.0.1", AddressClass.LOOPBACK),
        ("64:ff9b::a00:1", AddressClass.PRIVATE),
        ("64:ff9b:1::7f00:1", AddressClass.LOOPBACK),
        ("2002:c0a8:101::1", AddressClass.PRIVATE),
        ("2002:808:808::1", AddressClass.PUBLIC),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", AddressClass.LOOPBACK),  # Teredo client 127.0.0.1
    ],
)
def test_every_address_has_its_class(address: str, expected: AddressClass) -> None:
    """An IPv6 address carrying an IPv4 one (mapped, compatible, NAT64, 6to4, Teredo) is classified as it."""
    assert expected == classify(ipaddress.ip_address(address))


def test_the_default_policy_allows_public_addresses_only() -> None:
    """Public passes; the first refused address is named with its class."""
    addresses = [ipaddress.ip_address(text) for text in ("8.8.8.8", "10.0.0.1", "127.0.0.1")]
    assert (None, (addresses[1], AddressClass.PRIVATE)) == (
        PUBLIC_ONLY.refusal(addresses[0]),
        PUBLIC_ONLY.first_refusal(addresses),
    )


def test_a_policy_exception_allows_one_address_and_no_other() -> None:
    """A test's allowance names its server's address: the loopback range as a whole stays refused."""
    policy = AddressPolicy(exceptions=frozenset({ipaddress.ip_address("127.0.0.1")}))
    assert (None, AddressClass.LOOPBACK) == (
        policy.refusal(ipaddress.ip_address("127.0.0.1")),
        policy.refusal(ipaddress.ip_address("127.0.0.2")),
    )
