# -*- test-case-name: test.test_hidden -*-
"""What any relay does for hidden services: be an introduction point, pass introductions
on as a seeker's last hop, and splice circuits as a rendezvous point.

Flow (doc/hidden-services.md): seeker --INTRODUCE1--> its last hop L --link INTRODUCE-->
intro point I --INTRODUCE2--> member; member --INTRO_REPLY--> I --link INTRODUCE_ACK--> L
--INTRODUCE_ACK--> seeker.  The member and the seeker then meet at a rendezvous point R
(ESTABLISH_RENDEZVOUS / JOIN with a single-use cookie) which splices their circuits.
"""
from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import DecodeError
from ..ratelimit import AnswerBudget, KeyedTokenBuckets
from ..wire.cells import CellType, frame
from ..wire.relay import RelayCommand
from ..crypto.service_keys import member_id, verify_record
from ..wire.hidden import EstablishIntro, Introduce, IntroReply

if TYPE_CHECKING:
    from .circuits import JoinedCircuit
    from .relay import RelayRole

Address = tuple[str, int]
MAX_PER_SERVICE = 8
MAX_SERVICES = 1024
MAX_PENDING = 1024
PENDING_TIMEOUT = 30.0
ANNOUNCE_INTERVAL = 300.0
INTRO_RATE = 25.0
INTRO_BURST = 200.0
ANSWER_RATE, ANSWER_BURST = 25.0, 50.0
"""INTRODUCE_ACKs per second (and burst) to one source network: a link INTRODUCE is
unauthenticated, so its answer must be budgeted (DESIGN.md property 14)."""
ANSWER_RATE_TOTAL, ANSWER_BURST_TOTAL = 100.0, 200.0
"""INTRODUCE_ACKs per second (and burst) from this node."""
STATUS_UNKNOWN_SERVICE = 1


