"""The ntor handshake: known answers, identity binding, low-order points."""
from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from tunnels.crypto import ntor
from tunnels.errors import HandshakeError
from test import reference_crypto as ref

B_SECRET = bytes(range(32))
X_SECRET = bytes(range(32, 64))
Y_SECRET = bytes(range(64, 96))
NODE_ID = bytes.fromhex("00112233445566778899aabbccddeeff00112233")
# Known answer computed once with test/reference_crypto.py (independent of tunnels/).
KAT_AUTH = "31d41adc2607f15013f43f9d85244faf9504a4e28fcaca9b49c4d688a2eb60d0"
KAT_KEYS_PREFIX = "52026d72482a1822c9b77424ce363292cad9cdc246ab1f8045eb6db731aa0e75"

# Points of small order on curve25519 (from the libsodium blocklist); all must be refused.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def _key(secret: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(secret)


class ReferenceTests(SynchronousTestCase):
    def test_rfc7748_vector(self) -> None:
        """The reference X25519 reproduces RFC 7748's first test vector."""
        out = ref.x25519(bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
                         bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"))
        self.assertEqual(out.hex(), "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")


class HandshakeTests(SynchronousTestCase):
    def test_known_answer(self) -> None:
        """Fixed keys give the recorded AUTH and key material, on both sides and in the reference."""
        b = _key(B_SECRET)
        state = ntor.client1(NODE_ID, b.public_key().public_bytes_raw(), _key(X_SECRET))
        server_key, auth, material = ntor.server(b, NODE_ID, NODE_ID, b.public_key().public_bytes_raw(),
                                                 state.client_key, _key(Y_SECRET))
        ref_auth, ref_material = ref.ntor(ntor.PROTOID, NODE_ID, B_SECRET, X_SECRET, Y_SECRET)
        self.assertEqual(auth, ref_auth)
        self.assertEqual(material, ref_material)
        self.assertEqual(auth.hex(), KAT_AUTH)
        self.assertEqual(material[:32].hex(), KAT_KEYS_PREFIX)
        self.assertEqual(ntor.client2(state, server_key, auth), material)

    def test_fresh_handshakes_differ(self) -> None:
        """Ephemeral keys make every handshake's keys different (forward secrecy)."""
        b = X25519PrivateKey.generate()
        onion = b.public_key().public_bytes_raw()
        keys = set()
        for _ in range(3):
            state = ntor.client1(NODE_ID, onion)
            y_pub, auth, material = ntor.server(b, NODE_ID, NODE_ID, onion, state.client_key)
            self.assertEqual(ntor.client2(state, y_pub, auth), material)
            keys.add(material)
        self.assertEqual(len(keys), 3)

    def test_wrong_identity_refused_by_server(self) -> None:
        """A CREATE naming another node id or onion key is refused before any DH."""
        b = X25519PrivateKey.generate()
        onion = b.public_key().public_bytes_raw()
        state = ntor.client1(NODE_ID, onion)
        with self.assertRaises(HandshakeError):
            ntor.server(b, NODE_ID, b"\x01" * 20, onion, state.client_key)
        with self.assertRaises(HandshakeError):
            ntor.server(b, NODE_ID, NODE_ID, b"\x02" * 32, state.client_key)

    def test_impostor_relay_fails_at_created(self) -> None:
        """A relay without the private onion key cannot produce a valid AUTH."""
        real = X25519PrivateKey.generate()
        impostor = X25519PrivateKey.generate()
        onion = real.public_key().public_bytes_raw()
        state = ntor.client1(NODE_ID, onion)
        fake_onion = impostor.public_key().public_bytes_raw()
        y_pub, auth, _ = ntor.server(impostor, NODE_ID, NODE_ID, fake_onion, state.client_key)
        with self.assertRaises(HandshakeError):
            ntor.client2(state, y_pub, auth)

    def test_created_tampering_detected(self) -> None:
        """A man in the middle replacing Y or flipping AUTH is detected by the client."""
        b = X25519PrivateKey.generate()
        onion = b.public_key().public_bytes_raw()
        state = ntor.client1(NODE_ID, onion)
        y_pub, auth, _ = ntor.server(b, NODE_ID, NODE_ID, onion, state.client_key)
        with self.assertRaises(HandshakeError):
            ntor.client2(state, X25519PrivateKey.generate().public_key().public_bytes_raw(), auth)
        with self.assertRaises(HandshakeError):
            ntor.client2(state, y_pub, bytes([auth[0] ^ 1]) + auth[1:])

    def test_low_order_points_rejected(self) -> None:
        """Low-order client or server keys are refused (no known shared secret is ever used)."""
        b = X25519PrivateKey.generate()
        onion = b.public_key().public_bytes_raw()
        for point in LOW_ORDER:
            with self.assertRaises(HandshakeError, msg=point.hex()):
                ntor.server(b, NODE_ID, NODE_ID, onion, point)
            state = ntor.client1(NODE_ID, onion)
            with self.assertRaises(HandshakeError, msg=point.hex()):
                ntor.client2(state, point, bytes(32))
