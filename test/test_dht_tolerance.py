# -*- test-case-name: test.test_dht_tolerance -*-
"""Liberal in what we accept, strict in what we send, and never a query to a forbidden
address: the deviations libtorrent answers, BEP 32's ``want``, and hostile ``nodes`` lists."""
from __future__ import annotations

import dataclasses
from typing import Any

import fastbencode
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from test.util import async_test, wait_for
from tunnels.dht import krpc
from tunnels.dht.addresses import never_contact
from tunnels.dht.bencode import MAX_DEPTH, BencodeError, decode, decode_lenient
from tunnels.dht.handlers import QueryHandler
from tunnels.dht.krpc import NodeInfo, Query, Response
from tunnels.dht.node import DHTNode
from tunnels.dht.routing import RoutingTable
from tunnels.dht.storage import PeerStore
from tunnels.dht.testing import LOCAL_CONFIG
from tunnels.dht.tokens import TokenManager
from tunnels.runtime import as_future

SID = b"s" * 20


def unsorted_find_node(tid: bytes) -> bytes:
    """A find_node query whose keys are out of order at both levels."""
    return (b"d1:y1:q1:q9:find_node1:ad6:target20:" + b"\x07" * 20 + b"2:id20:" + SID
            + b"e1:t" + str(len(tid)).encode() + b":" + tid + b"e")


class LenientBencodeTests(SynchronousTestCase):
    """Keys out of order are accepted; everything else non-canonical is still refused."""

    def test_unsorted_accepted(self) -> None:
        self.assertEqual(decode(b"d1:bi1e1:ai2ee"), {b"a": 2, b"b": 1})
        self.assertEqual(decode(unsorted_find_node(b"ab"))[b"a"][b"id"], SID)

    def test_still_refused(self) -> None:
        """Duplicates, leading zeros, -0, non-string keys, truncation, trailing bytes."""
        for data in (b"d1:ai1e1:ai2ee", b"d1:bi1e1:bi2ee", b"i01e", b"i-0e", b"02:ab",
                     b"di1ei2ee", b"d1:a", b"d1:ai1ee" + b"x", b"d1:ae", b"e", b"x"):
            with self.assertRaises(BencodeError, msg=data):
                decode_lenient(data)
            with self.assertRaises(BencodeError, msg=data):
                decode(data)

    def test_depth_bounded(self) -> None:
        """The lenient path refuses nesting beyond MAX_DEPTH without recursion."""
        ok = b"d1:b1:x1:a" + b"l" * (MAX_DEPTH - 1) + b"e" * (MAX_DEPTH - 1) + b"e"
        self.assertIn(b"a", decode(ok))
        deep = b"d1:b1:x1:a" + b"l" * 2000 + b"e" * 2000 + b"e"
        with self.assertRaises(BencodeError):
            decode(deep)

    @settings(max_examples=300, deadline=None)
    @given(st.recursive(st.binary(max_size=8) | st.integers(-10**6, 10**6),
                        lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.binary(max_size=4), inner, max_size=4),
                        max_leaves=20))
    def test_agrees_with_fastbencode(self, value: object) -> None:
        """On canonical input the lenient path gives exactly what fastbencode gives."""
        data = bytes(fastbencode.bencode(value))
        self.assertEqual(decode_lenient(data), fastbencode.bdecode(data))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=120))
    def test_total(self, data: bytes) -> None:
        """Any bytes: a value or BencodeError, nothing else."""
        try:
            decode_lenient(data)
        except BencodeError:
            pass


class TransactionIdTests(SynchronousTestCase):
    """BEP 5 sets no tid length: the empty tid and long ones decode."""

    def test_any_length(self) -> None:
        for tid in (b"", b"x" * 17, b"y" * 200):
            msg = krpc.decode_message(krpc.encode_query(tid, b"ping", {b"id": SID}))
            self.assertEqual(msg.tid, tid)


class WantTests(SynchronousTestCase):
    """BEP 32: ``want`` decides which node families a reply carries."""

    def handler(self) -> QueryHandler:
        own = b"\x01" * 20
        routing = RoutingTable(own, 0.0)
        for i in range(8):
            routing.note_response(NodeInfo(bytes([0x80 + i]) + b"\x00" * 19, "127.0.0.1",
                                           7000 + i), 0.0)
        return QueryHandler(own, routing, TokenManager(0.0), PeerStore())

    def keys(self, method: bytes, want: Any) -> set[bytes]:
        args: dict[bytes, Any] = {b"id": SID, b"target": b"\x80" * 20, b"info_hash": b"\x80" * 20}
        if want is not None:
            args[b"want"] = want
        data = self.handler().handle(Query(b"tt", method, args, SID), ("127.0.0.1", 1), 1.0,
                                     10_000)
        msg = krpc.decode_message(data)
        assert isinstance(msg, Response)
        return set(msg.values) & {b"nodes", b"nodes6"}

    def test_want(self) -> None:
        for method in (b"find_node", b"get_peers"):
            self.assertEqual(self.keys(method, None), {b"nodes"})
            self.assertEqual(self.keys(method, b"n6"), {b"nodes"})     # not a list: ignored
            self.assertEqual(self.keys(method, [b"n4"]), {b"nodes"})
            self.assertEqual(self.keys(method, [b"n4", b"n6"]), {b"nodes"})
            self.assertEqual(self.keys(method, [b"n6"]), set())        # no IPv6 table
            self.assertEqual(self.keys(method, []), set())


