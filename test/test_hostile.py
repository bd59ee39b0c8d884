"""Bad input over real UDP: dropped and counted, no crash, no state change, nothing lost."""
from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol

from tunnels.core.circuits import CircuitState
from tunnels.errors import CircuitBuildFailed
from tunnels.wire.cells import CELL_MARK, CELL_SIZE, CellType, Create, frame
from tunnels.wire.relay import RelayCommand
from test.netcase import NetworkTestCase
from test.util import async_test, wait_for


class _Sink(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        self.received.append(datagram)


class Capture:
    """Records the datagrams a node's endpoint writes (to replay or tamper with them)."""

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.write = endpoint._write

        def record(data: bytes, address: tuple[str, int]) -> Any:
            self.sent.append((data, address))
            return self.write(data, address)
        endpoint._write = record

    def cells(self, to: tuple[str, int], kind: CellType) -> list[bytes]:
        return [d for d, a in self.sent if a == to and d[0] == CELL_MARK and d[1] == kind]


class HostileInputTests(NetworkTestCase):
    async def _setup(self):  # type: ignore[no-untyped-def]
        circuit = await self.build(2)
        first = next(n for n in self.net.nodes if n.address == circuit.hops[0].address)
        return circuit, first

    def _snapshot(self, node: Any) -> tuple[Any, ...]:
        community = node.community
        return (dict(community.table.entries), set(community.relay.joined), dict(community.origin.circuits))

    @async_test
    async def test_garbage_from_a_stranger(self) -> None:
        """Malformed cells, unknown ids and spoofed circuit ids are dropped and counted; state is unchanged."""
        circuit, first = await self._setup()
        attacker = reactor.listenUDP(0, _Sink(), interface="127.0.0.1")
        self.addCleanup(attacker.stopListening)
        prev_id = next(iter(first.community.relay.joined)).prev_id
        before = self._snapshot(first)
        drops_before = sum(first.community.stats.drops.values())
        junk = [bytes((CELL_MARK,)), bytes((CELL_MARK,)) + bytes(100), bytes((CELL_MARK,)) + bytes(CELL_SIZE),
                bytes((CELL_MARK, 99)) + bytes(CELL_SIZE - 2), frame(CellType.RELAY, 12345, b""),
                frame(CellType.RELAY, prev_id, b"spoofed"), frame(CellType.DESTROY, prev_id, bytes(16)),
                frame(CellType.CREATED, prev_id, bytes(64)), frame(CellType.CREATE, 1, b"short")[:-1],
                bytes((CELL_MARK,)) + bytes(60000)]
        for datagram in junk:
            attacker.write(datagram, first.address)
        await wait_for(lambda: sum(first.community.stats.drops.values()) - drops_before >= len(junk) - 1, 5,
                       what="the drops to be counted")
        self.assertEqual(self._snapshot(first), before)
        drops = first.community.stats.drops
        self.assertGreaterEqual(drops["bad_length"], 3)
        self.assertGreaterEqual(drops["unknown_circuit"], 3)
        self.assertGreaterEqual(drops["unexpected_created"], 1)
        self.assertEqual(drops["internal_error"], 0)
        self.assertEqual(await self.echo_round_trip(circuit, b"nothing lost"), [b"nothing lost"])

    @async_test
    async def test_forward_replay_dropped_at_first_hop(self) -> None:
        """A captured forward cell sent again (from the right address) is dropped as a replay."""
        circuit, first = await self._setup()
        capture = Capture(self.net.clients[0].endpoint)
        await self.echo_round_trip(circuit, b"once")
        relay_cells = capture.cells(first.address, CellType.RELAY)
        self.assertEqual(len(relay_cells), 1)
        received = len(self.net.echo.received)
        capture.write(relay_cells[0], first.address)
        await wait_for(lambda: first.community.stats.drops["replay"] == 1, 5)
        await asyncio.sleep(0.1)
        self.assertEqual(len(self.net.echo.received), received)
        self.assertTrue(circuit.ready)

    @async_test
    async def test_backward_replay_dropped_by_originator(self) -> None:
        """A captured backward cell sent again to the client is dropped; the data is delivered once."""
        circuit, first = await self._setup()
        capture = Capture(first.endpoint)
        got = await self.echo_round_trip(circuit, b"reply once")
        self.assertEqual(got, [b"reply once"])
        back = capture.cells(self.net.clients[0].address, CellType.RELAY)
        for cell in back:
            capture.write(cell, self.net.clients[0].address)
        await wait_for(lambda: self.client.stats.drops["replay"] == len(back), 5)
        self.assertTrue(circuit.ready)

    @async_test
    async def test_tampered_cell_destroys_the_circuit(self) -> None:
        """A forward cell altered in flight is never delivered; the first hop destroys the circuit."""
        circuit, first = await self._setup()
        capture = Capture(self.net.clients[0].endpoint)
        original = capture.write
        delivered_before = len(self.net.echo.received)

        def tamper(data: bytes, address: tuple[str, int]) -> Any:
            if data[1] == CellType.RELAY:
                data = data[:500] + bytes((data[500] ^ 0x04,)) + data[501:]
            return original(data, address)
        capture.endpoint._write = tamper
        self.client.tunnel_data(circuit, self.net.echo_address, "data", b"must not arrive")
        await wait_for(lambda: circuit.state is CircuitState.CLOSED, 5, what="the circuit to be destroyed")
        self.assertEqual(first.community.stats.drops["integrity"], 1)
        self.assertEqual(len(self.net.echo.received), delivered_before)
        await wait_for(lambda: not self.joined(), 5)

    @async_test
    async def test_backward_flips_in_dropped_bytes_rejected(self) -> None:
        """Backward cells with a bit flipped in the header bytes later relays drop (cell offsets
        102-165 on the exit's link, 134-165 on the middle's, on 3 hops) were accepted and
        delivered; now the originator rejects them and closes the circuit.  A flipped mark byte
        is counted by the transport instead of vanishing into IPv8."""
        cases = [(2, 102), (2, 133), (2, 165), (1, 134), (1, 165), (0, 0)]
        for hop, offset in cases:
            circuit = await self.build(3)
            node = next(n for n in self.net.nodes if n.address == circuit.hops[hop].address)
            to = circuit.hops[hop - 1].address if hop else self.net.clients[0].address
            original = node.endpoint._write
            flipped: list[int] = []

            def tamper(data: bytes, address: tuple[str, int], original: Any = original, offset: int = offset,
                       to: Any = to, flipped: list[int] = flipped) -> Any:
                if not flipped and address == to and data[0] == CELL_MARK and data[1] == CellType.RELAY:
                    flipped.append(offset)
                    data = data[:offset] + bytes((data[offset] ^ (1 << offset % 8),)) + data[offset + 1:]
                return original(data, address)
            node.endpoint._write = tamper
            integrity = self.client.stats.drops["integrity"]
            not_ours = self.client.stats.drops["not_ours"]
            got: list[bytes] = []
            self.client.add_data_handler(lambda c, source, data, circuit=circuit: c is circuit and got.append(data))
            self.client.tunnel_data(circuit, self.net.echo_address, "data", b"flip %d" % offset)
            if offset == 0:
                await wait_for(lambda: self.client.stats.drops["not_ours"] == not_ours + 1, 5,
                               what="the mark flip counted")
            else:
                await wait_for(lambda: circuit.state is CircuitState.CLOSED, 5, what=f"offset {offset} rejected")
                self.assertEqual(self.client.stats.drops["integrity"], integrity + 1)
                self.assertEqual(circuit.close_reason, "integrity")
            node.endpoint._write = original
            self.assertEqual(flipped, [offset])
            self.assertEqual(got, [])
            self.client.remove_circuit(circuit)

    @async_test
    async def test_destinations_the_relay_could_not_name_back(self) -> None:
        """Found by fuzzing: DATA to a hostname with a NUL byte, or of 254 bytes, decoded fine but
        could not be encoded in the refusal, so one cell made any last hop log a traceback.
        Now the decoder refuses what the encoder cannot send: a counted drop, no exception."""
        circuit = await self.build(1)
        last = next(n for n in self.net.nodes if n.address == circuit.hops[0].address).community
        for name in (b"a\x00b", b"a" * 254):
            destination = b"\x03" + bytes((len(name),)) + name + b"\x00\x35"
            self.client.origin.send_message(circuit, RelayCommand.DATA, destination + b"x")
        await wait_for(lambda: last.stats.drops["malformed_data"] == 2, 5)
        self.assertEqual(last.stats.drops["internal_error"], 0)
        self.assertTrue(circuit.ready)

    @async_test
    async def test_create_with_bound_id_and_forged_destroy(self) -> None:
        """A CREATE reusing a bound id is dropped; a DESTROY without the link token is dropped."""
        circuit, first = await self._setup()
        client_write = self.net.clients[0].endpoint._write
        before = self._snapshot(first)
        create = Create(first.community.my_peer.mid, first.community.relay.onion_key, bytes(32), bytes(16))
        client_write(frame(CellType.CREATE, circuit.circuit_id, create.encode()), first.address)
        client_write(frame(CellType.DESTROY, circuit.circuit_id, b"\x01" * 16), first.address)
        await wait_for(lambda: first.community.stats.drops["duplicate_create"] == 1 and
                       first.community.stats.drops["destroy_bad_token"] == 1, 5)
        self.assertEqual(self._snapshot(first), before)
        self.assertEqual(await self.echo_round_trip(circuit, b"alive"), [b"alive"])

    @async_test
    async def test_low_order_key_refused(self) -> None:
        """A CREATE with a low-order client key is refused with DESTROY and no state."""
        first = self.net.relays[0]
        sink = _Sink()
        port = reactor.listenUDP(0, sink, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        create = Create(first.community.my_peer.mid, first.community.relay.onion_key, bytes(32), b"t" * 16)
        port.write(frame(CellType.CREATE, 77, create.encode()), first.address)
        await wait_for(lambda: bool(sink.received), 5)
        self.assertEqual(sink.received[0][1], CellType.DESTROY)
        self.assertEqual(sink.received[0][6:22], b"t" * 16)
        self.assertEqual(first.community.stats.events["create_refused_handshake"], 1)
        self.assertEqual(len(first.community.joined_circuits), 0)


class ProductionRulesTests(NetworkTestCase):
    """Outside test-network mode, relays never extend and exits never send to loopback."""

    testnet = False

    @async_test
    async def test_no_extend_to_loopback(self) -> None:
        """EXTEND to a 127.0.0.1 peer is refused (EXTEND_FAILED) and the target gets no CREATE."""
        received = [n.endpoint.bytes_down for n in self.net.nodes]
        with self.assertRaises(CircuitBuildFailed):
            await self.build(2)
        refusals = sum(n.community.stats.events["extend_refused_non_global_address"] for n in self.net.nodes)
        self.assertEqual(refusals, 1)
        creates = sum(n.community.stats.events["circuits_joined"] for n in self.net.nodes)
        self.assertEqual(creates, 1)
        self.assertTrue(received)

    @async_test
    async def test_no_exit_to_loopback(self) -> None:
        """A 1-hop circuit builds, but the exit refuses the loopback echo server and says why."""
        circuit = await self.build(1)
        refusals: list[str] = []
        self.client.add_refusal_handler(lambda c, d, reason: refusals.append(reason))
        self.client.tunnel_data(circuit, self.net.echo_address, "data", b"x")
        await wait_for(lambda: bool(refusals), 5)
        # 127.0.0.1 is both loopback and the exit's own address; either rule refuses it.
        self.assertIn(refusals[0], ("exit's own address", "loopback"))
        self.assertEqual(self.net.echo.received, [])


class CounterAndRandomnessTests(NetworkTestCase):
    @async_test
    async def test_counters_end_the_circuit_before_wrapping(self) -> None:
        """A forward counter at the limit closes our circuit; a relay's backward counter likewise."""
        from tunnels.crypto.onion import MAX_SEQ
        circuit = await self.build(2)
        circuit.hops[1].fwd_seq = MAX_SEQ - 1
        self.client.tunnel_data(circuit, self.net.echo_address, "data", b"x")
        self.assertEqual((circuit.state, circuit.close_reason), (CircuitState.CLOSED, "counter_exhausted"))
        other = await self.build(1)
        community, joined = next((n.community, j) for n in self.net.nodes for j in n.community.joined_circuits
                                 if n.address == other.hops[0].address)
        joined.bwd_seq = MAX_SEQ
        community.relay.sweep()
        self.assertNotIn(joined, community.joined_circuits)
        self.assertEqual(community.stats.events["joined_closed_counter_exhausted"], 1)

    @async_test
    async def test_identifiers_never_use_the_random_module(self) -> None:
        """Circuit ids, tokens and keys come from the OS CSPRNG: building works with random's functions broken."""
        import random

        def broken(*args: object, **kwargs: object) -> None:
            raise AssertionError("module-level random used for a protocol identifier")
        for name in ("random", "getrandbits", "randbytes", "randrange", "randint", "choice"):
            self.patch(random, name, broken)
        circuit = await self.build(3)
        self.assertEqual(await self.echo_round_trip(circuit, b"csprng"), [b"csprng"])
