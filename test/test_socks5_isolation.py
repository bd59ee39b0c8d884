# -*- test-case-name: test.test_socks5_isolation -*-
"""Association isolation in the SOCKS5 front end, over real circuits on 127.0.0.1 (issue 17).

The issue's fault: two programs sending to one destination over one ready circuit, three
rounds each; program A received nothing, program B all six replies.  Here every
association must receive exactly its own replies: 2 and 10 associations, to one destination
and to one destination each, through 1 and 3 hops, all on a single circuit (the client keeps
one circuit per hop count, the case where associations could be confused).  Also: RFC 1929
credentials isolate an application on circuits of its own; exit refusals are counted for
the association that caused them only; a hidden-service peer's data reaches the one
association that claimed it; the isolation group's backoff runs on a Clock.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnels.errors import CircuitBuildFailed
from tunnels.runtime import listen_udp
from tunnels.settings import TunnelSettings
from tunnels.socks5 import Socks5Server
from tunnels.socks5.isolation import ISOLATED, MAX_BACKOFF, IsolationGroup
from tunnels.testnet.network import EchoServer
from test.hiddencase import HiddenNetworkCase
from test.netcase import NetworkTestCase
from test.test_socks5 import Socks5UdpClient
from test.util import async_test, wait_for

Address = tuple[str, int]
ROUNDS = 3


class IsolationTests(NetworkTestCase):
    """A relay, a relay and an exit; the client keeps one circuit per hop count, so every
    association of a server shares that circuit."""

    relays = 2
    exits = 1
    client_settings = TunnelSettings(min_circuits=1, max_circuits=1)
    timeout = 90

    async def serve(self, hops: int) -> tuple[Socks5Server, int]:
        """A started SOCKS5 server for ``hops`` hops, once its one circuit is ready."""
        server = Socks5Server(reactor, self.client, hops)
        server.start()
        self.addCleanup(server.stop)
        listening = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        await wait_for(lambda: self.client.tunnels_ready(hops) >= 1.0, 20, what=f"a {hops}-hop circuit")
        return server, listening.getHost().port

    async def associations(self, port: int, count: int, **kwargs: Any) -> list[Socks5UdpClient]:
        clients = []
        for _ in range(count):
            client = Socks5UdpClient()
            await client.open(port, **kwargs)
            self.addCleanup(client.close)
            clients.append(client)
        return clients

    def echo_servers(self, count: int) -> list[Address]:
        """``count`` more UDP echo servers on 127.0.0.1."""
        addresses = []
        for _ in range(count):
            port = listen_udp(reactor, 0, EchoServer(), "127.0.0.1")
            self.addCleanup(port.stopListening)
            addresses.append(("127.0.0.1", port.getHost().port))
        return addresses

    async def exchange(self, server: Socks5Server, clients: list[Socks5UdpClient],
                       destinations: list[Address]) -> None:
        """Each association sends ROUNDS datagrams naming itself; each must get exactly its own back."""
        delivered = server.stats["delivered"]
        for round_ in range(ROUNDS):
            for i, client in enumerate(clients):
                client.send(destinations[i % len(destinations)], b"association %d round %d" % (i, round_))
        for i, client in enumerate(clients):
            destination = destinations[i % len(destinations)]
            got = Counter([await client.receive(10) for _ in range(ROUNDS)])
            self.assertEqual(got, Counter((destination, b"association %d round %d" % (i, r)) for r in range(ROUNDS)),
                             f"association {i} of {len(clients)}")
        self.assertEqual(server.stats["delivered"] - delivered, ROUNDS * len(clients))
        self.assertEqual([client.protocol.queue.qsize() for client in clients], [0] * len(clients))

    async def isolation_matrix(self, hops: int) -> None:
        """2 and 10 associations, to one destination and to one each, on one circuit; afterwards
        every exit flow is closed again (FLOW_END) and no reply was dropped as unroutable."""
        server, port = await self.serve(hops)
        [circuit] = self.client.active_data_circuits(hops)
        for count in (2, 10):
            for destinations in ([self.net.echo_address], self.echo_servers(count)):
                clients = await self.associations(port, count)
                await self.exchange(server, clients, destinations)
                self.assertEqual({flow.circuit for a in server.associations for flow in a.flows.values()},
                                 {circuit}, "one circuit shared")
                self.assertEqual(self.exit_flows(circuit), count, "an exit flow per association")
                for client in clients:
                    client.close()
                await wait_for(lambda: not server.associations and self.exit_flows(circuit) == 0, 10,
                               what="the associations and their exit flows to end")
        self.assertEqual(self.client.stats.drops["flow_closed"], 0)

    def exit_flows(self, circuit: Any) -> int:
        """Flows besides flow 0 the exit has open for our ``circuit`` (found by its previous hop)."""
        previous = circuit.hops[-2].address if len(circuit.hops) > 1 else self.net.clients[0].address
        [joined] = [jc for jc in self.net.exits[0].community.joined_circuits if jc.prev_address == previous]
        return 0 if joined.exit is None else len(joined.exit.sockets) - (0 in joined.exit.sockets)

    @async_test
    async def test_reported_fault_two_programs_one_destination(self) -> None:
        """The issue's figure: two associations, one destination, one ready circuit, three rounds
        each; each program receives its own three replies, none of the other's."""
        server, port = await self.serve(1)
        clients = await self.associations(port, 2)
        await self.exchange(server, clients, [self.net.echo_address])

    @async_test
    async def test_isolation_1_hop(self) -> None:
        """2 and 10 associations, one destination or one each, through 1 hop: each gets its own."""
        await self.isolation_matrix(1)

    @async_test
    async def test_isolation_3_hops(self) -> None:
        """The same through 3 hops (the exit sees only the last relay)."""
        await self.isolation_matrix(3)

    @async_test
    async def test_credentials_isolate_circuits(self) -> None:
        """Associations with the same RFC 1929 credentials share circuits of their own; other
        credentials get others; none uses the pool's circuit.  Replies stay exact, and a group's
        circuits are destroyed with its last association."""
        server, port = await self.serve(1)
        [pool] = self.client.active_data_circuits(1)
        shared = await self.associations(port, 1)
        alice = await self.associations(port, 2, credentials=(b"alice", b"pw"))
        bob = await self.associations(port, 1, credentials=(b"bob", b"pw"))
        everyone = shared + alice + bob
        await wait_for(lambda: all(g.ready() for g in server.groups.values()), 20, what="the groups' circuits")
        await self.exchange(server, everyone, [self.net.echo_address])
        circuits = [{flow.circuit for flow in a.flows.values()} for a in sorted(server.associations,
                                                                                key=lambda a: a.number)]
        self.assertEqual(circuits[0], {pool})
        self.assertEqual(circuits[1], circuits[2])
        self.assertEqual(len({frozenset(c) for c in circuits}), 3)
        self.assertTrue(all(c.purpose == ISOLATED for c in circuits[1] | circuits[3]))
        self.assertEqual(self.client.active_data_circuits(1), [pool])      # the pool never hands them out
        bob[0].close()
        [bob_circuit] = circuits[3]
        await wait_for(lambda: bob_circuit not in self.client.circuits and len(server.groups) == 1, 10,
                       what="bob's group and its circuit to go")

    @async_test
    async def test_refusals_counted_per_association(self) -> None:
        """An exit's refusal is counted for the association whose datagram it refused, by reason,
        never for another association on the same circuit."""
        server, port = await self.serve(1)
        polite, rude = await self.associations(port, 2)
        polite.send(self.net.echo_address, b"hello")
        await polite.receive(10)
        rude.send(("127.0.0.1", 53), b"below 1024")
        rude.send(("127.0.0.1", 1900), b"SSDP")
        await wait_for(lambda: sum(a.refusals.total() for a in server.associations) == 2, 10, what="the refusals")
        first, second = sorted(server.associations, key=lambda a: a.number)
        self.assertEqual((dict(first.refusals), dict(second.refusals)),
                         ({}, {"port_not_allowed": 1, "port_denied": 1}))
        rows = server.association_rows(reactor.seconds())
        self.assertEqual([(r["association"], r["refused"], r["refused_by"], r["flows"]) for r in rows],
                         [(1, 0, "-", 1), (2, 2, "port_denied 1, port_not_allowed 1", 1)])
        self.assertNotIn("destination_list", rows[0])
        self.assertNotIn("127.0.0.1", repr(rows))


