# -*- test-case-name: test.test_reasons -*-
"""Every counted drop and refusal has a one-line explanation; exit refusals map to a fixed set."""
from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import tunnels
from tunnels.daemon.status import REFUSAL
from tunnels.exit.addresses import is_forbidden_ip
from tunnels.exit.policy import DEFAULT_DENY_PORTS, DestinationGuard, ExitPolicy, refusal_kind
from tunnels.ratelimit import ShareLimiter, SourceShares
from tunnels.reasons import DROPS, REFUSALS, explain

SOURCE = "\n".join(p.read_text(encoding="utf-8") for p in Path(tunnels.__file__).parent.rglob("*.py"))
DROP_LITERALS = set(re.findall(r'\.drop\("([a-z0-9_]+)"\)', SOURCE))
DHT_DECODE_REASONS = set(re.findall(r'KRPCDecodeError\("([a-z0-9_]+)"', SOURCE))
SOCKS5_DROPS = set(re.findall(r'stats\["dropped_([a-z0-9_]+)"\]', SOURCE))
REFUSAL_EVENTS = set(re.findall(r'\.note\(f?"([a-z0-9]+_refused_[a-z0-9_]+)"\)', SOURCE))
"""Refusal events with a literal reason (``<what>_refused_<reason>``)."""


class ExplanationTests(SynchronousTestCase):
    """No counter ships unexplained."""

    def test_every_drop_reason_explained(self) -> None:
        """Each reason passed to a drop counter in the source (node, DHT, SOCKS5) has an explanation."""
        found = DROP_LITERALS | DHT_DECODE_REASONS | SOCKS5_DROPS | {"unsolicited", "wrong_source"}
        self.assertGreater(len(found), 60)
        self.assertEqual(sorted(r for r in found if not explain(r)), [])

    def test_no_stale_explanations(self) -> None:
        """Every explained drop reason is still counted somewhere (no dead entries)."""
        used = DROP_LITERALS | DHT_DECODE_REASONS | SOCKS5_DROPS | {"unsolicited", "wrong_source"}
        self.assertEqual(sorted(set(DROPS) - used), [])

    def test_refusal_events_explained(self) -> None:
        """Literal refusal events and every reason the relay can build have an explanation."""
        events = set(REFUSAL_EVENTS)
        events |= {f"create_refused_{r.replace(' ', '_')}"
                   for r in (ShareLimiter.FULL, ShareLimiter.SHARE_EXCEEDED, SourceShares.PREFIX_SHARE_EXCEEDED,
                             "not_a_relay", "create_rate", "create_rate_prefix", "create_rate_total", "wrong_relay",
                             "table_full")}
        events |= {f"extend_refused_{r}" for r in ("port_0", "bad_address", "non_global_address", "unknown_peer",
                                                   "identity_mismatch", "previous_hop")}
        events |= {f"introduce_refused_{r}" for r in ("port_0", "bad_address", "non_global_address")}
        events |= {f"intro_refused_{r}" for r in ("no_dht", "circuit_busy", "bad_record", "squatting", "full")}
        events |= {f"exit_refused_{kind}" for kind in (k.split(":")[1] for k in REFUSALS if k.startswith("exit:"))}
        for event in sorted(events):
            match = REFUSAL.match(event)
            self.assertIsNotNone(match, event)
            assert match is not None
            self.assertNotEqual(explain(f"{match['what']}:{match['reason']}"), "", event)


class RefusalKindTests(SynchronousTestCase):
    """Exit refusals are counted under a fixed vocabulary, never with a port or an address in the name."""

    def test_policy_reasons(self) -> None:
        """Each kind of policy answer maps to its kind."""
        policy = ExitPolicy(allow_ports=(4000,), own_addresses=frozenset({"192.0.2.7"}))
        cases = {
            policy.check("192.0.2.9", min(DEFAULT_DENY_PORTS)): "port_denied",
            policy.check("192.0.2.9", 4001): "port_not_allowed",
            ExitPolicy().check("192.0.2.9", 80): "port_not_allowed",
            policy.check("192.0.2.9", 0): "bad_port",
            policy.check("192.0.2.7", 4000): "own_address",
            policy.check("10.1.2.3", 4000): "non_global_address",
            policy.check("127.0.0.1", 4000): "non_global_address",
            policy.check("not-an-ip", 4000): "bad_address",
            policy.check_resolved(["10.0.0.1"], 4000)[1]: "resolution",
            policy.check_resolved([], 4000)[1]: "resolution",
        }
        for reason, kind in cases.items():
            assert reason is not None
            self.assertEqual(refusal_kind(reason), kind, reason)

    def test_guard_and_socket_reasons(self) -> None:
        """The guard's and the exit socket's own reasons map to their kinds."""
        guard = DestinationGuard(max_unanswered=1, max_destinations=1)
        self.assertIsNone(guard.may_send(("192.0.2.1", 4000)))
        unanswered = guard.may_send(("192.0.2.1", 4000))
        too_many = guard.may_send(("192.0.2.2", 4000))
        assert unanswered is not None and too_many is not None
        self.assertEqual((refusal_kind(unanswered), refusal_kind(too_many)), ("unanswered", "too_many_destinations"))
        for reason, kind in (("exit bandwidth exhausted", "bandwidth"), ("too many names", "resolver_busy"),
                             ("resolution queue full", "resolver_busy"), ("send failed", "send_failed"),
                             ("name refused by exit policy", "resolution"), ("not an exit", "not_exit")):
            self.assertEqual(refusal_kind(reason), kind)

    def test_every_kind_is_explained(self) -> None:
        """Whatever an address class is called, the kind is one of the explained exit kinds."""
        for ip in ("10.0.0.1", "169.254.1.1", "224.0.0.1", "::1", "fe80::1", "2001:db8::1", "100.64.0.1"):
            reason = is_forbidden_ip(ip)
            assert reason is not None
            self.assertIn(f"exit:{refusal_kind(reason)}", REFUSALS, (ip, reason))
