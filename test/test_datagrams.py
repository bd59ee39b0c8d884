"""Datagrams of every size through constant-size cells (DESIGN.md property 12), over real UDP.

Sizes from 1 byte to the UDP maximum cross 1, 2 and 3 hops, the SOCKS5 front end and the
end-to-end path between hidden-service members, byte-identical and exactly once; the cells a
relay or rendezvous point carries show nothing but their number; pieces lost, duplicated and
reordered at a relay lose at most their datagram, never the circuit, and no memory stays held.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor

from tunnels.core.circuits import Circuit
from tunnels.hidden import e2e
from tunnels.socks5 import Socks5Server
from tunnels.wire import relay as msg
from tunnels.wire.fragments import pieces_needed
from test.hiddencase import HiddenNetworkCase
from test.netcase import NetworkTestCase
from test.test_socks5 import Socks5UdpClient
from test.util import async_test, wait_for

SIZES = (1, 1054, 1055, 1200, 1400, 1472, 4096, 8192, 65507)
"""The issue's sizes: one cell's limit and one past it, QUIC's minimum, uTP's, a full Ethernet
payload, EDNS, twice Twisted's default read size, and the UDP maximum."""
SOCKS5_MAX = 65507 - 10
"""The largest payload a SOCKS5 client can send to an IPv4 destination: the RFC 1928 header
(10 bytes) and the payload share one IPv4 UDP datagram."""


def pattern(size: int, salt: int) -> bytes:
    """Bytes that differ in every position and between datagrams (a splice would show)."""
    return bytes((i * 31 + salt * 7 + (i >> 8)) % 256 for i in range(size))


class SizesTests(NetworkTestCase):
    """Every size through 1, 2 and 3 hops and through the SOCKS5 front end, on one network."""

    timeout = 90

    async def exchange(self, circuit: Circuit, payloads: list[bytes]) -> list[bytes]:
        """Send each payload to the echo server through ``circuit``; return the replies after a
        final marker's reply (cells of one circuit arrive in order on loopback, so a duplicate of
        an earlier datagram would have come before it)."""
        got: list[bytes] = []
        marker = b"marker %d" % circuit.circuit_id

        def handler(c: Circuit, source: Any, data: bytes) -> None:
            if c is circuit:
                got.append(data)
        self.client.add_data_handler(handler)
        try:
            for payload in payloads:
                self.client.tunnel_data(circuit, self.net.echo_address, "data", payload)
            await wait_for(lambda: len(got) >= len(payloads), 20, what="every reply")
            self.client.tunnel_data(circuit, self.net.echo_address, "data", marker)
            await wait_for(lambda: marker in got, 10, what="the marker's reply")
        finally:
            self.client.remove_data_handler(handler)
        got.remove(marker)
        return got

    @async_test
    async def test_every_size_through_1_2_3_hops(self) -> None:
        """Each size comes back byte-identical, once; the echo server saw each once; the relays
        carried exactly the cells the fragment format predicts; no reassembly memory stays held."""
        for hops in (1, 2, 3):
            circuit = await self.build(hops)
            payloads = [pattern(size, hops) for size in SIZES]
            before = len(self.net.echo.received)
            commands: list[int] = []
            send_message = self.client.origin.send_message
            self.client.origin.send_message = lambda c, command, data: (commands.append(command),
                                                                        send_message(c, command, data))
            try:
                replies = await self.exchange(circuit, payloads)
            finally:
                self.client.origin.send_message = send_message
            self.assertEqual(Counter(replies), Counter(payloads), f"{hops} hops")
            self.assertEqual(Counter(d for _, d in self.net.echo.received[before:]),
                             Counter(payloads + [b"marker %d" % circuit.circuit_id]))
            header = len(msg.encode_data(self.net.echo_address, b""))     # flow id and address
            cells = sum(msg.data_cells(header + len(p)) for p in payloads) + 1
            self.assertEqual(sum(1 for c in commands if c in msg.WINDOWED), cells, "cells per datagram as predicted")
        for node in self.net.nodes:
            self.assertEqual((node.community.reassembly.used, node.community.reassembly.order), (0, {}))
            self.assertEqual({k: v for k, v in node.community.stats.drops.items()
                              if k.startswith(("fragment", "reassembly"))}, {})

    @async_test
    async def test_every_size_through_socks5(self) -> None:
        """An RFC 1928 client gets every size back through 1- and 3-hop circuits (the UDP
        maximum less the SOCKS5 header is the largest a client can send)."""
        for hops in (1, 3):
            server = Socks5Server(reactor, self.client, hops)
            server.start()
            self.addCleanup(server.stop)
            listening = reactor.listenTCP(0, server, interface="127.0.0.1")
            self.addCleanup(listening.stopListening)
            await wait_for(lambda h=hops: self.client.tunnels_ready(h) >= 1.0, 20, what=f"{hops}-hop circuits")
            client = Socks5UdpClient()
            await client.open(listening.getHost().port)
            self.addCleanup(client.close)
            payloads = [pattern(size, hops) for size in SIZES[:-1] + (SOCKS5_MAX,)]
            for payload in payloads:
                client.send(self.net.echo_address, payload)
            replies = [await client.receive(10) for _ in payloads]
            self.assertEqual(Counter(replies), Counter((self.net.echo_address, p) for p in payloads))
            self.assertEqual((server.stats["sent"], server.stats["delivered"]), (len(payloads), len(payloads)))


