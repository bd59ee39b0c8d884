# -*- test-case-name: test.test_exitpolicy -*-
"""Tests for :mod:`tunnels.exit.policy` (THREATS T7, table 3.5)."""
from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from test.test_addresses import ALLOWED, FORBIDDEN, _v4_text, reference_v4_forbidden
from tunnels.exit.policy import DEFAULT_DENY_PORTS, DestinationGuard, ExitPolicy

#: Ports from the T7 test plan; 40000 stands for an ordinary allowed port.
TABLE_PORTS = (0, 53, 123, 1900, 11211, 40000)
ALLOWED_PORT = 40000


class ExitPolicyTableTests(SynchronousTestCase):
    """test_exit_policy_table: special-purpose ranges x ports."""

    def test_forbidden_ranges_every_port(self) -> None:
        """Every special-purpose address is refused on every table port."""
        policy = ExitPolicy()
        for ip, _ in FORBIDDEN:
            for port in TABLE_PORTS:
                self.assertIsNotNone(policy.check(ip, port), (ip, port))

    def test_forbidden_ranges_even_with_allow_list(self) -> None:
        """An allow-list listing the port does not open a forbidden address."""
        policy = ExitPolicy(allow_ports=(53, 123, 40000))
        for ip, reason in FORBIDDEN:
            for port in (53, 123, ALLOWED_PORT):
                self.assertEqual(policy.check(ip, port), reason, (ip, port))

    def test_public_addresses_port_rules(self) -> None:
        """Public addresses: only the ordinary high port passes the default policy."""
        policy = ExitPolicy()
        for ip in ALLOWED:
            for port in TABLE_PORTS:
                result = policy.check(ip, port)
                if port == ALLOWED_PORT:
                    self.assertIsNone(result, (ip, port))
                else:
                    self.assertIsNotNone(result, (ip, port))

    def test_port_reasons(self) -> None:
        """Port refusals say why: port 0, below 1024, denied vector, not allow-listed."""
        policy = ExitPolicy()
        self.assertEqual(policy.check("8.8.8.8", 0), "port 0")
        self.assertEqual(policy.check("8.8.8.8", 53), "port 53 below 1024")
        self.assertEqual(policy.check("8.8.8.8", 11211), "port 11211 denied (memcached amplification)")
        self.assertEqual(ExitPolicy(allow_ports=(53,)).check("8.8.8.8", 54), "port 54 not in allow-list")

    def test_default_floor_boundary(self) -> None:
        """Without an allow-list, 1023 is refused and 1024 and 65535 are allowed."""
        policy = ExitPolicy()
        self.assertIsNotNone(policy.check("1.1.1.1", 1023))
        self.assertIsNone(policy.check("1.1.1.1", 1024))
        self.assertIsNone(policy.check("1.1.1.1", 65535))

    def test_every_default_deny_port_refused(self) -> None:
        """Each documented amplification port is refused by default, with its reason."""
        policy = ExitPolicy()
        self.assertEqual(set(policy.deny_ports), set(DEFAULT_DENY_PORTS))
        for port in (1900, 3702, 5353, 11211):
            self.assertIn(port, policy.deny_ports)
        for port, why in DEFAULT_DENY_PORTS.items():
            self.assertEqual(policy.check("8.8.8.8", port), f"port {port} denied ({why})")

    def test_deny_beats_allow(self) -> None:
        """Listing a denied port in allow_ports does not re-open it."""
        policy = ExitPolicy(allow_ports=(53, 11211))
        self.assertIsNone(policy.check("8.8.8.8", 53))
        self.assertIsNotNone(policy.check("8.8.8.8", 11211))

    def test_allow_list_may_include_low_ports(self) -> None:
        """An explicit allow-list can open a port below 1024 (e.g. DNS)."""
        self.assertIsNone(ExitPolicy(allow_ports=(53,)).check("1.1.1.1", 53))

    def test_malformed_inputs_give_reasons(self) -> None:
        """Wire-supplied junk yields a reason, never an exception."""
        policy = ExitPolicy()
        for ip, port in [("not-an-ip", 40000), ("", 40000), (None, 40000), (2130706433, 40000),
                         ("8.8.8.8", -1), ("8.8.8.8", 65536), ("8.8.8.8", True), ("8.8.8.8", "80"),
                         ("8.8.8.8", 40000.0)]:
            self.assertIsNotNone(policy.check(ip, port), (ip, port))  # type: ignore[arg-type]

    def test_own_addresses_refused(self) -> None:
        """The exit's own addresses are refused in any spelling."""
        policy = ExitPolicy(own_addresses=frozenset({"198.41.0.4", "2606:4700:0:0::1111"}))
        for ip in ["198.41.0.4", "::ffff:198.41.0.4", "2606:4700::1111", "2606:4700:0::1111"]:
            self.assertEqual(policy.check(ip, ALLOWED_PORT), "exit's own address", ip)
        self.assertIsNone(policy.check("198.41.0.5", ALLOWED_PORT))

    def test_test_network_mode(self) -> None:
        """allow_non_global opens loopback/private but never multicast, broadcast or 0.0.0.0."""
        policy = ExitPolicy(allow_non_global=True)
        for ip in ["127.0.0.1", "10.0.0.5", "::1", "fd00::1"]:
            self.assertIsNone(policy.check(ip, ALLOWED_PORT), ip)
        for ip in ["224.0.0.1", "255.255.255.255", "0.0.0.0", "::", "ff02::1"]:
            self.assertIsNotNone(policy.check(ip, ALLOWED_PORT), ip)
        self.assertIsNone(ExitPolicy().check("8.8.8.8", ALLOWED_PORT))
        self.assertIsNotNone(ExitPolicy().check("127.0.0.1", ALLOWED_PORT))

    def test_frozen_and_validated(self) -> None:
        """The policy is immutable and refuses bad field values at construction."""
        policy = ExitPolicy()
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, policy, "allow_non_global", True)
        self.assertRaises(ValueError, ExitPolicy, allow_ports=(0,))
        self.assertRaises(ValueError, ExitPolicy, deny_ports=(70000,))
        self.assertRaises(TypeError, ExitPolicy, allow_ports=[53])
        self.assertRaises(TypeError, ExitPolicy, allow_non_global=1)
        self.assertRaises(TypeError, ExitPolicy, own_addresses={"1.2.3.4"})
        self.assertRaises(ValueError, ExitPolicy, own_addresses=frozenset({"not-an-ip"}))
        relaxed = dataclasses.replace(policy, allow_non_global=True)
        self.assertTrue(relaxed.allow_non_global)
        self.assertFalse(policy.allow_non_global)

    @settings(max_examples=1000, deadline=None)
    @given(st.integers(0, 0xFFFFFFFF), st.integers(-1, 70000))
    def test_matches_reference_policy(self, value: int, port: int) -> None:
        """Random (ip, port) agrees with an independent reference of the default policy."""
        expected = (not reference_v4_forbidden(value) and 1024 <= port <= 65535
                    and port not in DEFAULT_DENY_PORTS)
        self.assertEqual(ExitPolicy().check(_v4_text(value), port) is None, expected)


