# -*- test-case-name: test.test_community -*-
"""The link table: which circuit a cell belongs to, keyed by (neighbour, circuit id).

Keys include the neighbour's address, so circuit ids are scoped per link, a cell is
only accepted from the neighbour its circuit is bound to, and a CREATE can never
overwrite a live circuit.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any

from ..wire.cells import new_circuit_id

Address = tuple[str, int]


class Role(IntEnum):
    """What a table entry means for cells arriving on it."""

    OWN = 0        # backward cells of a circuit we originate (from its first hop)
    FROM_PREV = 1  # forward cells of a joined circuit (from its previous hop)
    FROM_NEXT = 2  # backward cells of a joined circuit (from its next hop)


class LinkTable:
    """Bounded map ``(address, circuit id) -> (role, circuit)``."""

    def __init__(self, limit: int) -> None:
        self.entries: dict[tuple[Address, int], tuple[Role, Any]] = {}
        self.limit = limit

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, address: Address, circuit_id: int) -> tuple[Role, Any] | None:
        """The entry for a cell from ``address`` on ``circuit_id``."""
        return self.entries.get((address, circuit_id))

    def full(self) -> bool:
        """Whether no entry may be added."""
        return len(self.entries) >= self.limit

    def add(self, address: Address, circuit_id: int, role: Role, circuit: Any) -> None:
        """Bind a new entry; never overwrites (callers check with :meth:`get` first)."""
        key = (address, circuit_id)
        if key in self.entries:
            raise KeyError(f"circuit id {circuit_id:08x} already bound on this link")
        self.entries[key] = (role, circuit)

    def new_id(self, address: Address) -> int:
        """A fresh CSPRNG circuit id not bound on the link to ``address``."""
        while True:
            cid = new_circuit_id()
            if (address, cid) not in self.entries:
                return cid

    def remove(self, address: Address | None, circuit_id: int) -> None:
        """Forget an entry if present."""
        if address is not None:
            self.entries.pop((address, circuit_id), None)
