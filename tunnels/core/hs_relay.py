# -*- test-case-name: test.test_hidden -*-
"""What any relay does for hidden services: be an introduction point, pass introductions
on as a seeker's last hop, and splice circuits as a rendezvous point (that duty in
:mod:`tunnels.core.rendezvous_point`).

Flow (doc/hidden-services.md): seeker --INTRODUCE1--> its last hop L --link INTRODUCE-->
intro point I --INTRODUCE2--> member; member --INTRO_REPLY--> I --link INTRODUCE_ACK--> L
--INTRODUCE_ACK--> seeker.  The member and the seeker then meet at a rendezvous point R
(ESTABLISH_RENDEZVOUS / JOIN with a single-use cookie, in either order) which splices their
circuits.

An intro point passes an introduction from a verified neighbour to *every* member registered
for the service (at most :data:`MAX_PER_SERVICE`), so that one introduction reaches all the
members behind it; each member's answer goes back separately.  It confirms a registration
(INTRO_ESTABLISHED) only once its DHT announcement finished, so that a member looking the
service up after that finds every member confirmed before (doc/hidden-services.md).
"""
from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import DecodeError
from ..ratelimit import AnswerBudget, KeyedTokenBuckets
from ..wire.cells import CellType, frame
from ..wire.relay import RelayCommand
from ..crypto.service_keys import member_id, verify_record
from ..wire.hidden import INTRODUCE_BODY_SIZE, EstablishIntro, Introduce, IntroReply
from .rendezvous_point import RendezvousPoint

if TYPE_CHECKING:
    from .circuits import JoinedCircuit
    from .relay import RelayRole

Address = tuple[str, int]
MAX_PER_SERVICE = 8
MAX_SERVICES = 1024
MAX_PENDING = 1024
PENDING_TIMEOUT = 30.0
ANNOUNCE_INTERVAL = 300.0
"""Seconds between announcements of a key we introduce."""
ANNOUNCE_RETRY = 5.0
"""Seconds before a failed announcement is tried again."""
INTRO_RATE = 25.0
INTRO_BURST = 200.0
ANSWER_RATE, ANSWER_BURST = 25.0, 50.0
"""INTRODUCE_ACKs per second (and burst) to one source network: a link INTRODUCE is
unauthenticated, so its answer must be budgeted (DESIGN.md property 14)."""
ANSWER_RATE_TOTAL, ANSWER_BURST_TOTAL = 100.0, 200.0
"""INTRODUCE_ACKs per second (and burst) from this node."""
STATUS_UNKNOWN_SERVICE = 1


@dataclass(slots=True)
class PassedOn:
    """An introduction a seeker's last hop passed to an intro point."""

    circuit: JoinedCircuit
    intro: Address
    when: float
    answers_left: int


