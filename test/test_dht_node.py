# -*- test-case-name: test.test_dht_node -*-
"""One or two DHT nodes over real UDP on 127.0.0.1: queries, hostile packets, limits."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import Any

import fastbencode
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from test.util import async_test, wait_for
from tunnels.dht import krpc
from tunnels.dht.client import RemoteError
from tunnels.dht.config import DHTConfig
from tunnels.dht.node import DHTNode
from tunnels.dht.testing import LOCAL_CONFIG
from tunnels.errors import DHTError
from tunnels.runtime import as_future

HASH = b"h" * 20


class Raw(DatagramProtocol):
    """A bare UDP socket on 127.0.0.1 that records what comes back."""

    def __init__(self) -> None:
        self.received: list[krpc.Message] = []
        self.queries: list[krpc.Query] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        msg = krpc.decode_message(data)
        if isinstance(msg, krpc.Query):
            self.queries.append(msg)       # the node verifying us with a ping
        else:
            self.received.append(msg)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.write(data, addr)


class NodeTestMixin:
    """Start nodes and raw sockets on 127.0.0.1, stopped at cleanup."""

    def node(self, **overrides: Any) -> DHTNode:
        node = DHTNode(reactor, dataclasses.replace(LOCAL_CONFIG, **overrides))
        node.listen(0, "127.0.0.1")
        self.addCleanup(node.stop)  # type: ignore[attr-defined]
        return node

    def raw(self) -> Raw:
        proto = Raw()
        port = reactor.listenUDP(0, proto, interface="127.0.0.1")
        self.addCleanup(port.stopListening)  # type: ignore[attr-defined]
        return proto


def ping_bytes(tid: bytes = b"pp", sender: bytes = b"s" * 20) -> bytes:
    return krpc.encode_query(tid, b"ping", {b"id": sender})


class NodeTests(NodeTestMixin, TestCase):
    """Queries between our nodes over UDP."""

    @async_test
    async def test_ping_and_verification(self) -> None:
        """A pings B; B, queried by an unknown node, pings back and adds A to its table."""
        a, b = self.node(), self.node()
        node_id = await as_future(a.ping(b.address))
        self.assertEqual(node_id, b.node_id)
        self.assertIn(b.node_id, a.routing)
        await wait_for(lambda: a.node_id in b.routing, 5, what="B to verify and add A")

    @async_test
    async def test_token_enforced(self) -> None:
        """announce_peer with a wrong or stale token gets error 203; a fresh one is stored."""
        a, b = self.node(), self.node(token_rotate_interval=0.2)
        resp = await as_future(a.query(b.address, b"get_peers", {b"info_hash": HASH}))
        token = resp.values[b"token"]
        with self.assertRaises(RemoteError) as cm:
            await as_future(a.query(b.address, b"announce_peer",
                                    {b"info_hash": HASH, b"port": 7000, b"token": b"x" * 8}))
        self.assertEqual(cm.exception.code, 203)
        await as_future(a.query(b.address, b"announce_peer",
                                {b"info_hash": HASH, b"port": 7000, b"token": token}))
        self.assertEqual(b.store.get(HASH, reactor.seconds()), [("127.0.0.1", 7000)])
        await asyncio.sleep(0.5)          # two rotations: the token is stale now
        with self.assertRaises(RemoteError):
            await as_future(a.query(b.address, b"announce_peer",
                                    {b"info_hash": HASH, b"port": 7001, b"token": token}))
        self.assertEqual(b.handler.counters.bad_token, 2)

    @async_test
    async def test_read_only(self) -> None:
        """A read-only node (BEP 43) answers no query and never enters routing tables."""
        ro, full = self.node(read_only=True), self.node()
        await as_future(ro.ping(full.address))
        await as_future(ro.find_node(ro.node_id))
        raw = self.raw()
        raw.send(ping_bytes(), ro.address)
        await asyncio.sleep(0.2)
        self.assertEqual(raw.received, [])
        self.assertEqual(ro.stats.dropped["read_only"], 1)
        self.assertNotIn(ro.node_id, full.routing)
        self.assertEqual(full.routing.note_query(ro.node_id, ro.address, 0.0), True)

    @async_test
    async def test_rate_limited(self) -> None:
        """Beyond its burst, a source's queries are dropped and counted."""
        node = self.node(query_rate=1.0, query_burst=3.0)
        raw = self.raw()
        for i in range(10):
            raw.send(ping_bytes(b"p%d" % i), node.address)
        await wait_for(lambda: node.stats.received == 10, 5, what="10 pings to arrive")
        await asyncio.sleep(0.1)
        self.assertEqual(len(raw.received), 3)
        self.assertEqual(node.stats.dropped["rate_limited"], 7)

    @async_test
    async def test_stop(self) -> None:
        """stop() fails pending queries with DHTError and leaves no timers or socket."""
        node = DHTNode(reactor, LOCAL_CONFIG)
        node.listen(0, "127.0.0.1")
        silent = self.raw()
        d = node.ping(("127.0.0.1", silent.transport.getHost().port))
        await as_future(node.stop())
        with self.assertRaises(DHTError):
            await as_future(d)
        self.assertEqual(len(node.client.pending), 0)
        with self.assertRaises(DHTError):
            _ = node.address


