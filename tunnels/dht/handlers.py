# -*- test-case-name: test.test_dht_handlers -*-
"""Answers to incoming KRPC queries (the server half of BEP 5; pure, takes ``now``).

:meth:`QueryHandler.handle` turns a decoded :class:`~tunnels.dht.krpc.Query` into the
reply datagram: ``ping``, ``find_node``, ``get_peers`` and ``announce_peer`` as BEP 5
describes them, error 203 for bad arguments and 204 for unknown methods.  It never raises
on any query content; the only state it changes is the peer store (``announce_peer`` with
a valid token).

Deviations tolerated: ``port`` may be missing when ``implied_port`` is 1; ``noseed``,
``scrape``, ``seed``, ``name`` and other unknown arguments are ignored; ``implied_port``
given as any non-zero integer counts as 1.

BEP 32: a ``want`` list is honoured.  ``nodes`` (IPv4) are sent only if it holds ``n4``;
``nodes6`` never, since this node has no IPv6 table (as libtorrent on an IPv4-only socket).
Without ``want``, the nodes are of the query's own family, IPv4.

No free answers (DESIGN.md property 14): a reply is never more than
:data:`AMPLIFICATION_FACTOR` times the bytes of the query it answers, QUIC's limit for
unvalidated addresses (RFC 9000 section 8.1).  Full BEP 5 replies fit it for the queries
real clients send (a ``find_node`` of 101 bytes from libtorrent gets 287).  When a reply
would not fit, it sheds what matters least, in this order: the farthest ``nodes`` when
``values`` are present (the values are what a ``get_peers`` is for), ``v``, the ``ip``
echo, then ``values`` or ``nodes`` entries from the end.  See doc/dht.md for the figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tunnels.dht.krpc import (
    COMPACT_NODE_LENGTH, ID_LENGTH, Address, ErrorCode, Query, encode_error, encode_nodes,
    encode_peer, encode_response)
from tunnels.dht.routing import RoutingTable
from tunnels.dht.storage import PeerStore
from tunnels.dht.tokens import TokenManager


AMPLIFICATION_FACTOR: Final = 3
"""A reply carries at most this many times the bytes of the datagram it answers."""
_VALUE_LENGTH: Final = 8
"""One compact peer in a bencoded list: ``6:`` and 6 bytes."""


@dataclass
class HandlerCounters:
    """How queries were answered (``trimmed``: replies cut to fit the amplification bound;
    ``unanswerable``: queries no reply could fit, left unanswered)."""

    answered: int = 0
    errors: int = 0
    announces_accepted: int = 0
    bad_token: int = 0
    store_full: int = 0
    trimmed: int = 0
    unanswerable: int = 0


class QueryHandler:
    """Builds replies to queries from our routing table, token secret and peer store."""

    def __init__(self, own_id: bytes, routing: RoutingTable, tokens: TokenManager,
                 store: PeerStore, *, version: bytes | None = None, max_values: int = 50) -> None:
        self.own_id = own_id
        self.routing = routing
        self.tokens = tokens
        self.store = store
        self.version = version
        self.max_values = max_values
        self.counters = HandlerCounters()

    def handle(self, query: Query, addr: Address, now: float, size: int) -> bytes | None:
        """The reply datagram for ``query`` (``size`` bytes on the wire) from ``addr``, at
        most ``AMPLIFICATION_FACTOR * size`` bytes; ``None`` if no reply fits."""
        budget = AMPLIFICATION_FACTOR * size
        method = {
            b"ping": self._ping,
            b"find_node": self._find_node,
            b"get_peers": self._get_peers,
            b"announce_peer": self._announce_peer,
        }.get(query.method)
        if method is None:
            return self.error(query.tid, ErrorCode.METHOD_UNKNOWN, "Method Unknown", budget)
        try:
            values = method(query, addr, now)
        except _Refused as e:
            return self.error(query.tid, e.code, e.text, budget)
        values[b"id"] = self.own_id
        data = self._fit(query.tid, values, encode_peer(addr[0], addr[1]), budget)
        if data is not None:
            self.counters.answered += 1
        return data

    def error(self, tid: bytes, code: int, text: str, budget: int) -> bytes | None:
        """An error reply of at most ``budget`` bytes (without ``v``, then without the
        message, if need be); ``None`` if even that is too long."""
        for version, message in ((self.version, text), (None, text), (None, "")):
            data = encode_error(tid, code, message, version=version)
            if len(data) <= budget:
                self.counters.errors += 1
                return data
        self.counters.unanswerable += 1
        return None

    def _fit(self, tid: bytes, values: dict[bytes, Any], requester: bytes | None,
             budget: int) -> bytes | None:
        """Encode the response, shedding parts until it fits ``budget`` bytes."""
        version = self.version
        while True:
            data = encode_response(tid, values, version=version, requester=requester)
            excess = len(data) - budget
            if excess <= 0:
                return data
            self.counters.trimmed += 1
            peers, nodes = values.get(b"values"), values.get(b"nodes")
            if peers and nodes is not None:
                self._shed_nodes(values, excess)
            elif version is not None:
                version = None
            elif requester is not None:
                requester = None
            elif peers:
                keep = len(peers) - -(-excess // _VALUE_LENGTH)
                if keep > 0:
                    values[b"values"] = peers[:keep]
                else:
                    del values[b"values"]
            elif nodes:
                self._shed_nodes(values, excess)
            else:
                self.counters.trimmed -= 1
                self.counters.unanswerable += 1
                return None

    @staticmethod
    def _id_arg(query: Query, name: bytes) -> bytes:
        value = query.args.get(name)
        if not isinstance(value, bytes) or len(value) != ID_LENGTH:
            raise _Refused(ErrorCode.PROTOCOL, f"missing or invalid '{name.decode()}'")
        return value

    def _ping(self, query: Query, addr: Address, now: float) -> dict[bytes, Any]:
        return {}

    @staticmethod
    def _shed_nodes(values: dict[bytes, Any], excess: int) -> None:
        """Drop enough of the farthest ``nodes`` to save ``excess`` bytes (all: the key)."""
        nodes = values[b"nodes"]
        keep = len(nodes) // COMPACT_NODE_LENGTH - -(-excess // COMPACT_NODE_LENGTH)
        if keep > 0:
            values[b"nodes"] = nodes[:keep * COMPACT_NODE_LENGTH]
        else:
            del values[b"nodes"]

    @staticmethod
    def _wants_ipv4(query: Query) -> bool:
        """BEP 32: IPv4 ``nodes`` unless a ``want`` list leaves ``n4`` out."""
        want = query.args.get(b"want")
        return not isinstance(want, list) or b"n4" in want

    def _nodes(self, query: Query, target: bytes, values: dict[bytes, Any]) -> None:
        if self._wants_ipv4(query):
            values[b"nodes"] = encode_nodes(self.routing.closest(target))

    def _find_node(self, query: Query, addr: Address, now: float) -> dict[bytes, Any]:
        values: dict[bytes, Any] = {}
        self._nodes(query, self._id_arg(query, b"target"), values)
        return values

    def _get_peers(self, query: Query, addr: Address, now: float) -> dict[bytes, Any]:
        info_hash = self._id_arg(query, b"info_hash")
        values: dict[bytes, Any] = {b"token": self.tokens.issue(addr[0], now)}
        peers = self.store.get(info_hash, now, self.max_values)
        if peers:
            values[b"values"] = [encode_peer(host, port) for host, port in peers]
        # nodes too (as libtorrent does): lookups go on past the first node with values;
        # _fit drops them first if the reply would be too large
        self._nodes(query, info_hash, values)
        return values

    def _announce_peer(self, query: Query, addr: Address, now: float) -> dict[bytes, Any]:
        info_hash = self._id_arg(query, b"info_hash")
        implied = query.args.get(b"implied_port", 0)
        port: object = addr[1]
        if not (isinstance(implied, int) and implied != 0):
            port = query.args.get(b"port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise _Refused(ErrorCode.PROTOCOL, "missing or invalid 'port'")
        if not self.tokens.check(query.args.get(b"token"), addr[0], now):
            self.counters.bad_token += 1
            raise _Refused(ErrorCode.PROTOCOL, "bad token")
        if not self.store.add(info_hash, (addr[0], port), now):
            self.counters.store_full += 1
            raise _Refused(ErrorCode.SERVER, "peer store full")
        self.counters.announces_accepted += 1
        return {}


class _Refused(Exception):
    """Internal: a query is answered with a KRPC error."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