class HiddenRelay:
    """Introduction-point, seeker-last-hop and rendezvous-point duties of a relay."""

    def __init__(self, relay: RelayRole, port: Callable[[], int], dht_provider: Callable[[], Any]) -> None:
        self.relay = relay
        self.stats = relay.stats
        self.port = port
        self.dht_provider = dht_provider
        self.intros: dict[bytes, list[tuple[JoinedCircuit, bytes, bool]]] = {}
        self.intro_of: dict[JoinedCircuit, bytes] = {}
        self.round_robin: dict[bytes, int] = {}
        self.announced: dict[bytes, float] = {}
        self.rendezvous: dict[bytes, JoinedCircuit] = {}
        self.cookie_of: dict[JoinedCircuit, bytes] = {}
        self.spliced: dict[JoinedCircuit, JoinedCircuit] = {}
        self.at_last_hop: OrderedDict[bytes, tuple[JoinedCircuit, Address, float]] = OrderedDict()
        self.at_intro: OrderedDict[bytes, tuple[Address, float]] = OrderedDict()
        self.intro_rate = KeyedTokenBuckets(INTRO_RATE, INTRO_BURST, max_keys=MAX_SERVICES)
        self.answers = AnswerBudget(ANSWER_RATE, ANSWER_BURST, ANSWER_RATE_TOTAL, ANSWER_BURST_TOTAL)
        """One token per link INTRODUCE we act on: each draws at most one INTRODUCE_ACK (one cell)."""

    def now(self) -> float:
        return float(self.relay.clock.seconds())

    def busy(self, circuit: JoinedCircuit) -> bool:
        """Whether the circuit already has a hidden-service role here."""
        return circuit in self.intro_of or circuit in self.cookie_of or circuit in self.spliced

    # --- relay messages at the end of a circuit ---------------------------------------------

    def on_message(self, circuit: JoinedCircuit, command: int, data: bytes) -> None:
        """Dispatch a hidden-service relay message addressed to us."""
        try:
            if command == RelayCommand.E2E:
                partner = self.spliced.get(circuit)
                if partner is None:
                    self.stats.drop("e2e_not_spliced")
                else:
                    self.relay.reply_data(partner, RelayCommand.E2E, data)
            elif command == RelayCommand.ESTABLISH_INTRO:
                self.establish_intro(circuit, EstablishIntro.decode(data))
            elif command == RelayCommand.INTRODUCE1:
                self.introduce_as_last_hop(circuit, Introduce.decode(data, with_intro=True))
            elif command == RelayCommand.INTRO_REPLY:
                self.reply_as_intro(circuit, data)
            elif command == RelayCommand.ESTABLISH_RENDEZVOUS:
                self.establish_rendezvous(circuit, data)
            elif command == RelayCommand.JOIN:
                self.join(circuit, data)
        except DecodeError:
            self.stats.drop("malformed_hidden_message")

    def establish_intro(self, circuit: JoinedCircuit, request: EstablishIntro) -> None:
        """Register a member; self-certifying registrations must carry a valid signed record."""
        provider = self.dht_provider()
        refusal = None
        certified = bool(request.cert)
        registered = self.intros.get(request.dht_key, [])
        if provider is None:
            refusal = "no_dht"
        elif self.busy(circuit):
            refusal = "circuit_busy"
        elif certified:
            public, expiry, signature = request.cert[:32], int.from_bytes(request.cert[32:40], "big"), request.cert[40:]
            refusal = verify_record(public, signature, self.relay.node_id, request.dht_key, request.member_key,
                                    expiry, self.now())
            if refusal is not None:
                refusal = "bad_record"
        elif any(cert for _, _, cert in registered):
            refusal = "squatting"
        if refusal is None and len(self.intros) >= MAX_SERVICES and request.dht_key not in self.intros:
            refusal = "full"
        if refusal is not None:
            self.stats.note(f"intro_refused_{refusal}")
            self.relay.destroy(circuit, "intro_refused")
            return
        if certified:
            for old, _, cert in [r for r in registered if not r[2]]:
                self.stats.note("intro_evicted_open")
                self.relay.destroy(old, "intro_evicted")
            registered = self.intros.get(request.dht_key, [])
        if len(registered) >= MAX_PER_SERVICE:
            self.relay.destroy(registered[0][0], "intro_replaced")
            registered = self.intros.get(request.dht_key, [])
        registered.append((circuit, request.member_key, certified))
        self.intros[request.dht_key] = registered
        self.intro_of[circuit] = request.dht_key
        self.stats.note("intro_established")
        self.relay.reply(circuit, RelayCommand.INTRO_ESTABLISHED, b"")
        self.announce(request.dht_key)

    def announce(self, dht_key: bytes) -> None:
        """Tell the DHT that we introduce ``dht_key`` (at our IPv8 port)."""
        provider = self.dht_provider()
        if provider is None:
            return
        self.announced[dht_key] = self.now()
        d = provider.announce(dht_key, self.port())
        d.addErrback(lambda failure: self.stats.note("intro_announce_failed"))

    def introduce_as_last_hop(self, circuit: JoinedCircuit, request: Introduce) -> None:
        """Pass a seeker's introduction to the intro point it named (a verified IPv8 peer)."""
        assert request.intro is not None
        known = self.relay.find_peer(request.intro)
        refusal = self.relay.extend_allowed(request.intro)
        if refusal is None and (known is None or known[0] != request.intro_node_id):
            refusal = "unknown_intro_point"
        if refusal is None and len(self.at_last_hop) >= MAX_PENDING:
            refusal = "busy"
        if refusal is not None:
            self.stats.note(f"introduce_refused_{refusal}")
            self.relay.reply(circuit, RelayCommand.INTRODUCE_ACK,
                             IntroReply(request.request_id, STATUS_UNKNOWN_SERVICE).encode())
            return
        self.at_last_hop[request.request_id] = (circuit, request.intro, self.now())
        forward = Introduce(request.dht_key, request.request_id, request.seeker_member, request.client_key)
        self.relay.send(request.intro, frame(CellType.INTRODUCE, _link_id(), forward.encode()))

    def on_link_introduce(self, source: Address, payload: bytes) -> None:
        """At the intro point: a seeker's introduction from its last hop.

        The source is not authenticated (any datagram can claim to be a last hop), so an
        introduction is only acted on within :attr:`answers`: it draws one INTRODUCE_ACK at
        most, now (unknown service) or when the member replies, and that cell is the size
        of the INTRODUCE cell.
        """
        try:
            request = Introduce.decode(payload[:20 + 8 + 20 + 32], with_intro=False)
        except DecodeError:
            self.stats.drop("malformed_introduce")
            return
        if not self.answers.allow(self.relay.source_key(source), self.now()):
            self.stats.drop("introduce_withheld")
            return
        members = [r for r in self.intros.get(request.dht_key, []) if member_id(r[1]) != request.seeker_member]
        if not members or len(self.at_intro) >= MAX_PENDING:
            self.stats.note("introduce_unknown_service")
            self.relay.send(source, frame(CellType.INTRODUCE_ACK, _link_id(),
                                          IntroReply(request.request_id, STATUS_UNKNOWN_SERVICE).encode()))
            return
        if not self.intro_rate.take(request.dht_key, self.now()):
            self.stats.drop("introduce_rate")
            return
        index = self.round_robin.get(request.dht_key, 0)
        self.round_robin[request.dht_key] = index + 1
        circuit = members[index % len(members)][0]
        self.at_intro[request.request_id] = (source, self.now())
        self.stats.note("introduce_forwarded")
        self.relay.reply(circuit, RelayCommand.INTRODUCE2, request.encode())

    def reply_as_intro(self, circuit: JoinedCircuit, data: bytes) -> None:
        """At the intro point: the member's answer goes back to the seeker's last hop."""
        IntroReply.decode(data)
        pending = self.at_intro.pop(data[:8], None)
        if pending is None or circuit not in self.intro_of:
            self.stats.drop("unexpected_intro_reply")
            return
        self.relay.send(pending[0], frame(CellType.INTRODUCE_ACK, _link_id(), data))

    def on_link_introduce_ack(self, source: Address, payload: bytes) -> None:
        """At the seeker's last hop: the answer from the intro point we asked."""
        request_id = payload[:8]
        pending = self.at_last_hop.get(request_id)
        if pending is None or pending[1] != source:
            self.stats.drop("unexpected_introduce_ack")
            return
        del self.at_last_hop[request_id]
        try:
            reply = IntroReply.decode(payload)
        except DecodeError:
            self.stats.drop("malformed_introduce_ack")
            return
        if pending[0] in self.relay.joined:
            self.relay.reply(pending[0], RelayCommand.INTRODUCE_ACK, reply.encode())

    def establish_rendezvous(self, circuit: JoinedCircuit, cookie: bytes) -> None:
        """The member's circuit waits here for the seeker holding ``cookie`` (single use)."""
        if len(cookie) != 20 or cookie in self.rendezvous or self.busy(circuit) or len(self.rendezvous) >= MAX_PENDING:
            self.stats.note("rendezvous_refused_unusable")
            self.relay.destroy(circuit, "rendezvous_refused")
            return
        self.rendezvous[cookie] = circuit
        self.cookie_of[circuit] = cookie
        self.relay.reply(circuit, RelayCommand.RENDEZVOUS_ESTABLISHED, b"")

    def join(self, circuit: JoinedCircuit, cookie: bytes) -> None:
        """The seeker presents the cookie: splice its circuit to the member's."""
        member = self.rendezvous.get(cookie)
        if member is None or self.busy(circuit):
            self.stats.drop("join_unknown_cookie")
            self.relay.destroy(circuit, "bad_cookie")
            return
        del self.rendezvous[cookie]
        del self.cookie_of[member]
        if member.prev_address == circuit.prev_address:
            self.stats.note("join_refused_same_neighbour")
            self.relay.destroy(circuit, "same_neighbour")
            self.relay.destroy(member, "same_neighbour")
            return
        self.spliced[circuit] = member
        self.spliced[member] = circuit
        self.stats.note("rendezvous_joined")
        self.relay.reply(member, RelayCommand.JOINED, b"")
        self.relay.reply(circuit, RelayCommand.JOINED, b"")

    # --- housekeeping ------------------------------------------------------------------------

    def forget(self, circuit: JoinedCircuit) -> None:
        """A joined circuit ended: drop its roles (a spliced partner is destroyed too)."""
        dht_key = self.intro_of.pop(circuit, None)
        if dht_key is not None:
            left = [r for r in self.intros.get(dht_key, []) if r[0] is not circuit]
            if left:
                self.intros[dht_key] = left
            else:
                self.intros.pop(dht_key, None)
                self.announced.pop(dht_key, None)
                self.round_robin.pop(dht_key, None)
        cookie = self.cookie_of.pop(circuit, None)
        if cookie is not None:
            self.rendezvous.pop(cookie, None)
        partner = self.spliced.pop(circuit, None)
        if partner is not None:
            self.spliced.pop(partner, None)
            self.relay.destroy(partner, "partner_closed")

    def sweep(self) -> None:
        """Expire pending introductions and refresh DHT announcements."""
        now = self.now()
        for table in (self.at_last_hop, self.at_intro):
            while table and now - next(iter(table.values()))[-1] > PENDING_TIMEOUT:
                table.popitem(last=False)
        for dht_key, when in list(self.announced.items()):
            if now - when > ANNOUNCE_INTERVAL:
                self.announce(dht_key)


def _link_id() -> int:
    return secrets.randbits(32) | 1

