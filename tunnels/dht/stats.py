# -*- test-case-name: test.test_dht_node -*-
"""Counters of a DHT node or lookup client: the packet path counts, it never logs."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DHTStats:
    """What happened to datagrams.  ``dropped`` is keyed by reason: decoding (``bad_bencode``,
    ``not_dict``, ``bad_tid``, ``bad_type``, ``bad_query``, ``bad_id``, ``bad_response``,
    ``bad_error``, ``oversized``), matching (``unsolicited``, ``wrong_source``), limits
    (``rate_limited`` per source prefix, ``upload_limited`` in total, ``verify_limited``,
    ``unanswerable``: no reply fits 3x the query), ``read_only``, ``bep42_id``, and
    ``refused_target`` (a query to a never-query address, refused before sending)."""

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
