"""What a relay does for hidden services, on a fake relay and a Clock: introductions passed to
every member, confirmations after the DHT announcement, halves held until both are there."""
from __future__ import annotations

import secrets
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnels.core.hs_relay import MAX_PER_SERVICE, HiddenRelay
from tunnels.core.rendezvous_point import JOIN_WAIT
from tunnels.crypto.service_keys import member_id
from tunnels.stats import Stats
from tunnels.wire.cells import CellType
from tunnels.wire.hidden import INTRODUCE_BODY_SIZE, Introduce, IntroReply
from tunnels.wire.relay import RelayCommand

Address = tuple[str, int]
KEY = b"k" * 20


class FakeCircuit:
    """A joined circuit: who sent it to us is all the hidden-service duties look at."""

    def __init__(self, prev: Address) -> None:
        self.prev_address = prev


class FakeRelay:
    """The RelayRole surface HiddenRelay uses; records what it would send."""

    def __init__(self, clock: Clock, verified: set[Address]) -> None:
        self.clock = clock
        self.stats = Stats()
        self.node_id = b"n" * 20
        self.joined: set[Any] = set()
        self.verified = verified
        self.replies: list[tuple[Any, int, bytes]] = []
        self.sent: list[tuple[Address, bytes]] = []
        self.destroyed: list[Any] = []
        self.hidden: HiddenRelay | None = None
        self.source_key = lambda address: address[0]

    def circuit(self, prev: Address) -> FakeCircuit:
        circuit = FakeCircuit(prev)
        self.joined.add(circuit)
        return circuit

    def reply(self, circuit: Any, command: int, data: bytes) -> None:
        self.replies.append((circuit, command, data))

    def send(self, address: Address, data: bytes) -> None:
        self.sent.append((address, data))

    def destroy(self, circuit: Any, reason: str) -> None:
        if circuit in self.joined:
            self.joined.discard(circuit)
            self.destroyed.append(circuit)
            assert self.hidden is not None
            self.hidden.forget(circuit)

    def find_peer(self, address: Address) -> tuple[bytes, bytes] | None:
        return (b"p" * 20, b"o" * 32) if address in self.verified else None

    def extend_allowed(self, address: Address) -> str | None:
        return None


