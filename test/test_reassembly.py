"""Reassembly (tunnels.core.reassembly): exactly once or not at all, bounded memory and time."""
from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tunnels.core.reassembly import MAX_PARTIALS, PARTIAL_COST, ReassemblyBuffer
from tunnels.wire.fragments import decode_piece, split


def pieces(message: bytes, datagram_id: int, chunk: int = 100) -> list:
    return [decode_piece(p) for p in split(message, datagram_id, chunk)]


class ReassemblyTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.drops: Counter[str] = Counter()
        self.buffer = ReassemblyBuffer(10_000, self._drop, limit=4000, circuit_limit=2000, timeout=5.0)
        self.end = self.buffer.reassembly()

    def _drop(self, reason: str) -> None:
        self.drops[reason] += 1

    def feed(self, items: list, end=None) -> list[bytes]:
        end = end or self.end
        return [whole for whole in (end.add(p) for p in items) if whole is not None]

    def test_in_order_and_reordered(self) -> None:
        """Pieces in any order give the message once, and memory returns to zero."""
        message = bytes(range(250)) * 2
        parts = pieces(message, 1)
        self.assertEqual(self.feed(parts[::-1]), [message])
        self.assertEqual((self.buffer.used, self.end.used, self.buffer.order, self.drops), (0, 0, {}, Counter()))

    def test_whole_piece_passes_through(self) -> None:
        """A piece with count 1 is the whole message and holds no state."""
        self.assertEqual(self.feed(pieces(b"small", 3)), [b"small"])
        self.assertEqual(self.end.partials, {})

    def test_duplicate_piece_is_dropped_and_datagram_delivered_once(self) -> None:
        """A duplicated piece is counted and the datagram is delivered exactly once.  A copy
        arriving after completion (the onion's replay windows stop those first) starts a
        partial that can never complete and times out."""
        parts = pieces(bytes(300), 5)
        self.assertEqual(self.feed([parts[0], parts[1], parts[0], parts[2]]), [bytes(300)])
        self.assertEqual((self.drops, self.buffer.used), (Counter({"fragment_duplicate": 1}), 0))
        self.assertEqual(self.feed(parts[2:]), [])
        self.buffer.sweep(10.0)
        self.assertEqual((self.drops["reassembly_timeout"], self.buffer.used), (1, 0))

    def test_count_mismatch_drops_the_datagram(self) -> None:
        """A piece claiming another count for the same id drops the datagram: never spliced."""
        first = pieces(bytes(300), 9)        # 3 pieces
        other = pieces(b"\xff" * 200, 9)     # 2 pieces, same id
        self.assertEqual(self.feed([first[0], other[1], first[1], first[2]]), [])
        self.assertEqual(self.drops["fragment_mismatch"], 1)
        self.end.clear()
        self.assertEqual(self.buffer.used, 0)

    def test_timeout(self) -> None:
        """A datagram missing a piece is dropped after the timeout; memory returns to zero."""
        parts = pieces(bytes(300), 2)
        self.feed(parts[:2])
        self.assertGreater(self.buffer.used, 0)
        self.buffer.sweep(4.0)
        self.assertEqual(len(self.end.partials), 1)
        newer = pieces(bytes(300), 3)
        self.feed(newer[:1])                       # stamped at 4.0
        self.buffer.sweep(5.0)
        self.assertEqual((list(self.end.partials), self.drops["reassembly_timeout"]), ([3], 1))
        self.buffer.sweep(9.0)
        self.assertEqual((self.end.partials, self.buffer.used, self.drops["reassembly_timeout"]), ({}, 0, 2))
        self.assertEqual(self.feed(parts[2:]), [])   # a late piece cannot complete a dropped datagram

    def test_circuit_limit_evicts_oldest_of_that_circuit(self) -> None:
        """Past its byte cap a circuit loses its own oldest partial datagrams, not others'."""
        other = self.buffer.reassembly()
        self.feed(pieces(bytes(300), 1)[:1], other)
        for datagram_id in range(10, 30):
            self.feed(pieces(bytes(300), datagram_id)[:2])
        self.assertLessEqual(self.end.used, 2000)
        self.assertEqual(sorted(self.end.partials)[-1], 29)
        self.assertNotIn(10, self.end.partials)
        self.assertEqual(list(other.partials), [1])
        self.assertGreater(self.drops["reassembly_circuit_full"], 0)

    def test_node_limit_evicts_oldest_anywhere(self) -> None:
        """Past the node's cap the node's oldest partial goes first, whichever circuit holds it."""
        ends = [self.buffer.reassembly() for _ in range(4)]
        for n, end in enumerate(ends):
            for datagram_id in range(4):
                self.feed(pieces(bytes(300), 100 * n + datagram_id)[:2], end)
        self.assertLessEqual(self.buffer.used, 4000)
        self.assertNotIn(0, ends[0].partials)
        self.assertEqual(sorted(ends[3].partials), [300, 301, 302, 303])
        self.assertGreater(self.drops["reassembly_node_full"], 0)

    def test_partials_per_circuit_are_bounded(self) -> None:
        """Empty-chunk pieces cannot make a circuit hold more than MAX_PARTIALS partial datagrams."""
        end = ReassemblyBuffer(10_000, self._drop).reassembly()
        for datagram_id in range(MAX_PARTIALS * 3):
            end.add(decode_piece(datagram_id.to_bytes(4, "big") + b"\x00\x02"))
        self.assertEqual(sorted(end.partials), list(range(MAX_PARTIALS * 2, MAX_PARTIALS * 3)))
        self.assertEqual(end.used, MAX_PARTIALS * (PARTIAL_COST + 16))

    def test_too_large(self) -> None:
        """A datagram above max_message is dropped as soon as its pieces exceed it."""
        buffer = ReassemblyBuffer(250, self._drop)
        end = buffer.reassembly()
        self.assertEqual(self.feed(pieces(bytes(300), 4), end), [])
        self.assertEqual(self.feed(pieces(bytes(251), 5, chunk=300), end), [])
        self.assertEqual((self.drops["fragment_too_large"], buffer.used), (2, 0))

    def test_clear_releases_everything(self) -> None:
        """A closed circuit's partial datagrams are released and counted."""
        for datagram_id in range(3):
            self.feed(pieces(bytes(300), datagram_id)[:1])
        self.end.clear()
        self.assertEqual((self.buffer.used, self.buffer.order, self.drops["reassembly_closed"]), (0, {}, 3))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.binary(min_size=101, max_size=700), st.booleans(), st.booleans()),
                    min_size=1, max_size=12), st.randoms(use_true_random=False))
    def test_faults_give_once_or_nothing(self, datagrams: list, rng: random.Random) -> None:
        """Pieces lost, duplicated and shuffled: each datagram that lost no piece arrives intact
        exactly once, the others never, and after a sweep past the timeout no memory is held."""
        drops: Counter[str] = Counter()
        buffer = ReassemblyBuffer(10_000, drops.update)
        end = buffer.reassembly()
        stream, expected = [], []
        for datagram_id, (message, lose, duplicate) in enumerate(datagrams):
            parts = pieces(message, datagram_id)
            if lose:
                parts.pop(rng.randrange(len(parts)))
            else:
                expected.append(message)
            if duplicate:
                parts.append(rng.choice(parts))
            stream.extend(parts)
        rng.shuffle(stream)
        delivered = [whole for whole in (end.add(p) for p in stream) if whole is not None]
        self.assertEqual(Counter(delivered), Counter(expected))
        buffer.sweep(100.0)
        self.assertEqual((buffer.used, buffer.order, end.used), (0, {}, 0))
