# -*- test-case-name: test.test_replay -*-
"""Sliding replay window over 64-bit sequence numbers (RFC 6347 4.1.2.6 style)."""
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
