# -*- test-case-name: test.test_free_answers -*-
"""IPv8 peer discovery under the no-free-answers rule (DESIGN.md property 14).

IPv8 answers two unauthenticated datagrams: an introduction request (answered with an
introduction response, and a puncture request to a third peer it introduces) and a
puncture request (answered with a signed puncture sent to an address the request
names).  UDP sources are spoofable, so each answer is a datagram aimed at whoever the
sender names; as shipped, a 45-byte puncture request draws a 185-byte puncture to any
address.  :class:`PeeringMixin` keeps discovery working and makes every such answer:

- **budgeted** per source network (/24, /48) and node-wide (:class:`AnswerBudget`),
  checked before the signature of an introduction request is verified (no public-key
  work for a datagram we will not answer);
- **never larger than its request**: our introduction requests are padded to
  :data:`INTRODUCTION_REQUEST_SIZE` and our puncture requests to
  :data:`PUNCTURE_REQUEST_SIZE`, both at least the largest answer they can draw, and
  shorter requests are dropped unanswered (QUIC pads its Initial packets for the same
  reason, RFC 9000 section 8.1);
- **not relayed to third parties for unvalidated sources**: an address is *validated*
  once it answered an introduction request we sent to it (return routability, as
  QUIC's address validation).  A puncture request is honoured only from a validated
  address, and an introduction request from any other address is answered without an
  introduction (no puncture request to a third peer on its behalf).  IPv8's own notion,
  a "verified" peer, only means a valid signature arrived from that address, and a
  signed request replayed from a spoofed address passes it.

Every refusal is a counted drop (``Stats.drops``), never a log line; a request that fails
to parse is counted by :mod:`tunnels.core.ipv8_dispatch`.  The flags we advertise ride in the
introductions' extra bytes (:mod:`tunnels.core.peer_flags`); the padding follows them.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ipv8.community import Community
from ipv8.messaging.payload import (IntroductionRequestPayload, NewIntroductionRequestPayload,
                                    NewPunctureRequestPayload, PunctureRequestPayload)
from ipv8.peer import Peer

from ..ratelimit import AnswerBudget, source_id
from ..stats import Stats

Address = tuple[str, int]

INTRODUCTION_REQUEST_SIZE = 300
"""Bytes of every introduction request we send, and the least we answer: more than the
largest introduction response we make (222 bytes with IPv6 addresses, tested)."""
PUNCTURE_REQUEST_SIZE = 240
"""Bytes of every puncture request we send, and the least we honour: more than the
largest puncture we make (211 bytes with IPv6 addresses, tested)."""
TRAILER = 2
"""A padded puncture request ends with ``padding | padding length (2 bytes)``."""

INTRODUCTION_RATE, INTRODUCTION_BURST = 20.0, 100.0
"""Introduction responses per second (and burst) to one source network."""
INTRODUCTION_RATE_TOTAL, INTRODUCTION_BURST_TOTAL = 200.0, 400.0
"""Introduction responses per second (and burst) from this node."""
PUNCTURE_RATE, PUNCTURE_BURST = 5.0, 20.0
"""Punctures per second (and burst) per requesting network and per target network."""
PUNCTURE_RATE_TOTAL, PUNCTURE_BURST_TOTAL = 50.0, 100.0
"""Punctures per second (and burst) from this node."""

DISCOVERY_DROPS = frozenset({"introduction_request_short", "introduction_withheld", "puncture_request_short",
                             "puncture_request_stranger", "puncture_withheld"})
"""The ``Stats.drops`` reasons of IPv8 discovery datagrams (the others are cells)."""

MAX_ADDRESSES = 4096
"""Addresses remembered as walked to, and as validated (least recently used forgotten)."""

_INTRODUCTION_IDS = (IntroductionRequestPayload.msg_id, NewIntroductionRequestPayload.msg_id)
_PUNCTURE_IDS = (PunctureRequestPayload.msg_id, NewPunctureRequestPayload.msg_id)


_Base = Community if TYPE_CHECKING else object


class PeeringMixin(_Base):
    """IPv8 discovery answers of a :class:`~tunnels.community.TunnelCommunity` under property 14.

    Mixed in before :class:`~ipv8.community.Community`; the host class provides ``stats`` and
    ``reactor`` (for the time) once its ``__init__`` has run.
    """

    reactor: Any
    stats: Stats

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.introduction_answers = AnswerBudget(INTRODUCTION_RATE, INTRODUCTION_BURST,
                                                 INTRODUCTION_RATE_TOTAL, INTRODUCTION_BURST_TOTAL)
        self.puncture_answers = AnswerBudget(PUNCTURE_RATE, PUNCTURE_BURST, PUNCTURE_RATE_TOTAL, PUNCTURE_BURST_TOTAL)
        self.puncture_targets = AnswerBudget(PUNCTURE_RATE, PUNCTURE_BURST, PUNCTURE_RATE_TOTAL, PUNCTURE_BURST_TOTAL)
        self.walked: OrderedDict[Address, None] = OrderedDict()
        """Addresses we sent an introduction request to."""
        self.validated: OrderedDict[Address, None] = OrderedDict()
        """Addresses that answered one (return-routable)."""
        self._may_introduce = True
        for msg_id in _INTRODUCTION_IDS:
            self.decode_map[msg_id] = self._guard_introduction_request(self.decode_map[msg_id])
        for msg_id in _PUNCTURE_IDS:
            self.decode_map[msg_id] = self._guard_puncture_request(self.decode_map[msg_id])

    # --- introduction requests ----------------------------------------------------------

    def _guard_introduction_request(self, handler: Any) -> Callable[[Address, bytes], None]:
        def guarded(source: Address, data: bytes) -> None:
            if len(data) < INTRODUCTION_REQUEST_SIZE:
                self.stats.drop("introduction_request_short")
                return
            if not self.introduction_answers.allow(source_id(source, self.testnet), self.reactor.seconds()):
                self.stats.drop("introduction_withheld")
                return
            self._may_introduce = self.is_validated(source)
            try:
                handler(source, data)
            finally:
                self._may_introduce = True
        return guarded

    def is_validated(self, address: Address) -> bool:
        """Whether ``address`` answered an introduction request we sent it."""
        return (address[0], address[1]) in self.validated

    def get_peer_for_introduction(self, exclude: Peer | None = None, new_style: bool = False) -> Peer | None:
        """A peer to introduce the requester to; none for a requester we did not know (no
        puncture request goes to a third peer on behalf of a possibly spoofed source)."""
        if not self._may_introduce:
            self.stats.note("introduction_without_puncture")
            return None
        return super().get_peer_for_introduction(exclude, new_style)

    def create_introduction_request(self, socket_address: Any, extra_bytes: bytes = b"",
                                    new_style: bool = False, prefix: bytes | None = None) -> bytes:
        """An introduction request with ``extra_bytes`` (our flags), padded to
        :data:`INTRODUCTION_REQUEST_SIZE` (the extra bytes are the payload's last field)."""
        _remember(self.walked, (socket_address[0], socket_address[1]))
        packet = super().create_introduction_request(socket_address, extra_bytes, new_style, prefix)
        if len(packet) < INTRODUCTION_REQUEST_SIZE:
            padded = extra_bytes + bytes(INTRODUCTION_REQUEST_SIZE - len(packet))
            packet = super().create_introduction_request(socket_address, padded, new_style, prefix)
        return packet

    def on_introduction_response(self, peer: Peer, dist: Any, payload: Any) -> None:
        """An answer from an address we walked to validates that address."""
        address = (peer.address[0], peer.address[1])
        if address in self.walked:
            _remember(self.validated, address)
        super().on_introduction_response(peer, dist, payload)

    # --- puncture requests --------------------------------------------------------------

    def _guard_puncture_request(self, handler: Any) -> Callable[[Address, bytes], None]:
        def guarded(source: Address, data: bytes) -> None:
            padding = int.from_bytes(data[-TRAILER:], "big") + TRAILER
            if len(data) < PUNCTURE_REQUEST_SIZE or padding > len(data) - 23:
                self.stats.drop("puncture_request_short")
                return
            handler(source, data[:-padding])
        return guarded

    def create_puncture_request(self, lan_walker: Any, wan_walker: Any, identifier: int,
                                prefix: bytes | None = None, new_style: bool = False) -> bytes:
        """IPv8's puncture request, padded to :data:`PUNCTURE_REQUEST_SIZE` (see the module doc)."""
        packet = super().create_puncture_request(lan_walker, wan_walker, identifier, prefix, new_style)
        padding = max(0, PUNCTURE_REQUEST_SIZE - len(packet) - TRAILER)
        return packet + bytes(padding) + padding.to_bytes(TRAILER, "big")

    def on_puncture_request(self, source_address: Address, dist: Any, payload: Any, new_style: bool = False) -> None:
        """Send the puncture only for a validated address, within both budgets."""
        if not self.is_validated(source_address):
            self.stats.drop("puncture_request_stranger")
            return
        now = self.reactor.seconds()
        target = payload.wan_walker_address  # where IPv8 will send the puncture
        if target[0] == self.my_estimated_wan[0]:
            target = payload.lan_walker_address
        if not self.puncture_answers.allow(source_id(source_address, self.testnet), now) or \
                not self.puncture_targets.allow(source_id((str(target[0]), int(target[1])), self.testnet), now):
            self.stats.drop("puncture_withheld")
            return
        super().on_puncture_request(source_address, dist, payload, new_style)


def _remember(table: OrderedDict[Address, None], address: Address) -> None:
    table[address] = None
    table.move_to_end(address)
    if len(table) > MAX_ADDRESSES:
        table.popitem(last=False)
