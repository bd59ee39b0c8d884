# -*- test-case-name: test.test_addresses -*-
"""Tests for :mod:`tunnels.exit.addresses` (THREATS T6/T7, table 3.5)."""
from __future__ import annotations

import ipaddress

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tunnels.exit.addresses import (
    is_forbidden_ip,
    is_ip_literal,
    parse_destination,
    special_use_name_reason,
)


def _dotted(text: str) -> int:
    """Parse dotted-quad IPv4 by hand (independent of :mod:`ipaddress`)."""
    a, b, c, d = (int(part) for part in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _block(start: str, prefix: int) -> tuple[int, int]:
    """Inclusive integer range of ``start/prefix``, computed by hand."""
    first = _dotted(start)
    return first, first + (1 << (32 - prefix)) - 1


#: Reference table copied from the IANA IPv4 Special-Purpose Address Registry
#: (plus 224/4 multicast), as raw integer ranges.  Each range is refused.
IANA_V4_FORBIDDEN: list[tuple[int, int]] = [
    _block("0.0.0.0", 8),
    _block("10.0.0.0", 8),
    _block("100.64.0.0", 10),
    _block("127.0.0.0", 8),
    _block("169.254.0.0", 16),
    _block("172.16.0.0", 12),
    _block("192.0.0.0", 24),
    _block("192.0.2.0", 24),
    _block("192.88.99.0", 24),
    _block("192.168.0.0", 16),
    _block("198.18.0.0", 15),
    _block("198.51.100.0", 24),
    _block("203.0.113.0", 24),
    _block("224.0.0.0", 4),
    _block("240.0.0.0", 4),
    (0xFFFFFFFF, 0xFFFFFFFF),
]

_BOUNDARIES: list[int] = sorted(
    {max(0, min(0xFFFFFFFF, v + d)) for lo, hi in IANA_V4_FORBIDDEN for v in (lo, hi) for d in (-1, 0, 1)}
)


def reference_v4_forbidden(value: int) -> bool:
    """Independent reference: is the 32-bit ``value`` in any IANA range?"""
    return any(lo <= value <= hi for lo, hi in IANA_V4_FORBIDDEN)


def _v4_text(value: int) -> str:
    """Dotted-quad text of a 32-bit integer, built by hand."""
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


v4_ints = st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from(_BOUNDARIES))

