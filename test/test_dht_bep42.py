# -*- test-case-name: test.test_dht_bep42 -*-
"""BEP 42 node-id restriction: the BEP's own vectors, verification, exemptions."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnels.dht import bep42
from tunnels.dht.config import DHTConfig
from tunnels.dht.node import DHTNode

# (IP, rand, expected first 3 bytes masked to 21 bits) from BEP 42's table; the third
# byte's low 3 bits are random, so the vectors give them as 'x'.
VECTORS = [
    ("124.31.75.21", 1, bytes.fromhex("5fbfb8")),
    ("21.75.31.124", 86, bytes.fromhex("5a3ce8")),
    ("65.23.51.170", 22, bytes.fromhex("a5d430")),
    ("84.124.73.14", 65, bytes.fromhex("1b0320")),
    ("43.213.53.83", 90, bytes.fromhex("e56f68")),
]


class BEP42Tests(SynchronousTestCase):
    """Ids derived from the external address."""

    def test_crc32c(self) -> None:
        """CRC-32C of '123456789' is the standard check value."""
        self.assertEqual(bep42.crc32c(b"123456789"), 0xE3069283)

    def test_vectors(self) -> None:
        """The ids of BEP 42's table: first 21 bits and last byte."""
        for ip, rand, prefix in VECTORS:
            node_id = bep42.node_id_for_ip(ip, rand)
            self.assertEqual(node_id[:2], prefix[:2], ip)
            self.assertEqual(node_id[2] & 0xF8, prefix[2], ip)
            self.assertEqual(node_id[19], rand)
            self.assertTrue(bep42.id_matches_ip(node_id, ip))

    def test_mismatch(self) -> None:
        """An id made for one IP does not match another public IP."""
        node_id = bep42.node_id_for_ip("124.31.75.21", 1)
        self.assertFalse(bep42.id_matches_ip(node_id, "21.75.31.124"))
        self.assertFalse(bep42.id_matches_ip(b"\x00" * 20, "124.31.75.21"))

    def test_exempt(self) -> None:
        """Loopback and private addresses accept any id."""
        for ip in ("127.0.0.1", "10.1.2.3", "192.168.1.1"):
            self.assertTrue(bep42.id_matches_ip(b"\x00" * 20, ip))


class EnforcementTests(SynchronousTestCase):
    """A node with enforce_node_id admits only conforming ids to its routing table."""

    def test_admit(self) -> None:
        """Conforming ids and exempt addresses are admitted; others are refused and counted."""
        node = DHTNode(Clock(), DHTConfig(bootstrap=(), address_policy="any",
                                          enforce_node_id=True))
        good = bep42.node_id_for_ip("124.31.75.21", 1)
        self.assertTrue(node.admit(good, ("124.31.75.21", 6881)))
        self.assertTrue(node.admit(b"\x00" * 20, ("10.0.0.1", 6881)))
        self.assertFalse(node.admit(b"\x00" * 20, ("124.31.75.21", 6881)))
        self.assertEqual(node.stats.dropped["bep42_id"], 1)
        lax = DHTNode(Clock(), DHTConfig(bootstrap=(), address_policy="any"))
        self.assertTrue(lax.admit(b"\x00" * 20, ("124.31.75.21", 6881)))