class HostileTests(NodeTestMixin, TestCase):
    """Malformed and hostile datagrams are dropped and counted; the node keeps answering."""

    def snapshot(self, node: DHTNode) -> Any:
        return (sorted(e.node.node_id for e in node.routing.entries()), len(node.store),
                node.store.keys(), len(node.client.pending))

    @async_test
    async def test_garbage_dropped(self) -> None:
        """Each hostile datagram is dropped with a reason and changes no table."""
        node = self.node()
        raw = self.raw()
        before = self.snapshot(node)
        sid = b"s" * 20
        hostile = {
            "truncated": b"d1:ad2:id20:" + sid,
            "empty": b"",
            "not a dict": b"i42e",
            "list": b"l4:pinge",
            "deep nesting": b"d1:a" + b"l" * 3000 + b"e" * 3000 + b"e",
            "duplicate keys": b"d1:t2:aa1:t2:ab1:y1:qe",
            "tid not bytes": bytes(fastbencode.bencode({b"t": 5, b"y": b"q"})),
            "y unknown": bytes(fastbencode.bencode({b"t": b"aa", b"y": b"z"})),
            "a is a list": bytes(fastbencode.bencode({b"a": [1], b"q": b"ping", b"t": b"al",
                                                      b"y": b"q"})),
            "huge list": bytes(fastbencode.bencode({b"r": {b"id": sid, b"values": [b"x"] * 2500},
                                                    b"t": b"zz", b"y": b"r"})),
            "oversized": b"d" + b"1:x" * 4000 + b"e",
            "spoofed tid": bytes(fastbencode.bencode({b"r": {b"id": sid}, b"t": b"\x00\x01\x02\x03",
                                                      b"y": b"r"})),
            "error for nothing": b"d1:eli201e1:xe1:t2:aa1:y1:ee",
            "junk": bytes(range(256)) * 4,
        }
        for data in hostile.values():
            raw.send(data, node.address)
        await wait_for(lambda: node.stats.received == len(hostile), 5, what="all datagrams")
        self.assertEqual(self.snapshot(node), before)
        raw.send(ping_bytes(b"ok"), node.address)
        await wait_for(lambda: len(raw.received) >= 2, 5, what="the ping answer")
        await asyncio.sleep(0.1)
        # only the query with a usable tid gets an answer (error 203), and the ping
        self.assertEqual(sorted((m.tid, type(m).__name__) for m in raw.received),
                         [(b"al", "Error"), (b"ok", "Response")])
        self.assertEqual(node.stats.total_dropped, len(hostile))
        for reason in ("bad_bencode", "not_dict", "bad_tid", "bad_type", "bad_query",
                       "unsolicited", "oversized"):
            self.assertGreater(node.stats.dropped[reason], 0, reason)

    @async_test
    async def test_bad_queries_get_errors(self) -> None:
        """Unknown methods get 204, bad arguments 203; the node answers a ping after them."""
        node = self.node()
        raw = self.raw()
        sid = b"s" * 20
        raw.send(krpc.encode_query(b"u1", b"frobnicate", {b"id": sid}), node.address)
        raw.send(krpc.encode_query(b"u2", b"find_node", {b"id": sid, b"target": [1, 2]}),
                 node.address)
        raw.send(krpc.encode_query(b"u3", b"ping", {b"id": b"short"}), node.address)
        raw.send(ping_bytes(b"u4"), node.address)
        await wait_for(lambda: len(raw.received) == 4, 5, what="4 replies")
        by_tid = {m.tid: m for m in raw.received}
        self.assertEqual([getattr(by_tid[t], "code", None) for t in (b"u1", b"u2", b"u3")],
                         [204, 203, 203])
        self.assertIsInstance(by_tid[b"u4"], krpc.Response)

    @async_test
    async def test_hostile_nodes_ignored(self) -> None:
        """A reply listing nodes outside the address policy never makes us contact them."""
        node = self.node()
        evil = self.raw()
        evil_addr = ("127.0.0.1", evil.transport.getHost().port)
        evil_id = b"\x01" * 20
        lookup = node.lookup(b"\x00" * 20, seeds=[krpc.NodeInfo(evil_id, *evil_addr)])
        await wait_for(lambda: bool(node.client.pending), 5, what="a query to the evil node")
        # answer the pending query with nodes at a public address (never to be contacted)
        tid = next(iter(node.client.pending._live))
        nodes = krpc.encode_nodes([krpc.NodeInfo(b"\x00" * 19 + bytes([i]), "192.0.2.1", 53)
                                   for i in range(1, 9)])
        evil.send(krpc.encode_response(tid, {b"id": evil_id, b"nodes": nodes}), node.address)
        result = await as_future(lookup)
        self.assertEqual([n.node_id for n in result.closest], [evil_id])
        self.assertEqual(len(node.client.pending), 0)
        self.assertFalse(any(e.node.host == "192.0.2.1" for e in node.routing.entries()))


