# -*- test-case-name: test.test_community -*-
"""Counters of what a node did and dropped (every drop has a named reason).

Names follow two conventions the status page and the metrics rely on: a refusal is the
event ``<what>_refused_<reason>`` (``exit_refused_port_not_allowed``), and every name has a
one-line explanation in :mod:`tunnels.reasons`.  Nothing here runs per cell: circuits
count their own cells, and hand the totals over once, when they close.
"""
from __future__ import annotations

from collections import Counter


class Stats:
    """Named counters; ``drops[reason]`` counts datagrams dropped without a reply."""

    def __init__(self) -> None:
        self.drops: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.retired_cells: Counter[str] = Counter()
        """Cells of circuits that have closed, by ``"<origin|relay>_<forward|backward>"``; the
        live circuits' own counts plus these make monotonic totals."""

    def drop(self, reason: str) -> None:
        """Count one dropped datagram."""
        self.drops[reason] += 1

    def note(self, event: str, amount: int = 1) -> None:
        """Count an event (circuits built, refused, destroyed, ...)."""
        self.events[event] += amount

    def retire_cells(self, role: str, forward: int, backward: int) -> None:
        """Keep the cell counts of a circuit that closes (``role``: ``origin`` or ``relay``)."""
        self.retired_cells[f"{role}_forward"] += forward
        self.retired_cells[f"{role}_backward"] += backward

    def as_dict(self) -> dict[str, dict[str, int]]:
        """A JSON-friendly copy."""
        return {"drops": dict(self.drops), "events": dict(self.events)}
