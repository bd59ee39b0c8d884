# -*- test-case-name: test.test_dht_amplification -*-
"""No free answers (DESIGN.md property 14) on the DHT port: every reply is at most 3x its
query, and replies are rate-limited per source and in total, while lookups still work."""
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
from tunnels.dht.handlers import AMPLIFICATION_FACTOR, QueryHandler
from tunnels.dht.krpc import NodeInfo
from tunnels.dht.node import DHTNode
from tunnels.dht.routing import RoutingTable
from tunnels.dht.storage import PeerStore
from tunnels.dht.testing import LOCAL_CONFIG, start_local_network, stop_all
from tunnels.dht.tokens import TokenManager
from tunnels.runtime import as_future

OWN = b"\x01" * 20
KEY = b"\x80" * 20
SID = b"s" * 20


def full_handler() -> QueryHandler:
    """A handler with 8+ nodes near every target and 50 peers stored under KEY."""
    routing = RoutingTable(OWN, 0.0)
    for i in range(40):
        routing.note_response(NodeInfo(bytes([i * 6]) + bytes(19), "127.0.0.1", 7000 + i), 0.0)
    store = PeerStore()
    for i in range(50):
        store.add(KEY, ("127.0.0.1", 9000 + i), 0.0)
    return QueryHandler(OWN, routing, TokenManager(0.0), store, version=b"LT\x01\x02")


def query_bytes(method: bytes, tid: bytes, version: bytes | None, read_only: bool = False,
                **args: Any) -> bytes:
    full = {b"id": SID, **{k.encode(): v for k, v in args.items()}}
    return krpc.encode_query(tid, method, full, version=version, read_only=read_only)


class SizeBoundTests(SynchronousTestCase):
    """Replies never exceed 3x the query; real clients' queries still get full answers."""

    def reply(self, data: bytes) -> tuple[bytes, dict[bytes, Any]]:
        msg = krpc.decode_message(data)
        assert isinstance(msg, krpc.Query)
        out = full_handler().handle(msg, ("127.0.0.1", 1), 1.0, len(data))
        assert out is not None
        self.assertLessEqual(len(out), AMPLIFICATION_FACTOR * len(data))
        return out, fastbencode.bdecode(out)

    def test_libtorrent_shaped_queries_get_full_answers(self) -> None:
        """find_node from libtorrent (2-byte tid, v): all 8 nodes and the ip echo, in 287
        bytes for a 101-byte query; get_peers without stored peers: 8 nodes and a token."""
        data = query_bytes(b"find_node", b"aa", b"LT\x01\x02", target=b"\x30" * 20)
        self.assertEqual(len(data), 101)
        out, msg = self.reply(data)
        self.assertEqual((len(out), len(msg[b"r"][b"nodes"])), (287, 8 * 26))
        self.assertIn(b"ip", msg)
        _, msg = self.reply(query_bytes(b"get_peers", b"aa", b"LT\x01\x02",
                                        info_hash=b"\x30" * 20))
        self.assertEqual(len(msg[b"r"][b"nodes"]), 8 * 26)
        self.assertIn(b"token", msg[b"r"])

    def test_values_win_over_nodes(self) -> None:
        """Our circuit lookup client's get_peers (ro=1, no v): as many of the 50 stored peers
        as fit, with the farthest nodes shed first; never more than 3x."""
        data = query_bytes(b"get_peers", b"abcd", None, read_only=True, info_hash=KEY)
        out, msg = self.reply(data)
        self.assertEqual(len(data), 104)
        self.assertGreater(len(out) + 8, 3 * len(data))     # one more peer would not fit
        self.assertGreaterEqual(len(msg[b"r"][b"values"]), 25)
        self.assertNotIn(b"nodes", msg[b"r"])
        self.assertEqual(len(msg[b"r"][b"token"]), 8)

    def test_minimal_queries(self) -> None:
        """The smallest valid queries (empty tid, no v) still get a useful answer."""
        for method, args in ((b"ping", {}), (b"find_node", {"target": b"\x30" * 20}),
                             (b"get_peers", {"info_hash": KEY}), (b"vote", {})):
            _, msg = self.reply(query_bytes(method, b"", None, **args))
            self.assertIn(msg[b"y"], (b"r", b"e"))
        _, msg = self.reply(query_bytes(b"find_node", b"", None, target=b"\x30" * 20))
        self.assertGreaterEqual(len(msg[b"r"][b"nodes"]), 7 * 26)

    def test_malformed_query_error_fits(self) -> None:
        """The 13-byte malformed query ``d1:t0:1:y1:qe`` gets an error of at most 39 bytes."""
        handler = full_handler()
        out = handler.error(b"", 203, "invalid query", 3 * 13)
        assert out is not None
        self.assertLessEqual(len(out), 39)
        self.assertEqual(fastbencode.bdecode(out)[b"e"][0], 203)
        self.assertIsNone(handler.error(b"", 203, "invalid query", 20))
        self.assertEqual(handler.counters.unanswerable, 1)

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from([b"ping", b"find_node", b"get_peers", b"announce_peer", b"x"]),
           st.binary(max_size=40), st.sampled_from([None, b"LT\x01\x02", b"x" * 12]),
           st.booleans(), st.sampled_from([KEY, b"\x30" * 20]),
           st.lists(st.sampled_from([b"n4", b"n6", b"zz"]), max_size=3) | st.none())
    def test_never_above_factor(self, method: bytes, tid: bytes, version: bytes | None,
                                read_only: bool, target: bytes, want: list[bytes] | None
                                ) -> None:
        """Any method, tid, version, ro flag and want: reply length <= 3 x query length."""
        args: dict[str, Any] = {"target": target, "info_hash": target}
        if want is not None:
            args["want"] = want
        self.reply(query_bytes(method, tid, version, read_only, **args))


