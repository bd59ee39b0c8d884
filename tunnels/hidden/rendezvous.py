# -*- test-case-name: test.test_hidden_paths -*-
"""Rendezvous: where two members meet, and how each chooses its half of the way there.

The member answering an introduction chooses the rendezvous point R and builds its half
(``hops + 1`` hops ending at R); the seeker builds its half once the member's answer arrives.
R splices the halves only if they reach it from different neighbours (a relay next to R on
both halves would see both sides of the connection, and with one hop a side both members'
addresses).  The halves are chosen so that this never fails, and so that neither member
learns anything about the other's path it could not learn already (doc/hidden-services.md,
"Choosing the halves"):

* the seeker's half is ``[stem..., L, R]``: L is the last hop of the circuit the seeker's
  introduction went through (which hop that is: :mod:`tunnels.hidden.seeking`), R the point the
  member chose;
* the intro point saw L (L sent it the introduction) and tells the member; the member never
  chooses R = L and keeps L off its half, off the hop next to R at least.  A dishonest member
  learns nothing new from L: it chose the intro point, which it may run itself;
* the seeker starts its half up to L (a stem) as soon as it sends the introduction, and on a
  yes only lengthens it to R: one handshake after the answer instead of ``hops + 1``;
* the member may choose the seeker's own node as R (it cannot know it).  The seeker then
  builds its half as a loop through L back to itself (four hops with a single hop a side), so
  that R's two neighbours still differ and the member sees an ordinary connection.

Paths are chosen from our own view of the network by
:meth:`~tunnels.community.TunnelCommunity.start_circuit`, the one place where guard and
vanguard rules apply to every circuit.
"""
from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..core.guards import N_PRIMARY, first_hops
from ..core.origin import PathHop
from ..core.pathsel import Candidate, PeerFlag
from ..errors import TunnelError
from ..wire.relay import RelayCommand
from .state import Address, Session

if TYPE_CHECKING:  # the mixin runs inside HiddenTunnelCommunity, a TunnelCommunity
    from ..community import TunnelCommunity as _Base
else:
    _Base = object

HALF_BUILDS = 3
"""Circuits built in a row for our half of one rendezvous when they fail before reaching R."""


def choose_rendezvous_point(candidates: list[Candidate], rng: random.Random, intro_id: bytes,
                            seeker_last_hop: Address | None) -> Candidate | None:
    """R: any relay but the intro point and the seeker's last hop L, or None if there is none.

    The seeker's half starts at one of its :data:`~tunnels.core.guards.N_PRIMARY` primary
    guards, which are relays that are not exits, and R may not be on that half.  When at most
    that many such relays are left to choose from, R among them would likely be one of the
    seeker's guards, so R is then an exit, if one is left.  The rule reads only our view, so it
    says nothing about anybody's path.
    """
    options = [c for c in candidates
               if PeerFlag.RELAY in c.flags and c.node_id != intro_id and c.address != seeker_last_hop]
    exits = [c for c in options if PeerFlag.EXIT in c.flags]
    if exits and len(options) - len(exits) <= N_PRIMARY:
        options = exits
    return rng.choice(options) if options else None


def member_half_options(candidates: list[Candidate], rng: random.Random, intro_id: bytes, point: Candidate,
                        seeker_last_hop: Address | None, hops: int,
                        vanguards: Sequence[Candidate] = ()) -> list[tuple[frozenset[bytes], Candidate | None]]:
    """What the member's half of ``hops`` hops to R keeps off its path, in order of preference:
    ``(exclude, penultimate)`` pairs for :func:`~tunnels.core.pathsel.select_path`.

    First L off the whole half (no relay on both halves); if our view is too small for that, and
    the half has a first hop of its own (three hops or more, so that it still starts at a guard),
    L off the hop next to R only, by fixing that hop to another relay (neither L, the intro point
    nor R; one of ``vanguards`` when it is the second hop, with three hops, unless none fits, as
    in :func:`~tunnels.core.pathsel.select_path`).  With two hops the two are the same
    requirement.  The intro point is never on the half.
    """
    near = {c.node_id for c in candidates if c.address == seeker_last_hop}
    options: list[tuple[frozenset[bytes], Candidate | None]] = [(frozenset({intro_id, *near}), None)]
    def fit(pool: Sequence[Candidate]) -> list[Candidate]:
        return [c for c in pool if PeerFlag.RELAY in c.flags and c.node_id not in (intro_id, point.node_id)
                and c.address not in (seeker_last_hop, point.address)]
    neighbours = (fit(vanguards) if hops == 3 else []) or fit(candidates)
    if neighbours and hops > 2:
        options.append((frozenset({intro_id}), rng.choice(neighbours)))
    return options