class HiddenPeerTests(HiddenNetworkCase):
    """A hidden-service peer through the SOCKS5 front end of a member."""

    @async_test
    async def test_peer_data_reaches_the_claiming_association_only(self) -> None:
        """Alice's association sends to Bob (a ``.hidden`` name); Bob's application echoes; the echo
        reaches that association and not Alice's data handlers; a second association to the same
        peer is refused (it could not be told apart) until the first ends."""
        alice, bob = self.members
        alice.register("socks5-peers")
        bob.register("socks5-peers")
        await self.connected(alice, bob)
        await wait_for(lambda: any(s.established for s in alice.community.sessions_by_peer.values()), 20,
                       what="an established session")
        peer = next(p for p, s in alice.community.sessions_by_peer.items() if s.established)
        bob.community.add_data_handler(lambda circuit, source, payload: bob.community.tunnel_data(
            circuit, source, "data", b"echo: " + payload))
        server = Socks5Server(reactor, alice.community, 1)
        server.start()
        self.addCleanup(server.stop)
        listening = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        first, second = Socks5UdpClient(), Socks5UdpClient()
        for client in (first, second):
            await client.open(listening.getHost().port)
            self.addCleanup(client.close)
        alice.received.clear()
        first.send(peer, b"hello bob")
        self.assertEqual(await first.receive(20), (peer, b"echo: hello bob"))
        second.send(peer, b"me too")
        await wait_for(lambda: server.stats["dropped_peer_in_use"] == 1, 10, what="the second association refused")
        self.assertEqual(alice.received, [])
        first.close()
        await wait_for(lambda: len(server.associations) == 1, 10, what="the first association to end")
        second.send(peer, b"now me")
        self.assertEqual(await second.receive(20), (peer, b"echo: now me"))


class GroupBackoffTests(SynchronousTestCase):
    """An isolation group's builds back off after failures, on a Clock."""

    def test_failed_builds_back_off(self) -> None:
        """A refused build waits 1 s, then 2 s, ... at most MAX_BACKOFF; a successful one resets it."""
        clock = Clock()
        attempts: list[float] = []

        class Refusing:
            def start_circuit(self, hops: int, purpose: str) -> Any:
                attempts.append(clock.seconds())
                raise CircuitBuildFailed("not enough relays")

        group = IsolationGroup(Refusing(), 1, 1, clock, b"key")
        for _ in range(400):
            group.want()
            clock.advance(0.25)
        gaps = [b - a for a, b in zip(attempts, attempts[1:])]
        self.assertEqual(gaps[:5], [1.0, 2.0, 4.0, 8.0, 16.0])
        self.assertEqual(set(gaps[5:]), {MAX_BACKOFF})
        group.close()
        group.want()
        self.assertEqual(len(attempts), len(gaps) + 1)        # a closed group builds nothing
