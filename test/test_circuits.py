"""Circuit state: expiry predicates and the joined circuits' key cache."""
from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from tunnels.core.circuits import JoinedCircuit, KeyCache, expiry_reason
from tunnels.crypto.onion import BODY_SIZE, HEADER_SIZE, HopKeys, peel_forward, wrap_forward
from tunnels.crypto.replay import ReplayWindow
from tunnels.settings import TunnelSettings
from tunnels.wire.cells import CELL_SIZE


def joined(i: int) -> JoinedCircuit:
    return JoinedCircuit(("127.0.0.1", 1000 + i), i + 1, b"t" * 16, os.urandom(192), 0.0)


class KeyCacheTests(SynchronousTestCase):
    def test_second_chance_eviction(self) -> None:
        """Beyond capacity, a circuit not used since the hand last passed loses its contexts."""
        cache = KeyCache(capacity=2)
        a, b, c = joined(0), joined(1), joined(2)
        cache.keys(a)
        cache.keys(b)
        a.key_used, b.key_used = False, True
        cache.keys(c)
        self.assertIsNone(a.hop_keys)
        self.assertIsNotNone(b.hop_keys)
        self.assertIsNotNone(c.hop_keys)
        self.assertEqual(len(cache.ring), 2)

    def test_rebuilt_contexts_work_the_same(self) -> None:
        """After eviction the rebuilt contexts still remove the circuit's layers."""
        cache = KeyCache(capacity=1)
        circuit, other = joined(0), joined(1)
        origin = HopKeys(circuit.material)
        window = ReplayWindow()
        body = os.urandom(BODY_SIZE)
        for seq in (10, 11):
            cell = wrap_forward([origin], [seq], body)
            got, payload = peel_forward(cache.keys(circuit), window, cell)
            window.mark(got)
            self.assertEqual(payload[HEADER_SIZE:], body)
            circuit.key_used = False
            cache.keys(other)
            self.assertIsNone(circuit.hop_keys)

    def test_capacity_validated(self) -> None:
        """A cache must hold at least one circuit."""
        with self.assertRaises(ValueError):
            KeyCache(0)


class ExpiryTests(SynchronousTestCase):
    def test_reasons(self) -> None:
        """max_time, max_time_inactive and max_traffic each end a circuit at their boundary."""
        s = TunnelSettings(max_time=100.0, max_time_inactive=10.0, max_traffic=10 * CELL_SIZE)
        self.assertIsNone(expiry_reason(0.0, 0.0, 9, 9.9, s))
        self.assertEqual(expiry_reason(0.0, 0.0, 0, 100.0, s), "max_time")
        self.assertEqual(expiry_reason(0.0, 50.0, 0, 60.0, s), "max_time_inactive")
        self.assertEqual(expiry_reason(0.0, 0.0, 10, 1.0, s), "max_traffic")
        self.assertEqual(expiry_reason(0.0, 0.0, 2 ** 40, 1.0, TunnelSettings()), "max_traffic")
