# -*- test-case-name: test.test_hidden_keys -*-
"""Service identifiers, DHT keys and signed introduction records.

Two kinds of service id:

* **open** (the seed's swarm): any ``str``/``bytes`` id; anyone may join.
* **self-certifying**: ``"hs1-" + base32(ed25519 public key)``; only holders of the private key
  (a :class:`ServiceKey`) can run introduction points for it, with signed, expiring records
  that introduction points and seekers verify.

The DHT key is a domain-separated hash of the id, never the id itself.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX = "hs1-"
RECORD_LIFETIME = 3600.0
"""Longest validity an introduction record may claim, in seconds."""
_RECORD_DOMAIN = b"txtunnels intro record v1|"


class ServiceKey:
    """The private key of a self-certifying service; its :attr:`service_id` is public."""

    def __init__(self, private: Ed25519PrivateKey | None = None) -> None:
        self.private = private or Ed25519PrivateKey.generate()
        self.public = self.private.public_key().public_bytes_raw()

    @property
    def service_id(self) -> str:
        """The id to give seekers: ``hs1-`` and the base32 public key."""
        return PREFIX + base64.b32encode(self.public).decode("ascii").rstrip("=").lower()

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature."""
        return self.private.sign(message)

    def __repr__(self) -> str:
        return f"<ServiceKey {self.service_id}>"


@dataclass(frozen=True)
class ServiceId:
    """A parsed service id: its DHT key, and the public key when self-certifying."""

    raw: bytes
    public_key: bytes | None

    @property
    def dht_key(self) -> bytes:
        """20-byte key under which introduction points are announced."""
        domain = b"txtunnels service cert|" if self.public_key else b"txtunnels service open|"
        return hashlib.sha1(domain + self.raw).digest()

    @property
    def self_certifying(self) -> bool:
        return self.public_key is not None


def parse_service_id(service_id: object) -> tuple[ServiceId, ServiceKey | None]:
    """Accept a str/bytes id or a :class:`ServiceKey`; raise TypeError/ValueError otherwise."""
    if isinstance(service_id, ServiceKey):
        return ServiceId(service_id.public, service_id.public), service_id
    if isinstance(service_id, str):
        if service_id.startswith(PREFIX):
            encoded = service_id[len(PREFIX):].upper()
            try:
                public = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
            except ValueError:
                raise ValueError(f"malformed self-certifying service id {service_id!r}") from None
            if len(public) != 32:
                raise ValueError(f"self-certifying service id {service_id!r} has the wrong length")
            return ServiceId(public, public), None
        raw = service_id.encode("utf-8")
    elif isinstance(service_id, (bytes, bytearray)):
        raw = bytes(service_id)
    else:
        raise TypeError(f"service id must be str, bytes or ServiceKey, got {type(service_id).__name__}")
    if not 0 < len(raw) <= 255:
        raise ValueError("service id must be 1 to 255 bytes")
    return ServiceId(raw, None), None


def record_message(intro_node_id: bytes, dht_key: bytes, member_key: bytes, expiry: int) -> bytes:
    """What a service key signs: this member key may be introduced at this intro point until expiry."""
    return _RECORD_DOMAIN + intro_node_id + dht_key + member_key + expiry.to_bytes(8, "big")


def verify_record(public: bytes, signature: bytes, intro_node_id: bytes, dht_key: bytes, member_key: bytes,
                  expiry: int, now: float) -> str | None:
    """None if the record is valid now, else why not."""
    if not now < expiry <= now + RECORD_LIFETIME + 60:
        return "expired or too long-lived"
    if hashlib.sha1(b"txtunnels service cert|" + public).digest() != dht_key:
        return "key does not match the service"
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, record_message(intro_node_id, dht_key,
                                                                                     member_key, expiry))
    except (InvalidSignature, ValueError):
        return "bad signature"
    return None


def member_id(member_key: bytes) -> bytes:
    """A member's 20-byte id within a service (hash of its per-registration X25519 key)."""
    return hashlib.sha1(b"txtunnels member|" + member_key).digest()
