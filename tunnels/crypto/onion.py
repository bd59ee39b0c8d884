# -*- test-case-name: test.test_onion -*-
"""Onion layers with a Sphinx-style header: constant cell size, per-hop integrity.

An onion cell's payload is a header of :data:`MAX_HOPS` slots of 32 bytes and a
body of :data:`BODY_SIZE` bytes.  A slot holds ``E(seq || 0^8) || E(tag)``, with
``E`` AES-256 (ECB, one block at a time) under a per-hop header key.

Forward (originator -> relays), hop *i* with keys ``k_i``:

1. ``x = D_i(header)``; the first block must end in eight zero bytes (a cheap
   forgery filter, and it makes cells beyond :data:`MAX_HOPS` hops impossible);
2. ``seq`` must be new in the hop's replay window;
3. AES-256-GCM-decrypt the body under ``(k_i, seq)`` with the tag from the slot
   and the *rest of the header* as associated data: any change to any byte of the
   cell is caught here, by the next honest hop, so no tag travels on;
4. the next header is ``x[32:] || F_i`` where the filler ``F_i`` is a PRF of
   ``(k_i, seq)`` the originator can predict (it precomputes every MAC).

Every hop transforms the whole header and body, so no header field has the same
value at two hops, and the cell keeps its size.

Backward (last hop -> originator): the last hop encrypts its message with
AES-GCM under its own counter and fills the header with junk derived from its
key; each relay on the way adds a layer: GCM over the body with **the slot it
drops from the end of the header as associated data**, a new slot in front, the
rest of the header re-encrypted.  The originator removes every header layer,
checks that the surviving junk is what the last hop's key predicts, recomputes
from that junk every slot the relays dropped (as Sphinx computes its filler) and
then checks every GCM tag.  So every bit of a backward cell is authenticated:
nothing a relay or a link alters is delivered.

All (key, nonce) pairs are unique: each key belongs to one hop and one direction
and its nonce is that direction's own 64-bit counter.
"""
from __future__ import annotations

import secrets
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ProtocolViolation
from ..settings import MAX_HOPS
from ..wire.cells import BODY_SIZE, HEADER_SIZE, SLOT

MAX_SEQ = 2 ** 64 - 2
"""A counter at this value ends the circuit before any nonce could repeat."""

_ZERO8 = bytes(8)
_FILL_A = b"\x00" * 7 + b"\x01"
_FILL_B = b"\x00" * 7 + b"\x02"
_JUNK_SUFFIXES = tuple(i.to_bytes(8, "big") for i in range(16, 16 + 2 * (MAX_HOPS - 1)))


class IntegrityError(ProtocolViolation):
    """An onion layer failed authentication (tampered, forged or misrouted cell)."""


class ReplayError(ProtocolViolation):
    """The cell's sequence number was already seen or is left of the window."""


def new_counter() -> int:
    """A random starting point for a 64-bit cell counter (unlinkable across hops)."""
    return secrets.randbits(62)


def _ecb(key: bytes) -> Cipher[modes.ECB]:
    return Cipher(algorithms.AES(key), modes.ECB())


class HopKeys:
    """The six keys one hop shares with the originator, ready for per-cell use."""

    __slots__ = ("fwd_aead", "fwd_hdr_enc", "fwd_hdr_dec", "fwd_fill",
                 "bwd_aead", "bwd_hdr_enc", "bwd_hdr_dec", "bwd_junk")

    def __init__(self, material: bytes) -> None:
        if len(material) != 192:
            raise ValueError("hop key material must be 192 bytes")
        k = [material[i:i + 32] for i in range(0, 192, 32)]
        self.fwd_aead = AESGCM(k[0])
        self.fwd_hdr_enc = _ecb(k[1]).encryptor()
        self.fwd_hdr_dec = _ecb(k[1]).decryptor()
        self.fwd_fill = _ecb(k[2]).encryptor()
        self.bwd_aead = AESGCM(k[3])
        self.bwd_hdr_enc = _ecb(k[4]).encryptor()
        self.bwd_hdr_dec = _ecb(k[4]).decryptor()
        self.bwd_junk = _ecb(k[5]).encryptor()

    def filler(self, seq8: bytes) -> bytes:
        """The slot this hop appends after forwarding the cell numbered ``seq8``."""
        return self.fwd_fill.update(seq8 + _FILL_A + seq8 + _FILL_B)

    def junk(self, seq8: bytes) -> bytes:
        """Header junk the last hop puts behind its slot in backward cell ``seq8``."""
        return self.bwd_junk.update(b"".join(seq8 + s for s in _JUNK_SUFFIXES))


def _nonce(seq8: bytes) -> bytes:
    return _ZERO8[:4] + seq8


class _RandomPool:
    """CSPRNG bytes fetched 64 KiB at a time and never handed out twice.

    Header junk must be unpredictable (constant junk would tell the last hop its position) and
    never repeat (repeated junk would link two circuits at a shared exit); one ``getrandom``
    per cell cost more than the whole layer.
    """

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self.buffer = b""
        self.offset = 0

    def take(self, count: int) -> bytes:
        if self.offset + count > len(self.buffer):
            self.buffer = secrets.token_bytes(max(self.size, count))
            self.offset = 0
        start = self.offset
        self.offset = start + count
        return self.buffer[start:self.offset]


_JUNK = _RandomPool()


# --- forward ---------------------------------------------------------------------------

