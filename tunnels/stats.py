# -*- test-case-name: test.test_community -*-
"""Counters of what a node did and dropped (every drop has a named reason)."""
from __future__ import annotations

from collections import Counter


class Stats:
    """Named counters; ``drops[reason]`` counts datagrams dropped without a reply."""

    def __init__(self) -> None:
        self.drops: Counter[str] = Counter()
        self.events: Counter[str] = Counter()

    def drop(self, reason: str) -> None:
        """Count one dropped datagram."""
        self.drops[reason] += 1

    def note(self, event: str, amount: int = 1) -> None:
        """Count an event (circuits built, refused, destroyed, ...)."""
        self.events[event] += amount

    def as_dict(self) -> dict[str, dict[str, int]]:
        """A JSON-friendly copy."""
        return {"drops": dict(self.drops), "events": dict(self.events)}
