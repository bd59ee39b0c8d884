# -*- test-case-name: test.test_hidden_setup -*-
"""The seeker's side of a rendezvous before the answer: which hop L is (the hop of our path the
rendezvous point will be next to), the seek circuits our introductions go through (they end at
L, so the intro point sees L and tells the member), and the stems (our half built ahead up to L).

L, with entry guards and vanguards (tunnels/core/guards.py), is the hop our half has next to R
anyway: with one hop a side our guard (a half of two hops is guard, then R), with two our
vanguard (guard, vanguard, R), with three or more a fresh relay after them (proposal 333's
middle hop between a vanguard and a point someone else chose).  So the member, which chooses
R, learns nothing from L that R would not show it, and the intro point, which the member also
chose, nothing more (doc/hidden-services.md, "Choosing the halves").  Where a choice is left,
L is a relay that is not an exit: an exit is no guard, so as L it would be lost to the member's
half altogether, while a relay L may still be its first hop.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.circuits import Circuit, CircuitState
from ..core.guards import first_hops
from ..core.pathsel import Candidate, PeerFlag
from ..errors import TunnelError
from .rendezvous import same_hop
from .state import Registration, Session

if TYPE_CHECKING:  # the mixin runs inside HiddenTunnelCommunity, a TunnelCommunity
    from ..community import TunnelCommunity as _Base
else:
    _Base = object


class SeekingMixin(_Base):
    """Seek circuits and stems of :class:`~tunnels.hidden.community.HiddenTunnelCommunity`."""

    def _choose_last_hop(self, hops: int, exclude: frozenset[bytes]) -> list[Candidate]:
        """Candidates for L, best first: our guards (one hop a side), our vanguards (two), else
        relays, those that are not exits first; none in ``exclude``."""
        candidates = self.candidates()
        guards, vanguards = first_hops(self.guards, self.vanguards, candidates, max(3, hops + 1), "seek",
                                       self.reactor.seconds())
        pinned = (guards or []) if hops == 1 else vanguards if hops == 2 else []
        pool = [c for c in pinned or candidates if PeerFlag.RELAY in c.flags and c.node_id not in exclude]
        if not pinned:
            self.rng.shuffle(pool)
        return [c for c in pool if PeerFlag.EXIT not in c.flags] + [c for c in pool if PeerFlag.EXIT in c.flags]

    def _seek_circuit(self, registration: Registration, intro: Candidate, avoid: Candidate | None) -> Circuit | None:
        """A seek circuit of ``hops`` hops to introduce ourselves through at ``intro``: the intro
        point nowhere on it (next to us it would see who seeks the service), its last hop not
        ``avoid``.  A ready one, else one being built, else a new one."""
        def fits(circuit: Circuit) -> bool:
            return (circuit.purpose == "seek" and circuit.goal_hops == registration.hops
                    and circuit.state is not CircuitState.CLOSED and not same_hop(avoid, circuit.path[-1])
                    and not any(h.node_id == intro.node_id or h.address == intro.address for h in circuit.path))
        usable = [c for c in self.origin.circuits.values() if fits(c)]
        ready = [c for c in usable if c.ready]
        if ready or usable:
            return self.rng.choice(ready or usable)
        return self._new_seek_circuit(registration, frozenset({intro.node_id} | ({avoid.node_id} if avoid else set())))

    def _prepare_seeking(self, registration: Registration) -> None:
        """On registering: a seek circuit and a stem for its L, built while the lookup runs (as
        Tor and arti build circuits for onion services ahead)."""
        seek = next((c for c in self.origin.circuits.values() if c.purpose == "seek"
                     and c.goal_hops == registration.hops and c.state is not CircuitState.CLOSED), None)
        if seek is None:
            self._new_seek_circuit(registration, frozenset())
        else:
            last = seek.path[-1]
            self._prepare_stem(registration, Candidate(last.address, last.node_id, last.onion_key, PeerFlag.RELAY), b"")

    def _new_seek_circuit(self, registration: Registration, exclude: frozenset[bytes]) -> Circuit | None:
        """Start a seek circuit ending at a new L, and the stem for that L."""
        for last in self._choose_last_hop(registration.hops, exclude)[:3]:
            try:
                circuit = self.start_circuit(registration.hops, exit_data=False, last_hop=last, exclude=exclude,
                                             purpose="seek")
            except TunnelError:
                continue
            self._prepare_stem(registration, last, b"")
            return circuit
        return None

    def _prepare_stem(self, registration: Registration, last_hop: Candidate, intro_id: bytes) -> None:
        """Start building ``hops`` hops ending at L (one stem per L at a time): if a member answers
        yes, our half is this stem lengthened to its R, one handshake instead of ``hops + 1``."""
        stem = registration.stems.get(last_hop.node_id)
        if stem is not None and stem.state is not CircuitState.CLOSED:
            return
        try:
            registration.stems[last_hop.node_id] = self.start_circuit(
                registration.hops, exit_data=False, last_hop=last_hop, exclude=frozenset({intro_id}),
                purpose="rendezvous")
        except TunnelError:
            registration.stems.pop(last_hop.node_id, None)

    def _take_stem(self, session: Session) -> Circuit | None:
        """The stem ending at the session's L, if it can carry the half to R: neither R nor the intro
        point on it; with R ourselves only a stem of two hops or more (L must not extend back to us)."""
        assert session.point is not None and session.last_hop is not None
        registration, point = session.registration, session.point
        stem = registration.stems.get(session.last_hop.node_id)
        if stem is None or stem.state is CircuitState.CLOSED or (point.node_id == self.my_peer.mid and stem.goal_hops < 2) \
                or any(hop.node_id in (point.node_id, session.avoid[0]) or hop.address == point.address
                       for hop in stem.path):
            return None
        del registration.stems[session.last_hop.node_id]
        return stem

    def _close_idle_stems(self, registration: Registration, now: float, idle: float) -> None:
        """Stems older than ``idle`` seconds whose L no pending introduction of ours went through:
        no answer can use them."""
        waiting = {p.last_hop.node_id for p in self.pending.values()
                   if p.registration is registration and p.last_hop is not None}
        for node_id, stem in list(registration.stems.items()):
            if stem.state is CircuitState.CLOSED or (node_id not in waiting and now - stem.created > idle):
                del registration.stems[node_id]
                self.origin.close(stem, "unused_stem")
