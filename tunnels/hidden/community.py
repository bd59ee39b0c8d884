# -*- test-case-name: test.test_hidden -*-
"""HiddenTunnelCommunity: the seed's hidden services (``register_service``), made secure.

Every member of a service is both findable and finding.  A member keeps introduction
points at the end of circuits one hop longer than asked; intro points announce
themselves in the DHT under a domain-separated hash of the service id.  Members look
the key up at an interval (through one of their own circuits when the provider
supports it), introduce themselves through a circuit, agree an end-to-end key with
the member the intro point forwards them to (ntor to that member's key, certified by
the service key for self-certifying ids), and meet at a rendezvous point the member
chose.  ``callback(peer)`` then gets an address for ``tunnel_data``.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from twisted.logger import Logger

from ..core.circuits import Circuit, CircuitState
from ..community import TunnelCommunity, TunnelCommunitySettings, _check_hops
from ..crypto import ntor
from ..crypto.onion import IntegrityError, ReplayError
from ..errors import CircuitNotReady, DecodeError, HandshakeError, TunnelError
from ..core.pathsel import Candidate, PeerFlag
from ..settings import MAX_HOPS
from ..wire.relay import MAX_MESSAGE_DATA, RelayCommand
from .e2e import OVERHEAD, E2ESession, reply_cipher
from ..crypto.service_keys import RECORD_LIFETIME, ServiceId, ServiceKey, member_id, parse_service_id, record_message, \
    verify_record
from ..wire.hidden import EstablishIntro, Introduce, IntroReply, RendezvousInfo

Address = tuple[str, int]
PeerCallback = Callable[[Address], None]
INTRO_POINTS = 2
INTRODUCE_TIMEOUT = 10.0
"""Seconds an introduction, or a session that is not yet joined, may take."""
PEER_PORT = 1024
RENDEZVOUS_ATTEMPTS = 4
"""Introductions a seeker makes in a row through one intro point when rendezvous fails."""
STATUS_OK, STATUS_BUSY = 0, 2
_ZERO_NONCE = bytes(12)


class NoDHTProvider(TunnelError):
    """A service was registered but no ``dht_provider`` is set."""


@dataclass(eq=False)
class Session:
    """An end-to-end connection with one member, over a spliced rendezvous circuit."""

    registration: Registration
    peer: Address
    member: bytes
    initiator: bool
    e2e: E2ESession
    started: float = 0.0
    cookie: bytes = b""
    """The single-use rendezvous cookie this session was joined with."""
    intro: Address | None = None
    """Seeker side: the intro point we were introduced through (to retry at once on failure)."""
    attempt: int = 1
    circuit: Circuit | None = None
    established: bool = False


@dataclass(eq=False)
class Registration:
    """One registered service."""

    original_id: Any
    service: ServiceId
    key: ServiceKey | None
    hops: int
    callback: PeerCallback
    member_private: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    intro_circuits: dict[Circuit, bytes] = field(default_factory=dict)
    """Our intro circuits and the certificate each presented (empty for open services)."""
    established: set[Circuit] = field(default_factory=set)
    last_lookup: float = -1e18
    introduced: dict[Address, float] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)

    @property
    def findable(self) -> bool:
        """Open services: always; self-certifying ones: only with the private key."""
        return not self.service.self_certifying or self.key is not None

    @property
    def member_key(self) -> bytes:
        return self.member_private.public_key().public_bytes_raw()

    @property
    def member_id(self) -> bytes:
        return member_id(self.member_key)

    def sessions_with(self, member: bytes) -> list[Session]:
        return [s for s in self.sessions if s.member == member]

    def initiator_of(self, session: Session) -> bytes:
        """The member id of whoever introduced itself for this session."""
        return self.member_id if session.initiator else session.member

    def wins_over(self, ours: bytes, theirs: Session) -> bool:
        """Simultaneous introductions: the session whose initiator has the smaller id survives;
        a new introduction by the same initiator supersedes its own unjoined attempt."""
        return not theirs.established and ours <= self.initiator_of(theirs)


@dataclass(eq=False)
class PendingIntroduction:
    """A seeker's introduction waiting for the member's reply."""

    registration: Registration
    private: X25519PrivateKey
    intro_node_id: bytes
    started: float
    intro: Address = ("", 0)
    attempt: int = 1


class HiddenTunnelCommunitySettings(TunnelCommunitySettings):
    """Adds the lookup interval (seconds between DHT lookups per service)."""

    lookup_interval: float = 30.0


class HiddenTunnelCommunity(TunnelCommunity):
    """The sending side: data circuits plus hidden services (``register_service``)."""

    settings_class = HiddenTunnelCommunitySettings
    log = Logger()

    def __init__(self, settings: HiddenTunnelCommunitySettings) -> None:
        super().__init__(settings)
        self.lookup_interval = float(settings.lookup_interval)
        self.registrations: dict[bytes, Registration] = {}
        self.pending: dict[bytes, PendingIntroduction] = {}
        self.sessions_by_peer: dict[Address, Session] = {}
        self.sessions_by_circuit: dict[Circuit, Session] = {}
        self.lost_handlers: list[Callable[[Any, Address], None]] = []
        self._pending_replies: dict[Session, tuple[Circuit, IntroReply]] = {}
        """Member side: replies to send once the rendezvous point confirms our circuit."""
        self._dht_client: Any = None
        self._dht_circuit: Circuit | None = None
        handlers = self.origin.message_handlers
        handlers[RelayCommand.INTRO_ESTABLISHED] = self._on_intro_established
        handlers[RelayCommand.INTRODUCE2] = self._on_introduce2
        handlers[RelayCommand.INTRODUCE_ACK] = self._on_introduce_ack
        handlers[RelayCommand.RENDEZVOUS_ESTABLISHED] = self._on_rendezvous_established
        handlers[RelayCommand.JOINED] = self._on_joined
        handlers[RelayCommand.E2E] = self._on_e2e

    # --- the seed API ---------------------------------------------------------------------

    def register_service(self, service_id: str | bytes | ServiceKey, hops: int, callback: PeerCallback) -> None:
        """Join the service: become findable (open ids, or with the :class:`ServiceKey`) and find
        the other members; ``callback(peer)`` is called for each newly connected member, and
        ``tunnel_data(any_ready_circuit, peer, "data", payload)`` reaches that member."""
        service, key = parse_service_id(service_id)
        _check_hops(hops, MAX_HOPS - 1)
        if not callable(callback):
            raise TypeError("callback must be callable")
        if self.dht_provider is None:
            raise NoDHTProvider("register_service needs a dht_provider (set community.dht_provider first)")
        if service.dht_key in self.registrations:
            raise ValueError("service already registered; unregister_service it first")
        self.registrations[service.dht_key] = Registration(service_id, service, key, hops, callback)
        self.build_tunnels(hops)
        if self._dht_client is None and hasattr(self.dht_provider, "use_sender"):
            self._dht_client = self.dht_provider.use_sender(self._dht_send)
        self.reactor.callLater(0, self.maintain_services)

    def unregister_service(self, service_id: str | bytes | ServiceKey) -> None:
        """Leave the service: intro points and connections to its members are torn down."""
        service, _ = parse_service_id(service_id)
        registration = self.registrations.pop(service.dht_key, None)
        if registration is None:
            raise ValueError("service is not registered")
        for request_id in [r for r, p in self.pending.items() if p.registration is registration]:
            del self.pending[request_id]
        for circuit in list(registration.intro_circuits):
            self.origin.close(circuit, "unregistered")
        for session in list(registration.sessions):
            self._drop_session(session)
            if session.circuit is not None:
                self.origin.close(session.circuit, "unregistered")

    def add_peer_lost_handler(self, handler: Callable[[Any, Address], None]) -> None:
        """Call ``handler(service_id, peer)`` when a connected member is lost."""
        self.lost_handlers.append(handler)

    def tunnel_data(self, circuit: Circuit, destination: Address, message_type: str, payload: str | bytes) -> None:
        """As :meth:`TunnelCommunity.tunnel_data`; to a hidden-service peer the data goes end to
        end through that peer's rendezvous circuit (whichever ready circuit is passed)."""
        session = self.sessions_by_peer.get(destination) if isinstance(destination, tuple) else None
        if session is None:
            super().tunnel_data(circuit, destination, message_type, payload)
            return
        if message_type != "data":
            raise ValueError(f"unknown message type {message_type!r}; only 'data' is defined")
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"payload must be str or bytes, got {type(payload).__name__}")
        if len(data) > MAX_MESSAGE_DATA - OVERHEAD:
            raise ValueError(f"payload too large for one cell (at most {MAX_MESSAGE_DATA - OVERHEAD} bytes to a peer)")
        if not session.established or session.circuit is None or not session.circuit.ready:
            raise CircuitNotReady("the connection to this peer is not established")
        self.origin.send_data(session.circuit, RelayCommand.E2E, session.e2e.seal(bytes(data)))

    # --- maintenance ----------------------------------------------------------------------

    def tick(self) -> None:
        super().tick()
        if self.registrations:
            self.maintain_services()

    def maintain_services(self) -> None:
        """Keep intro points up, look services up at an interval, expire introductions."""
        now = self.reactor.seconds()
        for request_id, pending in list(self.pending.items()):
            if now - pending.started > INTRODUCE_TIMEOUT:
                del self.pending[request_id]
                self.stats.note("introduce_timeout")
        for session in list(self.sessions_by_peer.values()):
            if not session.established and now - session.started > INTRODUCE_TIMEOUT:
                self.stats.note("session_join_timeout")
                self._drop_session(session)
                if session.circuit is not None:
                    self.origin.close(session.circuit, "join_timeout")
        for registration in list(self.registrations.values()):
            if registration.findable:
                self._maintain_intro_points(registration)
            if now - registration.last_lookup >= self.lookup_interval:
                registration.last_lookup = now
                self._lookup(registration)

    def _maintain_intro_points(self, registration: Registration) -> None:
        used = {c.path[-1].node_id for c in registration.intro_circuits}
        options = [c for c in self.candidates() if PeerFlag.INTRO in c.flags and c.node_id not in used]
        for _ in range(min(len(options), INTRO_POINTS - len(registration.intro_circuits))):
            intro = self.rng.choice(options)
            options.remove(intro)
            try:
                circuit = self.start_circuit(registration.hops + 1, last_hop=intro, purpose="intro")
            except TunnelError:
                self.stats.note("intro_circuit_unbuildable")
                return
            registration.intro_circuits[circuit] = b""
            circuit.on_closed.append(lambda c, r=registration: self._intro_closed(r, c))
            self.when_ready(circuit).addCallbacks(lambda c, r=registration: self._establish_intro(r, c),
                                                  lambda failure: None)

    def _establish_intro(self, registration: Registration, circuit: Circuit) -> None:
        cert = b""
        if registration.key is not None:
            expiry = int(self.reactor.seconds() + RECORD_LIFETIME)
            signature = registration.key.sign(record_message(circuit.hops[-1].node_id, registration.service.dht_key,
                                                             registration.member_key, expiry))
            cert = registration.key.public + expiry.to_bytes(8, "big") + signature
        registration.intro_circuits[circuit] = cert
        self.origin.send_message(circuit, RelayCommand.ESTABLISH_INTRO,
                                 EstablishIntro(registration.service.dht_key, registration.member_key, cert).encode())

    def _intro_closed(self, registration: Registration, circuit: Circuit) -> None:
        registration.intro_circuits.pop(circuit, None)
        registration.established.discard(circuit)

    def _on_intro_established(self, circuit: Circuit, data: bytes) -> None:
        for registration in self.registrations.values():
            if circuit in registration.intro_circuits:
                registration.established.add(circuit)
                self.stats.note("intro_points_established")
                return

    # --- finding members ------------------------------------------------------------------

    def _lookup(self, registration: Registration) -> None:
        d = self.dht_provider.lookup(registration.service.dht_key)
        d.addCallbacks(lambda found: self._found(registration, found),
                       lambda failure: self.stats.note("dht_lookup_failed"))

    def _found(self, registration: Registration, found: list[Address]) -> None:
        if self.registrations.get(registration.service.dht_key) is not registration:
            return
        # Our own intro points are not skipped: in a swarm other members may share them, and an
        # intro point never introduces a member to itself.
        now = self.reactor.seconds()
        for address in {(str(h), int(p)) for h, p in found}:
            if now - registration.introduced.get(address, -1e18) < self.lookup_interval:
                continue
            self._introduce(registration, address)

    def _introduce(self, registration: Registration, intro: Address, attempt: int = 1) -> None:
        known = next((c for c in self.candidates() if c.address == intro), None)
        circuits = self._seek_circuits(registration.hops, intro)
        if known is None or not circuits:
            self.stats.note("introduce_postponed")
            return
        registration.introduced[intro] = self.reactor.seconds()
        request_id = secrets.token_bytes(8)
        private = X25519PrivateKey.generate()
        self.pending[request_id] = PendingIntroduction(registration, private, known.node_id, self.reactor.seconds(),
                                                       intro, attempt)
        message = Introduce(registration.service.dht_key, request_id, registration.member_id,
                            private.public_key().public_bytes_raw(), intro, known.node_id)
        self.stats.note("introductions_sent")
        self.origin.send_message(self.rng.choice(circuits), RelayCommand.INTRODUCE1, message.encode())

    def _seek_circuits(self, hops: int, intro: Address) -> list[Circuit]:
        """Ready circuits to introduce ourselves through (the last hop only relays, it need not
        be an exit); starts a relay-only one when there is none."""
        mine = [c for c in self.origin.circuits.values()
                if c.goal_hops == hops and c.purpose in ("data", "seek")]
        ready = [c for c in mine if c.ready and c.hops[-1].address != intro]
        if not ready and not any(c.purpose == "seek" and not c.ready for c in mine):
            try:
                self.start_circuit(hops, exit_data=False, purpose="seek")
            except TunnelError:
                self.stats.note("seek_circuit_unbuildable")
        return ready

    def _on_introduce_ack(self, circuit: Circuit, data: bytes) -> None:
        try:
            reply = IntroReply.decode(data)
        except DecodeError:
            self.stats.drop("malformed_introduce_ack")
            return
        pending = self.pending.pop(reply.request_id, None)
        if pending is None:
            self.stats.drop("unexpected_introduce_ack")
            return
        if reply.status != STATUS_OK:
            self.stats.note(f"introduce_status_{reply.status}")
            return
        registration = pending.registration
        state = ntor.ClientState(pending.private, registration.service.dht_key, reply.member_key)
        try:
            material = ntor.client2(state, reply.server_key, reply.auth)
            info = RendezvousInfo.decode(reply_cipher(material).decrypt(_ZERO_NONCE, reply.sealed, reply.request_id))
        except (HandshakeError, InvalidTag, DecodeError):
            self.stats.note("hs_handshake_failed")
            return
        if registration.service.self_certifying:
            reason = "missing" if not reply.cert else verify_record(
                reply.cert[:32], reply.cert[40:], pending.intro_node_id, registration.service.dht_key,
                reply.member_key, int.from_bytes(reply.cert[32:40], "big"), self.reactor.seconds())
            if reason is not None or reply.cert[:32] != registration.service.public_key:
                self.stats.note("hs_uncertified_member_refused")
                return
        if info.node_id == self.my_peer.mid:
            self.stats.note("hs_rendezvous_at_self_refused")
            if pending.attempt < RENDEZVOUS_ATTEMPTS:  # the member will meet us elsewhere next time
                self._introduce(registration, pending.intro, pending.attempt + 1)
            return
        member = member_id(reply.member_key)
        if not self._make_room(registration, member, registration.member_id):
            self.stats.note("hs_already_connected")
            return
        session = Session(registration, _peer_address(), member, True, E2ESession(material, initiator=True),
                          cookie=info.cookie, intro=pending.intro, attempt=pending.attempt)
        self._add_session(session)
        candidate = Candidate(info.address, info.node_id, info.onion_key, PeerFlag.RELAY)
        d = self.create_circuit(registration.hops + 1, last_hop=candidate, exclude=frozenset({pending.intro_node_id}),
                                purpose="rendezvous")
        self._attach(session, d, lambda c: self.origin.send_message(c, RelayCommand.JOIN, info.cookie))

    # --- being found ----------------------------------------------------------------------

    def _on_introduce2(self, intro_circuit: Circuit, data: bytes) -> None:
        registration = next((r for r in self.registrations.values() if intro_circuit in r.intro_circuits), None)
        try:
            request = Introduce.decode(data, with_intro=False)
        except DecodeError:
            self.stats.drop("malformed_introduce2")
            return
        if registration is None or request.dht_key != registration.service.dht_key:
            self.stats.drop("introduce2_unknown_service")
            return
        if request.seeker_member == registration.member_id or \
                not self._make_room(registration, request.seeker_member, request.seeker_member):
            self._intro_reply(intro_circuit, IntroReply(request.request_id, STATUS_BUSY))
            return
        try:
            server_key, auth, material = ntor.server(registration.member_private, registration.service.dht_key,
                                                     registration.service.dht_key, registration.member_key,
                                                     request.client_key)
        except HandshakeError:
            self.stats.note("hs_handshake_failed")
            return
        intro_id = intro_circuit.hops[-1].node_id
        options = [c for c in self.candidates() if PeerFlag.RELAY in c.flags and c.node_id != intro_id]
        if not options:
            self._intro_reply(intro_circuit, IntroReply(request.request_id, STATUS_BUSY))
            return
        point = self.rng.choice(options)
        cookie = secrets.token_bytes(20)
        session = Session(registration, _peer_address(), request.seeker_member, False,
                          E2ESession(material, initiator=False), cookie=cookie)
        self._add_session(session)
        sealed = reply_cipher(material).encrypt(
            _ZERO_NONCE, RendezvousInfo(point.address, point.node_id, point.onion_key, cookie).encode(),
            request.request_id)
        reply = IntroReply(request.request_id, STATUS_OK, registration.member_key, server_key, auth,
                           registration.intro_circuits.get(intro_circuit, b""), sealed)
        self._pending_replies[session] = (intro_circuit, reply)
        d = self.create_circuit(registration.hops + 1, last_hop=point, exclude=frozenset({intro_id}),
                                purpose="rendezvous")
        self._attach(session, d, lambda c: self.origin.send_message(c, RelayCommand.ESTABLISH_RENDEZVOUS, cookie))

    def _on_rendezvous_established(self, circuit: Circuit, data: bytes) -> None:
        session = self.sessions_by_circuit.get(circuit)
        waiting = self._pending_replies.pop(session, None) if session is not None else None
        if waiting is None:
            self.stats.drop("unexpected_rendezvous_established")
            return
        intro_circuit, reply = waiting
        if intro_circuit.ready:
            self._intro_reply(intro_circuit, reply)

    def _intro_reply(self, intro_circuit: Circuit, reply: IntroReply) -> None:
        self.origin.send_message(intro_circuit, RelayCommand.INTRO_REPLY, reply.encode())

    # --- sessions -------------------------------------------------------------------------

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
                session.peer = twins[0].peer
                self.sessions_by_peer[session.peer] = session
            return
        self.stats.note("hs_peers_connected")
        try:
            registration.callback(session.peer)
        except Exception:
            self.log.failure("service callback raised")

    def _on_e2e(self, circuit: Circuit, data: bytes) -> None:
        session = self.sessions_by_circuit.get(circuit)
        if session is None or not session.established:
            self.stats.drop("e2e_without_session")
            return
        try:
            payload = session.e2e.open(data)
        except (ReplayError, IntegrityError, DecodeError):
            self.stats.drop("e2e_rejected")
            return
        self.stats.note("data_received")
        for handler in list(self.origin.data_handlers):
            try:
                handler(circuit, session.peer, payload)
            except Exception:
                self.log.failure("data handler raised")

    def _session_closed(self, session: Session) -> None:
        was_established = session.established
        live = session in session.registration.sessions
        self._drop_session(session)
        if not was_established and live:
            self._retry(session)
        if was_established:
            self.stats.note("hs_peers_lost")
            for handler in list(self.lost_handlers):
                try:
                    handler(session.registration.original_id, session.peer)
                except Exception:
                    self.log.failure("peer-lost handler raised")

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

    # --- DHT lookups through a circuit ----------------------------------------------------

    def _dht_send(self, data: bytes, address: Address) -> None:
        """Send a DHT query through our own circuit: the DHT never sees our address."""
        circuit = self._dht_circuit
        if circuit is None or circuit.state is CircuitState.CLOSED:
            hops = min((r.hops for r in self.registrations.values()), default=1)
            try:
                circuit = self._dht_circuit = self.start_circuit(hops, purpose="dht")
            except TunnelError:
                self._dht_circuit = None
            else:
                circuit.data_sink = self._dht_reply
        if circuit is None or not circuit.ready or self._dht_client is None:
            self.stats.drop("dht_query_without_circuit")
            return
        try:
            super().tunnel_data(circuit, address, "data", data)
        except (TunnelError, ValueError):
            self.stats.drop("dht_query_unsendable")

    def _dht_reply(self, source: Address, payload: bytes) -> None:
        if self._dht_client is not None:
            self._dht_client.datagram_received(payload, source)

    async def unload(self) -> None:
        """Leave every service, then unload as a :class:`TunnelCommunity`."""
        for registration in list(self.registrations.values()):
            self.unregister_service(registration.original_id)
        client, self._dht_client = self._dht_client, None
        if client is not None:
            # Cancelling a lookup's queries lets it start new ones: close until none is pending.
            for _ in range(256):
                client.close()
                if not len(client.client.pending):
                    break
        await super().unload()


def _peer_address() -> Address:
    """A fresh address naming a hidden-service peer (usable with ``tunnel_data``)."""
    return (f"{secrets.token_hex(8)}.hidden", PEER_PORT)