class Raw(DatagramProtocol):
    """A bare UDP socket on 127.0.0.1 recording raw replies."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        if not isinstance(krpc.decode_message(data), Query):   # not a verification ping
            self.received.append(data)


class HostileNode(DatagramProtocol):
    """Answers every query with ``nodes`` (and ``values``) naming forbidden addresses."""

    def __init__(self, nodes: bytes, values: list[bytes]) -> None:
        self.nodes = nodes
        self.values = values
        self.queries = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        msg = krpc.decode_message(data)
        if isinstance(msg, Query):
            self.queries += 1
            self.transport.write(krpc.encode_response(
                msg.tid, {b"id": b"\xee" * 20, b"nodes": self.nodes, b"token": b"tk",
                          b"values": self.values}), addr)


class OverUDPTests(TestCase):
    """The same rules on a real node over UDP on 127.0.0.1."""

    def node(self, **overrides: Any) -> DHTNode:
        node = DHTNode(reactor, dataclasses.replace(LOCAL_CONFIG, **overrides))
        node.listen(0, "127.0.0.1")
        self.addCleanup(node.stop)
        return node

    def socket(self, proto: DatagramProtocol) -> tuple[str, int]:
        port = reactor.listenUDP(0, proto, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return ("127.0.0.1", port.getHost().port)

    @async_test
    async def test_deviations_answered(self) -> None:
        """Empty and 40-byte tids and unsorted keys get answers; the answers are canonical
        (strict fastbencode decodes them) and echo the tid."""
        node = self.node()
        node.routing.note_response(NodeInfo(b"\x07" * 20, "127.0.0.1", 7007), 0.0)
        raw = Raw()
        self.socket(raw)
        sent = [krpc.encode_query(b"", b"ping", {b"id": SID}),
                krpc.encode_query(b"L" * 40, b"ping", {b"id": SID}),
                unsorted_find_node(b"uk")]
        for data in sent:
            raw.transport.write(data, node.address)
        await wait_for(lambda: len(raw.received) == 3, 5, what="three answers")
        replies = sorted((fastbencode.bdecode(r) for r in raw.received), key=lambda m: m[b"t"])
        self.assertEqual([m[b"t"] for m in replies], [b"", b"L" * 40, b"uk"])
        self.assertEqual([m[b"y"] for m in replies], [b"r"] * 3)
        self.assertEqual(replies[2][b"r"][b"nodes"],
                         krpc.encode_nodes([NodeInfo(b"\x07" * 20, "127.0.0.1", 7007)]))
        self.assertEqual(node.stats.total_dropped, 0)

    async def never_queried(self, policy: str) -> None:
        node = self.node(address_policy=policy)
        written: list[tuple[str, int]] = []
        port = node._port
        assert port is not None
        write = port.write

        def record(data: bytes, addr: tuple[str, int]) -> Any:
            written.append(addr)
            return write(data, addr)
        port.write = record  # type: ignore[method-assign]
        forbidden = [node.address, ("0.1.2.3", 6881), ("240.0.0.1", 6881), ("224.0.0.1", 6881),
                     ("255.255.255.255", 6881), ("0.0.0.0", 6881)]
        listed = [NodeInfo(bytes([0x10 + i]) * 20, h, p) for i, (h, p) in enumerate(forbidden)]
        nodes = krpc.encode_nodes(listed) + b"\x55" * 20 + b"\x7f\x00\x00\x01\x00\x00"  # port 0
        hostile = HostileNode(nodes, [krpc.encode_peer(h, p) for h, p in forbidden[1:]])
        hostile_addr = self.socket(hostile)
        seed = NodeInfo(b"\xee" * 20, *hostile_addr)
        result = await as_future(node.lookup(b"\x10" * 20, b"get_peers", seeds=[seed]))
        self.assertEqual(result.queried, 1)
        self.assertEqual(result.peers, [])
        await as_future(node.ping(hostile_addr))
        node.routing.note_response(seed, reactor.seconds())
        node.maintain()                     # refresh: find_node to the hostile node, learn
        await wait_for(lambda: hostile.queries >= 3, 5, what="the refresh query")
        self.assertEqual(set(written), {hostile_addr}, policy)
        self.assertEqual([e.node.addr for e in node.routing.entries()], [hostile_addr])
        for bad in forbidden:
            with self.assertRaises(Exception):
                await as_future(node.ping(bad))
        self.assertEqual(set(written), {hostile_addr})
        self.assertEqual(node.stats.dropped["refused_target"], len(forbidden))
        self.assertTrue(all(never_contact(*a) or a == node.address for a in forbidden))

    @async_test
    async def test_never_queried_any(self) -> None:
        """Under the permissive policy, our own address, 0/8, 240/4, multicast, broadcast
        and port 0 from a hostile reply are never queried, stored, or returned as peers."""
        await self.never_queried("any")

    @async_test
    async def test_never_queried_loopback(self) -> None:
        """The same under the test networks' loopback policy (which admits our address)."""
        await self.never_queried("loopback")
