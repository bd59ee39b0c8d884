# -*- test-case-name: test.test_circuits -*-
"""Circuit state: our own circuits (:class:`Circuit`) and circuits we carry for others
(:class:`JoinedCircuit`).  Plain state and pure predicates; no I/O, time passed in."""
from __future__ import annotations

from enum import Enum, auto
from typing import TYPE_CHECKING, Any

from ..crypto.onion import MAX_SEQ, HopKeys, new_counter
from ..crypto.replay import DuplicateFilter, ReplayWindow
from ..wire.cells import CELL_SIZE, relay_prefix
from ..wire.fragments import ID_SPACE, new_datagram_id
from .flow import FlowWindow
from .reassembly import Reassembly

if TYPE_CHECKING:
    from ..crypto.ntor import ClientState
    from .flows import Flow
    from ..settings import TunnelSettings

Address = tuple[str, int]


class CircuitState(Enum):
    """Lifecycle of a circuit we build."""

    EXTENDING = auto()
    READY = auto()
    CLOSED = auto()


class Hop:
    """One relay of our circuit, with the keys and counters we share with it."""

    __slots__ = ("address", "node_id", "onion_key", "keys", "fwd_seq", "bwd_window")

    def __init__(self, address: Address, node_id: bytes, onion_key: bytes, keys: HopKeys) -> None:
        self.address = address
        self.node_id = node_id
        self.onion_key = onion_key
        self.keys = keys
        self.fwd_seq = new_counter()
        self.bwd_window = ReplayWindow()


def expiry_reason(created: float, idle_since: float, cells: int, now: float,
                  settings: TunnelSettings) -> str | None:
    """Why a circuit must go now (``max_time``, ``max_time_inactive``, ``max_traffic``), or None."""
    if now - created >= settings.max_time:
        return "max_time"
    if now - idle_since >= settings.max_time_inactive:
        return "max_time_inactive"
    if cells * CELL_SIZE >= settings.max_traffic:
        return "max_traffic"
    return None


class Circuit:
    """A circuit we originate.  Pass it to ``tunnel_data``; read-only for applications.

    :ivar circuit_id: id on the link to the first hop.
    :ivar goal_hops: number of hops it is being built to.
    :ivar state: a :class:`CircuitState`.
    """

    def __init__(self, circuit_id: int, goal_hops: int, path: list[Any], created: float, token: bytes,
                 purpose: str = "data") -> None:
        self.circuit_id = circuit_id
        self.goal_hops = goal_hops
        self.path = path
        self.purpose = purpose
        self.state = CircuitState.EXTENDING
        self.hops: list[Hop] = []
        self.token = token
        self.created = created
        self.build_started = created
        """When the current build (or the last lengthening) started."""
        self.last_received = created
        self.last_sent = created
        self.cells_sent = 0
        self.cells_received = 0
        self.pending: ClientState | None = None
        self.on_ready: list[Any] = []
        self.on_closed: list[Any] = []
        self.close_reason: str | None = None
        self.data_sink: Any = None
        """If set, ``data_sink(source, payload)`` receives this circuit's DATA instead of the handlers."""
        self.flow = FlowWindow()
        self.datagram_id = new_datagram_id()
        """Id of the last fragmented datagram we sent (doc/protocol.md 4.1)."""
        self.reassembly: Reassembly | None = None
        """Replies arriving in pieces (created on the first piece)."""
        self.flows: dict[int, Flow] = {}
        """Open flows by id (:mod:`tunnels.core.flows`); flow 0 is implicit and never listed."""
        self.last_flow_id = 0
        """The last flow id given out on this circuit (ids are never reused)."""

    @property
    def first_hop(self) -> Address:
        """Address of the first relay."""
        return (self.path[0].address[0], self.path[0].address[1])

    @property
    def hop_count(self) -> int:
        """Hops built so far."""
        return len(self.hops)

    @property
    def ready(self) -> bool:
        """Whether the circuit carries data."""
        return self.state is CircuitState.READY

    def next_seqs(self) -> list[int]:
        """Claim one forward sequence number per hop (the caller tears down on overflow)."""
        seqs = []
        for hop in self.hops:
            hop.fwd_seq += 1
            seqs.append(hop.fwd_seq)
        return seqs

    def next_datagram_id(self) -> int:
        """Claim the id of the next fragmented datagram we send."""
        self.datagram_id = (self.datagram_id + 1) % ID_SPACE
        return self.datagram_id

    def counters_exhausted(self) -> bool:
        """Whether any forward counter is about to wrap (the circuit must end first)."""
        return any(hop.fwd_seq >= MAX_SEQ for hop in self.hops)

    def expiry(self, now: float, settings: TunnelSettings) -> str | None:
        """Why this circuit must be torn down now, or None."""
        if self.state is CircuitState.EXTENDING:
            return "build_timeout" if now - self.build_started >= settings.build_timeout else None
        return expiry_reason(self.created, self.last_received, self.cells_sent + self.cells_received, now, settings)

    def __repr__(self) -> str:
        return f"<Circuit {self.circuit_id:08x} {self.state.name} {self.hop_count}/{self.goal_hops} hops>"


