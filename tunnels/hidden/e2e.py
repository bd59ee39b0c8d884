# -*- test-case-name: test.test_hidden_messages -*-
"""End-to-end encryption between two members, keyed from their ntor handshake.

Each direction has its own AES-256-GCM key; the nonce is the sender's 64-bit counter
(random start) sent in clear, checked against a replay window by the receiver.  The
rendezvous point relays the sealed bytes and can neither read nor alter them.

A datagram travels as one or more pieces (:mod:`tunnels.wire.fragments`), each sealed on
its own and padded to :data:`PLAINTEXT` bytes first: every E2E message the rendezvous point
relays has the same length, so it learns the number of cells and nothing else.
"""
from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..crypto.onion import MAX_SEQ, IntegrityError, ReplayError, new_counter
from ..crypto.replay import ReplayWindow
from ..errors import DecodeError
from ..wire.fragments import LENGTH_PREFIX, PIECE_HEADER, Piece, decode_piece, pad, split, unpad
from ..wire.relay import MAX_MESSAGE_DATA

OVERHEAD = 8 + 16
"""Bytes sealing adds: the sequence number (8) and the GCM tag (16)."""
PLAINTEXT = MAX_MESSAGE_DATA - OVERHEAD
"""Size of every sealed plaintext (a padded piece): one E2E message fills one cell."""
CHUNK = PLAINTEXT - LENGTH_PREFIX - PIECE_HEADER
"""Datagram bytes one E2E cell carries."""


def _nonce(seq8: bytes) -> bytes:
    return b"\x00\x00\x00\x00" + seq8


class E2ESession:
    """Seal and open end-to-end messages for one peer."""

    def __init__(self, material: bytes, initiator: bool) -> None:
        seeker_to_member, member_to_seeker = material[:32], material[32:64]
        self.send_aead = AESGCM(seeker_to_member if initiator else member_to_seeker)
        self.recv_aead = AESGCM(member_to_seeker if initiator else seeker_to_member)
        self.send_seq = new_counter()
        self.window = ReplayWindow()

    def seal(self, payload: bytes) -> bytes:
        """Encrypt and authenticate ``payload`` for the peer."""
        self.send_seq += 1
        if self.send_seq >= MAX_SEQ:
            raise IntegrityError("end-to-end counter exhausted")
        seq8 = self.send_seq.to_bytes(8, "big")
        return seq8 + self.send_aead.encrypt(_nonce(seq8), payload, None)

    def seal_datagram(self, payload: bytes, datagram_id: int) -> list[bytes]:
        """Seal ``payload`` as padded pieces of :data:`CHUNK` bytes, one per E2E message."""
        return [self.seal(pad(piece, PLAINTEXT)) for piece in split(payload, datagram_id, CHUNK)]

    def open_piece(self, sealed: bytes) -> Piece:
        """Open one E2E message into its piece; raises as :meth:`open`, or ``DecodeError``."""
        return decode_piece(unpad(self.open(sealed)))

    def open(self, sealed: bytes) -> bytes:
        """Decrypt a message from the peer; raises on replay, forgery or truncation."""
        if len(sealed) < OVERHEAD:
            raise DecodeError("truncated end-to-end message")
        seq = int.from_bytes(sealed[:8], "big")
        if not self.window.check(seq):
            raise ReplayError("replayed end-to-end message")
        try:
            payload = self.recv_aead.decrypt(_nonce(sealed[:8]), sealed[8:], None)
        except InvalidTag:
            raise IntegrityError("end-to-end message failed authentication") from None
        self.window.mark(seq)
        return payload


def reply_cipher(material: bytes) -> AESGCM:
    """The one-shot key sealing the rendezvous point and cookie inside the member's reply."""
    return AESGCM(material[64:96])
