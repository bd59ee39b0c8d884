# -*- test-case-name: test.test_ntor -*-
"""The ntor handshake (Tor's tor-spec 5.1.4) bound to a relay's IPv8 identity.

``ID`` is the relay's IPv8 member id (SHA-1 of its public key) and ``B`` the
curve25519 half of its IPv8 key, so a CREATED can only be answered by the key
holder (AUTH), while the ephemeral ``y`` gives forward secrecy.  The protocol id
is our own, so our handshakes cannot be confused with Tor's.  All steps are pure
functions; the caller does the I/O.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives import hashes

from ..errors import HandshakeError

PROTOID = b"txtunnels-ntor-curve25519-sha256-1"
T_MAC = PROTOID + b":mac"
T_KEY = PROTOID + b":key_extract"
T_VERIFY = PROTOID + b":verify"
M_EXPAND = PROTOID + b":key_expand"
KEY_MATERIAL = 192
"""Bytes of key material per hop (six 32-byte keys, see :mod:`tunnels.crypto.onion`)."""


def _h(message: bytes, tweak: bytes) -> bytes:
    return hmac.new(tweak, message, hashlib.sha256).digest()


def _exp(private: X25519PrivateKey, public: bytes) -> bytes:
    """X25519 that refuses low-order points (an all-zero result)."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:
        raise HandshakeError("low-order or invalid curve25519 point") from exc
    if not any(shared):
        raise HandshakeError("low-order curve25519 point")
    return shared


def _expand(key_seed: bytes) -> bytes:
    return HKDFExpand(hashes.SHA256(), KEY_MATERIAL, M_EXPAND).derive(key_seed)


@dataclass(frozen=True)
class ClientState:
    """What the client keeps between :func:`client1` and :func:`client2`."""

    private: X25519PrivateKey
    node_id: bytes
    onion_key: bytes

    @property
    def client_key(self) -> bytes:
        return self.private.public_key().public_bytes_raw()


def client1(node_id: bytes, onion_key: bytes, private: X25519PrivateKey | None = None) -> ClientState:
    """Start a handshake with the relay ``(node_id, onion_key)``; send ``state.client_key``."""
    if len(node_id) != 20 or len(onion_key) != 32:
        raise ValueError("node_id must be 20 bytes and onion_key 32 bytes")
    return ClientState(private or X25519PrivateKey.generate(), node_id, onion_key)


def _secret_and_auth(exp_xy: bytes, exp_xb: bytes, node_id: bytes, onion_key: bytes,
                     client_key: bytes, server_key: bytes) -> tuple[bytes, bytes]:
    secret_input = exp_xy + exp_xb + node_id + onion_key + client_key + server_key + PROTOID
    key_seed = _h(secret_input, T_KEY)
    verify = _h(secret_input, T_VERIFY)
    auth = _h(verify + node_id + onion_key + server_key + client_key + PROTOID + b"Server", T_MAC)
    return key_seed, auth


def server(identity_private: X25519PrivateKey, node_id: bytes, node_id_claimed: bytes,
           onion_key_claimed: bytes, client_key: bytes,
           ephemeral: X25519PrivateKey | None = None) -> tuple[bytes, bytes, bytes]:
    """Answer a CREATE: returns ``(server_key Y, AUTH, key material)``.

    Raises :class:`HandshakeError` when the client named another relay or sent a
    low-order key; no secret is derived in that case.
    """
    onion_key = identity_private.public_key().public_bytes_raw()
    if not hmac.compare_digest(node_id_claimed, node_id) or not hmac.compare_digest(onion_key_claimed, onion_key):
        raise HandshakeError("CREATE names another relay")
    y = ephemeral or X25519PrivateKey.generate()
    server_key = y.public_key().public_bytes_raw()
    exp_xy = _exp(y, client_key)
    exp_xb = _exp(identity_private, client_key)
    key_seed, auth = _secret_and_auth(exp_xy, exp_xb, node_id, onion_key, client_key, server_key)
    return server_key, auth, _expand(key_seed)


def client2(state: ClientState, server_key: bytes, auth: bytes) -> bytes:
    """Finish the handshake; returns key material or raises :class:`HandshakeError`."""
    exp_xy = _exp(state.private, server_key)
    exp_xb = _exp(state.private, state.onion_key)
    key_seed, expected = _secret_and_auth(exp_xy, exp_xb, state.node_id, state.onion_key,
                                          state.client_key, server_key)
    if not hmac.compare_digest(expected, auth):
        raise HandshakeError("CREATED failed authentication")
    return _expand(key_seed)
