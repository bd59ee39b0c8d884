# -*- test-case-name: test.test_replay -*-
"""Replay protection: a sliding window over 64-bit sequence numbers (RFC 6347 4.1.2.6 style)
for cells a hop authenticates, and an exact-duplicate filter for cells it cannot."""
from __future__ import annotations

WINDOW = 1024
"""Cells that may arrive out of order without being dropped."""


class ReplayWindow:
    """Accepts each sequence number at most once, tolerating reordering within
    :data:`WINDOW`.  The first sequence number seen starts the window, so senders
    may start at a random offset (their counters then reveal nothing across hops).

    :meth:`check` is side-effect free; call :meth:`mark` only after the cell
    authenticated, so a forgery can never move the window.
    """

    __slots__ = ("top", "bits")

    def __init__(self) -> None:
        self.top = -1
        self.bits = 0

    def check(self, seq: int) -> bool:
        """Whether ``seq`` is new and not left of the window."""
        top = self.top
        if seq > top:
            return True
        offset = top - seq
        return offset < WINDOW and not (self.bits >> offset) & 1

    def mark(self, seq: int) -> None:
        """Record ``seq`` as seen (after :meth:`check` and authentication)."""
        top = self.top
        if seq > top:
            shift = seq - top
            self.bits = ((self.bits << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.top = seq
        else:
            self.bits |= 1 << (top - seq)


DUPLICATE_WINDOW = 256
"""Backward cells a relay remembers per circuit (at least; at most twice as many)."""


class DuplicateFilter:
    """Exact-duplicate filter for cells a relay cannot authenticate (backward cells).

    A relay does not hold the keys of the hops after it, so it cannot read a backward
    cell's sequence number; it remembers a fingerprint of each cell instead.  The
    fingerprint is the first 8 bytes of the cell's onion header: the next hop's
    encrypted ``seq || 0^8`` block, a keyed permutation of a counter, so every cell the
    next hop writes has its own, and an exact copy repeats it.  Two generations of at
    most :data:`DUPLICATE_WINDOW` fingerprints each bound the memory (about 25 KB per
    busy circuit); a copy older than that passes and is dropped by the originator's
    window instead.
    """

    __slots__ = ("current", "previous", "size")

    def __init__(self, size: int = DUPLICATE_WINDOW) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.current: set[bytes] = set()
        self.previous: set[bytes] = set()

    def seen(self, fingerprint: bytes) -> bool:
        """Whether ``fingerprint`` was recorded already; records it if not."""
        if fingerprint in self.current or fingerprint in self.previous:
            return True
        current = self.current
        if len(current) >= self.size:
            self.previous = current
            current = self.current = set()
        current.add(fingerprint)
        return False
