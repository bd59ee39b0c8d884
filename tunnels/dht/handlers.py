# -*- test-case-name: test.test_dht_handlers -*-
"""Answers to incoming KRPC queries (the server half of BEP 5; pure, takes ``now``).

:meth:`QueryHandler.handle` turns a decoded :class:`~tunnels.dht.krpc.Query` into the
reply datagram: ``ping``, ``find_node``, ``get_peers`` and ``announce_peer`` as BEP 5
describes them, error 203 for bad arguments and 204 for unknown methods.  It never raises
on any query content; the only state it changes is the peer store (``announce_peer`` with
a valid token).

Deviations tolerated: ``port`` may be missing when ``implied_port`` is 1; ``want``,
``noseed``, ``scrape``, ``seed``, ``name`` and other unknown arguments are ignored;
``implied_port`` given as any non-zero integer counts as 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunnels.dht.krpc import (
    ID_LENGTH, Address, ErrorCode, Query, encode_error, encode_nodes, encode_peer,
    encode_response)
from tunnels.dht.routing import RoutingTable
from tunnels.dht.storage import PeerStore
from tunnels.dht.tokens import TokenManager


@dataclass
class HandlerCounters:
    """How queries were answered."""

    answered: int = 0
    errors: int = 0
    announces_accepted: int = 0
    bad_token: int = 0
    store_full: int = 0


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

    def handle(self, query: Query, addr: Address, now: float) -> bytes:
        """The reply datagram for ``query`` from ``addr``."""
        method = {
            b"ping": self._ping,
            b"find_node": self._find_node,
            b"get_peers": self._get_peers,
            b"announce_peer": self._announce_peer,
        }.get(query.method)
        if method is None:
            return self._error(query, ErrorCode.METHOD_UNKNOWN, "Method Unknown")
        try:
            values = method(query, addr, now)
        except _Refused as e:
            return self._error(query, e.code, e.text)
        values[b"id"] = self.own_id
        self.counters.answered += 1
        return encode_response(query.tid, values, version=self.version,
                               requester=encode_peer(addr[0], addr[1]))

    def _error(self, query: Query, code: int, text: str) -> bytes:
        self.counters.errors += 1
        return encode_error(query.tid, code, text, version=self.version)

    @staticmethod
    def _id_arg(query: Query, name: bytes) -> bytes:
        value = query.args.get(name)
        if not isinstance(value, bytes) or len(value) != ID_LENGTH:
            raise _Refused(ErrorCode.PROTOCOL, f"missing or invalid '{name.decode()}'")
        return value

    def _ping(self, query: Query, addr: Address, now: float) -> dict[bytes, Any]:
        return {}

    def _find_node(self, query: Query, addr: Address, now: float) -> dict[bytes, Any]:
        target = self._id_arg(query, b"target")
        return {b"nodes": encode_nodes(self.routing.closest(target))}

    def _get_peers(self, query: Query, addr: Address, now: float) -> dict[bytes, Any]:
        info_hash = self._id_arg(query, b"info_hash")
        values: dict[bytes, Any] = {b"token": self.tokens.issue(addr[0], now)}
        peers = self.store.get(info_hash, now, self.max_values)
        if peers:
            values[b"values"] = [encode_peer(host, port) for host, port in peers]
        # nodes are always included: libtorrent and others continue a lookup past
        # the first node with values, and it costs at most 208 bytes
        values[b"nodes"] = encode_nodes(self.routing.closest(info_hash))
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
