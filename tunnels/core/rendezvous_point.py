# -*- test-case-name: test.test_hs_relay -*-
"""The rendezvous-point duty of a relay: hold each half of a hidden-service connection until
the other arrives with the same single-use cookie, then splice the two circuits.

The member's half presents the cookie with ESTABLISH_RENDEZVOUS, the seeker's with JOIN, in
either order (the member answers the seeker before its half is built, so the seeker's may come
first); a JOIN waits at most :data:`JOIN_WAIT` seconds.  A spent cookie is refused at once.  Two
halves from the same neighbour are refused: that relay would see both sides of the connection
next to each other (honest members never send them, doc/hidden-services.md).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..wire.relay import RelayCommand

if TYPE_CHECKING:
    from .circuits import JoinedCircuit
    from .relay import RelayRole

JOIN_WAIT = 10.0
"""Seconds a seeker's half may wait here for the member's."""
MAX_WAITING = 1024
"""Halves of each kind waiting here at most."""
MAX_USED = 4096
"""Spent cookies remembered (a replay of one of them is refused at once)."""
COOKIE_SIZE = 20


class RendezvousPoint:
    """Halves waiting for each other, and the spliced pairs, of one relay."""

    def __init__(self, relay: RelayRole, busy: Callable[[JoinedCircuit], bool]) -> None:
        """``busy(circuit)``: whether the circuit has any hidden-service role here already."""
        self.relay = relay
        self.stats = relay.stats
        self.busy = busy
        self.rendezvous: dict[bytes, JoinedCircuit] = {}
        """Members' halves waiting for the seeker, by cookie."""
        self.joins: OrderedDict[bytes, tuple[JoinedCircuit, float]] = OrderedDict()
        """Seekers' halves waiting for the member (and since when, seconds), by cookie."""
        self.used: OrderedDict[bytes, None] = OrderedDict()
        """The last :data:`MAX_USED` cookies spent."""
        self.cookie_of: dict[JoinedCircuit, bytes] = {}
        self.spliced: dict[JoinedCircuit, JoinedCircuit] = {}

    def holds(self, circuit: JoinedCircuit) -> bool:
        """Whether ``circuit`` waits here or is spliced."""
        return circuit in self.cookie_of or circuit in self.spliced

    def e2e(self, circuit: JoinedCircuit, data: bytes) -> None:
        """End-to-end data from one half goes to the other, sealed (we can neither read nor alter it)."""
        partner = self.spliced.get(circuit)
        if partner is None:
            self.stats.drop("e2e_not_spliced")
        else:
            self.relay.reply_data(partner, RelayCommand.E2E, data)

    def establish(self, circuit: JoinedCircuit, cookie: bytes) -> None:
        """The member's half arrives with ``cookie``: spliced at once if the seeker's half waits
        here already, else it waits for the seeker's JOIN."""
        if len(cookie) != COOKIE_SIZE or cookie in self.rendezvous or cookie in self.used or self.busy(circuit) \
                or len(self.rendezvous) >= MAX_WAITING:
            self.stats.note("rendezvous_refused_unusable")
            self.relay.destroy(circuit, "rendezvous_refused")
            return
        waiting = self.joins.pop(cookie, None)
        if waiting is not None:
            del self.cookie_of[waiting[0]]
            self.splice(circuit, waiting[0], cookie)
            return
        self.rendezvous[cookie] = circuit
        self.cookie_of[circuit] = cookie
        self.relay.reply(circuit, RelayCommand.RENDEZVOUS_ESTABLISHED, b"")

    def join(self, circuit: JoinedCircuit, cookie: bytes, now: float) -> None:
        """The seeker's half presents the cookie: spliced to the member's half if it is here, else
        held for at most :data:`JOIN_WAIT` seconds.  A spent cookie is refused at once."""
        member = self.rendezvous.pop(cookie, None) if not self.busy(circuit) else None
        if member is not None:
            del self.cookie_of[member]
            self.splice(member, circuit, cookie)
            return
        if self.busy(circuit) or len(cookie) != COOKIE_SIZE or cookie in self.joins:
            self.stats.drop("join_unknown_cookie")
        elif cookie in self.used:
            self.stats.drop("join_reused_cookie")
        elif len(self.joins) >= MAX_WAITING:
            self.stats.drop("join_refused_full")
        else:
            self.joins[cookie] = (circuit, now)
            self.cookie_of[circuit] = cookie
            self.stats.note("join_waiting")
            return
        self.relay.destroy(circuit, "bad_cookie")

    def splice(self, member: JoinedCircuit, seeker: JoinedCircuit, cookie: bytes) -> None:
        """Join the two halves (refused if both come from the same neighbour); the cookie is spent."""
        self.used[cookie] = None
        if len(self.used) > MAX_USED:
            self.used.popitem(last=False)
        if member.prev_address == seeker.prev_address:
            self.stats.note("join_refused_same_neighbour")
            self.relay.destroy(seeker, "same_neighbour")
            self.relay.destroy(member, "same_neighbour")
            return
        self.spliced[seeker] = member
        self.spliced[member] = seeker
        self.stats.note("rendezvous_joined")
        self.relay.reply(member, RelayCommand.JOINED, b"")
        self.relay.reply(seeker, RelayCommand.JOINED, b"")

    def forget(self, circuit: JoinedCircuit) -> None:
        """A joined circuit ended: drop what waits on it (a spliced partner is destroyed too)."""
        cookie = self.cookie_of.pop(circuit, None)
        if cookie is not None:
            if self.rendezvous.get(cookie) is circuit:
                del self.rendezvous[cookie]
            if self.joins.get(cookie, (None,))[0] is circuit:
                del self.joins[cookie]
        partner = self.spliced.pop(circuit, None)
        if partner is not None:
            self.spliced.pop(partner, None)
            self.relay.destroy(partner, "partner_closed")

    def sweep(self, now: float) -> None:
        """Destroy the seekers' halves that waited longer than :data:`JOIN_WAIT` (counted)."""
        while self.joins and now - next(iter(self.joins.values()))[1] > JOIN_WAIT:
            _, (circuit, _) = self.joins.popitem(last=False)
            del self.cookie_of[circuit]
            self.stats.drop("join_unknown_cookie")
            self.relay.destroy(circuit, "bad_cookie")
