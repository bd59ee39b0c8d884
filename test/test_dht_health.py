# -*- test-case-name: test.test_dht_health -*-
"""Routing-table health: tables keep filling after a sparse bootstrap (with libtorrent in
the network), dead nodes are evicted and never handed out, lookups stop waiting for them."""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from test.test_dht_interop import LibtorrentDHT
from test.util import async_test, wait_for
from tunnels.dht.krpc import NodeInfo, Query, Response, decode_message, decode_nodes
from tunnels.dht.lookup import IterativeLookup
from tunnels.dht.node import DHTNode
from tunnels.dht.routing import RoutingTable
from tunnels.dht.testing import LOCAL_CONFIG, start_local_network, stop_all
from tunnels.runtime import as_future

OWN = b"\x00" * 20


def node_at(first: int, port: int) -> NodeInfo:
    return NodeInfo(bytes([first]) + port.to_bytes(19, "big"), "127.0.0.1", port)


class RoutingHealthTests(SynchronousTestCase):
    """The table's health rules, with explicit times."""

    def test_failed_once_not_handed_out(self) -> None:
        """One unanswered query hides a node from closest(); an answer brings it back."""
        table = RoutingTable(OWN, 0.0, stale_after=60.0)
        a, b = node_at(0x80, 1), node_at(0x81, 2)
        table.note_response(a, 0.0)
        table.note_response(b, 0.0)
        table.note_failure(a.node_id, a.addr, 1.0)
        self.assertEqual(table.closest(a.node_id, 10), [b])
        table.note_response(a, 2.0)
        self.assertEqual(table.closest(a.node_id, 10), [a, b])

    def test_recently_failed_addresses(self) -> None:
        """A failed address is remembered for failed_ttl seconds, unless heard from; the
        memory is bounded."""
        table = RoutingTable(OWN, 0.0, failed_ttl=60.0)
        addr = ("127.0.0.1", 9)
        table.note_failure(None, addr, 10.0)
        self.assertTrue(table.recently_failed(addr, 69.0))
        self.assertFalse(table.recently_failed(addr, 70.0))
        table.note_failure(None, addr, 100.0)
        table.note_query(b"\x42" * 20, addr, 101.0)
        self.assertFalse(table.recently_failed(addr, 101.0))
        for port in range(1, 1000):
            table.note_failure(None, ("127.0.0.1", port), 200.0)
        self.assertLessEqual(len(table._failed), 256)
        self.assertTrue(table.recently_failed(("127.0.0.1", 999), 200.0))

    def test_failed_replacement_skipped(self) -> None:
        """When a bad node is evicted, a replacement whose address failed recently does
        not move in; the next freshest one does."""
        table = RoutingTable(OWN, 0.0, stale_after=60.0)
        full = [node_at(0x80 + i, 10 + i) for i in range(8)]
        for n in full:
            table.note_response(n, 0.0)
        good, failed = node_at(0xA0, 50), node_at(0xA1, 51)
        table.note_response(good, 1.0)
        table.note_response(failed, 2.0)              # the freshest replacement
        table.note_failure(None, failed.addr, 3.0)
        for _ in range(2):
            table.note_failure(full[0].node_id, full[0].addr, 4.0)
        self.assertNotIn(full[0].node_id, table)
        self.assertNotIn(failed.node_id, table)
        self.assertIn(good.node_id, table)

    def test_next_refresh_cycles(self) -> None:
        """Each pick is the entry heard from or picked least recently, so n picks visit n
        entries."""
        table = RoutingTable(OWN, 0.0)
        nodes = [node_at(0x80 + i, 10 + i) for i in range(6)]
        for i, n in enumerate(nodes):
            table.note_response(n, float(i))
        picked = [table.next_refresh(100.0 + i) for i in range(6)]
        self.assertEqual([e.node for e in picked if e is not None], nodes)
        table.note_response(nodes[0], 200.0)
        self.assertEqual(table.next_refresh(201.0).node, nodes[1])  # type: ignore[union-attr]


class SoftTimeoutTests(SynchronousTestCase):
    """A lookup stops waiting for a silent node after soft_timeout."""

    def test_silent_node_does_not_hold_the_lookup(self) -> None:
        """With one seed that never answers and one that does, the lookup ends at the soft
        timeout with the live node's answer, and a late reply changes nothing."""
        clock = Clock()
        live, dead = node_at(0x81, 1), node_at(0x80, 2)
        pending: dict[bytes, Deferred[Response]] = {}

        def query(node: NodeInfo, method: bytes, args: dict[bytes, Any]) -> Deferred[Response]:
            d: Deferred[Response] = Deferred()
            if node == live:
                d.callback(Response(b"t", {b"id": live.node_id}, live.node_id))
            else:
                pending[node.node_id] = d
            return d
        lookup = IterativeLookup(query, OWN, b"find_node", {b"target": OWN}, [dead, live],
                                 clock=clock, soft_timeout=0.5)
        d = lookup.run()
        self.assertNoResult(d)
        clock.advance(0.5)
        result = self.successResultOf(d)
        self.assertEqual((result.closest, result.slow), ([live], 1))
        pending[dead.node_id].callback(Response(b"t", {b"id": dead.node_id}, dead.node_id))
        self.assertEqual(result.closest, [live])
        self.assertEqual(clock.getDelayedCalls(), [])