class HiddenSizesTests(HiddenNetworkCase):
    """Every size both ways between two hidden-service members, and what the rendezvous point sees."""

    @async_test
    async def test_every_size_between_members(self) -> None:
        """Byte-identical, exactly once, both ways; every E2E message the rendezvous point relays
        has the same length, and their number is the cells the sizes need."""
        alice, bob = self.members
        alice.register("datagrams")
        bob.register("datagrams")
        await self.connected(alice, bob)
        seen: list[tuple[int, int]] = []
        for node in self.net.nodes:
            hidden = node.community.hidden_relay
            hidden.on_message = _recording(hidden.on_message, seen)
        await wait_for(lambda: all(live_peer(m) is not None for m in self.members), 10, what="established sessions")
        for sender, receiver, salt in ((alice, bob, 1), (bob, alice, 2)):
            seen.clear()
            receiver.received.clear()
            payloads = [pattern(size, salt) for size in SIZES]
            peer = live_peer(sender)
            for payload in payloads:
                sender.send(peer, payload)
            await wait_for(lambda: len(receiver.received) >= len(payloads), 20, what="every datagram")
            marker = b"marker %d" % salt
            sender.send(peer, marker)
            await wait_for(lambda: any(p == marker for _, p in receiver.received), 10, what="the marker")
            self.assertEqual(Counter(p for _, p in receiver.received), Counter(payloads + [marker]))
            self.assertEqual({length for _, length in seen}, {msg.MAX_MESSAGE_DATA})
            self.assertEqual(len(seen), sum(pieces_needed(len(p), e2e.CHUNK) for p in payloads) + 1)
        for member in self.members:
            self.assertEqual(member.community.reassembly.used, 0)


def live_peer(member: Any) -> Any:
    """The address of the member's established session, if any."""
    return next((peer for peer, session in member.community.sessions_by_peer.items() if session.established), None)


def _recording(on_message: Callable[..., None], seen: list[tuple[int, int]]) -> Callable[..., None]:
    """Wrap a rendezvous point's message handler to record (command, length) of E2E messages."""
    def wrapper(circuit: Any, command: int, data: bytes) -> None:
        if command == msg.RelayCommand.E2E:
            seen.append((command, len(data)))
        on_message(circuit, command, data)
    return wrapper


class Impairment:
    """Wraps a relay's ``send``: the next cells of one direction of one circuit are collected in
    batches and re-emitted in a planned order (omitted: lost, repeated: duplicated, permuted:
    reordered).  Everything else passes untouched."""

    def __init__(self, send: Callable[[Any, bytes], None], address: Any, prefix: bytes) -> None:
        self.send = send
        self.address = address
        self.prefix = prefix
        self.plan: list[int] = []
        self.batch = 0
        self.held: list[bytes] = []
        self.duplicates = 0

    def arm(self, batch: int, plan: list[int]) -> None:
        """Collect the next ``batch`` cells, then send them in the order of ``plan`` (indices)."""
        self.batch, self.plan, self.held = batch, plan, []
        self.duplicates += len(plan) - len(set(plan))

    @property
    def idle(self) -> bool:
        return not self.batch

    def __call__(self, address: Any, cell: bytes) -> None:
        if not self.batch or address != self.address or cell[:6] != self.prefix:
            self.send(address, cell)
            return
        self.held.append(cell)
        if len(self.held) == self.batch:
            held, plan, self.batch = self.held, self.plan, 0
            for index in plan:
                self.send(address, held[index])


