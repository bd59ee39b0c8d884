# -*- test-case-name: test.test_hidden -*-
"""What a member of hidden services remembers: registrations, pending introductions, sessions."""
from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..core.circuits import Circuit
from ..core.reassembly import Reassembly
from ..crypto.service_keys import ServiceId, ServiceKey, member_id
from ..wire.fragments import ID_SPACE, new_datagram_id
from .e2e import E2ESession

Address = tuple[str, int]
PeerCallback = Callable[[Address], None]
PEER_PORT = 1024
"""The port of every hidden-service peer address (``<random>.hidden``)."""


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
    datagram_id: int = field(default_factory=new_datagram_id)
    """Id of the last datagram we sent the peer (doc/protocol.md 4.1)."""
    reassembly: Reassembly | None = None
    """The peer's datagrams arriving in pieces (created on the first piece)."""
    sink: Callable[[Address, bytes], None] | None = None
    """If set (``claim_peer``), ``sink(peer, payload)`` receives the peer's data instead of the data handlers."""

    def next_datagram_id(self) -> int:
        """Claim the id of the next datagram we send the peer."""
        self.datagram_id = (self.datagram_id + 1) % ID_SPACE
        return self.datagram_id


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


def _peer_address() -> Address:
    """A fresh address naming a hidden-service peer (usable with ``tunnel_data``)."""
    return (f"{secrets.token_hex(8)}.hidden", PEER_PORT)
