# -*- test-case-name: test.test_dht_node -*-
"""Counters of a DHT node or lookup client: the packet path counts, it never logs."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DHTStats:
    """What happened to datagrams.  ``dropped`` is keyed by reason (``bad_bencode``,
    ``bad_tid``, ``unsolicited``, ``wrong_source``, ``rate_limited`` ...)."""

    received: int = 0
    sent: int = 0
    queries_received: int = 0
    queries_sent: int = 0
    responses_received: int = 0
    errors_received: int = 0
    errors_sent: int = 0
    timeouts: int = 0
    send_failures: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def total_dropped(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.dropped.values())

    def drop(self, reason: str) -> None:
        """Count one dropped datagram."""
        self.dropped[reason] += 1