PLANS: list[tuple[list[int], bool]] = [
    ([0, 1, 2, 3], True),            # intact
    ([0, 2, 3], False),              # a middle piece lost
    ([0, 1, 1, 2, 3, 3], True),      # pieces duplicated
    ([3, 1, 0, 2], True),            # reordered
    ([0, 1, 2], False),              # the last piece lost
    ([3, 2, 1, 0, 0, 1, 2, 3], True),  # reversed and every piece duplicated
    ([], False),                     # every piece lost
    ([1, 0, 3, 2], True),            # reordered in pairs
]
"""What happens to the 4 cells of each 4,096-byte datagram, and whether it must arrive."""


class FragmentFaultTests(NetworkTestCase):
    """Faults injected at the middle relay of 2-hop circuits, forward then backward."""

    timeout = 90

    async def circuit_with_impairment(self, forward: bool) -> tuple[Circuit, Impairment, Any]:
        """A 2-hop circuit, the impairment wrapped around its first relay's send, and the exit."""
        circuit = await self.build(2)
        relay_node = next(n.community for n in self.net.nodes if n.address == circuit.hops[0].address)
        exit_node = next(n.community for n in self.net.nodes if n.address == circuit.hops[1].address)
        [joined] = [jc for jc in relay_node.joined_circuits if jc.prev_id == circuit.circuit_id]
        if forward:
            impairment = Impairment(relay_node.relay.send, joined.next_address, joined.next_prefix)
        else:
            impairment = Impairment(relay_node.relay.send, joined.prev_address, joined.prev_prefix)
        relay_node.relay.send = impairment
        self.addCleanup(setattr, relay_node.relay, "send", impairment.send)
        return circuit, impairment, exit_node

    async def run_plans(self, circuit: Circuit, impairment: Impairment,
                        watch: Callable[[], list[bytes]]) -> list[bytes]:
        """Send one 4,096-byte datagram per plan, waiting for each to arrive or be lost."""
        expected = []
        for n, (plan, arrives) in enumerate(PLANS):
            payload = pattern(4096, 100 + n)
            impairment.arm(4, plan)
            self.client.tunnel_data(circuit, self.net.echo_address, "data", payload)
            if arrives:
                expected.append(payload)
                await wait_for(lambda p=payload: p in watch(), 10, what=f"datagram {n} ({plan})")
            else:
                await wait_for(lambda: impairment.idle, 10, what=f"the relay to handle datagram {n}")
        return expected

    @async_test
    async def test_forward_faults(self) -> None:
        """At the exit: each datagram leaves once or not at all, duplicates die in the replay
        window, lost datagrams' pieces time out, memory returns to zero, the circuit still works."""
        circuit, impairment, exit_node = await self.circuit_with_impairment(forward=True)
        exit_node.reassembly.timeout = 0.5   # the timeout rule itself is tested with explicit times
        before = len(self.net.echo.received)
        expected = await self.run_plans(circuit, impairment, lambda: [d for _, d in self.net.echo.received[before:]])
        await wait_for(lambda: exit_node.reassembly.used == 0, 10, what="the lost datagrams to time out")
        self.assertEqual([d for _, d in self.net.echo.received[before:]], expected)
        self.assertEqual(exit_node.stats.drops["replay"], impairment.duplicates)
        self.assertEqual(exit_node.stats.drops["reassembly_timeout"], 2)   # plans 1 and 4; plan 6 left nothing
        self.assertTrue(circuit.ready)
        self.assertEqual(await self.echo_round_trip(circuit, pattern(3000, 1)), [pattern(3000, 1)])

    @async_test
    async def test_backward_faults(self) -> None:
        """At the originator: each reply arrives once or not at all, memory returns to zero."""
        circuit, impairment, exit_node = await self.circuit_with_impairment(forward=False)
        self.client.reassembly.timeout = 0.5
        got: list[bytes] = []
        self.client.add_data_handler(lambda c, s, p: got.append(p) if c is circuit else None)
        expected = await self.run_plans(circuit, impairment, lambda: got)
        await wait_for(lambda: self.client.reassembly.used == 0, 10, what="the lost replies to time out")
        self.assertEqual(got, expected)
        self.assertEqual(self.client.stats.drops["replay"], impairment.duplicates)
        self.assertEqual(self.client.stats.drops["reassembly_timeout"], 2)
        self.assertTrue(circuit.ready)
        self.assertEqual(await self.echo_round_trip(circuit, pattern(3000, 2)), [pattern(3000, 2)])

