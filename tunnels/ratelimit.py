# -*- test-case-name: test.test_ratelimit -*-
"""Admission control primitives: token buckets and per-source shares.

A single source that floods CREATE (or EXTEND) cells makes a relay burn CPU on
handshakes and fill ``max_joined_circuits`` so honest clients are refused
(THREATS T8).  A spoofed source makes a node answer someone else, so every answer
an unauthenticated datagram can draw is budgeted per source prefix and in total
(:class:`AnswerBudget`, DESIGN.md property 14).  These pure classes take the time
as ``now`` (seconds, from the injected ``IReactorTime.seconds()``), so tests drive
them with explicit values.
"""
from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

__all__ = ["AnswerBudget", "KeyedTokenBuckets", "LogBudget", "ShareLimiter", "SourceShares", "TokenBucket",
           "source_id", "source_prefix"]

IPV4_PREFIX = 24
"""Bits of an IPv4 source that one operator is assumed to hold (a /24)."""
IPV6_PREFIX = 48
"""Bits of an IPv6 source that one operator is assumed to hold (a /48, a typical site)."""


def source_id(address: tuple[str, int], per_port: bool = False) -> str:
    """The key of per-source limits for a datagram from ``address`` (host, port).

    Normally a source is its IP: one IP, one share, whatever its ports.  ``per_port`` makes
    every (IP, port) its own source and its own network (``"host|port"``): that is the
    test-network mode, where every node of a local network shares 127.0.0.1 and would
    otherwise count as one operator (Tor's ``TestingTorNetwork`` relaxes its per-address rules
    for the same reason).
    """
    return f"{address[0]}|{address[1]}" if per_port else address[0]


