# -*- test-case-name: test.test_addresses -*-
"""Address classification shared by relays (EXTEND targets) and exits.

A relay that sends a datagram wherever a peer asks becomes a free reflector, an
amplifier and a probe into its own LAN (THREATS T6, T7).  Everything here is pure:
no sockets, no resolver, no clock.

We deliberately do not rely on :attr:`ipaddress.IPv4Address.is_global` or
``is_private``: their tables changed between CPython patch releases (cpython issue
113171, CVE-2024-4032) and ``100.64.0.0/10`` is neither private nor global.  Instead
the IANA IPv4/IPv6 special-purpose registries are written out below as explicit
integer ranges, and addresses that *wrap* an IPv4 address (IPv4-mapped,
IPv4-compatible, NAT64, 6to4, Teredo) are unwrapped so that e.g. ``64:ff9b::7f00:1``
(NAT64 of 127.0.0.1) cannot sneak loopback traffic past the check.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Final

__all__ = [
    "is_forbidden_ip",
    "is_ip_literal",
    "parse_destination",
    "special_use_name_reason",
]

_V4_MAX: Final = 0xFFFFFFFF


def _net(cidr: str) -> tuple[int, int]:
    """Return the inclusive integer range ``(first, last)`` of ``cidr``.

    Integer ranges keep the lookup independent of ``ipaddress``'s own
    (version-dependent) classification properties.
    """
    net = ipaddress.ip_network(cidr)
    return int(net.network_address), int(net.broadcast_address)


#: IPv4 special-purpose ranges (IANA ipv4-address-space special registry, plus
#: multicast and the reserved class E block).  First match wins, so the more
#: specific entries come first.  Every entry is refused: none of them is a
#: legitimate destination for traffic from an anonymous client.
_V4_TABLE: Final[tuple[tuple[int, int, str], ...]] = tuple(
    (*_net(cidr), reason)
    for cidr, reason in (
        # 0.0.0.0 means "this host" to most stacks: it reaches local services.
        ("0.0.0.0/32", "unspecified"),
        # RFC 791 "this network": never a valid destination.
        ("0.0.0.0/8", "reserved (this network)"),
        # RFC 1918: the relay's or exit's internal LAN (internal probing, SSRF).
        ("10.0.0.0/8", "private"),
        # RFC 6598 carrier-grade NAT space: the ISP's internal network.
        ("100.64.0.0/10", "shared (100.64/10)"),
        # RFC 1122: services bound to localhost on the relay itself.
        ("127.0.0.0/8", "loopback"),
        # RFC 3927: link-local, incl. cloud metadata services at 169.254.169.254.
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        # RFC 6890 IETF protocol assignments (DS-Lite, PCP/TURN anycast...):
        # refused wholesale, no anonymous client needs them.
        ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
        # RFC 5737 documentation: never routed; a request for one is a probe.
        ("192.0.2.0/24", "documentation"),
        # RFC 7526: deprecated 6to4 relay anycast; would re-tunnel to anywhere.
        ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
        ("192.168.0.0/16", "private"),
        # RFC 2544 benchmarking: used inside labs and some internal networks.
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        # RFC 5771: one datagram reaches many hosts (amplification, LAN reach).
        ("224.0.0.0/4", "multicast"),
        # RFC 919 limited broadcast: every host on the exit's LAN.
        ("255.255.255.255/32", "broadcast"),
        # RFC 1112 class E: reserved, some stacks treat it specially.
        ("240.0.0.0/4", "reserved"),
    )
)

#: IPv6 special-purpose ranges that are refused outright (after the wrapping
#: prefixes have been handled).  Anything outside 2000::/3 (the only global
#: unicast space IANA has allocated) is refused as well.
_V6_TABLE: Final[tuple[tuple[int, int, str], ...]] = tuple(
    (*_net(cidr), reason)
    for cidr, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        # RFC 6666 discard-only prefix.
        ("100::/64", "reserved (discard-only)"),
        # RFC 3849 / RFC 9637 documentation prefixes.
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        # RFC 5180 benchmarking.
        ("2001:2::/48", "benchmarking"),
        # RFC 2928 IETF protocol assignments (ORCHID, AMT, AS112...): refused
        # wholesale; Teredo (2001::/32) is unwrapped before this table is used.
        ("2001::/23", "reserved (IETF protocol assignments)"),
        # RFC 8402 SRv6 SIDs: steer packets through the operator's network.
        ("5f00::/16", "reserved (SRv6 SIDs)"),
        # RFC 4193 unique-local: the IPv6 equivalent of RFC 1918.
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        # RFC 3879 deprecated site-local, still honoured by some stacks.
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

_V6_GLOBAL_UNICAST: Final = _net("2000::/3")
_V6_MAPPED: Final = _net("::ffff:0:0/96")
_V6_COMPAT: Final = _net("::/96")
_V6_NAT64: Final = _net("64:ff9b::/96")
_V6_NAT64_LOCAL: Final = _net("64:ff9b:1::/48")
_V6_6TO4: Final = _net("2002::/16")
_V6_TEREDO: Final = _net("2001::/32")


def _in(value: int, rng: tuple[int, int]) -> bool:
    """Whether ``value`` lies in the inclusive integer range ``rng``."""
    return rng[0] <= value <= rng[1]


def _v4_reason(value: int) -> str | None:
    """Classify a 32-bit IPv4 address given as an integer."""
    for first, last, reason in _V4_TABLE:
        if first <= value <= last:
            return reason
    return None


def _wrapped(kind: str, *embedded: int) -> str | None:
    """Reason for an IPv6 address that wraps IPv4 ``embedded`` addresses.

    Translation prefixes are globally routable themselves, so the embedded IPv4
    address is what the packet finally reaches: it must pass the IPv4 table.
    """
    for value in embedded:
        inner = _v4_reason(value)
        if inner is not None:
            return f"{kind} wrapping a forbidden address ({inner})"
    return None


def _v6_reason(addr: ipaddress.IPv6Address) -> str | None:
    """Classify an IPv6 address, unwrapping embedded IPv4 addresses first."""
    if addr.scope_id:
        # A zone index pins the packet to a local interface (link-local reach).
        return "scoped address"
    value = int(addr)
    if _in(value, _V6_MAPPED):
        # ::ffff:a.b.c.d *is* a.b.c.d on a dual-stack socket.
        return _v4_reason(value & _V4_MAX)
    if _in(value, _V6_COMPAT) and value > 1:
        # Deprecated IPv4-compatible form (RFC 4291): never a real destination.
        return _wrapped("ipv4-compatible", value & _V4_MAX) or "reserved (ipv4-compatible)"
    if _in(value, _V6_NAT64):
        return _wrapped("nat64", value & _V4_MAX)
    if _in(value, _V6_NAT64_LOCAL):
        # RFC 8215 local-use NAT64, RFC 6052 /48 layout: bits 48..63 and 72..87
        # (bits 64..71 are the "u" octet).  Local-use, so refused either way.
        embedded = ((value >> 64) & 0xFFFF) << 16 | ((value >> 40) & 0xFFFF)
        return _wrapped("nat64", embedded) or "reserved (local-use nat64)"
    if _in(value, _V6_6TO4):
        return _wrapped("6to4", (value >> 80) & _V4_MAX)
    if _in(value, _V6_TEREDO):
        # Teredo: server IPv4 in bits 32..63, client IPv4 obfuscated (XOR) in the
        # low 32 bits; either could be made to point into a private network.
        server = (value >> 64) & _V4_MAX
        client = ~value & _V4_MAX
        return _wrapped("teredo", server, client)
    for first, last, reason in _V6_TABLE:
        if first <= value <= last:
            return reason
    if not _in(value, _V6_GLOBAL_UNICAST):
        return "reserved"
    return None


def is_forbidden_ip(ip: str) -> str | None:
    """Return why ``ip`` may not be contacted on behalf of a peer, or ``None``.

    ``None`` means the address is globally routable unicast and acceptable as an
    EXTEND target or exit destination.  Refusing the rest stops reflection into
    the relay's own host and LAN (loopback, private, link-local, metadata
    services), LAN-wide amplification (multicast, broadcast) and wrapping tricks
    (``::ffff:127.0.0.1``, ``64:ff9b::7f00:1``, ``2002:7f00:1::``).

    :raises TypeError: ``ip`` is not a ``str`` (``ipaddress`` would accept ints).
    :raises ValueError: ``ip`` is not an IPv4 or IPv6 literal.
    """
    if not isinstance(ip, str):
        raise TypeError(f"IP address must be a str, got {type(ip).__name__}")
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv4Address):
        return _v4_reason(int(addr))
    return _v6_reason(addr)


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 literal (not a name to resolve).

    IP literals skip DNS, so callers use this to decide whether the resolver and
    the DNS-rebinding check are needed.
    """
    if not isinstance(host, str):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_NUMERIC_LABEL: Final = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)", re.ASCII)
