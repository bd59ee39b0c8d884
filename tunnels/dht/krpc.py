# -*- test-case-name: test.test_dht_krpc -*-
"""KRPC codec of BEP 5: bencoded dictionaries over UDP, compact node and peer info.

Pure functions only: bytes in, typed messages out, and back.  :func:`decode_message`
is *total*: it returns a :class:`Query`, :class:`Response` or :class:`Error`, or raises
:class:`KRPCDecodeError`, never anything else, whatever the bytes.

Be liberal in what you accept (as libtorrent is), strict in what you send: we decode
dictionaries with keys out of order (:mod:`tunnels.dht.bencode`), transaction ids of any
length, the empty one included (BEP 5 sets no length; the datagram cap bounds it), unknown
top-level and argument keys, a missing or odd ``v``, error lists whose message is missing or
not a string, and compact node strings whose length is not a multiple of 26 (the tail is
ignored).  We send canonical bencode, 4-byte transaction ids, and nothing BEP 5 does not name
besides ``v``, ``ip`` (BEP 42) and ``ro`` (BEP 43).
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from fastbencode import bencode  # type: ignore[attr-defined]

from tunnels.dht import bencode as bdecoding
from tunnels.errors import DecodeError

Address = tuple[str, int]
"""An IPv4 UDP address as ``(host, port)``."""

ID_LENGTH: Final = 20
"""Node ids and info hashes are 160 bits."""
COMPACT_NODE_LENGTH: Final = 26
COMPACT_PEER_LENGTH: Final = 6
MAX_DATAGRAM: Final = 8192
"""Datagrams longer than this are dropped before decoding (a KRPC message is < 1500 bytes)."""


class ErrorCode(IntEnum):
    """KRPC error codes of BEP 5 (open: other codes still decode)."""

    GENERIC = 201
    SERVER = 202
    PROTOCOL = 203
    METHOD_UNKNOWN = 204


class KRPCDecodeError(DecodeError):
    """A datagram is not a valid KRPC message; ``reason`` names the drop counter.

    ``tid`` is set when the bytes were a dictionary with a usable transaction id,
    so a query with bad arguments can still be answered with error 203.
    """

    def __init__(self, reason: str, tid: bytes | None = None, is_query: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tid = tid
        self.is_query = is_query


@dataclass(frozen=True, slots=True)
class Query:
    """A KRPC query (``y`` = ``q``).  ``args`` is the raw ``a`` dictionary."""

    tid: bytes
    method: bytes
    args: dict[bytes, Any]
    sender_id: bytes
    read_only: bool = False
    version: bytes | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """A KRPC response (``y`` = ``r``).  ``values`` is the raw ``r`` dictionary."""

    tid: bytes
    values: dict[bytes, Any]
    sender_id: bytes
    version: bytes | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """A KRPC error (``y`` = ``e``)."""

    tid: bytes
    code: int
    message: bytes = b""
    version: bytes | None = None


Message = Query | Response | Error


@dataclass(frozen=True, slots=True, order=True)
class NodeInfo:
    """A DHT node: its 20-byte id and its IPv4 UDP address."""

    node_id: bytes
    host: str = field(compare=False)
    port: int = field(compare=False)

    @property
    def addr(self) -> Address:
        """The node's ``(host, port)``."""
        return (self.host, self.port)


def _version(d: dict[bytes, Any]) -> bytes | None:
    v = d.get(b"v")
    return v if isinstance(v, bytes) and len(v) <= 16 else None


