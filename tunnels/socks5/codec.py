# -*- test-case-name: test.test_socks5 -*-
"""The SOCKS5 wire format (RFC 1928): greeting, request, reply and the UDP request header,
and the username/password subnegotiation (RFC 1929).

Pure functions and values; no I/O.  Decoders return ``None`` while input is incomplete
and raise :class:`Socks5Error` (with the reply code to answer, if any) on malformed bytes.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum

Address = tuple[str, int]
VERSION = 5
NO_AUTH = 0x00
USERNAME_PASSWORD = 0x02
NO_ACCEPTABLE_METHODS = 0xFF
USERPASS_VERSION = 0x01
"""RFC 1929's subnegotiation version."""


class Command(IntEnum):
    """SOCKS5 request commands."""

    CONNECT = 1
    BIND = 2
    UDP_ASSOCIATE = 3


class AddressType(IntEnum):
    """SOCKS5 address types (ATYP)."""

    IPV4 = 1
    DOMAIN = 3
    IPV6 = 4


class Reply(IntEnum):
    """SOCKS5 reply codes (REP)."""

    SUCCEEDED = 0
    GENERAL_FAILURE = 1
    NOT_ALLOWED = 2
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4
    CONNECTION_REFUSED = 5
    TTL_EXPIRED = 6
    COMMAND_NOT_SUPPORTED = 7
    ADDRESS_TYPE_NOT_SUPPORTED = 8


class Socks5Error(ValueError):
    """Malformed SOCKS5 bytes; ``reply`` is the code to answer with, if any."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed SOCKS5 request (after negotiation)."""

    command: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A parsed RFC 1928 UDP request header and its payload."""

    frag: int
    host: str
    port: int
    payload: bytes


def parse_greeting(data: bytes) -> tuple[bytes, int] | None:
    """Parse ``VER NMETHODS METHODS``: return (methods, bytes used), or None if incomplete.

    :raises Socks5Error: wrong version or no methods offered.
    """
    if len(data) < 2:
        return None
    if data[0] != VERSION:
        raise Socks5Error(f"not SOCKS5 (version {data[0]})")
    count = data[1]
    if count == 0:
        raise Socks5Error("no authentication methods offered")
    if len(data) < 2 + count:
        return None
    return bytes(data[2:2 + count]), 2 + count


def parse_userpass(data: bytes) -> tuple[tuple[bytes, bytes], int] | None:
    """Parse RFC 1929's ``VER ULEN UNAME PLEN PASSWD``: ((username, password), bytes used),
    or None if incomplete.  Empty names and passwords are accepted (some clients send them).

    :raises Socks5Error: a version other than 1.
    """
    if not data:
        return None
    if data[0] != USERPASS_VERSION:
        raise Socks5Error(f"not RFC 1929 username/password (version {data[0]})")
    if len(data) < 2:
        return None
    user_end = 2 + data[1]
    if len(data) < user_end + 1:
        return None
    end = user_end + 1 + data[user_end]
    if len(data) < end:
        return None
    return (bytes(data[2:user_end]), bytes(data[user_end + 1:end])), end


def encode_userpass_reply(success: bool) -> bytes:
    """RFC 1929's answer: ``VER STATUS``, status 0 for success."""
    return bytes((USERPASS_VERSION, 0 if success else 1))


def encode_userpass(username: bytes, password: bytes) -> bytes:
    """RFC 1929's request (what a client sends); each field 0 to 255 bytes."""
    if len(username) > 255 or len(password) > 255:
        raise ValueError("RFC 1929 username and password are at most 255 bytes each")
    return bytes((USERPASS_VERSION, len(username))) + username + bytes((len(password),)) + password


def parse_address(data: bytes, offset: int) -> tuple[Address, int] | None:
    """Parse ``ATYP DST.ADDR DST.PORT`` at ``offset``: ((host, port), next offset), None if incomplete.

    IPv4/IPv6 addresses come back in canonical text form; domain names as given
    (ASCII, not resolved).

    :raises Socks5Error: unknown ATYP (reply 0x08), an empty or non-ASCII name.
    """
    if len(data) <= offset:
        return None
    kind = data[offset]
    start = offset + 1
    if kind == AddressType.IPV4:
        end = start + 4
        if len(data) < end + 2:
            return None
        host = str(ipaddress.IPv4Address(bytes(data[start:end])))
    elif kind == AddressType.IPV6:
        end = start + 16
        if len(data) < end + 2:
            return None
        host = str(ipaddress.IPv6Address(bytes(data[start:end])))
    elif kind == AddressType.DOMAIN:
        if len(data) <= start:
            return None
        length = data[start]
        if length == 0:
            raise Socks5Error("empty domain name", Reply.GENERAL_FAILURE)
        end = start + 1 + length
        if len(data) < end + 2:
            return None
        raw = bytes(data[start + 1:end])
        if not all(0x21 <= b < 0x7F for b in raw):
            raise Socks5Error("domain name is not printable ASCII", Reply.GENERAL_FAILURE)
        host = raw.decode("ascii")
    else:
        raise Socks5Error(f"unknown address type {kind}", Reply.ADDRESS_TYPE_NOT_SUPPORTED)
    port = int.from_bytes(data[end:end + 2], "big")
    return (host, port), end + 2


def parse_request(data: bytes) -> tuple[Request, int] | None:
    """Parse ``VER CMD RSV ATYP DST.ADDR DST.PORT``: (request, bytes used), or None if incomplete.

    :raises Socks5Error: wrong version, non-zero RSV or a bad address.
    """
    if len(data) < 4:
        return None
    if data[0] != VERSION:
        raise Socks5Error(f"not SOCKS5 (version {data[0]})")
    if data[2] != 0:
        raise Socks5Error("reserved byte is not zero", Reply.GENERAL_FAILURE)
    parsed = parse_address(data, 3)
    if parsed is None:
        return None
    (host, port), used = parsed
    return Request(data[1], host, port), used


def encode_address(host: str, port: int) -> bytes:
    """``ATYP ADDR PORT`` for an IP literal or a domain name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("ascii")
        if not 0 < len(name) < 256:
            raise ValueError(f"domain name of {len(name)} bytes cannot be encoded") from None
        head = bytes((AddressType.DOMAIN, len(name))) + name
    else:
        head = bytes((AddressType.IPV4 if ip.version == 4 else AddressType.IPV6,)) + ip.packed
    return head + port.to_bytes(2, "big")


def encode_reply(code: Reply, address: Address = ("0.0.0.0", 0)) -> bytes:
    """A reply to a request: ``VER REP RSV BND.ADDR BND.PORT``."""
    return bytes((VERSION, code, 0)) + encode_address(*address)


def parse_udp_datagram(data: bytes) -> UdpDatagram:
    """Parse ``RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA`` (RFC 1928 section 7).

    :raises Socks5Error: truncated, non-zero RSV or a bad address.
    """
    if len(data) < 4:
        raise Socks5Error("truncated UDP header")
    if data[0] != 0 or data[1] != 0:
        raise Socks5Error("reserved bytes are not zero")
    parsed = parse_address(data, 3)
    if parsed is None:
        raise Socks5Error("truncated UDP header")
    (host, port), used = parsed
    return UdpDatagram(data[2], host, port, bytes(data[used:]))


def encode_udp_datagram(host: str, port: int, payload: bytes) -> bytes:
    """Wrap ``payload`` from ``(host, port)`` in the RFC 1928 UDP header (FRAG 0)."""
    return b"\x00\x00\x00" + encode_address(host, port) + payload

