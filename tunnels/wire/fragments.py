# -*- test-case-name: test.test_fragments -*-
"""Fragments: datagrams larger than one cell, carried as a run of pieces (doc/protocol.md 4.1).

A datagram that fits in one relay message travels whole (``DATA``).  A larger one is cut
into *pieces*, each the data of one relay message in its own constant-size cell::

    datagram id (4, big-endian) | index (1) | count (1) | chunk

``count`` is the number of pieces of the datagram (1 to :data:`MAX_PIECES`), ``index``
(0 to ``count - 1``) the piece's place; the chunks joined in index order are the datagram's
message.  Ids are per circuit end and direction, start at a random point and count up (mod
2**32), so two datagrams in flight never share one.  The pieces are inside the onion (or,
between hidden-service members, inside the end-to-end seal): relays in the middle see cells,
never piece headers.

Between members the sealed plaintext is also padded to one fixed size (:func:`pad`) so the
rendezvous point, which reads relay message lengths, learns nothing but the number of cells.

Pure functions; decoding is total (a value or :class:`~tunnels.errors.DecodeError`).
"""
from __future__ import annotations

import secrets
from typing import NamedTuple

from ..errors import DecodeError

PIECE_HEADER = 6
"""Bytes of a piece header: datagram id (4), index (1), count (1)."""
MAX_PIECES = 255
"""Most pieces one datagram may have (``count`` is one byte)."""
ID_SPACE = 2 ** 32
LENGTH_PREFIX = 2
"""Bytes of the length in front of a padded piece (:func:`pad`)."""


class Piece(NamedTuple):
    """One piece of a datagram (see the module docstring for the layout)."""

    datagram_id: int
    index: int
    count: int
    chunk: bytes


def new_datagram_id() -> int:
    """A random starting id for one circuit end and direction (the ids then count up)."""
    return secrets.randbits(32)


def pieces_needed(length: int, chunk_size: int) -> int:
    """Pieces of at most ``chunk_size`` bytes that a message of ``length`` bytes needs (at least 1)."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    return max(1, -(-length // chunk_size))


def split(message: bytes, datagram_id: int, chunk_size: int) -> list[bytes]:
    """Cut ``message`` into encoded pieces of at most ``chunk_size`` chunk bytes each.

    Raises ``ValueError`` if it would take more than :data:`MAX_PIECES` pieces or the id
    is out of range (a caller's bug: sizes are checked at the API before any I/O).
    """
    count = pieces_needed(len(message), chunk_size)
    if count > MAX_PIECES:
        raise ValueError(f"a message of {len(message)} bytes needs {count} pieces, more than {MAX_PIECES}")
    if not 0 <= datagram_id < ID_SPACE:
        raise ValueError(f"datagram id {datagram_id} out of range")
    head = datagram_id.to_bytes(4, "big")
    view = memoryview(message)
    return [head + bytes((index, count)) + view[index * chunk_size:(index + 1) * chunk_size]
            for index in range(count)]


def decode_piece(data: bytes) -> Piece:
    """Decode one piece; raises :class:`DecodeError` for a short header, count 0 or index >= count."""
    if len(data) < PIECE_HEADER:
        raise DecodeError("truncated piece header")
    index, count = data[4], data[5]
    if count == 0 or index >= count:
        raise DecodeError(f"piece {index} of {count}")
    return Piece(int.from_bytes(data[:4], "big"), index, count, bytes(data[PIECE_HEADER:]))


def pad(piece: bytes, size: int) -> bytes:
    """``length (2) | piece | zero bytes`` of exactly ``size`` bytes (a fixed plaintext size)."""
    if len(piece) + LENGTH_PREFIX > size:
        raise ValueError(f"piece of {len(piece)} bytes does not fit in {size}")
    return len(piece).to_bytes(2, "big") + piece + bytes(size - LENGTH_PREFIX - len(piece))


def unpad(data: bytes) -> bytes:
    """Inverse of :func:`pad`; raises :class:`DecodeError` if the length exceeds the data."""
    if len(data) < LENGTH_PREFIX:
        raise DecodeError("truncated padded piece")
    length = int.from_bytes(data[:LENGTH_PREFIX], "big")
    if length > len(data) - LENGTH_PREFIX:
        raise DecodeError("padded piece length exceeds the data")
    return data[LENGTH_PREFIX:LENGTH_PREFIX + length]