class FakeDHT:
    """A provider whose announcements end when the test says so."""

    def __init__(self) -> None:
        self.announcing: list[Deferred[None]] = []

    def announce(self, key: bytes, port: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.announcing.append(d)
        return d


class HiddenRelayCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.dht = FakeDHT()
        self.relay = FakeRelay(self.clock, verified={("127.0.0.1", 9)})
        self.hidden = HiddenRelay(self.relay, lambda: 4000, lambda: self.dht)  # type: ignore[arg-type]
        self.relay.hidden = self.hidden

    def commands(self, command: int) -> list[tuple[Any, bytes]]:
        return [(c, d) for c, cmd, d in self.relay.replies if cmd == command]

    def register(self, count: int) -> list[tuple[Any, bytes]]:
        """``count`` members registered for KEY (their announcements ended)."""
        members = []
        for i in range(count):
            circuit = self.relay.circuit(("127.0.0.1", 100 + i))
            member_key = bytes([i + 1]) * 32
            self.hidden.on_message(circuit, RelayCommand.ESTABLISH_INTRO, KEY + member_key)
            members.append((circuit, member_key))
        for d in self.dht.announcing:
            if not d.called:
                d.callback(None)
        return members


class IntroPointTests(HiddenRelayCase):
    def test_confirmed_after_the_announcement(self) -> None:
        """INTRO_ESTABLISHED waits for the DHT announcement: members registering meanwhile wait for
        the same one, and later ones are confirmed at once."""
        first = self.relay.circuit(("127.0.0.1", 100))
        second = self.relay.circuit(("127.0.0.1", 101))
        self.hidden.on_message(first, RelayCommand.ESTABLISH_INTRO, KEY + b"\x01" * 32)
        self.hidden.on_message(second, RelayCommand.ESTABLISH_INTRO, KEY + b"\x02" * 32)
        self.assertEqual(self.commands(RelayCommand.INTRO_ESTABLISHED), [])
        self.assertEqual(len(self.dht.announcing), 1)
        self.dht.announcing[0].callback(None)
        self.assertEqual([c for c, _ in self.commands(RelayCommand.INTRO_ESTABLISHED)], [first, second])
        third = self.relay.circuit(("127.0.0.1", 102))
        self.hidden.on_message(third, RelayCommand.ESTABLISH_INTRO, KEY + b"\x03" * 32)
        self.assertEqual(len(self.dht.announcing), 1)
        self.assertEqual(self.commands(RelayCommand.INTRO_ESTABLISHED)[-1][0], third)

    def test_failed_announcement_confirms_and_retries_soon(self) -> None:
        """A failed announcement still confirms the registration (it is here) and is tried again
        within seconds, not after the five-minute interval."""
        circuit = self.relay.circuit(("127.0.0.1", 100))
        self.hidden.on_message(circuit, RelayCommand.ESTABLISH_INTRO, KEY + b"\x01" * 32)
        self.dht.announcing[0].errback(RuntimeError("dht down"))
        self.assertEqual(len(self.commands(RelayCommand.INTRO_ESTABLISHED)), 1)
        self.assertEqual(self.relay.stats.events["intro_announce_failed"], 1)
        self.clock.advance(6)
        self.hidden.sweep()
        self.assertEqual(len(self.dht.announcing), 2)

    def test_introduction_reaches_every_member(self) -> None:
        """From a verified neighbour L, an introduction goes to every member but the seeker, with L's
        address; each member's answer goes back once; other answers are dropped."""
        members = self.register(3)
        seeker = member_id(members[2][1])
        source = ("127.0.0.1", 9)
        request = Introduce(KEY, b"r" * 8, seeker, b"x" * 32)
        self.hidden.on_link_introduce(source, request.encode() + bytes(100))  # cell padding
        forwarded = self.commands(RelayCommand.INTRODUCE2)
        self.assertEqual({c for c, _ in forwarded}, {members[0][0], members[1][0]})
        for _, data in forwarded:
            self.assertEqual(Introduce.decode(data, with_intro=False, with_last_hop=True).last_hop, source)
        answer = IntroReply(b"r" * 8, 2).encode()
        for circuit in (members[0][0], members[0][0], members[2][0], members[1][0]):
            self.hidden.on_message(circuit, RelayCommand.INTRO_REPLY, answer)
        acks = [a for a, data in self.relay.sent if data[1] == CellType.INTRODUCE_ACK]
        self.assertEqual(acks, [source, source])
        self.assertEqual(self.relay.stats.drops["unexpected_intro_reply"], 2)
        self.assertEqual(self.hidden.at_intro, {})

    def test_unverified_source_gets_one_answer(self) -> None:
        """From an unverified (maybe spoofed) source, one member in turn: never more answers than
        introductions (no free answers)."""
        members = self.register(3)
        for n in range(3):
            request = Introduce(KEY, bytes([n]) * 8, b"s" * 20, b"x" * 32)
            self.hidden.on_link_introduce(("192.0.2.1", 7), request.encode())
        self.assertEqual([c for c, _ in self.commands(RelayCommand.INTRODUCE2)], [m[0] for m in members])

    def test_replayed_request_id_dropped(self) -> None:
        """The same request id again while pending: dropped, nothing sent."""
        self.register(2)
        request = Introduce(KEY, b"r" * 8, b"s" * 20, b"x" * 32).encode()
        self.hidden.on_link_introduce(("127.0.0.1", 9), request)
        before = len(self.relay.replies) + len(self.relay.sent)
        self.hidden.on_link_introduce(("127.0.0.1", 9), request)
        self.assertEqual(len(self.relay.replies) + len(self.relay.sent), before)
        self.assertEqual(self.relay.stats.drops["introduce_duplicate"], 1)

    def test_last_hop_passes_every_members_answer(self) -> None:
        """The seeker's last hop relays up to one answer per possible member, then forgets."""
        circuit = self.relay.circuit(("127.0.0.1", 50))
        intro = ("127.0.0.1", 9)
        request = Introduce(KEY, b"q" * 8, b"s" * 20, b"x" * 32, intro, b"p" * 20)
        self.hidden.on_message(circuit, RelayCommand.INTRODUCE1, request.encode())
        self.assertEqual(len(self.relay.sent), 1)
        link = self.relay.sent[0][1][6:6 + INTRODUCE_BODY_SIZE]
        self.assertEqual(Introduce.decode(link, with_intro=False), Introduce(KEY, b"q" * 8, b"s" * 20, b"x" * 32))
        answer = IntroReply(b"q" * 8, 2).encode()
        for _ in range(MAX_PER_SERVICE + 2):
            self.hidden.on_link_introduce_ack(intro, answer)
        self.assertEqual(len(self.commands(RelayCommand.INTRODUCE_ACK)), MAX_PER_SERVICE)
        self.assertEqual(self.relay.stats.drops["unexpected_introduce_ack"], 2)

    def test_link_form_is_the_body(self) -> None:
        """The link INTRODUCE carries exactly the body (the rest of the cell is padding)."""
        request = Introduce(KEY, b"q" * 8, b"s" * 20, b"x" * 32, ("127.0.0.1", 9), b"p" * 20, supersedes=b"o" * 8)
        link = Introduce(KEY, b"q" * 8, b"s" * 20, b"x" * 32, supersedes=b"o" * 8).encode()
        self.assertEqual(len(link), INTRODUCE_BODY_SIZE)
        self.assertEqual(Introduce.decode(request.encode(), with_intro=True).supersedes, b"o" * 8)


class RendezvousPointTests(HiddenRelayCase):
    def establish(self, circuit: Any, cookie: bytes) -> None:
        self.hidden.on_message(circuit, RelayCommand.ESTABLISH_RENDEZVOUS, cookie)

    def join(self, circuit: Any, cookie: bytes) -> None:
        self.hidden.on_message(circuit, RelayCommand.JOIN, cookie)

    def halves(self, member_prev: Address = ("127.0.0.1", 1),
               seeker_prev: Address = ("127.0.0.1", 2)) -> tuple[Any, Any]:
        return self.relay.circuit(member_prev), self.relay.circuit(seeker_prev)

    def spliced(self, member: Any, seeker: Any) -> bool:
        joined = {c for c, _ in self.commands(RelayCommand.JOINED)}
        return self.hidden.point.spliced.get(member) is seeker and joined == {member, seeker}

    def test_member_first(self) -> None:
        """The member's half waits; the seeker's JOIN splices."""
        member, seeker = self.halves()
        cookie = secrets.token_bytes(20)
        self.establish(member, cookie)
        self.assertEqual([c for c, _ in self.commands(RelayCommand.RENDEZVOUS_ESTABLISHED)], [member])
        self.join(seeker, cookie)
        self.assertTrue(self.spliced(member, seeker))

    def test_seeker_first(self) -> None:
        """The seeker's JOIN may come first (the member answers before its half is built): held, and
        spliced when the member's half arrives."""
        member, seeker = self.halves()
        cookie = secrets.token_bytes(20)
        self.join(seeker, cookie)
        self.assertEqual(self.relay.stats.events["join_waiting"], 1)
        self.assertEqual(self.relay.destroyed, [])
        self.clock.advance(JOIN_WAIT - 1)
        self.hidden.sweep()
        self.establish(member, cookie)
        self.assertTrue(self.spliced(member, seeker))
        self.assertEqual(self.commands(RelayCommand.RENDEZVOUS_ESTABLISHED), [])

    def test_held_join_expires(self) -> None:
        """A JOIN nobody answers is destroyed after JOIN_WAIT seconds and counted; its cookie is then
        free for nobody (the table is empty)."""
        _, seeker = self.halves()
        self.join(seeker, secrets.token_bytes(20))
        self.clock.advance(JOIN_WAIT / 2)
        self.hidden.sweep()
        self.assertEqual(self.relay.destroyed, [])
        self.clock.advance(JOIN_WAIT)
        self.hidden.sweep()
        self.assertEqual(self.relay.destroyed, [seeker])
        self.assertEqual(self.relay.stats.drops["join_unknown_cookie"], 1)
        self.assertEqual((self.hidden.point.joins, self.hidden.point.cookie_of), ({}, {}))

    def test_spent_cookie_refused_at_once(self) -> None:
        """A cookie used once is refused at once in JOIN and in ESTABLISH_RENDEZVOUS."""
        member, seeker = self.halves()
        cookie = secrets.token_bytes(20)
        self.establish(member, cookie)
        self.join(seeker, cookie)
        again, also = self.halves(("127.0.0.1", 3), ("127.0.0.1", 4))
        self.join(again, cookie)
        self.establish(also, cookie)
        self.assertEqual(self.relay.destroyed, [again, also])
        self.assertEqual(self.relay.stats.drops["join_reused_cookie"], 1)
        self.assertEqual(self.relay.stats.events["rendezvous_refused_unusable"], 1)

    def test_second_join_for_a_waiting_cookie_refused(self) -> None:
        """Two JOINs for one cookie: the second is refused; the first still meets the member."""
        member, seeker = self.halves()
        other = self.relay.circuit(("127.0.0.1", 3))
        cookie = secrets.token_bytes(20)
        self.join(seeker, cookie)
        self.join(other, cookie)
        self.assertEqual(self.relay.destroyed, [other])
        self.establish(member, cookie)
        self.assertTrue(self.spliced(member, seeker))

    def test_same_neighbour_still_refused(self) -> None:
        """Halves from one neighbour are refused whichever comes first (a defence: honest members
        never send them, doc/hidden-services.md)."""
        for member_first in (True, False):
            member, seeker = self.halves(("127.0.0.1", 5), ("127.0.0.1", 5))
            cookie = secrets.token_bytes(20)
            steps = [(self.establish, member), (self.join, seeker)]
            for step, circuit in steps if member_first else reversed(steps):
                step(circuit, cookie)
            self.assertIn(member, self.relay.destroyed)
            self.assertIn(seeker, self.relay.destroyed)
        self.assertEqual(self.relay.stats.events["join_refused_same_neighbour"], 2)
        self.assertEqual(self.hidden.point.spliced, {})

    def test_closing_half_forgets_its_cookie(self) -> None:
        """A waiting half that closes leaves nothing behind."""
        member, seeker = self.halves()
        self.establish(member, secrets.token_bytes(20))
        self.join(seeker, secrets.token_bytes(20))
        self.relay.destroy(member, "gone")
        self.relay.destroy(seeker, "gone")
        self.assertEqual((self.hidden.point.rendezvous, self.hidden.point.joins, self.hidden.point.cookie_of), ({}, {}, {}))