FAST = dict(maintenance_interval=0.2, stale_after=2.0, failed_ttl=2.0, query_timeout=0.5,
            soft_timeout=0.5, retries=1, self_lookup_interval=1.0)
"""Timers for the network tests: a tick every 0.2 s, questionable after 2 s."""


class DeadNodeTests(TestCase):
    """Kill 30 % of a network: tables and replies drop them, lookups stop waiting."""

    @async_test
    async def test_dead_nodes_evicted(self) -> None:
        nodes: list[DHTNode] = await as_future(start_local_network(reactor, 16, **FAST))
        self.addCleanup(lambda: stop_all(nodes))
        dead, alive = nodes[1::3], [n for i, n in enumerate(nodes) if i % 3 != 1]
        self.assertEqual(len(dead), 5)
        dead_ids = {n.node_id for n in dead}
        dead_addrs = {n.address for n in dead}
        held = sum(1 for n in alive for e in n.routing.entries() if e.node.node_id in dead_ids)
        self.assertGreater(held, 0)
        for n in dead:
            await as_future(n.stop())

        def clean() -> bool:
            return not any(e.node.node_id in dead_ids for n in alive
                           for e in n.routing.entries())
        await wait_for(clean, 20, interval=0.1, what="every table to evict the dead nodes")
        # replies: every alive node's answer to find_node, for each dead id, lists none
        asker = alive[0]
        for n in alive[1:]:
            for target in dead_ids:
                resp = await as_future(asker.query(n.address, b"find_node",
                                                   {b"target": target}))
                listed = {x.addr for x in decode_nodes(resp.values.get(b"nodes", b""))}
                self.assertEqual(listed & dead_addrs, set(), n.address)
                self.assertTrue(listed)
        # lookups (get_peers, which maintenance never sends): from every alive node, not
        # one query to a dead node
        to_dead: list[tuple[str, int]] = []
        for n in alive:
            port: Any = n._port
            port.write = record_lookups_to(port.write, dead_addrs, to_dead)
        for n in alive:
            result = await as_future(n.lookup(hashlib.sha1(n.node_id).digest(), b"get_peers"))
            self.assertGreater(result.answered, 0)
            self.assertEqual({x.addr for x in result.closest} & dead_addrs, set())
        self.assertEqual(to_dead, [])


def record_lookups_to(write: Any, dead: set[tuple[str, int]], log: list[tuple[str, int]]
                      ) -> Any:
    """Wrap a port's ``write`` to record every ``get_peers`` query sent to a ``dead``
    address (maintenance's own retries to them, started before, are not lookups)."""
    def wrapped(data: bytes, addr: tuple[str, int]) -> Any:
        if addr in dead:
            msg = decode_message(data)
            if isinstance(msg, Query) and msg.method == b"get_peers":
                log.append(addr)
        return write(data, addr)
    return wrapped


class SparseBootstrapTests(TestCase):
    """A mixed network where each of our nodes knows one libtorrent node at first."""

    @async_test
    async def test_tables_hold_both_kinds(self) -> None:
        """10 of our nodes, each bootstrapped from one of 10 libtorrent nodes that know
        nobody yet (its table then holds that one node); only afterwards do the libtorrent
        nodes learn each other.  Within 60 s every one of our tables holds at least two of
        our nodes and two libtorrent nodes: self-lookups and the tick's refresh queries keep
        a table learning after its bootstrap (with bootstrap alone ours stay at 0 of ours)."""
        lts = [LibtorrentDHT() for _ in range(10)]
        for lt_dht in lts:
            self.addCleanup(lt_dht.close)
        # bucket refresh (BEP 5, after stale_after = 60 s quiet) stays out of the picture:
        # only the tick's refresh query and the self-lookups can teach our tables
        config = dataclasses.replace(LOCAL_CONFIG, maintenance_interval=0.2,
                                     self_lookup_interval=1.0)
        ours = [DHTNode(reactor, dataclasses.replace(config, bootstrap=(lt_dht.addr,)))
                for lt_dht in lts]
        self.addCleanup(lambda: stop_all(ours))
        sizes = await asyncio.gather(*(as_future(n.start(0, "127.0.0.1")) for n in ours))
        self.assertEqual(sizes, [1] * 10)
        for i, lt_dht in enumerate(lts):
            for j in (i - 1, i + 1):
                if 0 <= j < len(lts):
                    lt_dht.session.add_dht_node(lts[j].addr)
        our_addrs = {n.address for n in ours}
        lt_addrs = {lt_dht.addr for lt_dht in lts}

        def kinds(node: DHTNode) -> tuple[int, int]:
            addrs = [e.node.addr for e in node.routing.entries()]
            return (sum(a in our_addrs for a in addrs), sum(a in lt_addrs for a in addrs))
        await wait_for(lambda: all(min(kinds(n)) >= 2 for n in ours), 60, interval=0.2,
                       what="every table to hold both kinds")
        self.assertTrue(all(sum(kinds(n)) == len(n.routing) for n in ours))
