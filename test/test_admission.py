"""Admission of CREATEs: shares per source IP and per source network (/24, /48), and the
CREATE token buckets, checked before any public-key work."""
from __future__ import annotations

import secrets
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnels.core.reassembly import ReassemblyBuffer
from tunnels.core.relay import RelayRole
from tunnels.core.routing import LinkTable
from tunnels.crypto import ntor
from tunnels.ratelimit import SourceShares
from tunnels.settings import TunnelSettings
from tunnels.stats import Stats
from tunnels.wire.cells import CellType, Create, frame
from test.netcase import NetworkTestCase
from test.test_free_answers import Sink
from test.util import async_test, wait_for


def create_for(community: Any) -> bytes:
    """The payload of a valid CREATE for the relay of ``community`` (a fresh client key)."""
    state = ntor.client1(community.my_peer.mid, community.relay.onion_key)
    return Create(community.my_peer.mid, community.relay.onion_key, state.client_key, secrets.token_bytes(16)).encode()


class SixAddressesTests(NetworkTestCase):
    relays = 2
    exits = 1
    testnet = False  # per-IP and per-/24 sources, as on the Internet (a test network counts per port)

    @async_test
    async def test_six_addresses_cannot_take_every_slot(self) -> None:
        """Six source IPs of one /24 (127.0.0.2-7, loopback) sending 17 valid CREATEs each took all
        100 joined-circuit slots of a relay (their per-IP shares of 25 allowed it); the /24's
        share now stops them at 50, and the rest is refused without a handshake."""
        target = self.net.relays[0].community
        sockets = []
        for i in range(2, 8):
            sink = Sink()
            port = reactor.listenUDP(0, sink, interface=f"127.0.0.{i}")
            self.addCleanup(port.stopListening)
            sockets.append((sink, port))
        circuit_id = 1000
        for _ in range(17):
            for _, port in sockets:
                circuit_id += 1
                port.write(frame(CellType.CREATE, circuit_id, create_for(target)), self.net.relays[0].address)
        events = target.stats.events

        def refused() -> int:
            return sum(n for name, n in events.items() if name.startswith("create_refused_"))
        await wait_for(lambda: events["circuits_joined"] + refused() == 102, 10, what="every CREATE handled")
        self.assertEqual(len(target.joined_circuits), 50)
        self.assertEqual(events["circuits_joined"], 50)
        self.assertEqual(events["create_refused_prefix_share_exceeded"] + events["create_refused_create_rate_prefix"],
                         52)
        self.assertGreaterEqual(events["create_refused_prefix_share_exceeded"], 48)
        self.assertEqual(events["create_refused_handshake"], 0)
        await wait_for(lambda: sum(len(s.received) for s, _ in sockets) >= 50, 5)
        answers = [d[1] for s, _ in sockets for d in s.received]
        self.assertEqual(answers.count(CellType.CREATED), 50)


class _CountingIdentity:
    """An X25519 identity that counts its Diffie-Hellman operations (public-key work)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        self.key = X25519PrivateKey.generate()
        self.exchanges = 0

    def public_key(self) -> Any:
        return self.key.public_key()

    def exchange(self, public: Any) -> bytes:
        self.exchanges += 1
        return self.key.exchange(public)


class AdmissionUnitTests(SynchronousTestCase):
    def relay(self, **settings: Any) -> tuple[RelayRole, list[tuple[Any, bytes]], _CountingIdentity]:
        sent: list[tuple[Any, bytes]] = []
        identity = _CountingIdentity()
        role = RelayRole(identity=identity, node_id=b"n" * 20,  # type: ignore[arg-type]
                         settings=TunnelSettings(**settings),
                         clock=Clock(), send=lambda a, d: sent.append((a, d)), table=LinkTable(10_000),
                         stats=Stats(), find_peer=lambda a: None, extend_allowed=lambda a: None, open_exit=None,
                         reassembly=ReassemblyBuffer(2048, lambda reason: None))
        return role, sent, identity

    def create(self, role: RelayRole, node_id: bytes | None = None) -> bytes:
        state = ntor.client1(node_id or role.node_id, role.onion_key)
        return Create(node_id or role.node_id, role.onion_key, state.client_key, b"t" * 16).encode()

    def test_refused_before_public_key_work(self) -> None:
        """A flood of CREATEs from one address runs exactly burst handshakes; the rest (and every
        CREATE naming another relay) is refused without one."""
        role, sent, identity = self.relay(create_rate=1.0, create_burst=5, max_joined_share=1.0,
                                          max_joined_prefix_share=1.0)
        for cid in range(1, 201):
            role.on_create(("192.0.2.1", 1), cid, self.create(role))
        for cid in range(201, 401):
            role.on_create(("192.0.2.1", 1), cid, self.create(role, node_id=b"x" * 20))
        self.assertEqual(identity.exchanges, 5)
        self.assertEqual(role.stats.events["circuits_joined"], 5)
        self.assertEqual(role.stats.events["create_refused_create_rate"], 195)
        self.assertEqual(role.stats.events["create_refused_wrong_relay"], 200)

    def test_node_wide_bucket(self) -> None:
        """Many source networks together get at most the node-wide burst of handshakes."""
        role, _, identity = self.relay(create_rate_total=1.0, create_burst_total=30, max_joined_circuits=1000)
        for i in range(100):
            role.on_create((f"198.51.{i}.1", 1), i + 1, self.create(role))
        self.assertEqual(identity.exchanges, 30)
        self.assertEqual(role.stats.events["create_refused_create_rate_total"], 70)

    def test_other_networks_keep_their_slots(self) -> None:
        """With one /24 at its share, an address of another /24 still joins, and an IPv6 /48 is one
        network."""
        shares = SourceShares(100, 0.25, 0.5)
        taken = sum(shares.try_acquire(f"203.0.113.{i % 6 + 2}") is None for i in range(102))
        self.assertEqual(taken, 50)
        self.assertEqual(shares.try_acquire("203.0.113.200"), SourceShares.PREFIX_SHARE_EXCEEDED)
        self.assertIsNone(shares.try_acquire("198.51.100.7"))
        shares.release("198.51.100.7")
        taken = sum(shares.try_acquire(f"2001:db8:1:{i:x}::1") is None for i in range(60))
        self.assertEqual((taken, shares.by_prefix.count("2001:db8:1::/48"), shares.total), (50, 50, 100))