def source_prefix(host: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of ``host`` (an IP, or a :func:`source_id`), as a
    string key; a per-port source id (test networks) is its own network.

    IPv4-mapped IPv6 addresses count as their IPv4 address.  Dotted quads take a
    fast path (no :mod:`ipaddress` parsing), since this runs once per answered
    datagram.  Anything that is not an address is its own key.
    """
    if "|" in host:
        return host
    if ":" not in host:
        net, dot, _ = host.rpartition(".")
        if dot and net.count(".") == 2:
            return net
        return host
    try:
        ip = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return source_prefix(str(ip.ipv4_mapped))
    return str(ipaddress.IPv6Network((int(ip) >> (128 - IPV6_PREFIX) << (128 - IPV6_PREFIX), IPV6_PREFIX)))


def _finite(name: str, value: float) -> float:
    """Return ``value`` as a float, refusing NaN and infinities.

    A NaN ``now`` or ``amount`` compares false with everything and would let
    every request through; an infinite rate would disable the limit silently.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


class TokenBucket:
    """A token bucket: ``burst`` tokens at most, refilled at ``rate`` per second.

    It caps a source to ``burst + rate * t`` operations over any window of
    length ``t``, which is Tor's per-IP circuit-creation rule (3/s, burst 90).
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        """Create a full bucket at time ``now``.

        :raises ValueError: ``rate`` is negative, ``burst`` not positive, or a
            value is not finite.
        """
        self._rate = _finite("rate", rate)
        self._burst = _finite("burst", burst)
        if self._rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        if self._burst <= 0:
            raise ValueError(f"burst must be > 0, got {burst}")
        self._tokens = self._burst
        self._last = _finite("now", now)

    def _refill(self, now: float) -> None:
        """Add the tokens earned since the last call.

        A clock that goes backwards earns nothing and does not move ``_last``
        back, so it cannot be used to mint tokens twice for the same interval.
        """
        now = _finite("now", now)
        if now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (refills first)."""
        self._refill(now)
        return self._tokens

    def is_full(self, now: float) -> bool:
        """Whether the bucket is full at ``now``, i.e. same as a brand-new bucket."""
        return self.tokens(now) >= self._burst

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens at ``now``; return ``False`` (taking nothing) if short.

        :raises ValueError: ``amount`` is negative or not finite (a negative
            amount would mint tokens).
        """
        amount = _finite("amount", amount)
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount}")
        self._refill(now)
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True


class KeyedTokenBuckets:
    """One :class:`TokenBucket` per key (source IP, /24, ...), at most ``max_keys``.

    A spoofing or Sybil attacker could otherwise grow the table without bound.
    When full, the least recently used key is evicted.  Eviction is safe for
    keys whose bucket is full again (they are indistinguishable from a new key);
    evicting a partly drained bucket hands that key a fresh burst, so size
    ``max_keys`` above the number of sources active within ``burst / rate``
    seconds and pair this with a global bucket.
    """

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        """Create an empty table.

        :raises ValueError: ``max_keys`` is below 1 or the bucket parameters are bad.
        """
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        TokenBucket(rate, burst, 0.0)  # validate the parameters now, not on first use
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        """Number of keys held (never above ``max_keys``)."""
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` currently has a bucket."""
        return key in self._buckets

    def take(self, key: Hashable, now: float, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens from ``key``'s bucket at ``now``."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, amount)

    def prune(self, now: float) -> int:
        """Drop every bucket that is full again at ``now``; return how many.

        Forgetting a full bucket changes no decision, so this only frees memory.
        """
        full = [key for key, bucket in self._buckets.items() if bucket.is_full(now)]
        for key in full:
            del self._buckets[key]
        return len(full)


class ShareLimiter:
    """Caps the total of a resource and each source's share of it.

    With only a global ``max_joined_circuits``, one source can take every slot
    and lock honest clients out (py-ipv8 weakness W14).  Each source may hold at
    most ``max(1, int(capacity * share))`` slots.  Memory is bounded by
    ``capacity``: sources with no slot are forgotten.
    """

    FULL: Final = "full"
    SHARE_EXCEEDED: Final = "source share exceeded"

    def __init__(self, capacity: int, share: float) -> None:
        """Create an empty limiter.

        :raises ValueError: ``capacity`` below 1 or ``share`` not in (0, 1].
        """
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        share = _finite("share", share)
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self._capacity = capacity
        self._cap = max(1, int(capacity * share))
        self._counts: dict[str, int] = {}
        self._total = 0

    @property
    def capacity(self) -> int:
        """The global limit."""
        return self._capacity

    @property
    def per_source(self) -> int:
        """The most slots a single source may hold."""
        return self._cap

    @property
    def total(self) -> int:
        """Slots currently held by all sources."""
        return self._total

    def count(self, source: str) -> int:
        """Slots currently held by ``source``."""
        return self._counts.get(source, 0)

    def try_acquire(self, source: str) -> str | None:
        """Take a slot for ``source``; return ``None`` or the refusal reason."""
        if self._total >= self._capacity:
            return self.FULL
        held = self._counts.get(source, 0)
        if held >= self._cap:
            return self.SHARE_EXCEEDED
        self._counts[source] = held + 1
        self._total += 1
        return None

    def release(self, source: str) -> None:
        """Give back one slot of ``source``.

        :raises ValueError: ``source`` holds no slot (a double release would
            otherwise let the total drift below the truth and over-admit).
        """
        held = self._counts.get(source, 0)
        if held <= 0:
            raise ValueError(f"release without acquire for source {source!r}")
        if held == 1:
            del self._counts[source]
        else:
            self._counts[source] = held - 1
        self._total -= 1


class LogBudget:
    """How many log lines untrusted input may cause: ``burst`` at once, ``per_minute`` after.

    Every path that a stranger's datagram can reach counts what it drops; when it also
    logs (a handler failed in a way worth a human's look), it asks this budget first, so
    a flood of crafted datagrams costs at most a few lines a minute (DESIGN.md property
    15).  Lines refused are counted in :attr:`suppressed`.
    """

    __slots__ = ("_bucket", "suppressed")

    def __init__(self, now: float, per_minute: float = 5.0, burst: float = 5.0) -> None:
        """Create a full budget at ``now`` (seconds).

        :raises ValueError: as :class:`TokenBucket` for bad rates.
        """
        self._bucket = TokenBucket(per_minute / 60.0, burst, now)
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        """Whether one more line may be logged at ``now``; counts it as suppressed if not."""
        if self._bucket.take(now):
            return True
        self.suppressed += 1
        return False


class SourceShares:
    """:class:`ShareLimiter` per source IP and per source prefix (/24, /48) at once.

    Per-IP shares alone let a handful of addresses in one network take every slot
    (six IPs took all 100 joined-circuit slots of a relay); a prefix share caps what
    one operator's network can hold, while other networks keep the rest.
    """

    PREFIX_SHARE_EXCEEDED: Final = "prefix share exceeded"

    def __init__(self, capacity: int, ip_share: float, prefix_share: float) -> None:
        """:raises ValueError: as :class:`ShareLimiter` for either share."""
        self.by_ip = ShareLimiter(capacity, ip_share)
        self.by_prefix = ShareLimiter(capacity, prefix_share)

    def try_acquire(self, host: str) -> str | None:
        """Take a slot for ``host``; ``None`` or the refusal reason (``full``, ``source share
        exceeded``, ``prefix share exceeded``)."""
        refusal = self.by_ip.try_acquire(host)
        if refusal is not None:
            return refusal
        if self.by_prefix.try_acquire(source_prefix(host)) is not None:
            self.by_ip.release(host)
            return self.PREFIX_SHARE_EXCEEDED
        return None

    def release(self, host: str) -> None:
        """Give back the slot of ``host``.  :raises ValueError: ``host`` holds none."""
        self.by_ip.release(host)
        self.by_prefix.release(source_prefix(host))

    @property
    def total(self) -> int:
        """Slots held by all sources."""
        return self.by_ip.total


class AnswerBudget:
    """How many answers a node may send to unauthenticated sources: per prefix and in total.

    UDP sources are spoofable, so an answer to an unauthenticated datagram is a
    datagram aimed at whoever the sender names.  Each answer takes a token from the
    bucket of the source's /24 (/48) and from a node-wide bucket; without both, no
    answer goes out (DESIGN.md property 14; QUIC's anti-amplification limit, RFC 9000
    section 8, is the same idea per address).  Memory is bounded by ``max_keys``.
    """

    def __init__(self, rate: float, burst: float, total_rate: float, total_burst: float,
                 max_keys: int = 4096) -> None:
        """``rate``/``burst`` per prefix, ``total_rate``/``total_burst`` for the node (answers
        per second, answers).  :raises ValueError: as :class:`TokenBucket`."""
        self.per_prefix = KeyedTokenBuckets(rate, burst, max_keys)
        self.total = TokenBucket(total_rate, total_burst, 0.0)

    def allow(self, host: str, now: float) -> bool:
        """Whether one answer to ``host`` may go out at ``now`` (takes the tokens if so)."""
        if self.total.tokens(now) < 1.0 or not self.per_prefix.take(source_prefix(host), now):
            return False
        return self.total.take(now)
