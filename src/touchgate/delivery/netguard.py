"""The network guard: outgoing requests (deliveries, receipts, options, test sends)
never reach loopback, private, link-local, metadata or otherwise reserved addresses
unless an operator allows those networks with ``TOUCHGATE_ALLOWED_NETWORKS``.

The check happens where the connection is made: ``GuardedResolver`` is the
resolver of the HTTP client's connector, so every address a host name resolves
to is classified and the address checked is the address connected to (no
DNS-rebinding gap). aiohttp does not call the resolver for IP-literal hosts, so
``check_host`` is also run on the URL's host before each request; it parses the
host the way the OS would (``2130706433``, ``0x7f000001``, ``0177.0.0.1``,
``127.1``, ``[::1]``, a trailing dot…).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# (network, reason) in the order they are checked; the first match names the reason.
_REFUSED_V4: list[tuple[ipaddress.IPv4Network, str]] = [
    (_V4("0.0.0.0/8"), "unspecified address (0.0.0.0/8, 'this network')"),
    (_V4("10.0.0.0/8"), "private network (10.0.0.0/8)"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT shared space (100.64.0.0/10)"),
    (_V4("127.0.0.0/8"), "loopback (127.0.0.0/8)"),
    (
        _V4("169.254.169.254/32"),
        "link-local cloud metadata service (169.254.169.254)",
    ),
    (_V4("169.254.0.0/16"), "link-local (169.254.0.0/16)"),
    (_V4("172.16.0.0/12"), "private network (172.16.0.0/12)"),
    (_V4("192.0.0.0/24"), "reserved for IETF protocol assignments (192.0.0.0/24)"),
    (_V4("192.0.2.0/24"), "documentation range (192.0.2.0/24, TEST-NET-1)"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast (192.88.99.0/24)"),
    (_V4("192.168.0.0/16"), "private network (192.168.0.0/16)"),
    (_V4("198.18.0.0/15"), "benchmarking range (198.18.0.0/15)"),
    (_V4("198.51.100.0/24"), "documentation range (198.51.100.0/24, TEST-NET-2)"),
    (_V4("203.0.113.0/24"), "documentation range (203.0.113.0/24, TEST-NET-3)"),
    (_V4("224.0.0.0/4"), "multicast (224.0.0.0/4)"),
    (_V4("255.255.255.255/32"), "broadcast (255.255.255.255)"),
    (_V4("240.0.0.0/4"), "reserved (240.0.0.0/4)"),
]

_REFUSED_V6: list[tuple[ipaddress.IPv6Network, str]] = [
    (_V6("::/128"), "unspecified address (::)"),
    (_V6("::1/128"), "loopback (::1)"),
    (_V6("100::/64"), "discard-only range (100::/64)"),
    (_V6("2001:db8::/32"), "documentation range (2001:db8::/32)"),
    (_V6("3fff::/20"), "documentation range (3fff::/20)"),
    (_V6("2001::/32"), "Teredo tunnelling address (2001::/32)"),
    (_V6("2001:2::/48"), "benchmarking range (2001:2::/48)"),
    (_V6("2001::/23"), "reserved for IETF protocol assignments (2001::/23)"),
    (_V6("2002::/16"), "6to4 tunnelling address (2002::/16)"),
    (_V6("fc00::/7"), "unique local (private) network (fc00::/7)"),
    (_V6("fe80::/10"), "link-local (fe80::/10)"),
    (_V6("fec0::/10"), "site-local, deprecated (fec0::/10)"),
    (_V6("ff00::/8"), "multicast (ff00::/8)"),
    (_V6("5f00::/16"), "segment-routing SIDs (5f00::/16)"),
]

# Address translations to IPv4: the OS (or the network's NAT64) ends up talking
# to the embedded IPv4 address, so that address decides.
_IPV4_MAPPED = _V6("::ffff:0:0/96")
_NAT64 = [_V6("64:ff9b::/96")]
_NAT64_LOCAL = _V6("64:ff9b:1::/48")
_IPV4_COMPATIBLE = _V6("::/96")


class BlockedAddressError(OSError):
    """A connection to ``address`` was refused by the network guard.

    An ``OSError`` so that aiohttp's connector wraps it like any resolver failure;
    the client recognises it and reports ``blocked``.
    """

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"{host} resolves to {address}: {reason}")
        self.host = host
        self.address = address
        self.reason = reason

    def plain(self) -> str:
        shown = self.address if self.host == self.address else f"{self.host} ({self.address})"
        return (
            f"blocked by the network guard: {shown} is a {self.reason}; an administrator "
            "can allow it with TOUCHGATE_ALLOWED_NETWORKS"
        )


def _allowed(ip: IPAddress, allowed: Sequence[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in allowed)


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    if ip in _IPV4_MAPPED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "IPv4-mapped IPv6 address"
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64 address"
    return None


def classify(ip: IPAddress | str, allowed: Sequence[Network] = ()) -> str | None:
    """The reason an address must not be connected to, or ``None`` when it may.

    ``allowed`` (``settings.allowed_network_list``) lifts the refusal for the
    networks it lists; for translated addresses (``::ffff:127.0.0.1``) either the
    IPv6 form or the embedded IPv4 address may be allowed.
    """
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    if _allowed(ip, allowed):
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        for net4, reason in _REFUSED_V4:
            if ip in net4:
                return reason
        if not ip.is_global:
            return "non-public address"
        return None
    if ip.scope_id:
        return "link-local address with a zone index"
    embedded = _embedded_v4(ip)
    if embedded is not None:
        v4, kind = embedded
        inner = classify(v4, allowed)
        return None if inner is None else f"{kind} of {v4}, {inner}"
    if ip in _NAT64_LOCAL:
        return "local-use NAT64 address (64:ff9b:1::/48)"
    for net6, reason in _REFUSED_V6:
        if ip in net6:
            return reason
    if ip in _IPV4_COMPATIBLE:
        # Deprecated IPv4-compatible form (::a.b.c.d); nothing legitimate uses it.
        v4 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        return f"IPv4-compatible IPv6 address of {v4} (deprecated)"
    if not ip.is_global:
        return "non-public address"
    return None


_V4_PART = re.compile(r"^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$")


def _parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse an IPv4 host the way ``inet_aton`` does (what the OS connects to):
    1–4 parts, each decimal, ``0x`` hex or ``0`` octal, the last filling the
    remaining bytes (``127.1`` = 127.0.0.1, ``2130706433`` = 127.0.0.1)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.match(p) for p in parts):
        return None
    values: list[int] = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            values.append(int(part[2:], 16))
        elif part.startswith("0") and len(part) > 1:
            values.append(int(part[1:], 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << 8 * (4 - len(head)) | last
    return ipaddress.IPv4Address(number)


def parse_ip_host(host: str) -> IPAddress | None:
    """The IP address a URL host names literally (in any spelling), or ``None``
    when the host is a name that needs resolving."""
    raw = host.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    raw = raw.removesuffix(".")
    if not raw:
        return None
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        pass
    if ":" in raw:
        return None
    return _parse_legacy_ipv4(raw)


def check_host(host: str, allowed: Sequence[Network]) -> None:
    """Raise ``BlockedAddressError`` when ``host`` is an IP literal that is refused."""
    ip = parse_ip_host(host)
    if ip is None:
        return
    reason = classify(ip, allowed)
    if reason is not None:
        raise BlockedAddressError(host, str(ip), reason)


class GuardedResolver(AbstractResolver):
    """Resolves with the OS (``getaddrinfo`` via aiohttp's ``ThreadedResolver``) and
    refuses the host when ANY of its addresses is refused — a name that mixes a
    public and a private address is treated as hostile."""

    def __init__(self, allowed: Sequence[Network] = ()) -> None:
        self._inner = ThreadedResolver()
        self._allowed = list(allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = result["host"]
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                raise BlockedAddressError(host, address, "unparseable address") from None
            reason = classify(ip, self._allowed)
            if reason is not None:
                raise BlockedAddressError(host, address, reason)
        return results

    async def close(self) -> None:
        await self._inner.close()