def wrap_forward(hops: Sequence[HopKeys], seqs: Sequence[int], body: bytes) -> bytes:
    """Build the onion payload that delivers ``body`` to the last of ``hops``.

    ``seqs[i]`` is the forward sequence number to use at hop *i*.
    """
    n = len(hops)
    if not 0 < n <= MAX_HOPS or len(seqs) != n:
        raise ValueError(f"need 1..{MAX_HOPS} hops with one sequence number each")
    if len(body) != BODY_SIZE:
        raise ValueError(f"body must be {BODY_SIZE} bytes")
    seq8s = [s.to_bytes(8, "big") for s in seqs]
    tail = b""
    for i in range(n - 1):
        tail = hops[i].fwd_hdr_dec.update(tail) + hops[i].filler(seq8s[i])
    rest = _JUNK.take(HEADER_SIZE - SLOT - len(tail)) + tail
    header = b""
    for i in range(n - 1, -1, -1):
        if header:  # hop i sees hop i+1's header, minus the slot it will append itself
            rest = hops[i].fwd_hdr_enc.update(header[:-SLOT])
        sealed = hops[i].fwd_aead.encrypt(_nonce(seq8s[i]), body, rest)
        body = sealed[:-16]
        header = hops[i].fwd_hdr_enc.update(seq8s[i] + _ZERO8 + sealed[-16:]) + rest
    return header + body


def peel_forward(keys: HopKeys, window: object, payload: bytes) -> tuple[int, bytes]:
    """Remove this hop's layer: returns ``(seq, next payload)``.

    ``window`` is the hop's :class:`~tunnels.crypto.replay.ReplayWindow`; it is
    only checked here, the caller marks ``seq`` once it accepts the cell.  Raises
    :class:`ReplayError` or :class:`IntegrityError`.
    """
    header = payload[:HEADER_SIZE]
    x = keys.fwd_hdr_dec.update(header)
    if x[8:16] != _ZERO8:
        raise IntegrityError("bad slot")
    seq8 = x[:8]
    seq = int.from_bytes(seq8, "big")
    if not window.check(seq):  # type: ignore[attr-defined]
        raise ReplayError("replayed cell")
    try:
        body = keys.fwd_aead.decrypt(_nonce(seq8), payload[HEADER_SIZE:] + x[16:32], header[SLOT:])
    except InvalidTag:
        raise IntegrityError("forward layer failed authentication") from None
    return seq, x[SLOT:] + keys.filler(seq8) + body


# --- backward --------------------------------------------------------------------------

def originate_backward(keys: HopKeys, seq: int, body: bytes) -> bytes:
    """The last hop's cell to the originator carrying ``body``."""
    if len(body) != BODY_SIZE:
        raise ValueError(f"body must be {BODY_SIZE} bytes")
    seq8 = seq.to_bytes(8, "big")
    sealed = keys.bwd_aead.encrypt(_nonce(seq8), body, None)
    return keys.bwd_hdr_enc.update(seq8 + _ZERO8 + sealed[-16:] + keys.junk(seq8)) + sealed[:-16]


def add_backward(keys: HopKeys, seq: int, payload: bytes) -> bytes:
    """A relay's layer on a backward cell from the next hop.

    The slot dropped from the end of the header is the GCM layer's associated data,
    so the originator, who can recompute it, checks those bytes too.
    """
    seq8 = seq.to_bytes(8, "big")
    kept = HEADER_SIZE - SLOT
    sealed = keys.bwd_aead.encrypt(_nonce(seq8), payload[HEADER_SIZE:], payload[kept:HEADER_SIZE])
    return keys.bwd_hdr_enc.update(seq8 + _ZERO8 + sealed[-16:] + payload[:kept]) + sealed[:-16]


def dropped_slots(hops: Sequence[HopKeys], junk: bytes) -> list[bytes]:
    """The slot each relay of ``hops`` dropped from a backward cell whose last hop wrote ``junk``.

    The last hop's header behind its own slot is ``E_n(junk)`` (ECB works block by
    block); relay *i* drops the last slot of what reaches it and re-encrypts the rest
    under its own header key.  ``result[i]`` is what ``hops[i]`` dropped, for every
    hop but the last (which drops nothing).
    """
    tail = hops[-1].bwd_hdr_enc.update(junk)
    dropped = [b""] * (len(hops) - 1)
    for i in range(len(hops) - 2, -1, -1):
        dropped[i] = tail[-SLOT:]
        if i:
            tail = hops[i].bwd_hdr_enc.update(tail[:-SLOT])
    return dropped


def unwrap_backward(hops: Sequence[HopKeys], windows: Sequence[object], payload: bytes) -> tuple[list[int], bytes]:
    """Remove every layer of a backward cell from the last of ``hops``.

    Returns the per-hop sequence numbers (for the caller to mark once accepted)
    and the body.  Raises :class:`ReplayError` or :class:`IntegrityError`; in
    either case nothing is marked and nothing is delivered.
    """
    header = payload[:HEADER_SIZE]
    slots = []
    for keys, window in zip(hops, windows):
        x = keys.bwd_hdr_dec.update(header)
        if x[8:16] != _ZERO8:
            raise IntegrityError("bad backward slot")
        seq8 = x[:8]
        if not window.check(int.from_bytes(seq8, "big")):  # type: ignore[attr-defined]
            raise ReplayError("replayed backward cell")
        slots.append((seq8, x[16:32]))
        header = x[SLOT:]
    junk = hops[-1].junk(slots[-1][0])
    if header != junk[:len(header)]:
        raise IntegrityError("backward header junk was altered")
    dropped = dropped_slots(hops, junk) if len(hops) > 1 else []
    body = payload[HEADER_SIZE:]
    last = len(hops) - 1
    try:
        for i, (keys, (seq8, tag)) in enumerate(zip(hops, slots)):
            body = keys.bwd_aead.decrypt(_nonce(seq8), body + tag, dropped[i] if i < last else None)
    except InvalidTag:
        raise IntegrityError("backward layer failed authentication") from None
    return [int.from_bytes(seq8, "big") for seq8, _ in slots], body