#: (address, expected reason) for every special-purpose range, at both ends.
FORBIDDEN: list[tuple[str, str]] = [
    ("0.0.0.0", "unspecified"),
    ("0.0.0.1", "reserved (this network)"),
    ("0.255.255.255", "reserved (this network)"),
    ("10.0.0.0", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.0", "shared (100.64/10)"),
    ("100.127.255.255", "shared (100.64/10)"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.0.1", "link-local"),
    ("169.254.169.254", "link-local"),
    ("172.16.0.0", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.0", "reserved (IETF protocol assignments)"),
    ("192.0.0.9", "reserved (IETF protocol assignments)"),
    ("192.0.0.255", "reserved (IETF protocol assignments)"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "reserved (6to4 relay anycast)"),
    ("192.168.0.1", "private"),
    ("192.168.255.255", "private"),
    ("198.18.0.0", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.255", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fc00::1", "private"),
    ("fdff:ffff::1", "private"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("2001:10::1", "reserved (IETF protocol assignments)"),
    ("2001:1ff::1", "reserved (IETF protocol assignments)"),
    ("100::1", "reserved (discard-only)"),
    ("5f00::1", "reserved (SRv6 SIDs)"),
    ("4000::1", "reserved"),
    ("::ffff:0:8.8.8.8", "reserved"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::127.0.0.1", "ipv4-compatible wrapping a forbidden address (loopback)"),
    ("::8.8.8.8", "reserved (ipv4-compatible)"),
    ("64:ff9b::7f00:1", "nat64 wrapping a forbidden address (loopback)"),
    ("64:ff9b::a9fe:a9fe", "nat64 wrapping a forbidden address (link-local)"),
    ("64:ff9b:1:7f00:0:100::", "nat64 wrapping a forbidden address (loopback)"),
    ("64:ff9b:1:808:8:800::", "reserved (local-use nat64)"),
    ("2002:7f00:1::", "6to4 wrapping a forbidden address (loopback)"),
    ("2002:c0a8:101::1", "6to4 wrapping a forbidden address (private)"),
    # Teredo: client 10.0.0.1 (obfuscated as ~0x0a000001), public server.
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "teredo wrapping a forbidden address (private)"),
    # Teredo: server 127.0.0.1, client 8.8.8.8.
    ("2001:0:7f00:1::f7f7:f7f7", "teredo wrapping a forbidden address (loopback)"),
    ("fe80::1%eth0", "scoped address"),
    ("2606:4700::1111%1", "scoped address"),
]

#: Globally routable addresses (pure classification; nothing is contacted).
ALLOWED: list[str] = [
    "8.8.8.8",
    "1.1.1.1",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.0",
    "192.0.3.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
]


class IsForbiddenIPTests(SynchronousTestCase):
    """Classification of IP literals."""

    def test_special_purpose_table(self) -> None:
        """Every special-purpose range is refused with its expected reason."""
        for ip, reason in FORBIDDEN:
            self.assertEqual(is_forbidden_ip(ip), reason, ip)

    def test_public_allowed(self) -> None:
        """Globally routable addresses and their safe wrappings are allowed."""
        for ip in ALLOWED:
            self.assertIsNone(is_forbidden_ip(ip), ip)

    def test_invalid_strings_raise(self) -> None:
        """Malformed literals raise ValueError instead of being guessed at."""
        for bad in ["", "1.2.3", "01.2.3.4", "256.0.0.1", "1.2.3.4 ", "::g", "1.2.3.4/32",
                    "localhost", "0x7f000001", "[::1]"]:
            self.assertRaises(ValueError, is_forbidden_ip, bad)

    def test_non_str_raises_type_error(self) -> None:
        """Integers and bytes are refused (ipaddress would accept 2130706433)."""
        for bad in [2130706433, b"\x7f\x00\x00\x01", None]:
            self.assertRaises(TypeError, is_forbidden_ip, bad)  # type: ignore[arg-type]

    @settings(max_examples=2000, deadline=None)
    @given(v4_ints)
    def test_matches_iana_reference(self, value: int) -> None:
        """Random IPv4 addresses agree with the raw IANA integer table."""
        self.assertEqual(is_forbidden_ip(_v4_text(value)) is not None, reference_v4_forbidden(value))

    @settings(max_examples=1000, deadline=None)
    @given(v4_ints)
    def test_allowed_implies_python_global(self, value: int) -> None:
        """Whatever we allow, ipaddress also calls global (we are never laxer)."""
        text = _v4_text(value)
        if is_forbidden_ip(text) is None:
            self.assertTrue(ipaddress.IPv4Address(text).is_global, text)

    @settings(max_examples=500, deadline=None)
    @given(v4_ints)
    def test_mapped_equals_embedded(self, value: int) -> None:
        """An IPv4-mapped address is classified exactly like its IPv4 address."""
        self.assertEqual(is_forbidden_ip(f"::ffff:{_v4_text(value)}"), is_forbidden_ip(_v4_text(value)))

    @settings(max_examples=500, deadline=None)
    @given(v4_ints, st.integers(0, 0xFFFF))
    @example(0x7F000001, 0)
    def test_wrappers_follow_embedded(self, value: int, low: int) -> None:
        """NAT64, 6to4 and Teredo wrappings are refused iff the embedded IPv4 is."""
        bad = reference_v4_forbidden(value)
        hi, lo = value >> 16, value & 0xFFFF
        nat64 = f"64:ff9b::{hi:x}:{lo:x}"
        sixtofour = f"2002:{hi:x}:{lo:x}::{low:x}"
        client = ~value & 0xFFFFFFFF
        teredo = f"2001:0:4136:e378:8000:63bf:{client >> 16:x}:{client & 0xFFFF:x}"
        for wrapped in (nat64, sixtofour, teredo):
            self.assertEqual(is_forbidden_ip(wrapped) is not None, bad, wrapped)


class IsIPLiteralTests(SynchronousTestCase):
    """Telling IP literals from names."""

    def test_literals(self) -> None:
        """IPv4 and IPv6 literals are recognised; names and junk are not."""
        for literal in ["8.8.8.8", "::1", "2606:4700::1111", "::ffff:1.2.3.4"]:
            self.assertTrue(is_ip_literal(literal), literal)
        for other in ["example.com", "127.1", "", "1.2.3.4.", "[::1]", 2130706433]:
            self.assertFalse(is_ip_literal(other), other)  # type: ignore[arg-type]


class ParseDestinationTests(SynchronousTestCase):
    """Validation of API destinations (table 3.5 hostname rows)."""

    def test_ip_literals_canonical(self) -> None:
        """IP literals come back in canonical text form."""
        self.assertEqual(parse_destination("8.8.8.8", 53), ("8.8.8.8", 53))
        self.assertEqual(parse_destination("2606:4700:0:0:0:0:0:1111", 443), ("2606:4700::1111", 443))

    def test_hostnames_normalised(self) -> None:
        """Hostnames are lower-cased and lose one trailing dot."""
        self.assertEqual(parse_destination("Example.COM", 80), ("example.com", 80))
        self.assertEqual(parse_destination("example.com.", 80), ("example.com", 80))
        self.assertEqual(parse_destination("a-b.c0.net", 1), ("a-b.c0.net", 1))

    def test_idna(self) -> None:
        """Non-ASCII names are returned in their IDNA ASCII form."""
        self.assertEqual(parse_destination("bücher.de", 80), ("xn--bcher-kva.de", 80))
        self.assertEqual(parse_destination("例え。jp。", 80), ("xn--r8jz45g.jp", 80))
        self.assertEqual(parse_destination("☃.net", 80), ("xn--n3h.net", 80))

    def test_idna_refused(self) -> None:
        """Names that cannot be IDNA-encoded raise ValueError."""
        for bad in ["a\u2028b.com", "a" * 70 + "é.com", "é" * 300]:
            self.assertRaises(ValueError, parse_destination, bad, 80)

    def test_length_limits(self) -> None:
        """253 characters and 63-character labels are the maximum accepted."""
        label = "a" * 63
        name = ".".join([label, label, label, "a" * 61])
        self.assertEqual(len(name), 253)
        self.assertEqual(parse_destination(name, 80), (name, 80))
        self.assertEqual(parse_destination(name + ".", 80), (name, 80))
        self.assertRaises(ValueError, parse_destination, name + "a", 80)
        self.assertRaises(ValueError, parse_destination, "a" * 64 + ".com", 80)
        self.assertRaises(ValueError, parse_destination, "a" * 100000, 80)

    def test_malformed_names(self) -> None:
        """Bad labels, empty labels and stray characters raise ValueError."""
        for bad in ["", ".", "..", "a..b", "a.com..", ".a.com", "-a.com", "a-.com", "a_b.com",
                    "a b.com", "a/b", "[::1]", "a.com:80", "fe80::1%eth0", "a\x00.com"]:
            self.assertRaises(ValueError, parse_destination, bad, 80)

    def test_numeric_names_refused(self) -> None:
        """Names that inet_aton would read as IPv4 (127.1, 0x7f000001) are refused."""
        for bad in ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "1.2.3.4.5", "0x7f.1"]:
            self.assertRaises(ValueError, parse_destination, bad, 80)

    def test_type_errors(self) -> None:
        """Non-str hosts and non-int (or bool) ports raise TypeError."""
        for host in [b"example.com", None, 1234, ["a"]]:
            self.assertRaises(TypeError, parse_destination, host, 80)
        for port in [True, False, 80.0, "80", None]:
            self.assertRaises(TypeError, parse_destination, "example.com", port)

    def test_port_range(self) -> None:
        """Ports 1 and 65535 pass; 0, -1 and 65536 raise ValueError."""
        self.assertEqual(parse_destination("example.com", 1)[1], 1)
        self.assertEqual(parse_destination("example.com", 65535)[1], 65535)
        for port in [0, -1, 65536, 2**64]:
            self.assertRaises(ValueError, parse_destination, "example.com", port)

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=300))
    def test_fuzz_only_documented_errors(self, host: str) -> None:
        """Arbitrary text either parses to a valid ASCII name/literal or raises ValueError."""
        try:
            name, _ = parse_destination(host, 80)
        except ValueError:
            return
        self.assertTrue(name.isascii())
        self.assertLessEqual(len(name), 253)
        self.assertTrue(is_ip_literal(name) or all(0 < len(lbl) <= 63 for lbl in name.split(".")))


class SpecialUseNameTests(SynchronousTestCase):
    """Names an exit must never resolve."""

    def test_special_use(self) -> None:
        """localhost, .local, .onion and friends are flagged; public names are not."""
        for name in ["localhost", "foo.localhost", "printer.local", "x.onion", "a.invalid",
                     "router.home.arpa"]:
            self.assertIsNotNone(special_use_name_reason(name), name)
        for name in ["example.com", "localhost.com", "local.example.org", "onion.net"]:
            self.assertIsNone(special_use_name_reason(name), name)
