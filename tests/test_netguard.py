"""The network guard: classification of every refused range and host spelling,
without connecting anywhere (pure functions and the resolver on literals and
``localhost``)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from touchgate.delivery.netguard import (
    BlockedAddressError,
    GuardedResolver,
    check_host,
    classify,
    parse_ip_host,
)

REFUSED = {
    # IPv4
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "10.0.0.1": "private",
    "10.255.255.255": "private",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "169.254.169.254": "metadata",
    "169.254.1.1": "link-local",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.0.0.8": "IETF",
    "192.0.2.10": "documentation",
    "192.88.99.1": "6to4 relay",
    "192.168.1.1": "private",
    "198.18.0.1": "benchmarking",
    "198.19.255.1": "benchmarking",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    # IPv6
    "::": "unspecified",
    "::1": "loopback",
    "fc00::1": "unique local",
    "fd12:3456::1": "unique local",
    "fe80::1": "link-local",
    "febf::1": "link-local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "100::1": "discard",
    "2001:2::1": "benchmarking",
    "2001:0:4136:e378::1": "Teredo",
    "2002:7f00:1::1": "6to4",
    "2002:808:808::1": "6to4",
    "::ffff:127.0.0.1": "IPv4-mapped IPv6 address of 127.0.0.1, loopback",
    "::ffff:10.1.2.3": "IPv4-mapped IPv6 address of 10.1.2.3, private",
    "::ffff:169.254.169.254": "metadata",
    "64:ff9b::a00:1": "NAT64 address of 10.0.0.1",
    "64:ff9b::7f00:1": "NAT64 address of 127.0.0.1",
    "64:ff9b:1::1": "local-use NAT64",
    "::127.0.0.1": "IPv4-compatible",
    "::8.8.8.8": "IPv4-compatible",
}

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "172.32.0.1",  # just outside 172.16/12
    "100.128.0.1",  # just outside 100.64/10
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # mapped public address: the OS connects to 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of a public address (IPv6-only networks use these)
]


@pytest.mark.parametrize(("address", "words"), sorted(REFUSED.items()))
def test_refused_ranges(address: str, words: str) -> None:
    reason = classify(address)
    assert reason is not None
    assert words in reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert classify(address) is None
    assert classify(ipaddress.ip_address(address)) is None


def test_allowed_networks_lift_the_refusal() -> None:
    allowed = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    assert classify("127.0.0.1", allowed) is None
    assert classify("127.9.9.9", allowed) is None
    assert classify("::ffff:127.0.0.1", allowed) is None  # the embedded address is allowed
    assert classify("fd00::5", allowed) is None
    assert classify("::1", allowed) is not None  # IPv6 loopback is a different network
    assert classify("10.0.0.1", allowed) is not None
    assert classify("169.254.169.254", allowed) is not None
    assert classify("169.254.169.254", [ipaddress.ip_network("169.254.169.254/32")]) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x0a.0x00.0x00.0x01", "10.0.0.1"),
        ("167772161", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1"),
        ("[fe80::1]", "fe80::1"),
        ("169.254.169.254", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
    ],
)
def test_host_spellings_parse_like_the_os(host: str, expected: str) -> None:
    ip = parse_ip_host(host)
    assert ip is not None
    assert ip == ipaddress.ip_address(expected)
    bare = host.strip("[]").removesuffix(".")
    if ":" not in bare:
        # The OS agrees (inet_aton is what connect() would use for these spellings).
        assert socket.inet_aton(bare) == ip.packed


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "localhost",
        "1.2.3.4.5",
        "256.0.0.1",
        "1.2.3.256",
        "1.2.65536",
        "4294967296",
        "08.0.0.1",
        "0x",
        "1..2",
        "",
        "[]",
        "a.b.c.d",
        "123abc",
    ],
)
def test_names_and_invalid_numbers_are_not_ip_literals(host: str) -> None:
    assert parse_ip_host(host) is None


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "127.0.0.1.",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "10.1",
        "0xa9fea9fe",
        "[fd00::1]",
        "0.0.0.0",
    ],
)
def test_check_host_refuses_literals(host: str) -> None:
    with pytest.raises(BlockedAddressError) as info:
        check_host(host, [])
    assert "TOUCHGATE_ALLOWED_NETWORKS" in info.value.plain()


def test_check_host_lets_names_through_to_the_resolver() -> None:
    check_host("example.com", [])
    check_host("8.8.8.8", [])
    check_host("127.0.0.1", [ipaddress.ip_network("127.0.0.0/8")])


def test_resolver_refuses_localhost_and_literals() -> None:
    async def main() -> None:
        resolver = GuardedResolver([])
        try:
            for host in ("localhost", "127.0.0.1", "2130706433", "127.1", "0x7f000001"):
                with pytest.raises(BlockedAddressError) as info:
                    await resolver.resolve(host, 80, socket.AF_UNSPEC)
                assert "loopback" in info.value.reason
            with pytest.raises(BlockedAddressError):
                await resolver.resolve("::1", 80, socket.AF_INET6)
        finally:
            await resolver.close()

    asyncio.run(main())


def test_resolver_returns_allowed_addresses() -> None:
    async def main() -> None:
        resolver = GuardedResolver([ipaddress.ip_network("127.0.0.0/8")])
        try:
            results = await resolver.resolve("2130706433", 8080, socket.AF_INET)
            assert [r["host"] for r in results] == ["127.0.0.1"]
            assert results[0]["port"] == 8080
            results = await resolver.resolve("localhost", 80, socket.AF_INET)
            assert {r["host"] for r in results} == {"127.0.0.1"}
        finally:
            await resolver.close()

    asyncio.run(main())


def test_any_refused_address_refuses_the_host() -> None:
    # "localhost" may resolve to both 127.0.0.1 and ::1; allowing only IPv4
    # loopback must still refuse the name when ::1 is among its addresses.
    infos = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    families = {info[0] for info in infos}

    async def main() -> None:
        resolver = GuardedResolver([ipaddress.ip_network("127.0.0.0/8")])
        try:
            if socket.AF_INET6 in families:
                with pytest.raises(BlockedAddressError) as info:
                    await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
                assert info.value.address == "::1"
            else:
                results = await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
                assert results
        finally:
            await resolver.close()

    asyncio.run(main())
