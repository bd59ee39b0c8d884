# -*- test-case-name: test.test_dht_tokens -*-
"""Announce tokens of BEP 5, tied to the requester's IP by a rotating secret (pure, takes ``now``).

A token is ``HMAC-SHA1(secret, ip)`` cut to 8 bytes.  The secret rotates every
``rotate_interval`` seconds and the previous one is still accepted, so a token stays valid
between one and two intervals (5-10 minutes by default, as BEP 5 suggests).  Tying it to
the IP stops a third party from announcing somebody else's address: it would need a token
obtained from that address.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
from collections.abc import Callable

TOKEN_LENGTH = 8


class TokenManager:
    """Issues and checks announce tokens."""

    def __init__(self, now: float, *, rotate_interval: float = 300.0,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        if rotate_interval <= 0:
            raise ValueError("rotate_interval must be positive")
        self.rotate_interval = rotate_interval
        self._random = random_bytes
        self._current = random_bytes(20)
        self._previous = random_bytes(20)
        self._start = now
        self._epoch = 0

    def _rotate(self, now: float) -> None:
        """Secrets change at fixed epochs ``start + n * rotate_interval``, however rarely
        the manager is consulted: a token from epoch n is accepted until epoch n + 2."""
        epoch = int((now - self._start) // self.rotate_interval)
        if epoch <= self._epoch:
            return
        if epoch == self._epoch + 1:
            self._previous = self._current
        else:                                    # both secrets are too old
            self._previous = self._random(20)
        self._current = self._random(20)
        self._epoch = epoch

    @staticmethod
    def _mac(secret: bytes, host: str) -> bytes:
        try:
            ip = socket.inet_aton(host)
        except OSError:
            ip = host.encode("utf-8", "replace")
        return hmac.new(secret, ip, hashlib.sha1).digest()[:TOKEN_LENGTH]

    def issue(self, host: str, now: float) -> bytes:
        """A token for a ``get_peers`` answer to ``host``."""
        self._rotate(now)
        return self._mac(self._current, host)

    def check(self, token: object, host: str, now: float) -> bool:
        """True if ``token`` was issued to ``host`` under the current or previous secret."""
        self._rotate(now)
        if not isinstance(token, bytes) or len(token) != TOKEN_LENGTH:
            return False
        return (hmac.compare_digest(token, self._mac(self._current, host))
                or hmac.compare_digest(token, self._mac(self._previous, host)))
