# -*- test-case-name: test.test_dht_bep42 -*-
"""BEP 42 node-id restriction: ids derived from the node's external IPv4 address.

BEP 42 ties the first 21 bits of a node id to ``crc32c((ip & 0x030f3fff) | (r << 29))``
where ``r`` is the low 3 bits of the id's last byte, so a single IP can only take 8 id
prefixes and cannot place itself next to an arbitrary target (the Sybil/eclipse attack
of THREATS.md T13).  Local and private addresses are exempt.

Our decision (see ``doc/dht.md``): the functions are here and tested against BEP 42's
vectors; a node may *enforce* them for routing-table admission
(``DHTConfig.enforce_node_id``, off by default, as in libtorrent), and may take an id made
with :func:`node_id_for_ip` when it knows its external address.  It never refuses to
*answer* a query for a non-conforming id.
"""
from __future__ import annotations

import ipaddress
import secrets
import socket
from typing import Final

_CRC32C_POLY: Final = 0x82F63B78


def _table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE: Final = _table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as BEP 42 uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _prefix(ip: str, r: int) -> int:
    value = int.from_bytes(socket.inet_aton(ip), "big") & 0x030F3FFF
    value |= (r & 0x7) << 29
    return crc32c(value.to_bytes(4, "big"))


def node_id_for_ip(ip: str, rand: int | None = None, tail: bytes | None = None) -> bytes:
    """A BEP 42-conforming id for external IPv4 ``ip`` (``rand``: last byte, random if
    ``None``; ``tail``: the 16 free middle bytes, random if ``None``)."""
    rand = secrets.randbelow(256) if rand is None else rand
    tail = secrets.token_bytes(17) if tail is None else tail
    crc = _prefix(ip, rand)
    return bytes([(crc >> 24) & 0xFF, (crc >> 16) & 0xFF,
                  ((crc >> 8) & 0xF8) | (tail[0] & 0x7)]) + tail[1:17] + bytes([rand])


def is_exempt(ip: str) -> bool:
    """BEP 42 does not apply to local, private and link-local addresses."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return True
    return not addr.is_global


def id_matches_ip(node_id: bytes, ip: str) -> bool:
    """True if ``node_id`` conforms to BEP 42 for ``ip`` (always true for exempt IPs)."""
    if is_exempt(ip):
        return True
    if len(node_id) != 20:
        return False
    crc = _prefix(ip, node_id[19])
    return (node_id[0] == (crc >> 24) & 0xFF and node_id[1] == (crc >> 16) & 0xFF
            and node_id[2] & 0xF8 == (crc >> 8) & 0xF8)
