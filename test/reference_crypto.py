"""An independent, slow reference of X25519 (RFC 7748) and ntor, for known-answer tests.

Written from the RFC and tor-spec 5.1.4 without using :mod:`tunnels` or any
curve library, so a shared bug cannot make both sides agree.
"""
from __future__ import annotations

import hashlib
import hmac

P = 2 ** 255 - 19
A24 = 121665


def x25519(scalar: bytes, u_bytes: bytes) -> bytes:
    """RFC 7748 section 5 (Montgomery ladder)."""
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    k_int = int.from_bytes(k, "little")
    u = bytearray(u_bytes)
    u[31] &= 127
    x1 = int.from_bytes(u, "little")
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (k_int >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, x1 * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, e * (aa + A24 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def public(scalar: bytes) -> bytes:
    """The X25519 public key of ``scalar``."""
    return x25519(scalar, (9).to_bytes(32, "little"))


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-Expand with SHA-256."""
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def ntor(protoid: bytes, node_id: bytes, b: bytes, x: bytes, y: bytes) -> tuple[bytes, bytes]:
    """Server-side ntor from private scalars: returns ``(AUTH, key material of 192 bytes)``."""
    big_b, big_x, big_y = public(b), public(x), public(y)
    secret_input = x25519(y, big_x) + x25519(b, big_x) + node_id + big_b + big_x + big_y + protoid

    def h(message: bytes, tweak: bytes) -> bytes:
        return hmac.new(protoid + tweak, message, hashlib.sha256).digest()
    key_seed = h(secret_input, b":key_extract")
    verify = h(secret_input, b":verify")
    auth = h(verify + node_id + big_b + big_y + big_x + protoid + b"Server", b":mac")
    return auth, hkdf_expand(key_seed, protoid + b":key_expand", 192)