class Flooder(DatagramProtocol):
    """One socket that sends many queries and records every answer's length."""

    def __init__(self) -> None:
        self.answers: list[int] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        if not isinstance(krpc.decode_message(data), krpc.Query):
            self.answers.append(len(data))


async def flood(port: Any, queries: list[bytes], node: DHTNode, batch: int = 20) -> None:
    """Send ``queries`` as fast as the node reads them, ``batch`` at a time (a larger burst
    would only be dropped by the kernel's receive buffer before the node sees it)."""
    first = node.stats.received
    for i in range(0, len(queries), batch):
        for data in queries[i:i + batch]:
            port.write(data, node.address)
        done = min(len(queries), i + batch)
        await wait_for(lambda: node.stats.received - first >= done, 10, interval=0.001,
                       what="a batch of the flood to arrive")


class FloodTests(TestCase):
    """A flood from one socket gets at most its share; lookups by others still work."""

    @async_test
    async def test_flood_from_one_socket(self) -> None:
        """800 get_peers for a key with 50 peers, from one socket, while the flooded node
        serves a 6-node network: the flooder gets at most burst + rate x elapsed answers,
        each <= 3x its query; bytes in all stay within the upload bucket; other nodes'
        lookups through the flooded node still find the announced peer."""
        nodes: list[DHTNode] = await as_future(start_local_network(
            reactor, 6, query_rate=50.0, query_burst=20.0, upload_rate=40_000.0,
            upload_burst=40_000.0))
        self.addCleanup(lambda: stop_all(nodes))
        target = nodes[0]
        for i in range(50):
            target.store.add(KEY, ("127.0.0.1", 9000 + i), reactor.seconds())
        flooder = Flooder()
        port = reactor.listenUDP(0, flooder, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        queries = [query_bytes(b"get_peers", b"%04d" % i, None, info_hash=KEY)
                   for i in range(800)]
        start = reactor.seconds()
        lookup = nodes[3].get_peers(KEY)
        await flood(port, queries, target)
        elapsed = reactor.seconds() - start
        peers = await as_future(lookup)
        await wait_for(lambda: len(flooder.answers) >= 20, 5, what="the burst's answers")
        self.assertLessEqual(len(flooder.answers), 20 + 50.0 * elapsed + 1)
        self.assertLessEqual(max(flooder.answers), AMPLIFICATION_FACTOR * len(queries[0]))
        self.assertGreaterEqual(target.stats.dropped["rate_limited"],
                                len(queries) - 20 - 50.0 * elapsed - 1)
        # only the flooded node stores peers under KEY: the lookup got its answer
        self.assertTrue(set(peers) & {("127.0.0.1", 9000 + i) for i in range(50)})
        ping = await as_future(nodes[4].ping(target.address))
        self.assertEqual(ping, target.node_id)

    @async_test
    async def test_total_upload_bound(self) -> None:
        """Sixteen sockets, each within its own share, together get no more bytes than the
        total bucket allows (burst + rate x elapsed)."""
        node = DHTNode(reactor, dataclasses.replace(
            LOCAL_CONFIG, query_rate=1000.0, query_burst=1000.0, upload_rate=5_000.0,
            upload_burst=5_000.0))
        node.listen(0, "127.0.0.1")
        self.addCleanup(node.stop)
        for i in range(30):
            node.routing.note_response(NodeInfo(bytes([i * 8]) + bytes(19), "127.0.0.1",
                                                7000 + i), reactor.seconds())
        flooders = []
        for _ in range(16):
            f = Flooder()
            flooders.append(f)
            p = reactor.listenUDP(0, f, interface="127.0.0.1")
            self.addCleanup(p.stopListening)
        data = query_bytes(b"find_node", b"ab", None, target=b"\x30" * 20)
        start = reactor.seconds()
        for _ in range(25):
            for f in flooders:
                f.transport.write(data, node.address)
            await wait_for(lambda: node.stats.received >= 16 * (_ + 1), 10, interval=0.001,
                           what="a round of the flood to arrive")
        elapsed = reactor.seconds() - start
        replies = node.stats.sent - node.stats.queries_sent
        await wait_for(lambda: sum(len(f.answers) for f in flooders) >= replies, 5,
                       what="every reply to arrive")
        total = sum(sum(f.answers) for f in flooders)
        self.assertLessEqual(total, 5_000 + 5_000 * elapsed)
        self.assertGreater(node.stats.dropped["upload_limited"], 0)
        self.assertEqual(node.stats.dropped["rate_limited"], 0)