class CheckResolvedTests(SynchronousTestCase):
    """test_dns_rebinding_refused: every resolved address must pass."""

    def test_public_only_ok(self) -> None:
        """An all-public answer is accepted and the first address is pinned."""
        policy = ExitPolicy()
        self.assertEqual(policy.check_resolved(["8.8.8.8", "8.8.4.4"], ALLOWED_PORT), ("8.8.8.8", None))
        self.assertEqual(policy.check_resolved(["2606:4700::1111"], ALLOWED_PORT), ("2606:4700::1111", None))

    def test_private_only_refused(self) -> None:
        """Answers of 127.0.0.1 or 10.0.0.5 alone are refused."""
        policy = ExitPolicy()
        for answer in (["127.0.0.1"], ["10.0.0.5"], ["::1"], ["::ffff:192.168.1.1"]):
            ip, reason = policy.check_resolved(answer, ALLOWED_PORT)
            self.assertIsNone(ip)
            self.assertIsNotNone(reason)

    def test_mixed_refused(self) -> None:
        """A public+private answer is refused whatever the order (DNS rebinding)."""
        policy = ExitPolicy()
        for answer in (["8.8.8.8", "127.0.0.1"], ["10.0.0.5", "1.1.1.1"], ["1.1.1.1", "fe80::1"]):
            ip, reason = policy.check_resolved(answer, ALLOWED_PORT)
            self.assertIsNone(ip, answer)
            self.assertIn("refused", reason or "")

    def test_empty_refused(self) -> None:
        """An empty answer is refused with a reason."""
        self.assertEqual(ExitPolicy().check_resolved([], ALLOWED_PORT),
                         (None, "name resolved to no addresses"))

    def test_port_and_junk_refused(self) -> None:
        """A bad port or a non-IP in the answer refuses the whole answer."""
        policy = ExitPolicy()
        self.assertIsNone(policy.check_resolved(["8.8.8.8"], 11211)[0])
        self.assertIsNone(policy.check_resolved(["8.8.8.8", "garbage"], ALLOWED_PORT)[0])

    def test_own_address_refused(self) -> None:
        """A name resolving to the exit's own address is refused."""
        policy = ExitPolicy(own_addresses=frozenset({"198.41.0.4"}))
        self.assertIsNone(policy.check_resolved(["198.41.0.4"], ALLOWED_PORT)[0])


