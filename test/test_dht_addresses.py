# -*- test-case-name: test.test_dht_addresses -*-
"""The never-query list, the address policies, our own address, and rate-limit groups."""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tunnels.dht.addresses import TargetFilter, address_filter, never_contact, source_key

NEVER = [("0.0.0.0", 6881), ("0.1.2.3", 6881), ("240.0.0.1", 6881), ("255.255.255.255", 6881),
         ("224.0.0.1", 6881), ("239.255.255.250", 1900), ("127.0.0.1", 0), ("8.8.8.8", 0),
         ("8.8.8.8", 65536), ("::1", 6881), ("example.org", 6881)]


class NeverContactTests(SynchronousTestCase):
    """Reserved, multicast, broadcast, port 0 and non-IPv4 are refused under every policy."""

    def test_never_list(self) -> None:
        """Each address of the list is refused by never_contact and by all three policies."""
        for host, port in NEVER:
            self.assertTrue(never_contact(host, port), (host, port))
            for policy in ("any", "global", "loopback"):
                self.assertFalse(address_filter(policy)(host, port), (policy, host, port))

    def test_policies(self) -> None:
        """Outside the never list, each policy accepts what it says and nothing else."""
        loop, glob, anyp = (address_filter(p) for p in ("loopback", "global", "any"))
        hosts = ("127.0.0.1", "127.5.5.5", "10.0.0.1", "192.168.1.1", "8.8.8.8", "100.64.0.1")
        self.assertEqual([loop(h, 1) for h in hosts], [True, True, False, False, False, False])
        self.assertEqual([glob(h, 1) for h in hosts], [False, False, False, False, True, False])
        self.assertEqual([anyp(h, 1) for h in hosts], [True] * 6)
        with self.assertRaises(ValueError):
            address_filter("lan")  # type: ignore[arg-type]


class OwnAddressTests(SynchronousTestCase):
    """A node never targets its own socket."""

    def test_bound_address(self) -> None:
        """Bound to 127.0.0.1:4000, that exact address is own; the port elsewhere is not."""
        targets = TargetFilter("loopback")
        self.assertTrue(targets("127.0.0.1", 4000))
        targets.set_own("127.0.0.1", 4000)
        self.assertFalse(targets("127.0.0.1", 4000))
        self.assertFalse(targets.sendable("127.0.0.1", 4000))
        self.assertTrue(targets("127.0.0.1", 4001))
        self.assertTrue(targets("127.0.0.2", 4000))

    def test_wildcard(self) -> None:
        """Bound to all interfaces, every loopback address with our port is own."""
        targets = TargetFilter("any")
        targets.set_own("", 4000)
        self.assertFalse(targets("127.0.0.1", 4000))
        self.assertFalse(targets("127.9.9.9", 4000))
        self.assertTrue(targets("10.1.1.1", 4000))

    def test_sendable_ignores_policy(self) -> None:
        """Configured bootstrap nodes may sit outside the policy; never-list ones may not."""
        targets = TargetFilter("global")
        self.assertFalse(targets("10.0.0.1", 6881))
        self.assertTrue(targets.sendable("10.0.0.1", 6881))
        self.assertFalse(targets.sendable("0.0.0.0", 6881))


class SourceKeyTests(SynchronousTestCase):
    """Rate limits group sources by /24 and /48; loopback sources by port."""

    def test_groups(self) -> None:
        self.assertEqual(source_key("1.2.3.4", 1), source_key("1.2.3.250", 2))
        self.assertNotEqual(source_key("1.2.3.4", 1), source_key("1.2.4.4", 1))
        self.assertEqual(source_key("2001:db8:1::1", 1), source_key("2001:db8:1:ffff::9", 2))
        self.assertNotEqual(source_key("2001:db8:1::1", 1), source_key("2001:db8:2::1", 1))
        self.assertNotEqual(source_key("127.0.0.1", 1), source_key("127.0.0.1", 2))
        self.assertEqual(source_key("127.0.0.1", 1), source_key("127.0.0.1", 1))
