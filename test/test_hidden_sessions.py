"""Sessions between two members that introduced themselves to each other at once (pure: the
session rules on a fake community and a Clock, no network)."""
from __future__ import annotations

import secrets
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnels.core.circuits import Circuit
from tunnels.core.reassembly import ReassemblyBuffer
from tunnels.crypto.service_keys import parse_service_id
from tunnels.hidden.e2e import E2ESession
from tunnels.hidden.sessions import RETIRE_AFTER, SessionMixin
from tunnels.hidden.state import Registration, Session
from tunnels.stats import Stats


class FakeOrigin:
    """What the sessions ask of the originator role."""

    def __init__(self) -> None:
        self.closed: list[Circuit] = []
        self.data_handlers: list[Any] = []

    def close(self, circuit: Circuit, reason: str) -> None:
        if circuit not in self.closed:
            self.closed.append(circuit)
            for callback in circuit.on_closed:
                callback(circuit)

    def call_handler(self, handler: Any, *args: Any) -> None:
        handler(*args)

    def send_message(self, circuit: Circuit, command: int, data: bytes) -> None:
        pass


class Sessions(SessionMixin):
    """A member's session bookkeeping, without circuits to build."""

    def __init__(self) -> None:
        self.origin = FakeOrigin()
        self.reactor = Clock()
        self.stats = Stats()
        self.sessions_by_peer: dict[Any, Session] = {}
        self.sessions_by_circuit: dict[Circuit, Session] = {}
        self.retiring: dict[Session, float] = {}
        self.lost: list[Any] = []
        self.lost_handlers = [lambda service, peer: self.lost.append(peer)]
        self.reassembly = ReassemblyBuffer(65536, self.stats.drop)
        self.connected: list[Any] = []
        self.registration = Registration("svc", parse_service_id("svc")[0], None, 1, self.connected.append)
        self.registrations = {self.registration.service.dht_key: self.registration}
        self.received: list[tuple[Any, bytes]] = []
        self.origin.data_handlers.append(lambda circuit, peer, payload: self.received.append((peer, payload)))
        self.retried: list[Session] = []

    def _rebuild_half(self, session: Session) -> bool:
        return False

    def _retry(self, session: Session) -> None:
        self.retried.append(session)

    def session(self, other: bytes, mine: bool, material: bytes) -> Session | None:
        """Start a session with ``other``, introduced by us (``mine``) or by it; None if refused."""
        registration = self.registration
        initiator = registration.member_id if mine else other
        if not self._make_room(registration, other, initiator):
            return None
        session = Session(registration, (secrets.token_hex(4) + ".hidden", 1024), other, mine,
                          E2ESession(material, initiator=mine))
        self._add_session(session)
        circuit = Circuit(secrets.randbits(32), 2, [], 0.0, b"t" * 16, "rendezvous")
        self._attach(session, succeed(circuit), lambda c: None)
        return session


def pair() -> tuple[Sessions, bytes, bytes]:
    """Our sessions, and member ids above and below ours."""
    ours = Sessions()
    mine = ours.registration.member_id
    above = bytes([min(mine[0] + 1, 255)]) + b"\xff" * 19
    below = bytes([max(mine[0] - 1, 0)]) + b"\x00" * 19
    assert below < mine < above
    return ours, above, below