class DestinationGuardTests(SynchronousTestCase):
    """test_unanswered_destination_capped and the per-circuit destination cap."""

    def test_unanswered_capped(self) -> None:
        """Exactly max_unanswered packets go to a silent destination, then drops."""
        guard = DestinationGuard(max_unanswered=3, max_destinations=5)
        dest = ("8.8.8.8", 40000)
        self.assertEqual([guard.may_send(dest) for _ in range(3)], [None, None, None])
        self.assertEqual(guard.may_send(dest), "destination never answered")
        self.assertEqual(guard.may_send(dest), "destination never answered")

    def test_reply_lifts_limit(self) -> None:
        """After a reply, the destination is no longer capped."""
        guard = DestinationGuard(max_unanswered=2, max_destinations=5)
        dest = ("8.8.8.8", 40000)
        guard.may_send(dest)
        guard.may_send(dest)
        self.assertIsNotNone(guard.may_send(dest))
        self.assertTrue(guard.note_reply(dest))
        for _ in range(100):
            self.assertIsNone(guard.may_send(dest))

    def test_reply_from_unknown_not_tracked(self) -> None:
        """A reply from a never-contacted destination neither grows nor pre-authorises."""
        guard = DestinationGuard(max_unanswered=1, max_destinations=2)
        for i in range(1000):
            self.assertFalse(guard.note_reply((f"1.2.3.{i % 250}", i)))
        self.assertEqual(len(guard), 0)
        dest = ("1.2.3.4", 4)
        self.assertIsNone(guard.may_send(dest))
        self.assertIsNotNone(guard.may_send(dest))

    def test_destination_cap(self) -> None:
        """New destinations beyond max_destinations are refused; known ones still work."""
        guard = DestinationGuard(max_unanswered=3, max_destinations=2)
        self.assertIsNone(guard.may_send(("1.1.1.1", 5000)))
        self.assertIsNone(guard.may_send(("1.1.1.1", 5001)))
        self.assertEqual(guard.may_send(("1.1.1.1", 5002)), "too many destinations")
        self.assertIsNone(guard.may_send(("1.1.1.1", 5000)))
        self.assertEqual(len(guard), 2)

    def test_memory_bounded(self) -> None:
        """Thousands of distinct destinations never grow the table past the cap."""
        guard = DestinationGuard(max_unanswered=3, max_destinations=25)
        for i in range(5000):
            dest = (f"8.8.{i // 250}.{i % 250}", 40000 + i % 7)
            guard.may_send(dest)
            guard.note_reply(dest)
        self.assertEqual(len(guard), 25)

    def test_bad_limits(self) -> None:
        """Limits below 1 are refused."""
        self.assertRaises(ValueError, DestinationGuard, 0, 1)
        self.assertRaises(ValueError, DestinationGuard, 1, 0)
