# -*- test-case-name: test.test_ratelimit -*-
"""Tests for :mod:`tunnels.ratelimit` (THREATS T8)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnels.ratelimit import AnswerBudget, KeyedTokenBuckets, ShareLimiter, TokenBucket, source_prefix


class TokenBucketTests(SynchronousTestCase):
    """Burst then rate, with explicit ``now`` values."""

    def test_burst_then_rate(self) -> None:
        """A full bucket gives exactly `burst` tokens, then `rate` per second."""
        bucket = TokenBucket(rate=3.0, burst=90.0, now=100.0)
        self.assertEqual(sum(bucket.take(100.0) for _ in range(1000)), 90)
        self.assertFalse(bucket.take(100.0))
        self.assertFalse(bucket.take(100.3))
        self.assertTrue(bucket.take(100.34))
        self.assertFalse(bucket.take(100.34))
        self.assertEqual(sum(bucket.take(101.34) for _ in range(10)), 3)

    def test_create_flood_single_source(self) -> None:
        """1000 requests over 1 s (Clock-driven) admit at most burst + rate * t."""
        clock = Clock()
        bucket = TokenBucket(rate=3.0, burst=90.0, now=clock.seconds())
        accepted = 0
        for _ in range(1000):
            clock.advance(0.001)
            accepted += bucket.take(clock.seconds())
        self.assertLessEqual(accepted, 90 + 3 * 1.0 + 1e-9)
        self.assertGreaterEqual(accepted, 92)

    def test_refill_capped_at_burst(self) -> None:
        """A long idle period refills to burst, not beyond."""
        bucket = TokenBucket(rate=10.0, burst=5.0, now=0.0)
        self.assertTrue(bucket.take(0.0, 5.0))
        self.assertEqual(bucket.tokens(1e6), 5.0)
        self.assertTrue(bucket.is_full(1e6))
        self.assertFalse(bucket.take(1e6, 5.5))

    def test_failed_take_costs_nothing(self) -> None:
        """A refused take leaves the tokens unchanged."""
        bucket = TokenBucket(rate=1.0, burst=2.0, now=0.0)
        self.assertFalse(bucket.take(0.0, 3.0))
        self.assertTrue(bucket.take(0.0, 2.0))

    def test_clock_going_backwards_mints_nothing(self) -> None:
        """Time going backwards neither refills nor lets the same interval count twice."""
        bucket = TokenBucket(rate=1.0, burst=1.0, now=10.0)
        self.assertTrue(bucket.take(10.0))
        self.assertFalse(bucket.take(5.0))
        self.assertFalse(bucket.take(10.5))
        self.assertTrue(bucket.take(11.0))

    def test_zero_rate(self) -> None:
        """With rate 0 the bucket never refills."""
        bucket = TokenBucket(rate=0.0, burst=1.0, now=0.0)
        self.assertTrue(bucket.take(0.0))
        self.assertFalse(bucket.take(1e9))

    def test_invalid_values(self) -> None:
        """Negative/NaN/infinite parameters and negative amounts raise ValueError."""
        nan, inf = float("nan"), float("inf")
        for rate, burst, now in [(-1, 1, 0), (1, 0, 0), (1, -1, 0), (nan, 1, 0), (inf, 1, 0),
                                 (1, nan, 0), (1, 1, nan), (1, inf, 0)]:
            self.assertRaises(ValueError, TokenBucket, rate, burst, now)
        bucket = TokenBucket(1.0, 1.0, 0.0)
        self.assertRaises(ValueError, bucket.take, 0.0, -1.0)
        self.assertRaises(ValueError, bucket.take, 0.0, nan)
        self.assertRaises(ValueError, bucket.take, nan)

    @settings(max_examples=200, deadline=None)
    @given(st.floats(0.0, 50.0), st.floats(1.0, 100.0),
           st.lists(st.floats(0.0, 10.0), min_size=1, max_size=200))
    def test_never_exceeds_burst_plus_rate(self, rate: float, burst: float, gaps: list[float]) -> None:
        """Over any run, accepted units <= burst + rate * elapsed."""
        now = 0.0
        bucket = TokenBucket(rate, burst, now)
        accepted = 0
        for gap in gaps:
            now += gap
            accepted += bucket.take(now)
        self.assertLessEqual(accepted, burst + rate * now + 1e-6)


class KeyedTokenBucketsTests(SynchronousTestCase):
    """Per-key buckets with a bounded table."""

    def test_keys_independent(self) -> None:
        """Draining one source does not affect another."""
        buckets = KeyedTokenBuckets(rate=1.0, burst=2.0, max_keys=10)
        self.assertEqual([buckets.take("a", 0.0) for _ in range(3)], [True, True, False])
        self.assertTrue(buckets.take("b", 0.0))

    def test_bounded(self) -> None:
        """A flood of distinct keys never holds more than max_keys buckets."""
        buckets = KeyedTokenBuckets(rate=1.0, burst=5.0, max_keys=100)
        for i in range(10000):
            buckets.take(f"10.0.{i // 256}.{i % 256}", i * 0.001)
            self.assertLessEqual(len(buckets), 100)
        self.assertEqual(len(buckets), 100)

    def test_lru_eviction(self) -> None:
        """The least recently used key is evicted first; a touched key survives."""
        buckets = KeyedTokenBuckets(rate=1.0, burst=1.0, max_keys=2)
        buckets.take("a", 0.0)
        buckets.take("b", 0.0)
        buckets.take("a", 0.0)  # a is now most recently used (and refused)
        buckets.take("c", 0.0)  # evicts b
        self.assertIn("a", buckets)
        self.assertNotIn("b", buckets)
        self.assertIn("c", buckets)
        self.assertFalse(buckets.take("a", 0.0))

    def test_prune_only_full(self) -> None:
        """prune drops refilled buckets only, so no decision changes."""
        buckets = KeyedTokenBuckets(rate=1.0, burst=2.0, max_keys=10)
        buckets.take("old", 0.0, 2.0)
        buckets.take("new", 9.5, 2.0)
        self.assertEqual(buckets.prune(10.0), 1)
        self.assertNotIn("old", buckets)
        self.assertIn("new", buckets)
        self.assertFalse(buckets.take("new", 10.0, 2.0))

    def test_invalid(self) -> None:
        """Bad max_keys or bucket parameters are refused at construction."""
        self.assertRaises(ValueError, KeyedTokenBuckets, 1.0, 1.0, 0)
        self.assertRaises(ValueError, KeyedTokenBuckets, -1.0, 1.0, 5)


class ShareLimiterTests(SynchronousTestCase):
    """test_max_joined_circuits_boundary with a per-source share."""

    def test_share_boundary(self) -> None:
        """Exactly the share cap is accepted, one more is refused, release restores."""
        limiter = ShareLimiter(capacity=100, share=0.1)
        self.assertEqual(limiter.per_source, 10)
        self.assertEqual([limiter.try_acquire("1.2.3.4") for _ in range(10)], [None] * 10)
        self.assertEqual(limiter.try_acquire("1.2.3.4"), "source share exceeded")
        self.assertEqual(limiter.count("1.2.3.4"), 10)
        self.assertIsNone(limiter.try_acquire("5.6.7.8"))
        limiter.release("1.2.3.4")
        self.assertIsNone(limiter.try_acquire("1.2.3.4"))
        self.assertEqual(limiter.total, 11)

    def test_capacity_boundary(self) -> None:
        """Exactly capacity slots are accepted overall; the next is 'full'; release restores."""
        limiter = ShareLimiter(capacity=10, share=0.5)
        for i in range(10):
            self.assertIsNone(limiter.try_acquire(f"s{i % 5}"))
        self.assertEqual(limiter.total, 10)
        self.assertEqual(limiter.try_acquire("fresh"), "full")
        limiter.release("s0")
        self.assertIsNone(limiter.try_acquire("fresh"))
        self.assertEqual(limiter.try_acquire("fresh"), "full")

    def test_cap_at_least_one(self) -> None:
        """A tiny share still gives each source one slot (max(1, int(cap*share)))."""
        limiter = ShareLimiter(capacity=5, share=0.01)
        self.assertEqual(limiter.per_source, 1)
        self.assertIsNone(limiter.try_acquire("a"))
        self.assertEqual(limiter.try_acquire("a"), "source share exceeded")

    def test_release_forgets_and_checks(self) -> None:
        """Releasing to zero forgets the source; releasing again raises ValueError."""
        limiter = ShareLimiter(capacity=4, share=1.0)
        limiter.try_acquire("a")
        limiter.release("a")
        self.assertEqual(limiter.count("a"), 0)
        self.assertEqual(limiter.total, 0)
        self.assertRaises(ValueError, limiter.release, "a")
        self.assertEqual(limiter.total, 0)

    def test_invalid(self) -> None:
        """Capacity below 1 and shares outside (0, 1] are refused."""
        for capacity, share in [(0, 0.5), (True, 0.5), (10, 0.0), (10, 1.5), (10, float("nan")), (2.5, 0.5)]:
            self.assertRaises(ValueError, ShareLimiter, capacity, share)

    @settings(max_examples=200, deadline=None)
    @given(st.integers(1, 50), st.floats(0.01, 1.0),
           st.lists(st.tuples(st.booleans(), st.integers(0, 6)), max_size=300))
    def test_invariants(self, capacity: int, share: float, ops: list[tuple[bool, int]]) -> None:
        """Under any acquire/release sequence, total <= capacity and each count <= cap."""
        limiter = ShareLimiter(capacity, share)
        cap = max(1, int(capacity * share))
        for acquire, src in ops:
            source = f"s{src}"
            if acquire:
                limiter.try_acquire(source)
            elif limiter.count(source):
                limiter.release(source)
            self.assertLessEqual(limiter.total, capacity)
            self.assertLessEqual(limiter.count(source), cap)
            self.assertEqual(limiter.total, sum(limiter.count(f"s{i}") for i in range(7)))


class AnswerBudgetTests(SynchronousTestCase):
    """Answers to unauthenticated sources: per /24 (/48) and node-wide (DESIGN.md property 14)."""

    def test_prefixes(self) -> None:
        """/24 for IPv4 (mapped addresses too), /48 for IPv6, anything else is its own key."""
        self.assertEqual(source_prefix("192.0.2.77"), "192.0.2")
        self.assertEqual(source_prefix("::ffff:192.0.2.1"), "192.0.2")
        self.assertEqual(source_prefix("2001:db8:aa:bb::1"), "2001:db8:aa::/48")
        self.assertEqual(source_prefix("2001:db8:aa:ff::2"), "2001:db8:aa::/48")
        self.assertEqual(source_prefix("example.org"), "example.org")
        self.assertEqual(source_prefix("fe80::1%eth0"), "fe80::/48")

    def test_per_prefix_and_total(self) -> None:
        """One /24 gets its burst then its rate; many /24s together get the node-wide burst."""
        clock = Clock()
        budget = AnswerBudget(rate=2.0, burst=5.0, total_rate=10.0, total_burst=20.0)
        self.assertEqual(sum(budget.allow(f"192.0.2.{i}", clock.seconds()) for i in range(100)), 5)
        clock.advance(1.0)
        self.assertEqual(sum(budget.allow("192.0.2.9", clock.seconds()) for _ in range(100)), 2)
        self.assertEqual(sum(budget.allow(f"10.{i}.0.1", clock.seconds()) for i in range(100)), 18)
        clock.advance(1.0)
        self.assertEqual(sum(budget.allow(f"10.{i}.1.1", clock.seconds()) for i in range(100, 200)), 10)


class SourceIdTests(SynchronousTestCase):
    def test_per_ip_and_per_port(self) -> None:
        """Sources are IPs (ports ignored) unless per_port (test networks), where each (IP, port)
        is its own source and its own network."""
        from tunnels.ratelimit import source_id, source_prefix
        self.assertEqual(source_id(("198.51.100.7", 4000)), "198.51.100.7")
        self.assertEqual(source_id(("198.51.100.7", 4001)), source_id(("198.51.100.7", 4000)))
        self.assertEqual(source_prefix(source_id(("198.51.100.7", 4000))), "198.51.100")
        a, b = source_id(("127.0.0.1", 4000), per_port=True), source_id(("127.0.0.1", 4001), per_port=True)
        self.assertNotEqual(a, b)
        self.assertEqual(source_prefix(a), a)
        self.assertNotEqual(source_prefix(a), source_prefix(b))
