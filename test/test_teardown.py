"""Circuit teardown and the limits relays and originators enforce, over real UDP."""
from __future__ import annotations

import asyncio

from tunnels.core.circuits import CircuitState
from tunnels.errors import CircuitBuildFailed
from tunnels.core.origin import PathHop
from tunnels.runtime import as_future
from tunnels.settings import TunnelSettings
from tunnels.wire.cells import CELL_SIZE
from test.netcase import NetworkTestCase
from test.util import async_test, wait_for


class DestroyTests(NetworkTestCase):
    async def _three_hops(self):  # type: ignore[no-untyped-def]
        circuit = await self.build(3)
        await wait_for(lambda: len(self.joined()) == 3, 5, what="three joined circuits")
        return circuit

    async def _all_clean(self, circuit) -> None:  # type: ignore[no-untyped-def]
        await wait_for(lambda: not self.joined() and circuit.state is CircuitState.CLOSED, 5,
                       what="every node to forget the circuit")
        for node in self.net.nodes:
            owned = [e for e in node.community.table.entries.values() if e[1] is circuit]
            self.assertEqual(owned, [])

    @async_test
    async def test_destroy_from_originator(self) -> None:
        """remove_circuit tears the circuit down at every relay."""
        circuit = await self._three_hops()
        self.client.remove_circuit(circuit)
        await self._all_clean(circuit)

    @async_test
    async def test_destroy_from_exit_and_middle(self) -> None:
        """A relay at any position that destroys the circuit cleans up both directions."""
        for position in (2, 1):
            circuit = await self._three_hops()
            address = circuit.hops[position].address
            community, joined = next((c, j) for c, j in self.joined() if c.udp.port == address[1])
            community.relay.destroy(joined, "test")
            await self._all_clean(circuit)
            self.assertEqual(circuit.close_reason, "destroyed_by_relay")

    @async_test
    async def test_unloading_a_relay_destroys_its_circuits(self) -> None:
        """Stopping a middle relay tells its neighbours; the originator's circuit closes."""
        circuit = await self._three_hops()
        middle = next(n for n in self.net.nodes if n.address == circuit.hops[1].address)
        await as_future(middle.stop())
        self.net.relays = [n for n in self.net.relays if n is not middle]
        self.net.exits = [n for n in self.net.exits if n is not middle]
        await wait_for(lambda: circuit.state is CircuitState.CLOSED and not self.joined(), 5)


class _OneHopCase(NetworkTestCase):
    """Builds 1-hop relay circuits to a chosen node."""

    async def _build_to(self, community, target, count):  # type: ignore[no-untyped-def]
        hop = next(c for c in community.candidates() if c.address == target.address)
        circuits = [community.origin.build([PathHop(hop.address, hop.node_id, hop.onion_key)], "relay")
                    for _ in range(count)]
        await wait_for(lambda: all(c.state is not CircuitState.EXTENDING for c in circuits), 5)
        return circuits


class JoinLimitTests(_OneHopCase):
    settings = TunnelSettings(max_joined_circuits=3, max_joined_share=1.0, max_joined_prefix_share=1.0)

    @async_test
    async def test_max_joined_circuits(self) -> None:
        """A relay accepts exactly max_joined_circuits, refuses the next with DESTROY, and has room again later."""
        target = self.net.relays[0]
        circuits = await self._build_to(self.client, target, 4)
        self.assertEqual([c.state for c in circuits], [CircuitState.READY] * 3 + [CircuitState.CLOSED])
        self.assertEqual(circuits[3].close_reason, "refused")
        self.assertEqual(target.community.stats.events["create_refused_full"], 1)
        self.assertEqual(len(target.community.joined_circuits), 3)
        self.client.remove_circuit(circuits[0])
        await wait_for(lambda: len(target.community.joined_circuits) == 2, 5)
        again = await self._build_to(self.client, target, 1)
        self.assertTrue(again[0].ready)


class ShareLimitTests(_OneHopCase):
    settings = TunnelSettings(max_joined_circuits=4, max_joined_share=0.5)
    testnet = False  # per-IP sources, as on the Internet (a test network counts each node's port apart)

    @async_test
    async def test_per_source_share(self) -> None:
        """One source address (every node here is 127.0.0.1) gets at most its share: 2 of 4."""
        target = self.net.relays[0]
        circuits = await self._build_to(self.client, target, 2)
        circuits += await self._build_to(self.net.relays[1].community, target, 1)
        self.assertEqual([c.ready for c in circuits], [True, True, False])
        self.assertEqual(target.community.stats.events["create_refused_source_share_exceeded"], 1)


