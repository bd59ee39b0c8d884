# -*- test-case-name: test.test_socks5_isolation -*-
"""One UDP association (RFC 1928 section 7): its relay port, its flows, and what it counted.

Replies reach an association only through its own flows (:mod:`tunnels.core.flows`): the
exit sends each association's datagrams from sockets of that association alone, so two
applications talking to one destination through one circuit never receive each other's
replies, and a reply that comes after the association ended reaches nobody.  Hidden-service
peers (``*.hidden`` names) have no exit; a peer's data goes to the one association that
claimed it (``claim_peer``), and another association sending to that peer while the claim
lives is refused (``dropped_peer_in_use``): two of them could not be told apart.

State that goes with the association when it ends: its flows (the exits close their
sockets, FLOW_END), its routes (destination -> flow), its claims on hidden-service peers,
its relay port.  Nothing is logged per datagram; everything is counted in :attr:`stats`.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter, OrderedDict
from typing import Any

from twisted.internet.error import MessageLengthError
from twisted.internet.protocol import DatagramProtocol

from ..core.circuits import Circuit
from ..core.destinations import is_hidden_name
from ..core.flows import Flow
from ..errors import CircuitNotReady, DatagramTooLarge, FlowLimitReached
from ..exit.policy import refusal_kind
from ..settings import MAX_UDP_PAYLOAD
from .codec import Socks5Error, encode_udp_datagram, parse_udp_datagram
from .isolation import CircuitSource

Address = tuple[str, int]
MAX_ROUTES = 256
"""Destinations one association remembers the flow of (least recently used forgotten first)."""
MAX_PEERS = 16
"""Hidden-service peers one association may claim."""


class UdpAssociation(DatagramProtocol):
    """The UDP relay port of one control connection, and the association's state.

    :ivar number: the association's number on its server (shown in the status, nothing else).
    :ivar client_host: the only IP datagrams are accepted from.
    :ivar client_port: the only source port accepted; pinned by the first datagram
        when the request announced port 0.
    :ivar circuits: where its circuits come from (the shared pool or its isolation group).
    """

    noisy = False

    def __init__(self, community: Any, number: int, client_host: str, client_port: int, circuits: CircuitSource,
                 opened: float) -> None:
        self.community = community
        self.number = number
        self.client_host = client_host
        self.client_port = client_port or None
        self.circuits = circuits
        self.opened = opened
        self.salt = os.urandom(16)
        self.routes: OrderedDict[Address, Flow] = OrderedDict()
        self.flows: dict[Circuit, Flow] = {}
        self.peers: set[Address] = set()
        self.stats: Counter[str] = Counter()
        """``sent``, ``delivered`` and ``dropped_<reason>`` (each reason explained in :mod:`tunnels.reasons`)."""
        self.refusals: Counter[str] = Counter()
        """Datagrams the exits refused, by :func:`~tunnels.exit.policy.refusal_kind`."""
        self.port: Any = None
        self.ended = False

    # --- from the client ------------------------------------------------------------------

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        """Send one client datagram on its flow, or drop it (counted)."""
        stats = self.stats
        if addr[0] != self.client_host or (self.client_port is not None and addr[1] != self.client_port):
            stats["dropped_foreign_source"] += 1
            return
        try:
            packet = parse_udp_datagram(datagram)
        except Socks5Error:
            stats["dropped_malformed"] += 1
            return
        if packet.frag != 0:
            stats["dropped_fragment"] += 1
            return
        self.client_port = addr[1]
        destination = (packet.host, packet.port)
        if is_hidden_name(packet.host):
            self._to_peer(destination, packet.payload)
            return
        flow = self.routes.get(destination)
        if flow is not None and flow.open:
            self.routes.move_to_end(destination)
        else:
            flow = self._route(destination)
            if flow is None:
                return
        try:
            self.community.flow_data(flow, destination, packet.payload)
        except CircuitNotReady:
            stats["dropped_no_circuit"] += 1
            return
        except DatagramTooLarge:
            stats["dropped_too_large"] += 1
            return
        except (TypeError, ValueError):
            stats["dropped_bad_destination"] += 1
            return
        stats["sent"] += 1

    def _route(self, destination: Address) -> Flow | None:
        """Our flow for ``destination`` on the circuit rendezvous hashing picks (stable while the
        circuits live, spread over circuits); on a circuit without room, the next in that order."""
        circuits = self.circuits.ready()
        if not circuits:
            self.circuits.want()
            self.stats["dropped_no_circuit"] += 1
            return None
        for circuit in sorted(circuits, key=lambda c: self._weight(destination, c), reverse=True):
            flow = self.flows.get(circuit)
            if flow is None or not flow.open:
                try:
                    flow = self.community.open_flow(circuit, self.deliver, self.note_refusal)
                except (FlowLimitReached, CircuitNotReady):
                    continue
                self.flows = {c: f for c, f in self.flows.items() if f.open}
                self.flows[circuit] = flow
            self.routes[destination] = flow
            if len(self.routes) > MAX_ROUTES:
                self.routes.popitem(last=False)
            return flow
        self.stats["dropped_no_flow"] += 1
        return None

    def _weight(self, destination: Address, circuit: Circuit) -> bytes:
        return hashlib.blake2b(f"{destination[0]}|{destination[1]}|{circuit.circuit_id}".encode(), key=self.salt,
                               digest_size=8).digest()

    def _to_peer(self, peer: Address, payload: bytes) -> None:
        """A datagram for a hidden-service peer: claim it (its data then reaches us alone) and send."""
        if peer not in self.peers:
            claim = getattr(self.community, "claim_peer", None)
            if claim is None or len(self.peers) >= MAX_PEERS:
                self.stats["dropped_bad_destination"] += 1
                return
            try:
                claimed = claim(peer, self.deliver)
            except CircuitNotReady:
                self.stats["dropped_no_session"] += 1
                return
            if not claimed:
                self.stats["dropped_peer_in_use"] += 1
                return
            self.peers.add(peer)
        try:
            self.community.tunnel_data(None, peer, "data", payload)
        except CircuitNotReady:
            self.stats["dropped_no_session"] += 1
            self.peers.discard(peer)
            return
        except DatagramTooLarge:
            self.stats["dropped_too_large"] += 1
            return
        self.stats["sent"] += 1

    # --- to the client --------------------------------------------------------------------

    def deliver(self, source: Address, payload: bytes) -> None:
        """A reply on one of our flows (or from a claimed peer): to the client, in the RFC header."""
        if self.transport is None or self.client_port is None:
            self.stats["dropped_client_write"] += 1
            return
        wrapped = encode_udp_datagram(source[0], source[1], payload)
        if len(wrapped) > MAX_UDP_PAYLOAD:
            # the RFC 1928 header does not fit around a reply this large in one IPv4 datagram
            self.stats["dropped_reply_too_large"] += 1
            return
        try:
            self.transport.write(wrapped, (self.client_host, self.client_port))
        except (OSError, ValueError, MessageLengthError):
            self.stats["dropped_client_write"] += 1
            return
        self.stats["delivered"] += 1

    def note_refusal(self, destination: Address, reason: str) -> None:
        """An exit refused one of our datagrams: count why (RFC 1928 cannot tell the client)."""
        self.refusals[refusal_kind(reason)] += 1

    # --- status and end -------------------------------------------------------------------

    @property
    def open_flows(self) -> int:
        """Flows of ours that are open (one per circuit in use)."""
        return sum(1 for flow in self.flows.values() if flow.open)

    def end(self) -> Any:
        """End the association: its flows (FLOW_END to the exits), claims and relay port go.

        Returns the relay port's ``stopListening`` Deferred (or None); idempotent."""
        if self.ended:
            return None
        self.ended = True
        for flow in self.flows.values():
            self.community.close_flow(flow)
        release = getattr(self.community, "release_peer", None)
        for peer in self.peers:
            if release is not None:
                release(peer, self.deliver)
        self.flows.clear()
        self.routes.clear()
        self.peers.clear()
        port, self.port = self.port, None
        return None if port is None else port.stopListening()
