# -*- test-case-name: test.test_cells -*-
"""Link-level cell framing.

Every cell is one UDP datagram of exactly :data:`CELL_SIZE` bytes::

    MARK (1) | type (1) | circuit id (4, per link) | payload (CELL_SIZE - 6)

``MARK`` is never the first byte of an IPv8 packet (those start with ``0x00``), so
the transport hands cells straight to the circuit table without IPv8 decoding.
All cell types have the same size, so a cell's length says nothing about what it
carries or where on a circuit it is.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import IntEnum

from ..errors import DecodeError
from ..settings import MAX_HOPS

CELL_MARK = 0xC7
CELL_SIZE = 1232
"""Largest UDP payload that never fragments on an IPv6 path (1280 - 40 - 8)."""
LINK_HEADER = 6
PAYLOAD_SIZE = CELL_SIZE - LINK_HEADER

SLOT = 32
"""Bytes of one hop's slot in an onion header (doc/protocol.md section 3)."""
HEADER_SIZE = SLOT * MAX_HOPS
"""The onion header of a RELAY cell's payload: one slot per hop."""
BODY_SIZE = PAYLOAD_SIZE - HEADER_SIZE
"""The onion body of a RELAY cell's payload: the relay message, encrypted per hop."""

ID_SIZE = 20
KEY_SIZE = 32
TOKEN_SIZE = 16


class CellType(IntEnum):
    """Link cell types (open: unknown values are counted and dropped)."""

    CREATE = 1
    CREATED = 2
    RELAY = 3
    DESTROY = 4
    INTRODUCE = 5       # a seeker's last hop -> introduction point (not on a circuit)
    INTRODUCE_ACK = 6   # introduction point -> the seeker's last hop


def new_circuit_id() -> int:
    """A fresh non-zero 32-bit circuit id from the OS CSPRNG (ids gate injection)."""
    while True:
        cid = secrets.randbits(32)
        if cid:
            return cid


def relay_prefix(circuit_id: int) -> bytes:
    """The 6 link-header bytes of a RELAY cell on ``circuit_id``."""
    return bytes((CELL_MARK, CellType.RELAY)) + circuit_id.to_bytes(4, "big")


def frame(cell_type: CellType, circuit_id: int, payload: bytes) -> bytes:
    """Build a full cell; ``payload`` is padded with random bytes to the cell size."""
    if len(payload) > PAYLOAD_SIZE:
        raise ValueError(f"cell payload of {len(payload)} bytes exceeds {PAYLOAD_SIZE}")
    pad = secrets.token_bytes(PAYLOAD_SIZE - len(payload)) if len(payload) < PAYLOAD_SIZE else b""
    return bytes((CELL_MARK, cell_type)) + circuit_id.to_bytes(4, "big") + payload + pad


@dataclass(frozen=True, slots=True)
class Create:
    """Start of an ntor handshake with the receiving relay.

    ``node_id`` and ``onion_key`` name the relay the client means (checked by the
    relay), ``client_key`` is the client's ephemeral X25519 key and ``token`` a
    secret of this link circuit that authenticates DESTROY cells.
    """

    node_id: bytes
    onion_key: bytes
    client_key: bytes
    token: bytes

    SIZE = ID_SIZE + 2 * KEY_SIZE + TOKEN_SIZE

    def encode(self) -> bytes:
        return self.node_id + self.onion_key + self.client_key + self.token

    @classmethod
    def decode(cls, payload: bytes) -> Create:
        if len(payload) < cls.SIZE:
            raise DecodeError("truncated CREATE")
        a, b, c = ID_SIZE, ID_SIZE + KEY_SIZE, ID_SIZE + 2 * KEY_SIZE
        return cls(payload[:a], payload[a:b], payload[b:c], payload[c:cls.SIZE])


@dataclass(frozen=True, slots=True)
class Created:
    """The relay's half of the handshake: its ephemeral key and AUTH."""

    server_key: bytes
    auth: bytes

    SIZE = 2 * KEY_SIZE

    def encode(self) -> bytes:
        return self.server_key + self.auth

    @classmethod
    def decode(cls, payload: bytes) -> Created:
        if len(payload) < cls.SIZE:
            raise DecodeError("truncated CREATED")
        return cls(payload[:KEY_SIZE], payload[KEY_SIZE:cls.SIZE])


def parse_link_header(datagram: bytes) -> tuple[int, int]:
    """Return ``(cell type, circuit id)`` of a datagram that is a well-formed cell.

    Raises :class:`DecodeError` for a wrong size, mark or a zero circuit id.
    """
    if len(datagram) != CELL_SIZE:
        raise DecodeError(f"cell of {len(datagram)} bytes, expected {CELL_SIZE}")
    if datagram[0] != CELL_MARK:
        raise DecodeError("not a cell")
    cid = int.from_bytes(datagram[2:6], "big")
    if cid == 0:
        raise DecodeError("circuit id 0 is reserved")
    return datagram[1], cid