def seeker_half_hops(hops: int, point_is_self: bool) -> int:
    """Hops of the seeker's half: ``hops + 1``; with one hop a side and R ourselves, 4 (a loop
    out through a guard and a vanguard and back through L, our other guard: L never extends a
    circuit back to the hop it came from, and every path of three hops or more has a vanguard
    second)."""
    return 4 if point_is_self and hops == 1 else hops + 1


def same_hop(a: Candidate | None, b: Candidate) -> bool:
    """Whether ``a`` and ``b`` are one relay (by node id or address)."""
    return a is not None and (a.node_id == b.node_id or a.address == b.address)


class RendezvousMixin(_Base):
    """Both halves of a rendezvous, for :class:`~tunnels.hidden.community.HiddenTunnelCommunity`."""

    def _start_member_half(self, session: Session) -> bool:
        """Start our half: to a new R with a fresh cookie the first time, else to the same R (our
        answer named it); False if our view allows no such half (then nothing was built, and
        the seeker is told so at once)."""
        intro_id, last_hop = session.avoid
        candidates = self.candidates()
        point = session.point or choose_rendezvous_point(candidates, self.rng, intro_id, last_hop)
        if point is None:
            return False
        hops = session.registration.hops + 1
        vanguards = first_hops(self.guards, self.vanguards, candidates, hops, "rendezvous", self.reactor.seconds())[1]
        for exclude, penultimate in member_half_options(candidates, self.rng, intro_id, point, last_hop, hops,
                                                        vanguards):
            try:
                circuit = self.start_circuit(hops, False, last_hop=point, penultimate=penultimate, exclude=exclude,
                                             purpose="rendezvous")
                break
            except TunnelError:
                continue
        else:
            return False
        if session.point is None:
            session.point, session.cookie = point, secrets.token_bytes(20)
        session.builds += 1
        self._attach(session, self.when_ready(circuit), lambda c: self.origin.send_message(
            c, RelayCommand.ESTABLISH_RENDEZVOUS, session.cookie))
        return True

    def _start_seeker_half(self, session: Session) -> None:
        """Build our half to the member's R, through L (the last hop of our introduction's circuit):
        by lengthening the stem built while the member answered, or from scratch."""
        assert session.point is not None and session.last_hop is not None
        point = session.point
        stem = self._take_stem(session) if session.builds == 0 else None
        session.builds += 1
        if stem is not None:
            self.stats.note("rendezvous_stem_used")
            self.origin.lengthen(stem, PathHop(point.address, point.node_id, point.onion_key))
            d = self.when_ready(stem)
        else:
            hops = seeker_half_hops(session.registration.hops, point.node_id == self.my_peer.mid)
            d = self.create_circuit(hops, False, last_hop=point, penultimate=session.last_hop,
                                    exclude=frozenset({session.avoid[0]}), purpose="rendezvous")
        self._attach(session, d, lambda c: self.origin.send_message(c, RelayCommand.JOIN, session.cookie))

    def _rebuild_half(self, session: Session) -> bool:
        """Our half failed before it reached R: build it again at once, to the same R with the
        same cookie (the other half may be waiting there).  False when we give up."""
        if session.builds >= HALF_BUILDS or session not in session.registration.sessions:
            return False
        self.stats.note("rendezvous_half_rebuilt")
        if session.initiator:
            self._start_seeker_half(session)
            return True
        return self._start_member_half(session)
