# -*- test-case-name: test.test_hidden -*-
"""End-to-end sessions between members: rendezvous circuits, the tie-break, e2e data, retries.

Both members may introduce themselves to each other at once; each side keeps the session
introduced by the smaller member id, so exactly one survives.  A half that fails before it
reaches the rendezvous point is built again at once (:mod:`tunnels.hidden.rendezvous`); a
seeker whose rendezvous fails at the point introduces itself again at once, a few times.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.circuits import Circuit
from ..crypto.onion import IntegrityError, ReplayError
from ..errors import DecodeError
from .state import Registration, Session

RENDEZVOUS_ATTEMPTS = 4
"""Introductions a seeker makes in a row through one intro point when rendezvous fails."""
RETIRE_AFTER = 5.0
"""Seconds a session that lost to its twin still delivers what was already on its way."""

if TYPE_CHECKING:  # the mixin runs inside HiddenTunnelCommunity, a TunnelCommunity
    from ..community import TunnelCommunity as _Base
else:
    _Base = object


class SessionMixin(_Base):
    """Rendezvous and end-to-end sessions of :class:`~tunnels.hidden.community.HiddenTunnelCommunity`."""

    def _make_room(self, registration: Registration, member: bytes, initiator: bytes) -> bool:
        """Whether a new session with ``member``, introduced by ``initiator``, may start.

        Never while one is established.  Two members may introduce themselves to each other at
        once: the introduction of the smaller member id goes ahead beside the other one, the
        other is refused, and if both get joined the same one survives on both sides
        (:meth:`_on_joined`).  An unjoined session is never dropped for a crossing one: its
        halves may be spliced already, with JOINED on its way.  A member refuses a seeker whose
        earlier introduction is still under way (it arrives through each of our intro points);
        a seeker's own earlier attempt gives way (the member answered anew, so it dropped it).
        """
        existing = registration.sessions_with(member)
        if any(s.established for s in existing):
            return False
        for session in existing:
            theirs = registration.initiator_of(session)
            if theirs == initiator and initiator != registration.member_id:
                return False
            if theirs != initiator and initiator > theirs:
                return False
        for session in existing:
            if registration.initiator_of(session) == initiator:
                circuit = session.circuit
                self._drop_session(session)
                if circuit is not None:
                    self.origin.close(circuit, "superseded")
        return True

    def _add_session(self, session: Session) -> None:
        session.started = self.reactor.seconds()
        session.registration.sessions.append(session)
        self.sessions_by_peer[session.peer] = session

    def _attach(self, session: Session, d: Any, first_message: Callable[[Circuit], None]) -> None:
        """Once our half (``d``) is built, make it the session's circuit and send ``first_message``."""
        def ready(circuit: Circuit) -> None:
            if session not in session.registration.sessions:
                self.origin.close(circuit, "stale")
                return
            session.circuit = circuit
            self.sessions_by_circuit[circuit] = session
            circuit.on_closed.append(lambda c: self._session_closed(session, c))
            first_message(circuit)

        def failed(failure: Any) -> None:
            self.stats.note("rendezvous_circuit_failed")
            if session in session.registration.sessions and not self._rebuild_half(session):
                self._give_up(session)
        d.addCallbacks(ready, failed)

    def _on_joined(self, circuit: Circuit, data: bytes) -> None:
        session = self.sessions_by_circuit.get(circuit)
        if session is None or session.established:
            self.stats.drop("unexpected_joined")
            return
        session.established = True
        registration = session.registration
        for other in registration.sessions_with(session.member):
            if not other.established and registration.initiator_of(other) > registration.initiator_of(session):
                # a crossing attempt that would lose to this session if it were joined: useless now
                circuit = other.circuit
                self._drop_session(other)
                if circuit is not None:
                    self.origin.close(circuit, "lost_tie_break")
        twin = next((s for s in registration.sessions if s is not session and s.member == session.member
                     and s.established), None)
        if twin is not None:
            # Both members introduced themselves at once and both sessions were joined: the one
            # whose initiator has the smaller id survives, chosen the same way on both sides; the
            # application keeps seeing one peer address for the member.
            keep, drop = sorted((session, twin), key=registration.initiator_of)
            self.stats.note("hs_duplicate_session")
            self._retire(drop, keep)
            if keep is session:
                self._take_over(session, twin)
            return
        if session.inherited:
            return  # the application knows this peer already (see _session_closed)
        self.stats.note("hs_peers_connected")
        self.origin.call_handler(registration.callback, session.peer)

    def _retire(self, session: Session, successor: Session) -> None:
        """``session`` lost to its twin ``successor``: we send on the successor from now on, but what
        the peer already sent on ``session`` is still delivered, under the successor's address,
        until :data:`RETIRE_AFTER` seconds have passed (then its circuit closes, on both sides)."""
        registration = session.registration
        registration.sessions.remove(session)
        if self.sessions_by_peer.get(session.peer) is session:
            del self.sessions_by_peer[session.peer]
        session.retired = successor
        self.retiring[session] = self.reactor.seconds()

    def _end_retired(self, older_than: float) -> None:
        """Close the circuits of sessions retired before ``older_than`` (seconds, reactor clock)."""
        for session, since in list(self.retiring.items()):
            if since <= older_than:
                del self.retiring[session]
                if session.circuit is not None:
                    self.sessions_by_circuit.pop(session.circuit, None)
                    self.origin.close(session.circuit, "duplicate_session")

    def _on_e2e(self, circuit: Circuit, data: bytes) -> None:
        session = self.sessions_by_circuit.get(circuit)
        if session is None or not session.established:
            self.stats.drop("e2e_without_session")
            return
        try:
            piece = session.e2e.open_piece(data)
        except (ReplayError, IntegrityError, DecodeError):
            self.stats.drop("e2e_rejected")
            return
        payload = self.reassembly.add(session, piece)
        if payload is None:
            return
        self.stats.note("data_received")
        owner = session.retired or session  # a retired twin delivers as its successor
        if owner.sink is not None:
            self.origin.call_handler(owner.sink, owner.peer, payload)
            return
        for handler in list(self.origin.data_handlers):
            self.origin.call_handler(handler, circuit, owner.peer, payload)

    def _session_closed(self, session: Session, circuit: Circuit) -> None:
        if session.circuit is not circuit:
            return  # a half we replaced
        if session.retired is not None:
            self.retiring.pop(session, None)
            self.sessions_by_circuit.pop(circuit, None)
            return
        if session in session.registration.sessions and not session.established:
            self.sessions_by_circuit.pop(circuit, None)
            session.circuit = None
            # The member's half died before the splice: build it again (the seeker's may wait
            # at R).  The seeker's closing means R refused it (its wait ended) or R went away.
            if session.initiator or not self._rebuild_half(session):
                self._give_up(session)
            return
        was_established = session.established
        self._drop_session(session)
        if not was_established:
            return
        successor = next((s for s in session.registration.sessions if s.member == session.member), None)
        if successor is not None:
            # A crossing session with the same member is on its way (the other side closed
            # this one for it): it inherits the peer address, and the peer is lost only if it fails.
            self._take_over(successor, session)
            successor.inherited = True
            return
        self._report_lost(session)

    def _take_over(self, session: Session, old: Session) -> None:
        """``session`` replaces ``old`` under the peer address the application knows (and the
        sink that claimed it)."""
        self.sessions_by_peer.pop(session.peer, None)
        session.peer, session.sink = old.peer, old.sink
        self.sessions_by_peer[session.peer] = session

    def _report_lost(self, session: Session) -> None:
        self.stats.note("hs_peers_lost")
        for handler in list(self.lost_handlers):
            self.origin.call_handler(handler, session.registration.original_id, session.peer)

    def _give_up(self, session: Session) -> None:
        """The rendezvous failed: forget the session; a seeker introduces itself again at once."""
        self._drop_session(session)
        self._retry(session)

    def _retry(self, session: Session) -> None:
        """A seeker's rendezvous failed before it was joined (R went away, or refused the cookie
        because the member's half was gone): introduce again right away, a few times, instead
        of waiting for the next lookup."""
        registration = session.registration
        if (session.initiator and session.intro is not None and session.attempt < RENDEZVOUS_ATTEMPTS
                and self.registrations.get(registration.service.dht_key) is registration):
            self.stats.note("rendezvous_retried")
            self._introduce(registration, session.intro, session.attempt + 1, session.request_id)

    def _drop_session(self, session: Session) -> None:
        """Forget ``session`` (its circuit, if any, is the caller's to close).  A session that
        inherited a connected peer and never joined loses that peer."""
        if session not in session.registration.sessions:
            return
        session.registration.sessions.remove(session)
        if self.sessions_by_peer.get(session.peer) is session:
            del self.sessions_by_peer[session.peer]
        if session.circuit is not None:
            self.sessions_by_circuit.pop(session.circuit, None)
        if session.inherited and not session.established:
            self._report_lost(session)
        session.established = False
        if session.reassembly is not None:
            session.reassembly.clear()