class ConfigTests(SynchronousTestCase):
    """Settings are validated; arguments are checked before any I/O."""

    def test_bad_config(self) -> None:
        """Bad values raise ValueError at construction."""
        for kw in ({"node_id": b"x"}, {"k": 0}, {"query_timeout": 0.0},
                   {"address_policy": "lan"}, {"bootstrap": (("127.0.0.1", 0),)}):
            with self.assertRaises(ValueError):
                DHTConfig(**kw)  # type: ignore[arg-type]

    def test_bad_arguments(self) -> None:
        """Public calls raise TypeError/ValueError before sending anything."""
        node = DHTNode(reactor, LOCAL_CONFIG)
        with self.assertRaises(ValueError):
            node.get_peers(b"short")
        with self.assertRaises(TypeError):
            node.get_peers("h" * 20)  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            node.announce_peer(HASH, True)  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            node.announce_peer(HASH, 0)
        with self.assertRaises(ValueError):
            node.announce_peer(HASH)
        self.assertEqual(node.stats.sent, 0)

class FakePort:
    """A UDP port stand-in that records what the node writes."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))

    def getHost(self) -> Any:  # noqa: N802
        return argparse.Namespace(host="127.0.0.1", port=6881)

    def stopListening(self) -> None:  # noqa: N802
        pass


SHAPED = st.fixed_dictionaries(
    {b"t": st.binary(min_size=1, max_size=4), b"y": st.sampled_from([b"q", b"r", b"e", b"x"])},
    optional={
        b"q": st.sampled_from([b"ping", b"find_node", b"get_peers", b"announce_peer", b"zz"]),
        b"a": st.dictionaries(st.sampled_from([b"id", b"target", b"info_hash", b"port",
                                               b"token", b"implied_port"]),
                              st.binary(min_size=0, max_size=22) | st.integers(-3, 70000),
                              max_size=6),
        b"r": st.dictionaries(st.sampled_from([b"id", b"nodes", b"values", b"token"]),
                              st.binary(max_size=60) | st.lists(st.binary(max_size=7),
                                                                max_size=4), max_size=4),
        b"e": st.lists(st.integers(0, 300) | st.binary(max_size=4), max_size=3),
        b"ro": st.integers(0, 2),
    })


class NodeFuzzTests(SynchronousTestCase):
    """Whatever arrives, datagram_received never raises, every reply is valid KRPC, and
    every table stays within its bounds."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.node = DHTNode(self.clock, dataclasses.replace(LOCAL_CONFIG, max_pending=16,
                                                            max_verifying=4, max_keys=5))
        self.port = FakePort()
        self.node._port = self.port  # type: ignore[assignment]

    def check(self) -> None:
        for data, _ in self.port.written:
            krpc.decode_message(data)       # raises if we ever wrote garbage
        self.assertLessEqual(len(self.node.client.pending), 16)
        self.assertLessEqual(len(self.node._verifying), 4)
        self.assertLessEqual(len(self.node.store.keys()), 5)

    @settings(max_examples=400, deadline=None)
    @given(st.lists(SHAPED.map(lambda d: bytes(fastbencode.bencode(d))) | st.binary(max_size=60),
                    min_size=1, max_size=8),
           st.integers(1, 3))
    def test_datagrams_total(self, datagrams: list[bytes], source: int) -> None:
        """Random and KRPC-shaped datagrams from a few sources."""
        for data in datagrams:
            self.node.datagram_received(data, (f"127.0.0.{source}", 4000 + source))
        self.clock.advance(5)
        self.check()
