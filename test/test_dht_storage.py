# -*- test-case-name: test.test_dht_storage -*-
"""The peer store: expiry, refresh, per-key and total caps."""
from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from tunnels.dht.storage import PeerStore

KEY = b"k" * 20


class PeerStoreTests(SynchronousTestCase):
    """Bounded, expiring storage of announced peers."""

    def test_add_get(self) -> None:
        """Announced peers come back for their key only."""
        store = PeerStore()
        store.add(KEY, ("127.0.0.1", 1), 0.0)
        self.assertEqual(store.get(KEY, 1.0), [("127.0.0.1", 1)])
        self.assertEqual(store.get(b"o" * 20, 1.0), [])

    def test_expiry(self) -> None:
        """Peers vanish after ttl; expire() frees them and the key."""
        store = PeerStore(ttl=10.0)
        store.add(KEY, ("127.0.0.1", 1), 0.0)
        self.assertEqual(store.get(KEY, 10.0), [])
        self.assertEqual(store.expire(10.0), 1)
        self.assertEqual((len(store), store.keys()), (0, []))

    def test_refresh(self) -> None:
        """Re-announcing extends the expiry without duplicating."""
        store = PeerStore(ttl=10.0)
        store.add(KEY, ("127.0.0.1", 1), 0.0)
        store.add(KEY, ("127.0.0.1", 1), 8.0)
        self.assertEqual(store.get(KEY, 15.0), [("127.0.0.1", 1)])
        self.assertEqual(len(store), 1)

    def test_per_key_cap_random_eviction(self) -> None:
        """A full key evicts a random peer, so a newcomer always gets in."""
        store = PeerStore(max_peers_per_key=5, rng=random.Random(1))
        for port in range(1, 100):
            self.assertTrue(store.add(KEY, ("127.0.0.1", port), 0.0))
        self.assertEqual(len(store), 5)
        self.assertIn(("127.0.0.1", 99), store.get(KEY, 0.0))

    def test_key_and_total_caps(self) -> None:
        """New keys are refused when the store is full; existing ones still refresh."""
        store = PeerStore(max_keys=3, max_peers_total=4)
        for i in range(3):
            self.assertTrue(store.add(bytes([i]) * 20, ("127.0.0.1", 1), 0.0))
        self.assertFalse(store.add(b"\x09" * 20, ("127.0.0.1", 1), 0.0))
        self.assertTrue(store.add(b"\x00" * 20, ("127.0.0.1", 2), 0.0))
        self.assertFalse(store.add(b"\x00" * 20, ("127.0.0.1", 3), 0.0))   # total cap
        self.assertTrue(store.add(b"\x00" * 20, ("127.0.0.1", 2), 1.0))    # refresh is fine
        self.assertEqual(len(store), 4)

    def test_full_store_frees_expired(self) -> None:
        """A full store makes room by expiring old peers first."""
        store = PeerStore(ttl=10.0, max_keys=1)
        store.add(KEY, ("127.0.0.1", 1), 0.0)
        self.assertTrue(store.add(b"n" * 20, ("127.0.0.1", 1), 20.0))

    def test_get_limit(self) -> None:
        """get() samples at most ``limit`` peers."""
        store = PeerStore()
        for port in range(1, 80):
            store.add(KEY, ("127.0.0.1", port), 0.0)
        self.assertEqual(len(store.get(KEY, 0.0, limit=50)), 50)
