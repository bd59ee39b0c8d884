# -*- test-case-name: test.test_dht_krpc -*-
"""Bencode decoding for KRPC: strict and fast, with one tolerated deviation (pure).

:func:`decode` tries ``fastbencode`` (strict, in Rust, safe on deep nesting) first.  If that
refuses a datagram of at most :data:`LENIENT_MAX` bytes, :func:`decode_lenient` tries again
accepting dictionary keys in any order, which some DHT clients send and libtorrent accepts
(its ``bdecode`` never checks order).  Everything else stays refused: duplicate keys (two
readers could disagree on the value), leading zeros, ``-0``, non-string keys, truncation,
trailing bytes, and nesting deeper than :data:`MAX_DEPTH` (a KRPC message nests 3 levels).

The lenient path is a loop over an explicit stack, so its cost is linear in the datagram
and bounded by :data:`LENIENT_MAX`, and no input can exhaust the Python stack.
"""
from __future__ import annotations

import re
from typing import Any, Final

from fastbencode import bdecode  # type: ignore[attr-defined]

LENIENT_MAX: Final = 2048
"""Longest datagram the lenient path reads (BEP 5 messages are well under 1,500 bytes)."""
MAX_DEPTH: Final = 32
"""Deepest nesting the lenient path accepts."""

_INT = re.compile(rb"i(-?(?:0|[1-9][0-9]*))e")
_LEN = re.compile(rb"(0|[1-9][0-9]*):")


class BencodeError(ValueError):
    """The bytes are not one bencoded value (``str(error)`` says why)."""


def decode(data: bytes) -> Any:
    """One bencoded value; keys out of order are accepted (see the module docstring).

    :raises BencodeError: anything else that is not canonical bencode.
    """
    try:
        return bdecode(data)
    except Exception:  # fastbencode: ValueError/TypeError/RecursionError on bad input
        if len(data) > LENIENT_MAX:
            raise BencodeError("not strict bencode, too long for the lenient path") from None
    return decode_lenient(data)


def decode_lenient(data: bytes) -> Any:
    """Decode ``data`` accepting unsorted dictionary keys; :class:`BencodeError` otherwise."""
    stack: list[list[Any]] = []     # [container, pending dictionary key or None]
    pos, end = 0, len(data)
    while True:
        if pos >= end:
            raise BencodeError("truncated")
        c = data[pos]
        value: Any
        if c == 0x6C or c == 0x64:             # l, d
            if len(stack) >= MAX_DEPTH:
                raise BencodeError("nested too deep")
            stack.append([[] if c == 0x6C else {}, None])
            pos += 1
            continue
        if c == 0x65:                          # e
            if not stack:
                raise BencodeError("unexpected end")
            value, key = stack.pop()
            if key is not None:
                raise BencodeError("dictionary key without value")
            pos += 1
        elif c == 0x69:                        # i
            m = _INT.match(data, pos)
            if m is None or m.group(1) == b"-0":
                raise BencodeError("bad integer")
            value, pos = int(m.group(1)), m.end()
        else:
            m = _LEN.match(data, pos)
            if m is None:
                raise BencodeError("bad token")
            start = m.end()
            pos = start + int(m.group(1))
            if pos > end:
                raise BencodeError("truncated string")
            value = data[start:pos]
        if not stack:
            if pos != end:
                raise BencodeError("trailing bytes")
            return value
        top = stack[-1]
        container = top[0]
        if isinstance(container, list):
            container.append(value)
        elif top[1] is None:
            if not isinstance(value, bytes):
                raise BencodeError("dictionary key is not a string")
            if value in container:
                raise BencodeError("duplicate dictionary key")
            top[1] = value
        else:
            container[top[1]] = value
            top[1] = None
