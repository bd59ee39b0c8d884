# -*- test-case-name: test.test_dht_node -*-
"""Per-source token buckets for incoming queries (pure, takes ``now``; bounded)."""
from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    """Allows ``rate`` queries a second per source with bursts of ``burst``.

    At most ``max_sources`` buckets are kept, least recently seen evicted first; an
    evicted source starts again with a full bucket, which bounds memory at the cost of
    letting an attacker with more than ``max_sources`` addresses reset its buckets.
    """

    def __init__(self, rate: float, burst: float, max_sources: int = 4096) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate, burst and max_sources must be positive")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: str, now: float) -> bool:
        """Take one token for ``source``; ``False`` if it has none left."""
        tokens, last = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed
