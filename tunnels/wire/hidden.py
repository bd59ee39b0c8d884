# -*- test-case-name: test.test_hidden_messages -*-
"""Hidden-service messages (carried as relay messages, or as link cells between relays).

Every decoder is total: a value or :class:`~tunnels.errors.DecodeError`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecodeError
from .relay import decode_address, encode_address

Address = tuple[str, int]
CERT_SIZE = 32 + 8 + 64
NO_REQUEST = bytes(8)
"""``Introduce.supersedes`` when there is no earlier attempt."""
INTRODUCE_BODY_SIZE = 20 + 8 + 20 + 32 + 8
"""The body of every form of :class:`Introduce` (the link form is exactly the body)."""


def _take(data: bytes, offset: int, size: int) -> tuple[bytes, int]:
    end = offset + size
    if len(data) < end:
        raise DecodeError("truncated hidden-service message")
    return data[offset:end], end


@dataclass(frozen=True)
class EstablishIntro:
    """Member -> intro point: introduce seekers of ``dht_key`` to me (``member_key``).

    ``cert`` (service public key, expiry, signature) is present for self-certifying services.
    """

    dht_key: bytes
    member_key: bytes
    cert: bytes = b""

    def encode(self) -> bytes:
        return self.dht_key + self.member_key + self.cert

    @classmethod
    def decode(cls, data: bytes) -> EstablishIntro:
        if len(data) not in (52, 52 + CERT_SIZE):
            raise DecodeError("ESTABLISH_INTRO has the wrong length")
        return cls(data[:20], data[20:52], data[52:])


@dataclass(frozen=True)
class Introduce:
    """An introduction, in three forms (doc/hidden-services.md, protocol step 4):

    * INTRODUCE1, seeker -> its last hop L: ``intro`` and ``intro_node_id`` name the intro point;
    * link INTRODUCE, L -> intro point: the body only;
    * INTRODUCE2, intro point -> member: the body and ``last_hop``, L's address as the intro
      point saw it (the member keeps L off its half of the rendezvous).

    The body: ``dht_key`` (20 bytes), ``request_id`` (8), ``seeker_member`` (20), ``client_key``
    (32, the seeker's ntor key), ``supersedes`` (8: the request id of the seeker's earlier
    attempt whose rendezvous failed, which the member then drops; zeros for none).
    """

    dht_key: bytes
    request_id: bytes
    seeker_member: bytes
    client_key: bytes
    intro: Address | None = None
    intro_node_id: bytes = b""
    last_hop: Address | None = None
    supersedes: bytes = NO_REQUEST

    def encode(self) -> bytes:
        body = self.dht_key + self.request_id + self.seeker_member + self.client_key + self.supersedes
        if self.last_hop is not None:
            body += encode_address(*self.last_hop)
        if self.intro is None:
            return body
        return encode_address(*self.intro) + self.intro_node_id + body

    @classmethod
    def decode(cls, data: bytes, with_intro: bool, with_last_hop: bool = False) -> Introduce:
        """Decode INTRODUCE1 (``with_intro``), INTRODUCE2 (``with_last_hop``) or the link form."""
        intro: Address | None = None
        last_hop: Address | None = None
        node_id = b""
        offset = 0
        if with_intro:
            intro, offset = decode_address(data)
            node_id, offset = _take(data, offset, 20)
        dht_key, offset = _take(data, offset, 20)
        request_id, offset = _take(data, offset, 8)
        seeker, offset = _take(data, offset, 20)
        client_key, offset = _take(data, offset, 32)
        supersedes, offset = _take(data, offset, 8)
        if with_last_hop:
            last_hop, offset = decode_address(data, offset)
        if offset != len(data):
            raise DecodeError("INTRODUCE has trailing bytes")
        return cls(dht_key, request_id, seeker, client_key, intro, node_id, last_hop, supersedes)


@dataclass(frozen=True)
class IntroReply:
    """Member -> seeker (through the intro point and the seeker's last hop).

    ``status`` 0 is success; then ``member_key``, ntor ``server_key``/``auth``, the optional
    ``cert`` and ``sealed`` (the rendezvous point and cookie, encrypted under the new keys).
    Both variable parts are length-prefixed, so padding after the message is ignored.
    """

    request_id: bytes
    status: int
    member_key: bytes = bytes(32)
    server_key: bytes = bytes(32)
    auth: bytes = bytes(32)
    cert: bytes = b""
    sealed: bytes = b""

    def encode(self) -> bytes:
        return (self.request_id + bytes((self.status,)) + self.member_key + self.server_key + self.auth +
                bytes((len(self.cert),)) + self.cert + len(self.sealed).to_bytes(2, "big") + self.sealed)

    @classmethod
    def decode(cls, data: bytes) -> IntroReply:
        request_id, offset = _take(data, 0, 8)
        status_b, offset = _take(data, offset, 1)
        member_key, offset = _take(data, offset, 32)
        server_key, offset = _take(data, offset, 32)
        auth, offset = _take(data, offset, 32)
        cert_len, offset = _take(data, offset, 1)
        if cert_len[0] not in (0, CERT_SIZE):
            raise DecodeError("bad certificate length")
        cert, offset = _take(data, offset, cert_len[0])
        sealed_len, offset = _take(data, offset, 2)
        sealed, offset = _take(data, offset, int.from_bytes(sealed_len, "big"))
        return cls(request_id, status_b[0], member_key, server_key, auth, cert, sealed)


@dataclass(frozen=True)
class RendezvousInfo:
    """Where to meet (sealed inside :class:`IntroReply`)."""

    address: Address
    node_id: bytes
    onion_key: bytes
    cookie: bytes

    def encode(self) -> bytes:
        return encode_address(*self.address) + self.node_id + self.onion_key + self.cookie

    @classmethod
    def decode(cls, data: bytes) -> RendezvousInfo:
        address, offset = decode_address(data)
        node_id, offset = _take(data, offset, 20)
        onion_key, offset = _take(data, offset, 32)
        cookie, offset = _take(data, offset, 20)
        if offset != len(data):
            raise DecodeError("rendezvous info has trailing bytes")
        return cls(address, node_id, onion_key, cookie)