class KeyCache:
    """Cipher contexts (about 11 KB a circuit) only for the joined circuits that carry traffic.

    A joined circuit keeps its 192 bytes of key material; its :class:`HopKeys` are built on
    its first cell and kept while it stays busy, at most ``capacity`` at a time.  Eviction
    is CLOCK (second chance): a hit only sets ``key_used``, so the per-cell cost is one
    attribute store, and an idle circuit costs about 1 KB instead of 11 KB.
    """

    def __init__(self, capacity: int = 128) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.ring: list[JoinedCircuit] = []
        self.hand = 0

    def keys(self, circuit: JoinedCircuit) -> HopKeys:
        """The circuit's cipher contexts, building them (and evicting another's) if needed."""
        keys = circuit.hop_keys
        if keys is None:
            keys = circuit.hop_keys = HopKeys(circuit.material)
            if len(self.ring) < self.capacity:
                self.ring.append(circuit)
            else:
                self._replace_victim(circuit)
        circuit.key_used = True
        return keys

    def _replace_victim(self, circuit: JoinedCircuit) -> None:
        ring, hand = self.ring, self.hand
        while True:
            victim = ring[hand]
            if victim.key_used and victim.hop_keys is not None and victim is not circuit:
                victim.key_used = False
                hand = (hand + 1) % self.capacity
                continue
            if victim is not circuit:
                victim.hop_keys = None
            ring[hand] = circuit
            self.hand = (hand + 1) % self.capacity
            return


class JoinedCircuit:
    """A circuit of someone else that we relay (and maybe exit) for."""

    __slots__ = ("prev_address", "prev_id", "prev_token", "next_address", "next_id", "next_token",
                 "material", "hop_keys", "key_used", "fwd_window", "bwd_seen", "bwd_seq", "created",
                 "cells_forward", "cells_backward", "cells_at_sweep", "idle_since", "extending", "exit",
                 "source_key", "flow", "prev_prefix", "next_prefix", "datagram_id", "reassembly")

    def __init__(self, prev_address: Address, prev_id: int, prev_token: bytes, material: bytes, now: float) -> None:
        self.prev_address = prev_address
        self.prev_id = prev_id
        self.prev_token = prev_token
        self.next_address: Address | None = None
        self.next_id = 0
        self.next_token = b""
        self.material = material
        """The 192 bytes of key material; cipher contexts are built from it on demand (KeyCache)."""
        self.hop_keys: HopKeys | None = None
        self.key_used = False
        self.fwd_window = ReplayWindow()
        self.bwd_seen: DuplicateFilter | None = None
        """Fingerprints of backward cells from the next hop (made on the first one)."""
        self.bwd_seq = new_counter()
        self.created = now
        self.cells_forward = 0
        """Cells from the previous hop (towards the exit) we processed."""
        self.cells_backward = 0
        """Cells we sent towards the originator (relayed or our own replies)."""
        self.cells_at_sweep = 0
        self.idle_since = now
        self.extending = False
        self.exit: Any = None
        self.source_key = prev_address[0]
        """Its previous hop's key for per-source shares (set by the relay role)."""
        self.flow = FlowWindow()
        self.prev_prefix = relay_prefix(prev_id)
        """Link header of RELAY cells towards the previous hop (precomputed: the per-cell path)."""
        self.next_prefix = b""
        self.datagram_id = new_datagram_id()
        """Id of the last fragmented datagram we sent back (doc/protocol.md 4.1)."""
        self.reassembly: Reassembly | None = None
        """Forward data arriving in pieces (created on the first piece)."""

    def next_datagram_id(self) -> int:
        """Claim the id of the next fragmented datagram we send back."""
        self.datagram_id = (self.datagram_id + 1) % ID_SPACE
        return self.datagram_id

    @property
    def cells(self) -> int:
        """Cells in both directions (what ``max_traffic`` and idleness count)."""
        return self.cells_forward + self.cells_backward

    def next_bwd_seq(self) -> int:
        """Claim the next backward sequence number."""
        self.bwd_seq += 1
        return self.bwd_seq

    def sweep(self, now: float, settings: TunnelSettings) -> str | None:
        """Update idleness from the cell counter and say why the circuit must go, if so."""
        cells = self.cells_forward + self.cells_backward
        if cells != self.cells_at_sweep:
            self.cells_at_sweep = cells
            self.idle_since = now
        if self.bwd_seq >= MAX_SEQ:
            return "counter_exhausted"
        return expiry_reason(self.created, self.idle_since, cells, now, settings)
