# -*- test-case-name: test.test_hidden -*-
"""Introductions: a member's intro points, and how seekers and members introduce themselves.

A member keeps ``INTRO_POINTS`` introduction points at the end of circuits one hop longer than
asked and establishes itself there (with a signed record for self-certifying ids).  A seeker looks
the service up, sends INTRODUCE1 through one of its circuits, and on INTRODUCE_ACK (the member's
sealed answer) builds its half of the rendezvous.  A member answering INTRODUCE2 chooses the
rendezvous point, builds its half and replies once the point confirms (doc/hidden-services.md).
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..core.circuits import Circuit
from ..core.pathsel import Candidate, PeerFlag
from ..crypto import ntor
from ..crypto.service_keys import RECORD_LIFETIME, member_id, record_message, verify_record
from ..errors import DecodeError, HandshakeError, TunnelError
from ..wire.hidden import EstablishIntro, Introduce, IntroReply, RendezvousInfo
from ..wire.relay import RelayCommand
from .e2e import E2ESession, reply_cipher
from .sessions import RENDEZVOUS_ATTEMPTS
from .state import Address, PendingIntroduction, Registration, Session, _peer_address

if TYPE_CHECKING:  # the mixin runs inside HiddenTunnelCommunity, a TunnelCommunity
    from ..community import TunnelCommunity as _Base
else:
    _Base = object

INTRO_POINTS = 2
STATUS_OK, STATUS_BUSY = 0, 2
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
        for registration in self.registrations.values():
            if circuit in registration.intro_circuits:
                registration.established.add(circuit)
                self.stats.note("intro_points_established")
                return

    # --- finding members ------------------------------------------------------------------

    def _lookup(self, registration: Registration) -> None:
        self.stats.note("dht_lookups")
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
