# -*- test-case-name: test.test_dht_handlers -*-
"""Answers to incoming queries: BEP 5 replies, error codes 203/204, tokens, fuzzed input."""
from __future__ import annotations

from typing import Any

import fastbencode
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tunnels.dht import krpc
from tunnels.dht.handlers import QueryHandler
from tunnels.dht.krpc import Error, NodeInfo, Query, Response
from tunnels.dht.routing import RoutingTable
from tunnels.dht.storage import PeerStore
from tunnels.dht.tokens import TokenManager

OWN = b"o" * 20
PEER_ID = b"p" * 20
SRC = ("127.0.0.5", 4000)
HASH = b"h" * 20


def make_handler(store: PeerStore | None = None) -> QueryHandler:
    routing = RoutingTable(OWN, 0.0)
    for i in range(20):
        routing.note_response(NodeInfo(bytes([i]) * 20, "127.0.0.1", 2000 + i), 0.0)
    return QueryHandler(OWN, routing, TokenManager(0.0, rotate_interval=300.0),
                        store if store is not None else PeerStore(), version=b"TX01")


LARGE = 10_000
"""A query size whose amplification budget no reply reaches (the bound has its own tests)."""


def q(method: bytes, **args: Any) -> Query:
    full = {b"id": PEER_ID, **{k.encode(): v for k, v in args.items()}}
    return Query(b"tt", method, full, PEER_ID)


class HandlerTests(SynchronousTestCase):
    """Each BEP 5 query is answered as the BEP says."""

    def setUp(self) -> None:
        self.handler = make_handler()

    def answer(self, query: Query, now: float = 1.0, src: tuple[str, int] = SRC
               ) -> krpc.Message:
        return krpc.decode_message(self.handler.handle(query, src, now, LARGE))

    def test_ping(self) -> None:
        """ping is answered with our id, the same tid, our version, and (BEP 42) the
        requester's compact address as ``ip``."""
        reply = self.answer(q(b"ping"))
        assert isinstance(reply, Response)
        self.assertEqual((reply.tid, reply.sender_id, reply.version), (b"tt", OWN, b"TX01"))
        raw = fastbencode.bdecode(self.handler.handle(q(b"ping"), SRC, 1.0, LARGE))
        self.assertEqual(raw[b"ip"], krpc.encode_peer(*SRC))

    def test_find_node(self) -> None:
        """find_node returns the 8 closest nodes as 26-byte compact info."""
        reply = self.answer(q(b"find_node", target=b"\x03" * 20))
        assert isinstance(reply, Response)
        nodes = krpc.decode_nodes(reply.values[b"nodes"])
        self.assertEqual(len(reply.values[b"nodes"]), 8 * 26)
        self.assertEqual(nodes, self.handler.routing.closest(b"\x03" * 20))

    def test_get_peers_and_announce(self) -> None:
        """get_peers gives a token; announce_peer with it stores the peer; values come back."""
        reply = self.answer(q(b"get_peers", info_hash=HASH))
        assert isinstance(reply, Response)
        self.assertNotIn(b"values", reply.values)
        self.assertIn(b"nodes", reply.values)
        token = reply.values[b"token"]
        ok = self.answer(q(b"announce_peer", info_hash=HASH, port=7000, token=token))
        self.assertIsInstance(ok, Response)
        reply = self.answer(q(b"get_peers", info_hash=HASH))
        assert isinstance(reply, Response)
        self.assertEqual(reply.values[b"values"], [krpc.encode_peer("127.0.0.5", 7000)])

    def test_implied_port(self) -> None:
        """implied_port=1 stores the source port, even with port missing."""
        token = self.handler.tokens.issue(SRC[0], 1.0)
        self.answer(q(b"announce_peer", info_hash=HASH, implied_port=1, token=token))
        self.assertEqual(self.handler.store.get(HASH, 2.0), [SRC])

    def test_wrong_token_refused(self) -> None:
        """A wrong token, a token for another IP, and a stale token get error 203."""
        other_ip = self.handler.tokens.issue("127.0.0.9", 1.0)
        stale = self.handler.tokens.issue(SRC[0], 1.0)
        for token, now in ((b"12345678", 1.0), (other_ip, 1.0), (stale, 700.0)):
            reply = self.answer(q(b"announce_peer", info_hash=HASH, port=7000, token=token), now)
            assert isinstance(reply, Error)
            self.assertEqual(reply.code, 203)
        self.assertEqual(self.handler.store.get(HASH, 1.0), [])
        self.assertEqual(self.handler.counters.bad_token, 3)

    def test_unknown_method(self) -> None:
        """An unknown method gets error 204."""
        reply = self.answer(q(b"vote"))
        assert isinstance(reply, Error)
        self.assertEqual(reply.code, 204)

    def test_bad_arguments(self) -> None:
        """Missing or mistyped arguments get error 203."""
        token = self.handler.tokens.issue(SRC[0], 1.0)
        for query in (q(b"find_node"), q(b"find_node", target=b"short"),
                      q(b"get_peers", info_hash=5),
                      q(b"announce_peer", info_hash=HASH, token=token),
                      q(b"announce_peer", info_hash=HASH, port=0, token=token),
                      q(b"announce_peer", info_hash=HASH, port=70000, token=token),
                      q(b"announce_peer", info_hash=HASH, port=b"80", token=token)):
            reply = self.answer(query)
            assert isinstance(reply, Error)
            self.assertEqual(reply.code, 203, query)

    def test_store_full(self) -> None:
        """A full peer store answers error 202 and stores nothing."""
        handler = make_handler(PeerStore(max_keys=1))
        token = handler.tokens.issue(SRC[0], 1.0)
        handler.handle(q(b"announce_peer", info_hash=b"a" * 20, port=1, token=token), SRC, 1.0,
                       LARGE)
        reply = krpc.decode_message(handler.handle(
            q(b"announce_peer", info_hash=HASH, port=1, token=token), SRC, 1.0, LARGE))
        assert isinstance(reply, Error)
        self.assertEqual(reply.code, 202)


VALUES = (st.binary(max_size=30) | st.integers(-2, 70000) | st.lists(st.binary(max_size=8),
                                                                     max_size=5)
          | st.dictionaries(st.binary(max_size=3), st.integers(), max_size=2))


class FuzzHandlerTests(SynchronousTestCase):
    """No query content makes the handler raise; replies are always valid KRPC."""

    @settings(max_examples=500, deadline=None)
    @given(st.sampled_from([b"ping", b"find_node", b"get_peers", b"announce_peer", b"", b"x"]),
           st.dictionaries(st.sampled_from([b"target", b"info_hash", b"port", b"token",
                                            b"implied_port", b"want", b"zz"]),
                           VALUES, max_size=6))
    def test_handler_total(self, method: bytes, args: dict[bytes, Any]) -> None:
        """Any method and arguments get a Response or an Error with the query's tid."""
        handler = make_handler()
        reply = krpc.decode_message(handler.handle(Query(b"fz", method, {b"id": PEER_ID, **args},
                                                         PEER_ID), SRC, 1.0, LARGE))
        self.assertEqual(reply.tid, b"fz")
        self.assertLessEqual(len(handler.store), 1)
