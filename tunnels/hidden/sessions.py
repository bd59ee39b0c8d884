# -*- test-case-name: test.test_hidden -*-
"""End-to-end sessions between members: rendezvous circuits, the tie-break, e2e data, retries.

Both members may introduce themselves to each other at once; each side keeps the session
introduced by the smaller member id, so exactly one survives.  A seeker whose rendezvous fails
before it is joined introduces itself again at once, a few times.
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

if TYPE_CHECKING:  # the mixin runs inside HiddenTunnelCommunity, a TunnelCommunity
    from ..community import TunnelCommunity as _Base
else:
    _Base = object


class SessionMixin(_Base):
    """Rendezvous and end-to-end sessions of :class:`~tunnels.hidden.community.HiddenTunnelCommunity`."""

    def _make_room(self, registration: Registration, member: bytes, initiator: bytes) -> bool:
        """Whether a new session with ``member``, introduced by ``initiator``, may start.

        Both members may introduce themselves to each other at once; each side then keeps
        the session introduced by the smaller member id and drops the other, so exactly one
        survives.
        """
        existing = registration.sessions_with(member)
        if not all(registration.wins_over(initiator, s) for s in existing):
            return False
        for session in existing:
            if session.circuit is not None:
                self.origin.close(session.circuit, "lost_tie_break")
            self._drop_session(session)
        return True

    def _add_session(self, session: Session) -> None:
        session.started = self.reactor.seconds()
        session.registration.sessions.append(session)
        self.sessions_by_peer[session.peer] = session

    def _attach(self, session: Session, d: Any, first_message: Callable[[Circuit], None]) -> None:
        def ready(circuit: Circuit) -> None:
            if session not in session.registration.sessions:
                self.origin.close(circuit, "stale")
                return
            session.circuit = circuit
            self.sessions_by_circuit[circuit] = session
            circuit.on_closed.append(lambda c: self._session_closed(session))
            first_message(circuit)

        def failed(failure: Any) -> None:
            self.stats.note("rendezvous_circuit_failed")
            live = session in session.registration.sessions
            self._drop_session(session)
            if live:
                self._retry(session)
        d.addCallbacks(ready, failed)

    def _on_joined(self, circuit: Circuit, data: bytes) -> None:
        session = self.sessions_by_circuit.get(circuit)
        if session is None or session.established:
            self.stats.drop("unexpected_joined")
            return
        session.established = True
        registration = session.registration
        twins = [s for s in registration.sessions if s is not session and s.member == session.member and s.established]
        if twins:
            # Both members introduced themselves at once: one session survives, chosen the same way
            # on both sides; the application keeps seeing one peer address for the member.
            mine = registration.member_id
            keep = min([session, *twins], key=lambda s: mine if s.initiator else s.member)
            for other in [session, *twins]:
                if other is not keep:
                    self._drop_session(other)
                    if other.circuit is not None:
                        self.origin.close(other.circuit, "duplicate_session")
            if keep is session:
                self.sessions_by_peer.pop(session.peer, None)
                session.peer, session.sink = twins[0].peer, twins[0].sink
                self.sessions_by_peer[session.peer] = session
            return
        self.stats.note("hs_peers_connected")
        self.origin.call_handler(registration.callback, session.peer)

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
        if session.sink is not None:
            self.origin.call_handler(session.sink, session.peer, payload)
            return
        for handler in list(self.origin.data_handlers):
            self.origin.call_handler(handler, circuit, session.peer, payload)

    def _session_closed(self, session: Session) -> None:
        was_established = session.established
        live = session in session.registration.sessions
        self._drop_session(session)
        if not was_established and live:
            self._retry(session)
        if was_established:
            self.stats.note("hs_peers_lost")
            for handler in list(self.lost_handlers):
                self.origin.call_handler(handler, session.registration.original_id, session.peer)

    def _retry(self, session: Session) -> None:
        """A seeker's rendezvous failed before it was joined (for example both halves arrived from
        the same neighbour, which the rendezvous point refuses): introduce again right away, a
        few times, instead of waiting for the next lookup."""
        registration = session.registration
        if (session.initiator and session.intro is not None and session.attempt < RENDEZVOUS_ATTEMPTS
                and self.registrations.get(registration.service.dht_key) is registration):
            self.stats.note("rendezvous_retried")
            self._introduce(registration, session.intro, session.attempt + 1)

    def _drop_session(self, session: Session) -> None:
        if session in session.registration.sessions:
            session.registration.sessions.remove(session)
        self.sessions_by_peer.pop(session.peer, None)
        if session.circuit is not None:
            self.sessions_by_circuit.pop(session.circuit, None)
        self._pending_replies.pop(session, None)
        session.established = False
        if session.reassembly is not None:
            session.reassembly.clear()
