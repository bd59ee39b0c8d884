# -*- test-case-name: test.test_dht_network -*-
"""A network of 24 of our nodes over real UDP on 127.0.0.1, and the demo."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import io
from collections import Counter

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from test.util import async_test, wait_for
from tunnels.dht import demo
from tunnels.dht.krpc import distance
from tunnels.dht.node import DHTNode
from tunnels.dht.testing import LOCAL_CONFIG, start_local_network, stop_all
from tunnels.runtime import as_future

SIZE = 24


def ideal_size(node: DHTNode, nodes: list[DHTNode]) -> int:
    """How many entries a perfect table of ``node`` would hold for this network."""
    per_bucket = Counter(node.routing.bucket_index(m.node_id) for m in nodes if m is not node)
    return sum(min(node.config.k, c) for c in per_bucket.values())


class NetworkTests(TestCase):
    """Convergence, lookups from anywhere, expiry and restarts."""

    async def network(self, count: int = SIZE, **overrides: object) -> list[DHTNode]:
        nodes: list[DHTNode] = await as_future(start_local_network(reactor, count, **overrides))
        self.addCleanup(lambda: stop_all(nodes))
        return nodes

    @async_test
    async def test_converges(self) -> None:
        """Every routing table holds at least 80% of what a perfect table would, every
        node is known to several others, and nobody knows a node outside the network."""
        nodes = await self.network()
        ids = {n.node_id for n in nodes}
        for node in nodes:
            self.assertGreaterEqual(len(node.routing), 0.8 * ideal_size(node, nodes),
                                    f"table of node {node.address[1]} is too empty")
            self.assertLessEqual({e.node.node_id for e in node.routing.entries()}, ids)
            known_by = sum(1 for m in nodes if node.node_id in m.routing)
            self.assertGreaterEqual(known_by, 3)

    @async_test
    async def test_any_to_any(self) -> None:
        """Peers announced from any node are found by get_peers from every other node."""
        nodes = await self.network()
        announced = {}
        announcers = {}
        for i in (0, 7, 13, SIZE - 1):
            info_hash = hashlib.sha1(b"service %d" % i).digest()
            accepted = await as_future(nodes[i].announce_peer(info_hash, 7000 + i))
            self.assertGreaterEqual(accepted, 4)
            announced[info_hash] = ("127.0.0.1", 7000 + i)
            announcers[info_hash] = nodes[i]
        for info_hash, peer in announced.items():
            for j, node in enumerate(nodes):
                peers = await as_future(node.get_peers(info_hash))
                self.assertIn(peer, peers, f"node {j} did not find {peer}")
        # the peers are stored at the nodes closest to each info hash (but the announcer)
        for info_hash in announced:
            holders = [n for n in nodes if n.store.get(info_hash, reactor.seconds())]
            others = [n for n in nodes if n is not announcers[info_hash]]
            nearest = sorted(others, key=lambda n: distance(n.node_id, info_hash))[:3]
            self.assertTrue(set(map(id, nearest)) <= set(map(id, holders)))

    @async_test
    async def test_implied_port(self) -> None:
        """An announce with implied_port stores the announcer's DHT port."""
        nodes = await self.network(8)
        info_hash = hashlib.sha1(b"implied").digest()
        await as_future(nodes[3].announce_peer(info_hash, implied_port=True))
        peers = await as_future(nodes[6].get_peers(info_hash))
        self.assertIn(nodes[3].address, peers)

    @async_test
    async def test_expired_peers_vanish(self) -> None:
        """Announced peers disappear from every store and lookup after their ttl."""
        nodes = await self.network(12, peer_ttl=1.0, maintenance_interval=0.25)
        info_hash = hashlib.sha1(b"short lived").digest()
        await as_future(nodes[2].announce_peer(info_hash, 7777))
        self.assertIn(("127.0.0.1", 7777), await as_future(nodes[9].get_peers(info_hash)))
        await wait_for(lambda: all(len(n.store) == 0 for n in nodes), 5,
                       what="maintenance to expire every stored peer")
        self.assertEqual(await as_future(nodes[9].get_peers(info_hash)), [])

    @async_test
    async def test_restart_rejoins(self) -> None:
        """A node that stops and restarts (same id and port) refills its table, finds peers
        announced while it was away, and can be found and announced through again."""
        nodes = await self.network(16)
        victim = nodes[5]
        node_id, port = victim.node_id, victim.address[1]
        await as_future(victim.stop())
        info_hash = hashlib.sha1(b"while away").digest()
        await as_future(nodes[9].announce_peer(info_hash, 7100))
        config = dataclasses.replace(LOCAL_CONFIG, node_id=node_id,
                                     bootstrap=(nodes[0].address,))
        again = DHTNode(reactor, config)
        self.addCleanup(again.stop)
        size = await as_future(again.start(port, "127.0.0.1"))
        self.assertGreaterEqual(size, 8)
        self.assertIn(("127.0.0.1", 7100), await as_future(again.get_peers(info_hash)))
        mine = hashlib.sha1(b"after restart").digest()
        await as_future(again.announce_peer(mine, 7200))
        self.assertIn(("127.0.0.1", 7200), await as_future(nodes[12].get_peers(mine)))
        self.assertEqual(await as_future(nodes[1].ping(("127.0.0.1", port))), node_id)

    @async_test
    async def test_new_node_joins_late(self) -> None:
        """A node with a new id joining a running network gets into others' tables."""
        nodes = await self.network(12)
        late = DHTNode(reactor, dataclasses.replace(LOCAL_CONFIG, bootstrap=(nodes[4].address,)))
        self.addCleanup(late.stop)
        await as_future(late.start(0, "127.0.0.1"))
        await wait_for(lambda: sum(late.node_id in n.routing for n in nodes) >= 3, 5,
                       what="others to verify and add the late node")

    @async_test
    async def test_demo(self) -> None:
        """The demo runs a 20-node DHT, announces, looks up, and reports success."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = await demo._main(reactor, argparse.Namespace(nodes=20, port=7001))
        self.assertEqual(status, 0, out.getvalue())
        self.assertIn("lookup FOUND the announced peer", out.getvalue())
        await asyncio.sleep(0)


class ChurnTests(TestCase):
    """Maintenance notices dead nodes and refreshes stale buckets."""

    @async_test
    async def test_dead_node_replaced(self) -> None:
        """A node that stops answering turns bad in every table (two failed pings), is no
        longer handed out by closest(), and newcomers take its place."""
        nodes: list[DHTNode] = await as_future(start_local_network(
            reactor, 12, stale_after=0.3, maintenance_interval=0.1, query_timeout=0.2,
            retries=0))
        self.addCleanup(lambda: stop_all(nodes))
        dead = nodes[4]
        holders = [n for n in nodes if dead.node_id in n.routing]
        self.assertTrue(holders)
        await as_future(dead.stop())

        def forgotten() -> bool:
            return all(dead.node_id not in [x.node_id for x in n.routing.closest(
                dead.node_id, 100)] for n in holders)
        await wait_for(forgotten, 10, what="every table to give up on the dead node")
        late = DHTNode(reactor, dataclasses.replace(
            LOCAL_CONFIG, bootstrap=(nodes[0].address,), query_timeout=0.2, retries=0))
        self.addCleanup(late.stop)
        await as_future(late.start(0, "127.0.0.1"))
        info_hash = hashlib.sha1(b"after churn").digest()
        await as_future(late.announce_peer(info_hash, 7300))
        self.assertIn(("127.0.0.1", 7300), await as_future(nodes[9].get_peers(info_hash)))

    @async_test
    async def test_stale_buckets_refreshed(self) -> None:
        """Buckets unchanged for stale_after are refreshed by maintenance (a lookup into
        them), and questionable nodes are pinged back to good."""
        nodes: list[DHTNode] = await as_future(start_local_network(
            reactor, 8, stale_after=0.4, maintenance_interval=0.1))
        self.addCleanup(lambda: stop_all(nodes))
        node = nodes[0]
        sent = node.stats.queries_sent
        stale_at = reactor.seconds() + 0.4      # every entry and bucket is stale after this

        def refreshed() -> bool:
            return (all(e.last_response > stale_at for e in node.routing.entries())
                    and all(b.last_changed > stale_at for b in node.routing._buckets[:2]))
        await wait_for(refreshed, 5, what="maintenance to ping every node and refresh buckets")
        self.assertGreater(node.stats.queries_sent, sent)
