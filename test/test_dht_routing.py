# -*- test-case-name: test.test_dht_routing -*-
"""The k-bucket routing table: placement, BEP 5 node states, replacement, bounds."""
from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from tunnels.dht.krpc import NodeInfo, distance
from tunnels.dht.routing import RoutingTable

OWN = b"\x00" * 20


def node_at(index: int, n: int, port: int | None = None) -> NodeInfo:
    """The ``n``-th node id in bucket ``index`` of a table owned by ``OWN``."""
    value = (1 << (159 - index)) | n
    return NodeInfo(value.to_bytes(20, "big"), "127.0.0.1", port or 10000 + index * 100 + n)


class PlacementTests(SynchronousTestCase):
    """Bucket indexes and closest-node queries follow the XOR metric."""

    def test_bucket_index(self) -> None:
        """Ids sharing i leading bits with ours land in bucket i."""
        table = RoutingTable(OWN, 0.0)
        self.assertEqual(table.bucket_index(b"\x80" + b"\x00" * 19), 0)
        self.assertEqual(table.bucket_index(b"\x40" + b"\x00" * 19), 1)
        self.assertEqual(table.bucket_index(b"\x00" * 19 + b"\x01"), 159)

    def test_closest(self) -> None:
        """closest() returns the k nearest nodes in XOR order."""
        table = RoutingTable(OWN, 0.0)
        nodes = [node_at(i, 1) for i in range(20)]
        for n in nodes:
            table.note_response(n, 1.0)
        target = nodes[10].node_id
        got = table.closest(target)
        self.assertEqual(len(got), 8)
        self.assertEqual(got, sorted(nodes, key=lambda n: distance(n.node_id, target))[:8])

    def test_own_id_never_inserted(self) -> None:
        """Our own id never enters the table."""
        table = RoutingTable(OWN, 0.0)
        table.note_response(NodeInfo(OWN, "127.0.0.1", 1), 1.0)
        self.assertEqual(len(table), 0)

    def test_random_id_in_bucket(self) -> None:
        """Refresh targets fall into the bucket they are drawn for."""
        table = RoutingTable(bytes(random.Random(1).randbytes(20)), 0.0)
        rng = random.Random(2)
        for index in (0, 1, 7, 80, 158, 159):
            self.assertEqual(table.bucket_index(table.random_id_in_bucket(index, rng)), index)


class BucketTests(SynchronousTestCase):
    """A full bucket keeps good nodes, replaces bad ones, stays bounded."""

    def full(self) -> RoutingTable:
        table = RoutingTable(OWN, 0.0, k=8, stale_after=900.0, max_failures=2)
        for n in range(8):
            table.note_response(node_at(0, n), 0.0)
        return table

    def test_full_bucket_keeps_good_nodes(self) -> None:
        """A newcomer waits among the replacements while all entries are good."""
        table = self.full()
        pings = table.note_response(node_at(0, 100), 1.0)
        self.assertEqual(pings, [])
        self.assertEqual(len(table), 8)
        self.assertNotIn(node_at(0, 100).node_id, table)

    def test_questionable_nodes_are_pinged(self) -> None:
        """After 15 minutes of silence the bucket's nodes are handed out to ping."""
        table = self.full()
        pings = table.note_response(node_at(0, 100), 901.0)
        self.assertEqual(len(pings), 8)
        self.assertEqual(len(table.questionable(901.0)), 8)

    def test_bad_node_replaced(self) -> None:
        """Two failures in a row make a node bad; the freshest replacement moves in."""
        table = self.full()
        table.note_response(node_at(0, 100), 1.0)
        victim = node_at(0, 3)
        table.note_failure(victim.node_id, victim.addr, 1.0)
        self.assertIn(victim.node_id, table)
        table.note_failure(victim.node_id, victim.addr, 1.0)
        self.assertNotIn(victim.node_id, table)
        self.assertIn(node_at(0, 100).node_id, table)
        self.assertEqual(len(table), 8)

    def test_bad_node_evicted(self) -> None:
        """One failure stops a node being handed out; the second evicts it even with no
        replacement waiting, so the next node to answer gets its place."""
        table = self.full()
        victim = node_at(0, 5)
        table.note_failure(victim.node_id, victim.addr, 1.0)
        self.assertIn(victim.node_id, table)
        self.assertNotIn(victim, table.closest(victim.node_id, 100))
        table.note_failure(victim.node_id, victim.addr, 1.0)
        self.assertNotIn(victim.node_id, table)
        self.assertEqual(len(table), 7)
        table.note_response(node_at(0, 200), 2.0)
        self.assertIn(node_at(0, 200).node_id, table)

    def test_response_clears_failures(self) -> None:
        """A node that answers again is good again."""
        table = self.full()
        n = node_at(0, 1)
        table.note_failure(n.node_id, n.addr, 1.0)
        table.note_response(n, 5.0)
        table.note_failure(n.node_id, n.addr, 1.0)
        self.assertIn(n.node_id, table)

    def test_bounded(self) -> None:
        """Thousands of random nodes never exceed 8 entries and 8 replacements per bucket."""
        rng = random.Random(3)
        table = RoutingTable(OWN, 0.0)
        for i in range(5000):
            table.note_response(NodeInfo(rng.randbytes(20), "127.0.0.1", 1 + i), float(i))
        self.assertLessEqual(len(table), 8 * 160)
        for bucket in table._buckets:
            self.assertLessEqual(len(bucket.entries), 8)
            self.assertLessEqual(len(bucket.replacements), 8)


