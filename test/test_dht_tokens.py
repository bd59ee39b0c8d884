# -*- test-case-name: test.test_dht_tokens -*-
"""Announce tokens: tied to the IP, valid for one to two rotation intervals."""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tunnels.dht.tokens import TokenManager


class TokenTests(SynchronousTestCase):
    """Tokens from a rotating secret."""

    def test_valid_for_same_ip(self) -> None:
        """A token checks for the IP it was issued to, and no other."""
        tm = TokenManager(0.0)
        token = tm.issue("127.0.0.1", 0.0)
        self.assertTrue(tm.check(token, "127.0.0.1", 1.0))
        self.assertFalse(tm.check(token, "127.0.0.2", 1.0))

    def test_wrong_tokens(self) -> None:
        """Wrong bytes, wrong lengths and wrong types are refused."""
        tm = TokenManager(0.0)
        good = tm.issue("127.0.0.1", 0.0)
        for bad in (b"", b"x" * 8, good[:-1], good + b"\x00", None, 5, [good]):
            self.assertFalse(tm.check(bad, "127.0.0.1", 0.0), bad)

    def test_lifetime(self) -> None:
        """Valid across one rotation (5-10 minutes by default), refused after two."""
        tm = TokenManager(0.0, rotate_interval=300.0)
        token = tm.issue("127.0.0.1", 0.0)
        self.assertTrue(tm.check(token, "127.0.0.1", 299.0))
        self.assertTrue(tm.check(token, "127.0.0.1", 400.0))     # rotated once
        self.assertFalse(tm.check(token, "127.0.0.1", 601.0))    # rotated twice

    def test_long_silence(self) -> None:
        """After a long pause both secrets are renewed: old tokens are stale at once."""
        tm = TokenManager(0.0, rotate_interval=300.0)
        token = tm.issue("127.0.0.1", 0.0)
        self.assertFalse(tm.check(token, "127.0.0.1", 5000.0))

    def test_secrets_differ_per_manager(self) -> None:
        """Two nodes issue different tokens to the same IP."""
        self.assertNotEqual(TokenManager(0.0).issue("127.0.0.1", 0.0),
                            TokenManager(0.0).issue("127.0.0.1", 0.0))