class CrossingTests(SynchronousTestCase):
    def test_room_rules(self) -> None:
        """Never beside an established session; a member refuses a seeker's second introduction; the
        smaller initiator's crossing introduction goes ahead beside the other, the larger's is
        refused; a seeker's own newer attempt replaces its older one."""
        ours, above, below = pair()
        theirs = ours.session(above, mine=False, material=bytes(64))
        assert theirs is not None
        self.assertIsNone(ours.session(above, mine=False, material=bytes(64)))  # same seeker again
        mine = ours.session(above, mine=True, material=bytes(64))  # our id is smaller: both go ahead
        self.assertIsNotNone(mine)
        self.assertEqual(ours.registration.sessions, [theirs, mine])
        ours2, _, below2 = pair()
        assert ours2.session(below2, mine=False, material=bytes(64)) is not None
        self.assertIsNone(ours2.session(below2, mine=True, material=bytes(64)))  # theirs is smaller
        again = ours.session(above, mine=True, material=bytes(64))  # our newer attempt replaces ours
        self.assertIsNotNone(again)
        self.assertNotIn(mine, ours.registration.sessions)
        self.assertIn(theirs, ours.registration.sessions)

    def test_twins_joined(self) -> None:
        """Both crossing sessions joined: the smaller initiator's survives under the address the
        application got first; the loser still delivers for RETIRE_AFTER seconds, then closes;
        one callback, no loss."""
        ours, above, _ = pair()
        material = secrets.token_bytes(64)
        theirs = ours.session(above, mine=False, material=material)
        mine = ours.session(above, mine=True, material=secrets.token_bytes(64))
        assert theirs is not None and mine is not None and theirs.circuit and mine.circuit
        ours._on_joined(theirs.circuit, b"")
        first_address = theirs.peer
        self.assertEqual(ours.connected, [first_address])
        ours._on_joined(mine.circuit, b"")
        self.assertEqual(ours.stats.events["hs_duplicate_session"], 1)
        self.assertEqual((mine.peer, ours.sessions_by_peer[first_address]), (first_address, mine))
        self.assertIs(theirs.retired, mine)
        peer_side = E2ESession(material, initiator=True)  # the other member's end of ``theirs``
        for sealed in peer_side.seal_datagram(b"already on its way", theirs.next_datagram_id()):
            ours._on_e2e(theirs.circuit, sealed)
        self.assertEqual(ours.received, [(first_address, b"already on its way")])
        ours.reactor.advance(RETIRE_AFTER)
        ours._end_retired(ours.reactor.seconds() - RETIRE_AFTER)
        self.assertEqual(ours.origin.closed, [theirs.circuit])
        self.assertEqual((ours.connected, ours.lost, ours.retiring), ([first_address], [], {}))

    def test_closed_for_a_twin_on_its_way(self) -> None:
        """Our joined session is closed by the other side for its twin, still unjoined here: the twin
        inherits the address (no loss, no second callback); if the twin fails, the peer is lost."""
        for twin_joins in (True, False):
            ours, _, below = pair()
            mine = ours.session(below, mine=True, material=bytes(64))
            theirs = ours.session(below, mine=False, material=bytes(64))  # smaller initiator: goes ahead
            assert mine is not None and theirs is not None and mine.circuit and theirs.circuit
            ours._on_joined(mine.circuit, b"")
            address = mine.peer
            ours.origin.close(mine.circuit, "destroyed_by_relay")
            self.assertEqual((theirs.peer, theirs.inherited, ours.lost), (address, True, []))
            if twin_joins:
                ours._on_joined(theirs.circuit, b"")
                self.assertEqual((ours.connected, ours.lost), ([address], []))
                self.assertIs(ours.sessions_by_peer[address], theirs)
            else:
                ours.origin.close(theirs.circuit, "destroyed_by_relay")
                self.assertEqual((ours.connected, ours.lost), ([address], [address]))

    def test_joined_session_drops_losing_attempts(self) -> None:
        """Once a session is joined, an unjoined crossing one that would lose to it is closed."""
        ours, above, _ = pair()
        theirs = ours.session(above, mine=False, material=bytes(64))
        mine = ours.session(above, mine=True, material=bytes(64))
        assert theirs is not None and mine is not None and mine.circuit and theirs.circuit
        ours._on_joined(mine.circuit, b"")
        self.assertEqual(ours.origin.closed, [theirs.circuit])
        self.assertEqual((ours.registration.sessions, ours.lost, ours.retried), ([mine], [], []))