class AddressRuleTests(SynchronousTestCase):
    """An entry's address cannot be hijacked; one entry per address."""

    def test_healthy_entry_keeps_address(self) -> None:
        """Somebody claiming a healthy node's id from elsewhere changes nothing."""
        table = RoutingTable(OWN, 0.0)
        n = node_at(3, 1, port=5000)
        table.note_response(n, 1.0)
        table.note_response(NodeInfo(n.node_id, "127.0.0.2", 6000), 2.0)
        self.assertEqual(table.closest(n.node_id, 1)[0].addr, ("127.0.0.1", 5000))

    def test_failed_entry_moves(self) -> None:
        """Once the old address failed to answer, the id may move (a restart on a new port)."""
        table = RoutingTable(OWN, 0.0)
        n = node_at(3, 1, port=5000)
        table.note_response(n, 1.0)
        table.note_failure(n.node_id, n.addr, 1.0)
        table.note_response(NodeInfo(n.node_id, "127.0.0.1", 6000), 2.0)
        self.assertEqual(table.closest(n.node_id, 1)[0].addr, ("127.0.0.1", 6000))

    def test_new_id_same_address(self) -> None:
        """A node that restarted with a new id replaces its old entry."""
        table = RoutingTable(OWN, 0.0)
        table.note_response(node_at(3, 1, port=5000), 1.0)
        table.note_response(node_at(9, 1, port=5000), 2.0)
        self.assertEqual(len(table), 1)
        self.assertIn(node_at(9, 1).node_id, table)

    def test_note_query(self) -> None:
        """An unknown querier is to be verified when its bucket has room; known ones refresh."""
        table = RoutingTable(OWN, 0.0)
        n = node_at(2, 1)
        self.assertTrue(table.note_query(n.node_id, n.addr, 1.0))
        table.note_response(n, 1.0)
        self.assertFalse(table.note_query(n.node_id, n.addr, 950.0))
        entry = table.get(n.node_id)
        assert entry is not None
        self.assertTrue(entry.is_good(950.0, 900.0))


class RefreshTests(SynchronousTestCase):
    """Stale buckets are reported for refresh and touched."""

    def test_stale_buckets(self) -> None:
        """Buckets up to the deepest non-empty one go stale after 15 minutes."""
        table = RoutingTable(OWN, 0.0)
        table.note_response(node_at(4, 1), 0.0)
        self.assertEqual(table.stale_buckets(100.0), [])
        self.assertEqual(table.stale_buckets(900.0), [0, 1, 2, 3, 4])
        table.touch_bucket(2, 900.0)
        self.assertEqual(table.stale_buckets(1000.0), [0, 1, 3, 4])
