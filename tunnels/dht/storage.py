# -*- test-case-name: test.test_dht_storage -*-
"""Peers announced to this node (``announce_peer``), with expiry and caps (pure, takes ``now``).

Bounds: at most ``max_keys`` info hashes, ``max_peers_per_key`` peers per info hash and
``max_peers_total`` peers overall.  A full key evicts a *random* peer for a newcomer, so
an attacker who floods one key with junk cannot lock out a genuine announce (and cannot
choose which entry goes); a full store refuses new keys.  Re-announcing refreshes an
entry's expiry.
"""
from __future__ import annotations

import random
from collections import OrderedDict

from tunnels.dht.krpc import Address


class PeerStore:
    """``info_hash -> {(host, port): expiry}``, bounded everywhere."""

    def __init__(self, *, ttl: float = 1800.0, max_keys: int = 1000, max_peers_per_key: int = 100,
                 max_peers_total: int = 20000, rng: random.Random | None = None) -> None:
        if ttl <= 0 or min(max_keys, max_peers_per_key, max_peers_total) < 1:
            raise ValueError("ttl and caps must be positive")
        self.ttl = ttl
        self.max_keys = max_keys
        self.max_peers_per_key = max_peers_per_key
        self.max_peers_total = max_peers_total
        self._rng = rng or random.Random()
        self._peers: dict[bytes, OrderedDict[Address, float]] = {}
        self._total = 0

    def __len__(self) -> int:
        """Number of stored peers over all keys."""
        return self._total

    def keys(self) -> list[bytes]:
        """The info hashes with at least one stored peer."""
        return list(self._peers)

    def add(self, info_hash: bytes, addr: Address, now: float) -> bool:
        """Store (or refresh) ``addr`` under ``info_hash``; ``False`` if the store is full."""
        peers = self._peers.get(info_hash)
        if peers is None:
            if len(self._peers) >= self.max_keys or self._total >= self.max_peers_total:
                self.expire(now)
                if len(self._peers) >= self.max_keys or self._total >= self.max_peers_total:
                    return False
            peers = self._peers[info_hash] = OrderedDict()
        if addr in peers:
            peers[addr] = now + self.ttl
            peers.move_to_end(addr)
            return True
        if len(peers) >= self.max_peers_per_key:
            victim = self._rng.choice(list(peers))
            del peers[victim]
            self._total -= 1
        elif self._total >= self.max_peers_total:
            if not peers:
                del self._peers[info_hash]
            return False
        peers[addr] = now + self.ttl
        self._total += 1
        return True

    def get(self, info_hash: bytes, now: float, limit: int = 50) -> list[Address]:
        """Up to ``limit`` live peers for ``info_hash`` (a random sample if there are more)."""
        peers = self._peers.get(info_hash)
        if not peers:
            return []
        live = [a for a, expiry in peers.items() if expiry > now]
        if len(live) > limit:
            live = self._rng.sample(live, limit)
        return live

    def expire(self, now: float) -> int:
        """Drop expired peers and empty keys; returns how many peers went."""
        gone = 0
        for info_hash in list(self._peers):
            peers = self._peers[info_hash]
            for addr in [a for a, expiry in peers.items() if expiry <= now]:
                del peers[addr]
                gone += 1
            if not peers:
                del self._peers[info_hash]
        self._total -= gone
        return gone