_MAX_NAME: Final = 253

#: RFC 6761 / RFC 8375 / RFC 7686 special-use names: an exit must not resolve
#: them (``localhost`` is loopback, ``.local`` sends mDNS queries onto the exit's
#: LAN, ``.onion`` would leak the user's onion lookups to a DNS server...).
_SPECIAL_USE_SUFFIXES: Final = (
    "localhost", "local", "onion", "invalid", "test", "example", "home.arpa",
    "internal", "lan", "alt",
)


def special_use_name_reason(name: str) -> str | None:
    """Return why hostname ``name`` must not be resolved by an exit, or ``None``.

    ``name`` must already be normalised by :func:`parse_destination`.  Resolving
    these names would reach the exit's own host or LAN (``localhost``, mDNS on
    ``.local``, ``home.arpa``) or leak lookups that are never public DNS.
    """
    for suffix in _SPECIAL_USE_SUFFIXES:
        if name == suffix or name.endswith("." + suffix):
            return f"special-use name (.{suffix})"
    return None


def _normalise_hostname(host: str) -> str:
    """Validate a DNS hostname and return its lower-case ASCII form.

    :raises ValueError: the name is not a valid (IDNA-encodable) hostname.
    """
    name = host[:-1] if host.endswith(".") else host
    if not name:
        raise ValueError("hostname is empty")
    if not name.isascii():
        try:
            # The stdlib codec (IDNA 2003 with nameprep) is deterministic and has
            # no third-party dependency; it rejects unassigned and prohibited
            # code points and over-long labels.
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"hostname is not IDNA-encodable: {host!r}") from exc
        if name.endswith("."):
            # A non-ASCII full stop (U+3002 ...) may have produced a second dot.
            name = name[:-1]
    name = name.lower()
    if len(name) > _MAX_NAME:
        raise ValueError(f"hostname is longer than {_MAX_NAME} characters")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise ValueError(f"hostname has an empty label: {host!r}")
        if len(label) > 63:
            raise ValueError(f"hostname label is longer than 63 characters: {label[:16]!r}...")
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"hostname label {label!r} must be letters, digits and inner hyphens")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # "127.1", "2130706433" or "0x7f000001" are not valid DNS names, but
        # inet_aton()/getaddrinfo() turn them into 127.0.0.1 without any DNS:
        # refuse numeric-looking names so they cannot dodge the IP checks.
        raise ValueError(f"hostname looks like a numeric IPv4 address: {host!r}")
    return name


