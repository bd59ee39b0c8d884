"""Onion layers: round trips, constant size, integrity, replay, unlinkability, nonce uniqueness."""
from __future__ import annotations

import os
import random

from twisted.trial.unittest import SynchronousTestCase

from tunnels.crypto.onion import (BODY_SIZE, HEADER_SIZE, SLOT, HopKeys, IntegrityError, ReplayError,
                                  add_backward, new_counter, originate_backward, peel_forward,
                                  unwrap_backward, wrap_forward)
from tunnels.crypto.replay import ReplayWindow
from tunnels.settings import MAX_HOPS
from tunnels.wire.cells import PAYLOAD_SIZE


def make_hops(n: int, seed: int = 1) -> tuple[list[HopKeys], list[HopKeys]]:
    """Originator-side and relay-side keys for ``n`` hops (same material, separate objects)."""
    rng = random.Random(seed)
    material = [rng.randbytes(192) for _ in range(n)]
    return [HopKeys(m) for m in material], [HopKeys(m) for m in material]


def trace_forward(origin: list[HopKeys], relays: list[HopKeys], body: bytes) -> list[bytes]:
    """The payload on every link, originator first; the last element is what the exit sees."""
    seqs = [new_counter() for _ in origin]
    links = [wrap_forward(origin, seqs, body)]
    for keys in relays:
        _, payload = peel_forward(keys, ReplayWindow(), links[-1])
        links.append(payload)
    return links


def trace_backward(origin: list[HopKeys], relays: list[HopKeys], body: bytes) -> list[bytes]:
    """The payload on every link from the last hop towards the originator."""
    links = [originate_backward(relays[-1], new_counter(), body)]
    for keys in reversed(relays[:-1]):
        links.append(add_backward(keys, new_counter(), links[-1]))
    return links


class RoundTripTests(SynchronousTestCase):
    def test_forward_and_backward_every_length(self) -> None:
        """Bodies cross 1..MAX_HOPS hops both ways unchanged, at one constant size."""
        for n in range(1, MAX_HOPS + 1):
            origin, relays = make_hops(n, seed=n)
            body = os.urandom(BODY_SIZE)
            links = trace_forward(origin, relays, body)
            self.assertEqual(links[-1][HEADER_SIZE:], body)
            self.assertEqual({len(p) for p in links}, {PAYLOAD_SIZE})
            back = trace_backward(origin, relays, body)
            self.assertEqual({len(p) for p in back}, {PAYLOAD_SIZE})
            _, delivered = unwrap_backward(origin, [ReplayWindow() for _ in origin], back[-1])
            self.assertEqual(delivered, body)

    def test_too_many_hops_refused(self) -> None:
        """The header carries at most MAX_HOPS layers."""
        origin, _ = make_hops(MAX_HOPS + 1)
        with self.assertRaises(ValueError):
            wrap_forward(origin, [1] * len(origin), bytes(BODY_SIZE))

    def test_no_cell_beyond_the_header(self) -> None:
        """A hop past the last layer cannot accept anything: the slot it reads is filler."""
        origin, relays = make_hops(MAX_HOPS)
        links = trace_forward(origin, relays, bytes(BODY_SIZE))
        extra, _ = make_hops(1, seed=99)
        with self.assertRaises(IntegrityError):
            peel_forward(extra[0], ReplayWindow(), links[-1])


class IntegrityTests(SynchronousTestCase):
    def test_forward_tampering_caught_by_next_hop(self) -> None:
        """Flipping any bit anywhere on any link is rejected by the very next hop."""
        origin, relays = make_hops(3)
        links = trace_forward(origin, relays, os.urandom(BODY_SIZE))
        for hop in range(3):
            cell = links[hop]
            for position in range(len(cell)):
                tampered = bytearray(cell)
                tampered[position] ^= 1 << (position % 8)
                with self.assertRaises(IntegrityError, msg=f"hop {hop} byte {position}"):
                    peel_forward(relays[hop], ReplayWindow(), bytes(tampered))

    def test_backward_tampering_rejected_everywhere(self) -> None:
        """Flipping any bit on any backward link is rejected by the originator, including the
        header bytes a later relay drops (they are that relay's associated data): on 3 hops
        these were cell offsets 102-165 on the exit's link and 134-165 on the middle's."""
        for n in range(2, MAX_HOPS + 1):
            origin, relays = make_hops(n, seed=n)
            body = os.urandom(BODY_SIZE)
            links = trace_backward(origin, relays, body)
            for index, cell in enumerate(links):
                for position in range(len(cell)):
                    tampered = bytearray(cell)
                    tampered[position] ^= 1 << (position % 8)
                    current = bytes(tampered)
                    for keys in reversed(relays[:len(relays) - 1 - index]):
                        current = add_backward(keys, new_counter(), current)
                    with self.assertRaises(IntegrityError, msg=f"{n} hops, link {index}, byte {position}"):
                        unwrap_backward(origin, [ReplayWindow() for _ in origin], current)

    def test_dropped_slots_are_what_relays_drop(self) -> None:
        """The originator's reconstruction of each dropped slot equals the bytes the relay dropped."""
        from tunnels.crypto.onion import dropped_slots
        origin, relays = make_hops(4)
        seq = new_counter()
        links = [originate_backward(relays[-1], seq, bytes(BODY_SIZE))]
        for keys in reversed(relays[:-1]):
            links.append(add_backward(keys, new_counter(), links[-1]))
        actual = [links[len(relays) - 2 - i][HEADER_SIZE - SLOT:HEADER_SIZE] for i in range(len(relays) - 1)]
        self.assertEqual(dropped_slots(origin, origin[-1].junk(seq.to_bytes(8, "big"))), actual)

    def test_wrong_key_rejected(self) -> None:
        """A cell for one circuit is rejected by the keys of another."""
        origin, _ = make_hops(2)
        _, other = make_hops(2, seed=7)
        cell = wrap_forward(origin, [1, 1], bytes(BODY_SIZE))
        with self.assertRaises(IntegrityError):
            peel_forward(other[0], ReplayWindow(), cell)


