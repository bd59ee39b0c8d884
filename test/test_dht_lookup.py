# -*- test-case-name: test.test_dht_lookup -*-
"""Iterative lookups over a simulated network (synchronous, no sockets)."""
from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from tunnels.dht import krpc
from tunnels.dht.client import QueryTimeout
from tunnels.dht.krpc import NodeInfo, Response, distance
from tunnels.dht.lookup import IterativeLookup


class FakeNetwork:
    """N nodes that answer find_node/get_peers from a perfect view of the network."""

    def __init__(self, n: int, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.nodes = [NodeInfo(rng.randbytes(20), "127.0.0.1", 1000 + i) for i in range(n)]
        self.dead: set[bytes] = set()
        self.peers: dict[bytes, list[bytes]] = {}
        self.extra: dict[bytes, bytes] = {}      # node id -> extra compact nodes in replies
        self.queries: list[NodeInfo] = []
        self.inflight = 0
        self.max_inflight = 0
        self.held: list[tuple[Deferred[Response], Response]] = []
        self.hold = False

    def query(self, node: NodeInfo, method: bytes, args: dict[bytes, Any]) -> Deferred[Response]:
        self.queries.append(node)
        if node.node_id in self.dead:
            return fail(QueryTimeout("dead"))
        target = args.get(b"target") or args[b"info_hash"]
        near = sorted(self.nodes, key=lambda n: distance(n.node_id, target))[:8]
        values: dict[bytes, Any] = {
            b"id": node.node_id,
            b"nodes": krpc.encode_nodes(near) + self.extra.get(node.node_id, b"")}
        if method == b"get_peers":
            values[b"token"] = b"tok" + node.node_id[:2]
            if node.node_id in self.peers:
                values[b"values"] = self.peers[node.node_id]
        resp = Response(b"t", values, node.node_id)
        if self.hold:
            d: Deferred[Response] = Deferred()
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.held.append((d, resp))
            return d
        return succeed(resp)

    def release_all(self) -> None:
        while self.held:
            d, resp = self.held.pop(0)
            self.inflight -= 1
            d.callback(resp)


class LookupTests(SynchronousTestCase):
    """Convergence, parallelism, failures and hostile replies."""

    def run_lookup(self, net: FakeNetwork, target: bytes, method: bytes = b"find_node",
                   **kw: Any) -> Any:
        args = {b"target": target} if method == b"find_node" else {b"info_hash": target}
        lookup = IterativeLookup(net.query, target, method, args, net.nodes[:3], **kw)
        return lookup.run()

    def test_converges_to_k_closest(self) -> None:
        """From 3 seeds in a 200-node network, the lookup ends at the true 8 closest."""
        net = FakeNetwork(200)
        target = random.Random(9).randbytes(20)
        result = self.successResultOf(self.run_lookup(net, target))
        truth = sorted(net.nodes, key=lambda n: distance(n.node_id, target))[:8]
        self.assertEqual(result.closest, truth)
        self.assertLess(result.queried, 60)

    def test_alpha_bounds_parallelism(self) -> None:
        """Never more than alpha queries are in flight."""
        net = FakeNetwork(100)
        net.hold = True
        d = self.run_lookup(net, b"\x55" * 20, alpha=3)
        while net.held:
            self.assertLessEqual(net.inflight, 3)
            net.release_all()
        self.successResultOf(d)
        self.assertEqual(net.max_inflight, 3)

    def test_dead_nodes_skipped(self) -> None:
        """Nodes that time out are skipped; the result holds only nodes that answered."""
        net = FakeNetwork(100)
        target = b"\x11" * 20
        truth = sorted(net.nodes, key=lambda n: distance(n.node_id, target))
        net.dead = {n.node_id for n in truth[:3]}
        result = self.successResultOf(self.run_lookup(net, target))
        self.assertEqual(len(result.closest), 8)
        self.assertFalse(net.dead & {n.node_id for n in result.closest})
        self.assertEqual(result.closest[:5], truth[3:8])

    def test_get_peers_collects_values_and_tokens(self) -> None:
        """get_peers gathers peers from values and one token per answering node."""
        net = FakeNetwork(50)
        target = b"\x22" * 20
        holder = sorted(net.nodes, key=lambda n: distance(n.node_id, target))[0]
        net.peers[holder.node_id] = [krpc.encode_peer("127.0.0.1", 7000), b"short",
                                     b"\x00" * 18, 5]    # type: ignore[list-item]
        result = self.successResultOf(self.run_lookup(net, target, b"get_peers"))
        self.assertEqual(result.peers, [("127.0.0.1", 7000)])
        self.assertEqual(set(result.tokens), {n.node_id for n in result.closest})

    def test_address_policy_applied(self) -> None:
        """Nodes and peers at refused addresses are never contacted nor returned."""
        net = FakeNetwork(30)
        bogus = NodeInfo(b"\x00" * 20, "192.0.2.1", 53)
        for n in net.nodes:
            net.extra[n.node_id] = krpc.encode_nodes([bogus])
        target = b"\x00" * 20
        net.peers[net.nodes[0].node_id] = [krpc.encode_peer("192.0.2.7", 80)]
        result = self.successResultOf(self.run_lookup(
            net, target, b"get_peers", accept_node=lambda h, p: h.startswith("127."),
            accept_peer=lambda h, p: h.startswith("127.")))
        self.assertNotIn(bogus, net.queries)
        self.assertEqual(result.peers, [])

    def test_bounded_work(self) -> None:
        """max_queries caps the queries of one lookup, whatever replies say."""
        net = FakeNetwork(300)
        result = self.successResultOf(self.run_lookup(net, b"\x33" * 20, max_queries=5))
        self.assertEqual(result.queried, 5)

    def test_no_seeds(self) -> None:
        """A lookup with no seeds ends at once with an empty result."""
        lookup = IterativeLookup(FakeNetwork(1).query, b"\x00" * 20, b"find_node",
                                 {b"target": b"\x00" * 20}, [])
        result = self.successResultOf(lookup.run())
        self.assertEqual((result.closest, result.queried), ([], 0))

    def test_rekeys_on_other_id(self) -> None:
        """A seed that answers under another id is recorded under the id it gave."""
        net = FakeNetwork(20)
        real = net.nodes[0]
        placeholder = NodeInfo(b"\xff" * 20, real.host, real.port)

        def query(node: NodeInfo, method: bytes, args: dict[bytes, Any]) -> Deferred[Response]:
            return net.query(real if node.addr == real.addr else node, method, args)
        lookup = IterativeLookup(query, real.node_id, b"find_node", {b"target": real.node_id},
                                 [placeholder])
        result = self.successResultOf(lookup.run())
        self.assertIn(real, result.closest)
        self.assertNotIn(b"\xff" * 20, [n.node_id for n in result.closest])
