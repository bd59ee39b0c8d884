"""No free answers (DESIGN.md property 14), over real UDP on 127.0.0.1.

Each test floods one node from one socket with a datagram that draws an answer and
checks that the answers stay within the node's budget (burst + rate x elapsed), that no
answer is larger than what it answers, and that legitimate traffic still flows.
"""
from __future__ import annotations

import secrets
import time
from typing import Any

from ipv8.keyvault.crypto import default_eccrypto
from ipv8.messaging.interfaces.udp.endpoint import UDPv4Address, UDPv6Address
from ipv8.peer import Peer
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol

from tunnels.core import hs_relay, peering, relay
from tunnels.wire.cells import CELL_SIZE, CellType, Create, frame
from tunnels.wire.hidden import Introduce
from test.netcase import NetworkTestCase
from test.util import async_test, wait_for


class Sink(DatagramProtocol):
    """A socket on 127.0.0.1 that records what it receives."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        self.received.append(datagram)


def bound(burst: float, rate: float, started: float) -> float:
    """Most answers a token bucket allows from ``started`` until now."""
    return burst + rate * (time.monotonic() - started) + 1


class FloodTests(NetworkTestCase):
    relays = 3
    exits = 1

    def socket(self) -> tuple[Sink, Any]:
        sink = Sink()
        port = reactor.listenUDP(0, sink, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return sink, port

    async def flood(self, port: Any, datagrams: list[bytes], target: tuple[str, int],
                    processed: Any, batch: int = 100) -> None:
        """Send ``datagrams`` in batches, each once the target has processed the last one
        (so the flood measures the node's rules, not the kernel's socket buffer)."""
        for start in range(0, len(datagrams), batch):
            for datagram in datagrams[start:start + batch]:
                port.write(datagram, target)
            done = start + min(batch, len(datagrams) - start)
            await wait_for(lambda: processed() >= done, 10, what=f"{done} datagrams processed")

    @async_test
    async def test_refused_create_flood(self) -> None:
        """2000 refused CREATEs from one socket draw at most the DESTROY budget, each one cell
        for one cell; no handshake runs, and circuits through the relay keep working."""
        circuit = await self.build(2)
        first = next(n for n in self.net.nodes if n.address == circuit.hops[0].address)
        stats = first.community.stats
        sink, port = self.socket()
        creates = [frame(CellType.CREATE, i + 1, Create(secrets.token_bytes(20), first.community.relay.onion_key,
                                                         secrets.token_bytes(32), secrets.token_bytes(16)).encode())
                   for i in range(2000)]
        started = time.monotonic()
        await self.flood(port, creates, first.address, lambda: stats.events["create_refused_wrong_relay"])
        limit = bound(relay.REFUSAL_BURST, relay.REFUSAL_RATE, started)
        await wait_for(lambda: len(sink.received) + stats.drops["destroy_withheld"] == 2000, 5)
        self.assertLessEqual(len(sink.received), limit)
        self.assertGreaterEqual(len(sink.received), relay.REFUSAL_BURST)
        self.assertEqual({(len(d), d[1]) for d in sink.received}, {(CELL_SIZE, CellType.DESTROY)})
        self.assertEqual(stats.events["circuits_joined"], 1)
        self.assertEqual(await self.echo_round_trip(circuit, b"still here"), [b"still here"])
        again = await self.build(2)
        self.assertTrue(again.ready)

    @async_test
    async def test_introduce_flood(self) -> None:
        """INTRODUCE link cells from a stranger draw at most the INTRODUCE_ACK budget."""
        target = self.net.relays[0]
        stats = target.community.stats
        sink, port = self.socket()
        cells = [frame(CellType.INTRODUCE, i + 1, Introduce(secrets.token_bytes(20), secrets.token_bytes(8),
                                                             secrets.token_bytes(20), secrets.token_bytes(32)).encode())
                 for i in range(600)]
        started = time.monotonic()
        await self.flood(port, cells, target.address,
                         lambda: stats.events["introduce_unknown_service"] + stats.drops["introduce_withheld"])
        limit = bound(hs_relay.ANSWER_BURST, hs_relay.ANSWER_RATE, started)
        await wait_for(lambda: len(sink.received) == stats.events["introduce_unknown_service"], 5)
        self.assertLessEqual(len(sink.received), limit)
        self.assertGreaterEqual(len(sink.received), hs_relay.ANSWER_BURST)
        self.assertEqual({(len(d), d[1]) for d in sink.received}, {(CELL_SIZE, CellType.INTRODUCE_ACK)})
        circuit = await self.build(2)
        self.assertEqual(await self.echo_round_trip(circuit, b"unaffected"), [b"unaffected"])

    @async_test
    async def test_introduction_request_flood(self) -> None:
        """A signed introduction request replayed 1000 times from one socket draws at most the
        budget of responses, each no larger than the request, and no puncture request to a
        third peer (the socket never answered a request of ours)."""
        target, other = self.net.relays[0], self.net.relays[1]
        stats = target.community.stats
        sink, port = self.socket()
        own = other.community.my_peer
        other.community.my_peer = Peer(default_eccrypto.generate_key("curve25519"))  # a stranger's key
        try:
            request = other.community.create_introduction_request(UDPv4Address(*target.address))
        finally:
            other.community.my_peer = own
        self.assertEqual(len(request), peering.INTRODUCTION_REQUEST_SIZE)
        sent = []
        write = target.endpoint._write
        target.endpoint._write = lambda data, addr: (sent.append((data, addr)), write(data, addr))[1]
        started = time.monotonic()
        await self.flood(port, [request] * 1000, target.address,
                         lambda: len(sink.received) + stats.drops["introduction_withheld"])
        limit = bound(peering.INTRODUCTION_BURST, peering.INTRODUCTION_RATE, started)
        self.assertLessEqual(len(sink.received), limit)
        self.assertGreaterEqual(len(sink.received), peering.INTRODUCTION_BURST / 2)  # the network's own walks share it
        self.assertLessEqual(max(len(d) for d in sink.received), len(request))
        puncture_requests = [d for d, a in sent if d[0] == 0 and d[22] in peering._PUNCTURE_IDS]
        self.assertEqual(puncture_requests, [])
        self.assertGreaterEqual(stats.events["introduction_without_puncture"], peering.INTRODUCTION_BURST)
        circuit = await self.build(2)
        self.assertEqual(await self.echo_round_trip(circuit, b"unaffected"), [b"unaffected"])

    @async_test
    async def test_puncture_request_flood(self) -> None:
        """Puncture requests naming a victim: from a stranger none is honoured; from a verified
        peer at most the budget, each puncture no larger than its request."""
        target, peer = self.net.relays[0], self.net.relays[1]
        stats = target.community.stats
        victim, _ = self.socket()
        _, stranger = self.socket()
        victim_address = UDPv4Address("127.0.0.1", victim.transport.getHost().port)
        request = peer.community.create_puncture_request(victim_address, victim_address, 7)
        self.assertEqual(len(request), peering.PUNCTURE_REQUEST_SIZE)
        await self.flood(stranger, [request] * 300, target.address,
                         lambda: stats.drops["puncture_request_stranger"])
        self.assertEqual(victim.received, [])
        target.community.walk_to(peer.address)  # the peer answers: its address is validated
        await wait_for(lambda: target.community.is_validated(peer.address), 5)
        started = time.monotonic()
        peer_write = peer.endpoint._write
        for start in range(0, 300, 50):
            for _ in range(50):
                peer_write(request, target.address)
            await wait_for(lambda: stats.drops["puncture_withheld"] + len(victim.received) >= start + 50, 10)
        limit = bound(peering.PUNCTURE_BURST, peering.PUNCTURE_RATE, started)
        self.assertLessEqual(len(victim.received), limit)
        self.assertGreater(len(victim.received), 0)  # the network's own punctures share the budget
        self.assertLessEqual(max(len(d) for d in victim.received), len(request))

    def test_answers_never_larger_than_requests(self) -> None:
        """Whatever addresses are involved (IPv4, IPv6, old and new style), our introduction
        responses fit in the smallest introduction request we answer, and our punctures in the
        smallest puncture request we honour; our own requests are padded to those sizes."""
        community = self.net.relays[0].community
        v4, v6 = UDPv4Address("198.51.100.200", 65535), UDPv6Address("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65535)
        responses = [community.create_introduction_response(v4, v4, 65535, new_style=False)]
        punctures = [community.create_puncture(v4, v4, 65535, new_style=False)]
        for a in (v4, v6):
            for b in (v4, v6):
                responses.append(community.create_introduction_response(a, b, 65535, new_style=True))
                punctures.append(community.create_puncture(a, b, 65535, new_style=True))
        self.assertLessEqual(max(map(len, responses)), peering.INTRODUCTION_REQUEST_SIZE)
        self.assertLessEqual(max(map(len, punctures)), peering.PUNCTURE_REQUEST_SIZE)
        requests = [community.create_introduction_request(a, new_style=n) for a in (v4, v6) for n in (False, True)
                    if not (a is v6 and not n)]
        self.assertEqual({len(r) for r in requests}, {peering.INTRODUCTION_REQUEST_SIZE})
        punctures_asked = [community.create_puncture_request(a, a, 1, new_style=True) for a in (v4, v6)]
        self.assertEqual({len(r) for r in punctures_asked}, {peering.PUNCTURE_REQUEST_SIZE})