@dataclass(slots=True)
class Forwarded:
    """An introduction an intro point forwarded to its members."""

    source: Address
    when: float
    members: set[JoinedCircuit]
    """The member circuits that have not answered yet."""


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
        self.point = RendezvousPoint(relay, self.busy)
        """Our duty as rendezvous point."""
        self.confirming: dict[bytes, list[JoinedCircuit]] = {}
        """Registrations waiting for the announcement of their key to finish."""
        self.at_last_hop: OrderedDict[bytes, PassedOn] = OrderedDict()
        """Introductions we passed on as a seeker's last hop, by request id."""
        self.at_intro: OrderedDict[bytes, Forwarded] = OrderedDict()
        """Introductions we passed on as intro point, by request id."""
        self.intro_rate = KeyedTokenBuckets(INTRO_RATE, INTRO_BURST, max_keys=MAX_SERVICES)
        self.answers = AnswerBudget(ANSWER_RATE, ANSWER_BURST, ANSWER_RATE_TOTAL, ANSWER_BURST_TOTAL)
        """One token per link INTRODUCE we act on: from an unverified source each draws at most one
        INTRODUCE_ACK (one cell); a verified neighbour gets one per member it reached."""

    def now(self) -> float:
        return float(self.relay.clock.seconds())

    def busy(self, circuit: JoinedCircuit) -> bool:
        """Whether the circuit already has a hidden-service role here."""
        return circuit in self.intro_of or self.point.holds(circuit)

    # --- relay messages at the end of a circuit ---------------------------------------------

    def on_message(self, circuit: JoinedCircuit, command: int, data: bytes) -> None:
        """Dispatch a hidden-service relay message addressed to us."""
        try:
            if command == RelayCommand.E2E:
                self.point.e2e(circuit, data)
            elif command == RelayCommand.ESTABLISH_INTRO:
                self.establish_intro(circuit, EstablishIntro.decode(data))
            elif command == RelayCommand.INTRODUCE1:
                self.introduce_as_last_hop(circuit, Introduce.decode(data, with_intro=True))
            elif command == RelayCommand.INTRO_REPLY:
                self.reply_as_intro(circuit, data)
            elif command == RelayCommand.ESTABLISH_RENDEZVOUS:
                self.point.establish(circuit, data)
            elif command == RelayCommand.JOIN:
                self.point.join(circuit, data, self.now())
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
        self.confirm_when_announced(request.dht_key, circuit)

    def confirm_when_announced(self, dht_key: bytes, circuit: JoinedCircuit) -> None:
        """Send INTRO_ESTABLISHED once the DHT knows we introduce ``dht_key``: at once if a
        recent announcement succeeded, else when the one in flight (or a new one) ends."""
        waiting = self.confirming.get(dht_key)
        if waiting is not None:
            waiting.append(circuit)
            return
        when = self.announced.get(dht_key)
        if when is not None and self.now() - when < ANNOUNCE_INTERVAL:
            self.relay.reply(circuit, RelayCommand.INTRO_ESTABLISHED, b"")
            return
        self.confirming[dht_key] = [circuit]
        self.announce(dht_key)

    def announce(self, dht_key: bytes) -> None:
        """Tell the DHT that we introduce ``dht_key`` (at our IPv8 port), then confirm the
        registrations waiting for it.  A failed announcement is tried again after
        :data:`ANNOUNCE_RETRY` seconds (the registrations are confirmed anyway: they are
        here, and the seekers that do find us can use them)."""
        provider = self.dht_provider()
        if provider is None:
            self._confirm(dht_key)
            return
        self.announced[dht_key] = self.now()

        def failed(failure: Any) -> None:
            self.stats.note("intro_announce_failed")
            if dht_key in self.announced:
                self.announced[dht_key] = self.now() - ANNOUNCE_INTERVAL + ANNOUNCE_RETRY
        provider.announce(dht_key, self.port()).addCallbacks(lambda _: None, failed).addBoth(
            lambda _: self._confirm(dht_key))

    def _confirm(self, dht_key: bytes) -> None:
        for circuit in self.confirming.pop(dht_key, []):
            if self.intro_of.get(circuit) == dht_key:
                self.relay.reply(circuit, RelayCommand.INTRO_ESTABLISHED, b"")

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
        self.at_last_hop[request.request_id] = PassedOn(circuit, request.intro, self.now(), MAX_PER_SERVICE)
        forward = replace(request, intro=None, intro_node_id=b"")
        self.relay.send(request.intro, frame(CellType.INTRODUCE, _link_id(), forward.encode()))

    def on_link_introduce(self, source: Address, payload: bytes) -> None:
        """At the intro point: a seeker's introduction from its last hop ``source``.

        The source is not authenticated (any datagram can claim to be a last hop), so an
        introduction is only acted on within :attr:`answers`.  From a verified IPv8 neighbour
        (which proved it receives at its address) it goes to every member registered for the
        service but the seeker itself, and each member's answer goes back; from an unverified
        source, whose address may be spoofed, to one member in turn, so that such a source never
        gets more answers than it sent introductions, each the size of the INTRODUCE cell
        (DESIGN.md property 14).  Each copy costs a token of the service's rate limit.
        INTRODUCE2 carries ``source``: the member keeps it off its rendezvous half.
        """
        try:
            request = Introduce.decode(payload[:INTRODUCE_BODY_SIZE], with_intro=False)
        except DecodeError:
            self.stats.drop("malformed_introduce")
            return
        if not self.answers.allow(self.relay.source_key(source), self.now()):
            self.stats.drop("introduce_withheld")
            return
        members = [r for r in self.intros.get(request.dht_key, []) if member_id(r[1]) != request.seeker_member]
        if request.request_id in self.at_intro:
            self.stats.drop("introduce_duplicate")
            return
        if not members or len(self.at_intro) >= MAX_PENDING:
            self.stats.note("introduce_unknown_service")
            self.relay.send(source, frame(CellType.INTRODUCE_ACK, _link_id(),
                                          IntroReply(request.request_id, STATUS_UNKNOWN_SERVICE).encode()))
            return
        if self.relay.find_peer(source) is None:
            index = self.round_robin.get(request.dht_key, 0)
            self.round_robin[request.dht_key] = index + 1
            members = [members[index % len(members)]]
        now = self.now()
        chosen = set()
        for member in members:
            if not self.intro_rate.take(request.dht_key, now):
                self.stats.drop("introduce_rate")
                break
            chosen.add(member[0])
        if not chosen:
            return
        self.at_intro[request.request_id] = Forwarded(source, now, chosen)
        forward = replace(request, last_hop=source).encode()
        for circuit in chosen:
            self.stats.note("introduce_forwarded")
            self.relay.reply(circuit, RelayCommand.INTRODUCE2, forward)

    def reply_as_intro(self, circuit: JoinedCircuit, data: bytes) -> None:
        """At the intro point: a member's answer goes back to the seeker's last hop (one answer
        per member the introduction went to)."""
        IntroReply.decode(data)
        pending = self.at_intro.get(data[:8])
        if pending is None or circuit not in pending.members:
            self.stats.drop("unexpected_intro_reply")
            return
        pending.members.discard(circuit)
        if not pending.members:
            del self.at_intro[data[:8]]
        self.relay.send(pending.source, frame(CellType.INTRODUCE_ACK, _link_id(), data))

    def on_link_introduce_ack(self, source: Address, payload: bytes) -> None:
        """At the seeker's last hop: an answer from the intro point we asked (one per member
        behind it, at most :data:`MAX_PER_SERVICE`)."""
        request_id = payload[:8]
        pending = self.at_last_hop.get(request_id)
        if pending is None or pending.intro != source:
            self.stats.drop("unexpected_introduce_ack")
            return
        pending.answers_left -= 1
        if pending.answers_left <= 0:
            del self.at_last_hop[request_id]
        try:
            reply = IntroReply.decode(payload)
        except DecodeError:
            self.stats.drop("malformed_introduce_ack")
            return
        if pending.circuit in self.relay.joined:
            self.relay.reply(pending.circuit, RelayCommand.INTRODUCE_ACK, reply.encode())

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
        self.point.forget(circuit)

    def sweep(self) -> None:
        """Expire pending introductions and refresh DHT announcements."""
        now = self.now()
        while self.at_last_hop and now - next(iter(self.at_last_hop.values())).when > PENDING_TIMEOUT:
            self.at_last_hop.popitem(last=False)
        while self.at_intro and now - next(iter(self.at_intro.values())).when > PENDING_TIMEOUT:
            self.at_intro.popitem(last=False)
        self.point.sweep(now)
        for dht_key, when in list(self.announced.items()):
            if now - when > ANNOUNCE_INTERVAL:
                self.announce(dht_key)


def _link_id() -> int:
    return secrets.randbits(32) | 1

