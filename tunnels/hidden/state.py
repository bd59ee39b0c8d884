# -*- test-case-name: test.test_hidden -*-
"""What a member of hidden services remembers: registrations, pending introductions, sessions."""
from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..core.circuits import Circuit
from ..core.pathsel import Candidate
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
    request_id: bytes = b""
    """The introduction this session answers (a seeker's retry names it, so the member drops it)."""
    intro: Address | None = None
    """Seeker side: the intro point we were introduced through (to retry at once on failure)."""
    attempt: int = 1
    """Introductions through ``intro`` in a row that led to this session."""
    point: Candidate | None = None
    """The rendezvous point."""
    last_hop: Candidate | None = None
    """Seeker side: the hop before the rendezvous point (the last hop of the circuit our
    introduction went through, which the member kept off its half)."""
    avoid: tuple[bytes, Address | None] = (b"", None)
    """Member side: the intro point's node id and the seeker's last hop, kept off our half."""
    builds: int = 0
    """Circuits built for our half so far (a half that fails is built again at once)."""
    circuit: Circuit | None = None
    established: bool = False
    inherited: bool = False
    """Took over the peer address of a connected session with the same member that closed."""
    retired: Session | None = None
    """The twin this session lost to (it only delivers what was on its way, for a few seconds)."""
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
    looking_up: bool = False
    """A lookup is running."""
    look_again: bool = False
    """Look up once more when the running lookup ends (an intro point got established meanwhile)."""
    empty_lookups: int = 0
    """Lookups in a row that found no intro point (an unfindable member then looks again soon)."""
    retry_call: Any = None
    """The delayed call of that next lookup."""
    introduced: dict[Address, float] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    stems: dict[bytes, Circuit] = field(default_factory=dict)
    """Our halves built ahead up to L, by L's node id (tunnels.hidden.rendezvous)."""

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



@dataclass(eq=False)
class PendingIntroduction:
    """A seeker's introduction waiting for the member's reply."""

    registration: Registration
    private: X25519PrivateKey
    intro_node_id: bytes
    started: float
    intro: Address = ("", 0)
    attempt: int = 1
    last_hop: Candidate | None = None
    """The last hop of the circuit the introduction went through."""
    circuit: Circuit | None = None
    """That circuit."""
    answered: set[bytes] = field(default_factory=set)
    """Member ids that answered yes (an intro point passes an introduction to all its members)."""
    replies: int = 0
    """Answers of any kind (none by the timeout: the introduction is sent again)."""


def _peer_address() -> Address:
    """A fresh address naming a hidden-service peer (usable with ``tunnel_data``)."""
    return (f"{secrets.token_hex(8)}.hidden", PEER_PORT)