def decode_message(data: bytes) -> Message:
    """Decode one datagram; raise :class:`KRPCDecodeError` (with a reason) if it is not KRPC."""
    if len(data) > MAX_DATAGRAM:
        raise KRPCDecodeError("oversized")
    if not data or data[:1] != b"d":
        raise KRPCDecodeError("not_dict")
    try:
        msg = bdecoding.decode(data)
    except bdecoding.BencodeError:
        raise KRPCDecodeError("bad_bencode") from None
    if not isinstance(msg, dict):
        raise KRPCDecodeError("not_dict")
    tid = msg.get(b"t")
    if not isinstance(tid, bytes):
        raise KRPCDecodeError("bad_tid")
    kind = msg.get(b"y")
    if kind == b"q":
        method = msg.get(b"q")
        args = msg.get(b"a")
        if not isinstance(method, bytes) or not isinstance(args, dict):
            raise KRPCDecodeError("bad_query", tid, True)
        sender = args.get(b"id")
        if not isinstance(sender, bytes) or len(sender) != ID_LENGTH:
            raise KRPCDecodeError("bad_id", tid, True)
        return Query(tid, method, args, sender, msg.get(b"ro") == 1, _version(msg))
    if kind == b"r":
        values = msg.get(b"r")
        if not isinstance(values, dict):
            raise KRPCDecodeError("bad_response", tid)
        sender = values.get(b"id")
        if not isinstance(sender, bytes) or len(sender) != ID_LENGTH:
            raise KRPCDecodeError("bad_id", tid)
        return Response(tid, values, sender, _version(msg))
    if kind == b"e":
        err = msg.get(b"e")
        if not isinstance(err, list) or not err or not isinstance(err[0], int) \
                or isinstance(err[0], bool):
            raise KRPCDecodeError("bad_error", tid)
        text = err[1] if len(err) > 1 and isinstance(err[1], bytes) else b""
        return Error(tid, err[0], text[:256], _version(msg))
    raise KRPCDecodeError("bad_type", tid)


def _envelope(tid: bytes, kind: bytes, version: bytes | None) -> dict[bytes, Any]:
    msg: dict[bytes, Any] = {b"t": tid, b"y": kind}
    if version:
        msg[b"v"] = version
    return msg


def encode_query(tid: bytes, method: bytes, args: dict[bytes, Any], *,
                 version: bytes | None = None, read_only: bool = False) -> bytes:
    """Encode a query; ``args`` must already hold ``id``."""
    msg = _envelope(tid, b"q", version)
    msg[b"q"] = method
    msg[b"a"] = args
    if read_only:
        msg[b"ro"] = 1
    return bytes(bencode(msg))


def encode_response(tid: bytes, values: dict[bytes, Any], *, version: bytes | None = None,
                    requester: bytes | None = None) -> bytes:
    """Encode a response; ``values`` must already hold ``id``.  ``requester`` is the
    compact address of the querying node, sent as the top-level ``ip`` key of BEP 42 so
    it can learn its external address."""
    msg = _envelope(tid, b"r", version)
    msg[b"r"] = values
    if requester is not None:
        msg[b"ip"] = requester
    return bytes(bencode(msg))


def encode_error(tid: bytes, code: int, message: str, *, version: bytes | None = None) -> bytes:
    """Encode an error reply ``[code, message]``."""
    msg = _envelope(tid, b"e", version)
    msg[b"e"] = [int(code), message.encode("utf-8")]
    return bytes(bencode(msg))


def encode_peer(host: str, port: int) -> bytes:
    """Compact peer info: 4-byte IPv4 address and 2-byte big-endian port."""
    return socket.inet_aton(host) + struct.pack("!H", port)


def decode_peer(data: bytes) -> Address | None:
    """Decode 6-byte compact peer info; ``None`` for any other length or port 0."""
    if len(data) != COMPACT_PEER_LENGTH:
        return None
    port = struct.unpack("!H", data[4:])[0]
    if port == 0:
        return None
    return (socket.inet_ntoa(data[:4]), port)


def encode_nodes(nodes: list[NodeInfo]) -> bytes:
    """Compact node info: 20-byte id + compact peer info, 26 bytes per node."""
    return b"".join(n.node_id + encode_peer(n.host, n.port) for n in nodes)


def decode_nodes(data: bytes, limit: int = 64) -> list[NodeInfo]:
    """Decode concatenated 26-byte node infos (a trailing partial entry is ignored,
    entries with port 0 are skipped, at most ``limit`` entries are read)."""
    nodes = []
    for off in range(0, min(len(data) // COMPACT_NODE_LENGTH, limit) * COMPACT_NODE_LENGTH,
                     COMPACT_NODE_LENGTH):
        peer = decode_peer(data[off + ID_LENGTH:off + COMPACT_NODE_LENGTH])
        if peer is not None:
            nodes.append(NodeInfo(data[off:off + ID_LENGTH], peer[0], peer[1]))
    return nodes


def distance(a: bytes, b: bytes) -> int:
    """The XOR metric of Kademlia on two 160-bit ids."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def is_ipv4(host: str) -> bool:
    """True if ``host`` is a dotted-quad IPv4 address (KRPC compact info is IPv4 only)."""
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    except ValueError:
        return False
