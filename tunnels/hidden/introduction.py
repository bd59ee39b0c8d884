# -*- test-case-name: test.test_hidden -*-
"""Introductions: a member's intro points, and how seekers and members introduce themselves.

A member keeps ``INTRO_POINTS`` introduction points at the end of circuits one hop longer than
asked and establishes itself there (with a signed record for self-certifying ids); each one
confirmed starts a lookup (:mod:`tunnels.hidden.lookups`).  A seeker sends INTRODUCE1 through
one of its circuits that avoids the intro point (building one first if it has none) and, for
each member's answer (INTRODUCE_ACK; an intro point passes an introduction to all its members),
builds its half of the rendezvous.  A member answering INTRODUCE2 chooses the rendezvous point,
starts its half and replies at once; R holds whichever half arrives first (doc/hidden-services.md).
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..community import _onion_key
from ..core.circuits import Circuit
from ..core.pathsel import Candidate, PeerFlag
from ..crypto import ntor
from ..crypto.service_keys import RECORD_LIFETIME, member_id, record_message, verify_record
from ..errors import DecodeError, HandshakeError, TunnelError
from ..wire.hidden import NO_REQUEST, EstablishIntro, Introduce, IntroReply, RendezvousInfo
from ..wire.relay import RelayCommand
from .e2e import E2ESession, reply_cipher
from .rendezvous import same_hop
from .sessions import RENDEZVOUS_ATTEMPTS
from .state import Address, PendingIntroduction, Registration, Session, _peer_address

if TYPE_CHECKING:  # the mixin runs inside HiddenTunnelCommunity, a TunnelCommunity
    from ..community import TunnelCommunity as _Base
else:
    _Base = object

INTRO_POINTS = 2
STATUS_OK, STATUS_BUSY, STATUS_NO_RENDEZVOUS = 0, 2, 3
"""Answers to an introduction: a rendezvous follows; already connected or connecting; no
rendezvous point possible in the member's view (status 1 is the intro point's "unknown")."""
_ZERO_NONCE = bytes(12)


class IntroductionMixin(_Base):
    """Intro points and introductions of :class:`~tunnels.hidden.community.HiddenTunnelCommunity`."""

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
        """The intro point registered us and its DHT announcement ended: look the service up now,
        so that we find every member confirmed before us (those after us will find us)."""
        for registration in self.registrations.values():
            if circuit in registration.intro_circuits:
                if circuit not in registration.established:
                    registration.established.add(circuit)
                    self.stats.note("intro_points_established")
                    self._request_lookup(registration)
                return

    # --- finding members ------------------------------------------------------------------

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

    def _introduce(self, registration: Registration, intro: Address, attempt: int = 1,
                   supersedes: bytes = NO_REQUEST, avoid: Candidate | None = None) -> None:
        """Introduce ourselves at ``intro`` now, or as soon as a circuit to send it through is built.
        ``supersedes`` names our earlier introduction whose rendezvous failed; ``avoid`` is a last
        hop L the member could not keep off its half."""
        known = self._me_as_candidate() if intro in self._own_addresses() else \
            next((c for c in self.candidates() if c.address == intro), None)
        if known is None:
            self.stats.note("introduce_unknown_intro_point")
            return
        circuit = self._seek_circuit(registration, known, avoid)
        if circuit is None:
            self.stats.note("seek_circuit_unbuildable")
            return
        registration.introduced[intro] = self.reactor.seconds()
        if circuit.ready:
            self._send_introduction(registration, known, circuit, attempt, supersedes)
            return

        def built(ready: Circuit) -> None:
            if self.registrations.get(registration.service.dht_key) is registration:
                self._send_introduction(registration, known, ready, attempt, supersedes)

        def failed(failure: object) -> None:
            # the relay that did not answer is avoided for a while: another circuit, at once
            self.stats.note("introduce_circuit_failed")
            if attempt < RENDEZVOUS_ATTEMPTS and self.registrations.get(registration.service.dht_key) is registration:
                self._introduce(registration, intro, attempt + 1, supersedes, avoid)
        self.when_ready(circuit).addCallbacks(built, failed)

    def _own_addresses(self) -> set[Address]:
        """Where others reach us (a member may be the intro point of other members)."""
        return {(self.udp.host, self.udp.port), (str(self.my_estimated_wan[0]), int(self.my_estimated_wan[1]))}

    def _me_as_candidate(self) -> Candidate | None:
        onion_key = _onion_key(self.my_peer)
        if onion_key is None:
            return None
        return Candidate((self.udp.host, self.udp.port), self.my_peer.mid, onion_key, self.my_flags())

    def _send_introduction(self, registration: Registration, intro: Candidate, circuit: Circuit, attempt: int,
                           supersedes: bytes) -> None:
        request_id = secrets.token_bytes(8)
        private = X25519PrivateKey.generate()
        last = circuit.path[-1]
        self.pending[request_id] = PendingIntroduction(
            registration, private, intro.node_id, self.reactor.seconds(), intro.address, attempt,
            Candidate(last.address, last.node_id, last.onion_key, PeerFlag.RELAY), circuit)
        message = Introduce(registration.service.dht_key, request_id, registration.member_id,
                            private.public_key().public_bytes_raw(), intro.address, intro.node_id,
                            supersedes=supersedes)
        self.stats.note("introductions_sent")
        self.origin.send_message(circuit, RelayCommand.INTRODUCE1, message.encode())
        self._prepare_stem(registration, self.pending[request_id].last_hop, intro.node_id)

    def _on_introduce_ack(self, circuit: Circuit, data: bytes) -> None:
        """A member's answer to one of our introductions (several members may answer one)."""
        try:
            reply = IntroReply.decode(data)
        except DecodeError:
            self.stats.drop("malformed_introduce_ack")
            return
        pending = self.pending.get(reply.request_id)
        if pending is None:
            self.stats.drop("unexpected_introduce_ack")
            return
        pending.replies += 1
        if reply.status != STATUS_OK:
            self.stats.note(f"introduce_status_{reply.status}")
            if reply.status == STATUS_NO_RENDEZVOUS and pending.attempt < RENDEZVOUS_ATTEMPTS:
                # known before anything was built: our L left the member no half; another L, at once
                self._introduce(pending.registration, pending.intro, pending.attempt + 1, avoid=pending.last_hop)
            return
        member = member_id(reply.member_key)
        if member in pending.answered:
            self.stats.drop("introduce_ack_repeated")
            return
        pending.answered.add(member)
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
        point = Candidate(info.address, info.node_id, info.onion_key, PeerFlag.RELAY)
        if same_hop(pending.last_hop, point) or point.node_id == pending.intro_node_id:
            self.stats.note("hs_rendezvous_point_refused")  # the member broke the rules of its choice
            return
        if not self._make_room(registration, member, registration.member_id):
            self.stats.note("hs_already_connected")
            return
        session = Session(registration, _peer_address(), member, True, E2ESession(material, initiator=True),
                          cookie=info.cookie, request_id=reply.request_id, intro=pending.intro,
                          attempt=pending.attempt, point=point, last_hop=pending.last_hop,
                          avoid=(pending.intro_node_id, None))
        self._add_session(session)
        self._start_seeker_half(session)

    # --- being found ----------------------------------------------------------------------

    def _on_introduce2(self, intro_circuit: Circuit, data: bytes) -> None:
        registration = next((r for r in self.registrations.values() if intro_circuit in r.intro_circuits), None)
        try:
            request = Introduce.decode(data, with_intro=False, with_last_hop=True)
        except DecodeError:
            self.stats.drop("malformed_introduce2")
            return
        if registration is None or request.dht_key != registration.service.dht_key:
            self.stats.drop("introduce2_unknown_service")
            return
        if request.supersedes != NO_REQUEST:
            self._drop_superseded(registration, request.seeker_member, request.supersedes)
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
        session = Session(registration, _peer_address(), request.seeker_member, False,
                          E2ESession(material, initiator=False), request_id=request.request_id,
                          avoid=(intro_circuit.hops[-1].node_id, request.last_hop))
        self._add_session(session)
        if not self._start_member_half(session):
            self.stats.note("hs_no_rendezvous_point")
            self._drop_session(session)
            self._intro_reply(intro_circuit, IntroReply(request.request_id, STATUS_NO_RENDEZVOUS))
            return
        # Answer now, while our half is being built: the seeker builds its half meanwhile, and
        # R holds whichever half arrives first.
        point = session.point
        assert point is not None
        sealed = reply_cipher(material).encrypt(
            _ZERO_NONCE, RendezvousInfo(point.address, point.node_id, point.onion_key, session.cookie).encode(),
            request.request_id)
        self._intro_reply(intro_circuit, IntroReply(request.request_id, STATUS_OK, registration.member_key,
                                                    server_key, auth, registration.intro_circuits.get(intro_circuit, b""),
                                                    sealed))

    def _drop_superseded(self, registration: Registration, seeker: bytes, request_id: bytes) -> None:
        """The seeker's rendezvous for its introduction ``request_id`` failed (it says so by naming
        it, which only it, its last hop and the intro point know): forget our half of it."""
        for session in registration.sessions_with(seeker):
            if not session.initiator and not session.established and session.request_id == request_id:
                self.stats.note("hs_session_superseded")
                circuit = session.circuit
                self._drop_session(session)
                if circuit is not None:
                    self.origin.close(circuit, "superseded")

    def _on_rendezvous_established(self, circuit: Circuit, data: bytes) -> None:
        """R holds our half and waits for the seeker's."""
        if circuit not in self.sessions_by_circuit:
            self.stats.drop("unexpected_rendezvous_established")

    def _intro_reply(self, intro_circuit: Circuit, reply: IntroReply) -> None:
        if intro_circuit.ready:
            self.origin.send_message(intro_circuit, RelayCommand.INTRO_REPLY, reply.encode())
