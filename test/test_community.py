"""Circuits over real UDP on 127.0.0.1: building, carrying data, the seed API."""
from __future__ import annotations

import asyncio
from typing import Any

from tunnels.core.circuits import Circuit, CircuitState
from tunnels.core.origin import PathHop
from tunnels.core.pathsel import PeerFlag
from tunnels.errors import CircuitBuildFailed, CircuitNotReady, DatagramTooLarge, NoExitAvailable
from tunnels.runtime import as_future
from tunnels.settings import TunnelSettings
from test.netcase import NetworkTestCase
from test.util import async_test, wait_for


class DataTests(NetworkTestCase):
    @async_test
    async def test_circuits_of_1_2_3_hops_carry_data_exactly_once(self) -> None:
        """Data reaches a real UDP server through the exit; the reply comes back byte-identical, once."""
        for hops in (1, 2, 3):
            circuit = await self.build(hops)
            self.assertEqual((circuit.state, len(circuit.hops)), (CircuitState.READY, hops))
            payload = bytes(range(256)) * 4 + hops.to_bytes(1, "big")
            before = len(self.net.echo.received)
            self.assertEqual(await self.echo_round_trip(circuit, payload), [payload])
            self.assertEqual([d for _, d in self.net.echo.received[before:]], [payload])

    @async_test
    async def test_hops_are_distinct_and_end_at_an_exit(self) -> None:
        """The client picks distinct hops itself; the last one is an exit, the first is not."""
        exits = {node.address for node in self.net.exits}
        for _ in range(5):
            circuit = await self.build(3)
            addresses = [hop.address for hop in circuit.hops]
            self.assertEqual(len(set(addresses)), 3)
            self.assertIn(addresses[-1], exits)
            self.assertNotIn(addresses[0], exits)

    @async_test
    async def test_lengthened_circuit(self) -> None:
        """A ready circuit lengthened by one hop (a hidden-service half built ahead) is ready again
        with that hop last and carries data through it; so is one lengthened while being built."""
        client = self.client
        for wait_first in (True, False):
            circuit = client.start_circuit(1, exit_data=False, purpose="relay")
            if wait_first:
                await as_future(client.when_ready(circuit))
            first = circuit.path[0].node_id
            exit_ = next(c for c in client.candidates() if PeerFlag.EXIT in c.flags and c.node_id != first)
            client.origin.lengthen(circuit, PathHop(exit_.address, exit_.node_id, exit_.onion_key))
            self.assertEqual(circuit.state, CircuitState.EXTENDING)
            await as_future(client.when_ready(circuit))
            self.assertEqual([h.node_id for h in circuit.hops], [first, exit_.node_id])
            self.assertEqual(await self.echo_round_trip(circuit, b"one hop more"), [b"one hop more"])
            client.remove_circuit(circuit)
            with self.assertRaises(CircuitBuildFailed):
                client.origin.lengthen(circuit, PathHop(exit_.address, exit_.node_id, exit_.onion_key))

    @async_test
    async def test_str_payload_is_utf8(self) -> None:
        """A str payload travels as UTF-8."""
        circuit = await self.build(1)
        self.assertEqual(await self.echo_round_trip(circuit, "grüß".encode()), ["grüß".encode()])
        got: list[bytes] = []
        self.client.add_data_handler(lambda c, s, p: got.append(p))
        self.client.tunnel_data(circuit, self.net.echo_address, "data", "grüß")
        await wait_for(lambda: bool(got), 5)
        self.assertEqual(got, ["grüß".encode()])