class TestNetworkShareTests(_OneHopCase):
    settings = TunnelSettings(max_joined_circuits=8, max_joined_share=0.25)

    @async_test
    async def test_each_node_is_a_source(self) -> None:
        """In a test network (every node on 127.0.0.1) each node's port is its own source: the client
        gets its share of 2 (a third is refused), and another node still gets a share of its own."""
        target = self.net.relays[0]
        circuits = await self._build_to(self.client, target, 3)
        circuits += await self._build_to(self.net.relays[1].community, target, 2)
        self.assertEqual([c.ready for c in circuits], [True, True, False, True, True])
        self.assertEqual(target.community.stats.events["create_refused_source_share_exceeded"], 1)


class CreateRateTests(_OneHopCase):
    settings = TunnelSettings(create_rate=0.5, create_burst=2)

    @async_test
    async def test_create_rate_per_source(self) -> None:
        """CREATEs from one source beyond the token bucket's burst are refused and counted."""
        target = self.net.relays[0]
        circuits = await self._build_to(self.client, target, 3)
        self.assertEqual([c.ready for c in circuits], [True, True, False])
        self.assertEqual(target.community.stats.events["create_refused_create_rate"], 1)


class LimitTests(NetworkTestCase):
    settings = TunnelSettings(min_circuits=1, max_circuits=1, max_time=3.0, max_time_inactive=1.5,
                              max_traffic=40 * CELL_SIZE)

    def _count(self, reason: str) -> int:
        """How often any node (originator or relay) closed a circuit for ``reason``."""
        return sum(node.community.stats.events[f"joined_closed_{reason}"] +
                   node.community.stats.events[f"circuits_closed_{reason}"] for node in self.net.nodes)

    @async_test
    async def test_max_time_ends_circuits_and_pool_rebuilds(self) -> None:
        """After max_time the circuit goes everywhere and build_tunnels replaces it."""
        self.client.build_tunnels(2)
        await wait_for(lambda: self.client.tunnels_ready(2) == 1.0, 5)
        first = self.client.active_data_circuits(2)[0]
        await wait_for(lambda: first.state is CircuitState.CLOSED, 6, what="max_time")
        self.assertIn(first.close_reason, ("max_time", "destroyed_by_relay"))
        self.assertGreaterEqual(self._count("max_time"), 1)
        await wait_for(lambda: self.client.tunnels_ready(2) == 1.0, 5, what="rebuilt pool")
        self.assertIsNot(self.client.active_data_circuits(2)[0], first)

    @async_test
    async def test_relays_drop_silent_circuits(self) -> None:
        """Relays enforce max_time_inactive on their own when the originator vanishes silently."""
        circuit = await self.build(2)
        await wait_for(lambda: len(self.joined()) == 2, 5)
        self.client.origin.close(circuit, "vanished", notify=False)
        await wait_for(lambda: not self.joined(), 4, what="relays to expire the idle circuit")
        reasons = sum(node.community.stats.events["joined_closed_max_time_inactive"] for node in self.net.nodes)
        self.assertGreaterEqual(reasons, 1)

    @async_test
    async def test_keepalives_hold_idle_circuits(self) -> None:
        """An idle circuit of ours survives past max_time_inactive thanks to keep-alive pings."""
        circuit = await self.build(3)
        await asyncio.sleep(2.2)
        self.assertTrue(circuit.ready)
        self.assertEqual(len(self.joined()), 3)

    @async_test
    async def test_max_traffic_ends_circuit(self) -> None:
        """Past max_traffic (40 cells) the circuit is torn down, by the originator and the relays."""
        circuit = await self.build(1)
        for i in range(30):
            if not circuit.ready:
                break
            self.client.tunnel_data(circuit, self.net.echo_address, "data", b"%d" % i)
            await asyncio.sleep(0.01)
        await wait_for(lambda: circuit.state is CircuitState.CLOSED, 3, what="max_traffic")
        self.assertIn(circuit.close_reason, ("max_traffic", "destroyed_by_relay"))
        self.assertGreaterEqual(self._count("max_traffic"), 1)
        self.assertLessEqual(len(self.net.echo.received), 40)


class BuildFailureTests(NetworkTestCase):
    settings = TunnelSettings(max_joined_circuits=0)

    @async_test
    async def test_relay_with_no_capacity_refuses(self) -> None:
        """A node with max_joined_circuits=0 advertises neither relay nor exit and refuses CREATE."""
        self.assertEqual(self.client.candidates(), [])
        self.assertTrue(self.client.peer_flags)
        target = self.net.relays[0].community
        path = [PathHop(self.net.relays[0].address, target.my_peer.mid, target.relay.onion_key)]
        circuit = self.client.origin.build(path, "relay")
        await wait_for(lambda: circuit.state is CircuitState.CLOSED, 5)
        with self.assertRaises(CircuitBuildFailed):
            await as_future(self.client.create_circuit(1, exit_data=False))