class ReplayTests(SynchronousTestCase):
    def test_forward_replay_dropped_at_first_hop(self) -> None:
        """The same cell twice: accepted once, then ReplayError before any decryption result."""
        origin, relays = make_hops(2)
        window = ReplayWindow()
        cell = wrap_forward(origin, [5, 9], bytes(BODY_SIZE))
        seq, _ = peel_forward(relays[0], window, cell)
        window.mark(seq)
        with self.assertRaises(ReplayError):
            peel_forward(relays[0], window, cell)

    def test_backward_replay_dropped_by_originator(self) -> None:
        """A backward cell delivered twice is refused the second time."""
        origin, relays = make_hops(2)
        windows = [ReplayWindow() for _ in origin]
        cell = trace_backward(origin, relays, bytes(BODY_SIZE))[-1]
        seqs, _ = unwrap_backward(origin, windows, cell)
        for window, seq in zip(windows, seqs):
            window.mark(seq)
        with self.assertRaises(ReplayError):
            unwrap_backward(origin, windows, cell)

    def test_reordering_within_window_accepted(self) -> None:
        """Cells arriving out of order (within the window) are all accepted exactly once."""
        origin, relays = make_hops(1)
        window = ReplayWindow()
        cells = [wrap_forward(origin, [100 + i], bytes(BODY_SIZE)) for i in range(50)]
        random.Random(3).shuffle(cells)
        for cell in cells:
            seq, _ = peel_forward(relays[0], window, cell)
            window.mark(seq)
        for cell in cells:
            with self.assertRaises(ReplayError):
                peel_forward(relays[0], window, cell)


class UnlinkabilityTests(SynchronousTestCase):
    @staticmethod
    def _windows(payload: bytes) -> set[bytes]:
        return {payload[i:i + 8] for i in range(len(payload) - 7)}

    def test_no_field_equal_on_two_links(self) -> None:
        """No 8-byte run of a cell (header or body) appears on two links of its circuit."""
        origin, relays = make_hops(3)
        for links in (trace_forward(origin, relays, os.urandom(BODY_SIZE))[:-1],
                      trace_backward(origin, relays, os.urandom(BODY_SIZE))):
            for i in range(len(links)):
                for j in range(i + 1, len(links)):
                    self.assertFalse(self._windows(links[i]) & self._windows(links[j]), f"links {i} and {j}")

    def test_header_junk_never_repeats(self) -> None:
        """The junk the last hop sees differs in every cell (repeated junk would link circuits at an exit)."""
        origin, relays = make_hops(2)
        seen: set[bytes] = set()
        for _ in range(300):
            header = trace_forward(origin, relays, bytes(BODY_SIZE))[-1][:HEADER_SIZE]
            junk = {header[i:i + 8] for i in range(0, HEADER_SIZE - 8)}
            self.assertFalse(junk & seen)
            seen |= junk

    def test_sequence_numbers_start_unlinkably(self) -> None:
        """Counters start at independent random points, so hops cannot match them."""
        starts = {new_counter() for _ in range(100)}
        self.assertEqual(len(starts), 100)
        self.assertTrue(all(0 <= s < 2 ** 62 for s in starts))


class NonceUniquenessTests(SynchronousTestCase):
    def test_key_nonce_pairs_never_repeat(self) -> None:
        """Across a long run in both directions, every AES-GCM encryption uses a fresh (key, nonce)."""
        rng = random.Random(11)
        material = [rng.randbytes(192) for _ in range(3)]
        used: list[tuple[bytes, bytes]] = []

        class Recording:
            def __init__(self, inner: object, key: bytes) -> None:
                self.inner, self.key = inner, key

            def encrypt(self, nonce: bytes, data: bytes, ad: bytes | None) -> bytes:
                used.append((self.key, nonce))
                return self.inner.encrypt(nonce, data, ad)  # type: ignore[attr-defined]

            def decrypt(self, nonce: bytes, data: bytes, ad: bytes | None) -> bytes:
                return self.inner.decrypt(nonce, data, ad)  # type: ignore[attr-defined]

        def keys(m: bytes) -> HopKeys:
            k = HopKeys(m)
            k.fwd_aead = Recording(k.fwd_aead, m[:32])  # type: ignore[assignment]
            k.bwd_aead = Recording(k.bwd_aead, m[96:128])  # type: ignore[assignment]
            return k
        origin = [keys(m) for m in material]
        relays = [keys(m) for m in material]
        fwd = [new_counter() for _ in origin]
        bwd = [new_counter() for _ in relays]
        windows = [ReplayWindow() for _ in origin]
        for _ in range(2000):
            fwd = [s + 1 for s in fwd]
            cell = wrap_forward(origin, fwd, bytes(BODY_SIZE))
            for keys_, window in zip(relays, [ReplayWindow() for _ in relays]):
                _, cell = peel_forward(keys_, window, cell)
            bwd = [s + 1 for s in bwd]
            back = originate_backward(relays[2], bwd[2], bytes(BODY_SIZE))
            back = add_backward(relays[1], bwd[1], back)
            back = add_backward(relays[0], bwd[0], back)
            seqs, _ = unwrap_backward(origin, windows, back)
            for window, seq in zip(windows, seqs):
                window.mark(seq)
        self.assertEqual(len(used), 2000 * 6)
        self.assertEqual(len(set(used)), len(used))