class SeedApiTests(NetworkTestCase):
    settings = TunnelSettings(min_circuits=2, max_circuits=3)

    @async_test
    async def test_seed_examples_run_as_written(self) -> None:
        """The seed text's calls work verbatim: build_tunnels(1), [0] indexing, ("", 5), u"data", "1"."""
        community = self.client
        refusals: list[tuple[Any, str]] = []
        community.add_refusal_handler(lambda circuit, destination, reason: refusals.append((destination, reason)))
        community.build_tunnels(1)
        await wait_for(lambda: community.tunnels_ready() >= 1.0, 10, what="tunnels_ready")
        community.tunnel_data(community.active_data_circuits()[0], ("", 5), u"data", "1")
        await wait_for(lambda: bool(refusals), 5, what="the exit's answer")
        # ("", 5) is the unspecified address: the exit refuses it and says why.
        self.assertEqual(refusals[0][0], ("0.0.0.0", 5))
        self.assertTrue(refusals[0][1])

    @async_test
    async def test_pool_between_min_and_max(self) -> None:
        """build_tunnels keeps min..max ready circuits of that hop count; tunnels_ready caps at 1.0."""
        community = self.client
        self.assertEqual(community.tunnels_ready(2), 0.0)
        community.build_tunnels(2)
        await wait_for(lambda: len(community.active_data_circuits(2)) == 3, 10, what="full pool")
        await asyncio.sleep(0.5)
        self.assertEqual(len(community.active_data_circuits(2)), 3)
        self.assertEqual(community.tunnels_ready(2), 1.0)
        self.assertTrue(all(c.goal_hops == 2 for c in community.active_data_circuits()))
        community.remove_circuit(community.active_data_circuits(2)[0])
        await wait_for(lambda: len(community.active_data_circuits(2)) == 3, 10, what="rebuilt pool")

    @async_test
    async def test_api_errors(self) -> None:
        """Bad calls raise clear errors before any I/O."""
        community = self.client
        circuit = await self.build(1)
        echo = self.net.echo_address
        sent = self.net.clients[0].endpoint.bytes_up
        for args, error in (((circuit, echo, "ping", b"x"), ValueError),
                            ((circuit, echo, "data", 42), TypeError),
                            ((circuit, ("127.0.0.1", 0), "data", b"x"), ValueError),
                            ((circuit, ("127.0.0.1", 70000), "data", b"x"), ValueError),
                            ((circuit, ("bad host!", 53), "data", b"x"), ValueError),
                            ((circuit, "127.0.0.1:53", "data", b"x"), TypeError),
                            ((circuit, echo, "data", bytes(65508)), DatagramTooLarge),
                            (("circuit", echo, "data", b"x"), CircuitNotReady)):
            with self.assertRaises(error, msg=repr(args[1:3])):
                community.tunnel_data(*args)
        self.assertEqual(self.net.clients[0].endpoint.bytes_up, sent)
        community.tunnel_data(circuit, (echo[0], 1), "data", b"cached")   # valid (the exit will refuse it)
        with self.assertRaises(TypeError):                                 # True == 1, but is no port
            community.tunnel_data(circuit, (echo[0], True), "data", b"x")
        for hops, error in ((0, ValueError), (9, ValueError), (True, TypeError), (1.0, TypeError)):
            with self.assertRaises(error):
                community.build_tunnels(hops)
        community.remove_circuit(circuit)
        with self.assertRaises(CircuitNotReady):
            community.tunnel_data(circuit, echo, "data", b"x")

    @async_test
    async def test_callback_errors_are_isolated(self) -> None:
        """A data handler that raises does not break delivery to others or the circuit."""
        circuit = await self.build(1)

        def broken(c: Circuit, s: Any, p: bytes) -> None:
            raise RuntimeError("application bug")
        self.client.add_data_handler(broken)
        self.assertEqual(await self.echo_round_trip(circuit, b"still fine"), [b"still fine"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(circuit.ready)


class NoExitTests(NetworkTestCase):
    exits = 0

    @async_test
    async def test_no_exit_gives_clear_failure(self) -> None:
        """Without exits, building a data circuit fails with NoExitAvailable."""
        with self.assertRaises(NoExitAvailable):
            await as_future(self.client.create_circuit(2))