def parse_destination(host: object, port: object) -> tuple[str, int]:
    """Validate a destination given to the public API; return ``(host, port)``.

    ``host`` is an IPv4/IPv6 literal (returned in canonical form) or a hostname
    (returned lower-case ASCII, IDNA-encoded, without a trailing dot).  Strict
    validation here means malformed names never reach the wire or an exit's
    resolver, and numeric tricks such as ``"127.1"`` are refused up front.

    :raises TypeError: ``host`` is not a ``str`` or ``port`` is not an ``int``
        (``bool`` is refused: ``True`` is not port 1).
    :raises ValueError: the host is malformed or the port is outside 1..65535.
    """
    if not isinstance(host, str):
        raise TypeError(f"destination host must be a str, got {type(host).__name__}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"destination port must be an int, got {type(port).__name__}")
    if not 1 <= port <= 65535:
        raise ValueError(f"destination port must be in 1..65535, got {port}")
    if not host:
        raise ValueError("destination host is empty")
    if len(host) > _MAX_NAME + 1:
        # Checked before IDNA so huge strings cost nothing to refuse.
        raise ValueError(f"destination host is longer than {_MAX_NAME} characters")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return _normalise_hostname(host), port
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        raise ValueError(f"scoped IPv6 addresses are not accepted: {host!r}")
    return str(addr), port
