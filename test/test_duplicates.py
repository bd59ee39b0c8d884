"""Duplicated cells die at the first honest relay, both ways, over real UDP.

Every node's socket writes each datagram twice (a duplicating network).  Relays must pass
each cell on once, whichever the direction, and count the copies they drop.
"""
from __future__ import annotations

from typing import Any

from tunnels.wire.cells import CELL_MARK, CellType
from test.netcase import NetworkTestCase
from test.util import async_test, wait_for


class Duplicator:
    """Makes a node's endpoint write every datagram twice, and records each write once."""

    def __init__(self, endpoint: Any) -> None:
        self.writes: list[tuple[bytes, tuple[str, int]]] = []
        write = endpoint._write

        def twice(data: bytes, address: tuple[str, int]) -> Any:
            self.writes.append((data, address))
            write(data, address)
            return write(data, address)
        endpoint._write = twice

    def relay_cells(self, to: tuple[str, int], circuit_id: int) -> int:
        """RELAY cells written to ``to`` on ``circuit_id`` (each counted once)."""
        return sum(1 for d, a in self.writes if a == to and d[0] == CELL_MARK and d[1] == CellType.RELAY
                   and int.from_bytes(d[2:6], "big") == circuit_id)


class DuplicateTests(NetworkTestCase):
    relays = 3
    exits = 1

    @async_test
    async def test_duplicates_dropped_both_ways_at_every_relay(self) -> None:
        """On a 3-hop circuit over a network that duplicates every datagram, the middle relay and
        the first hop each pass on exactly the backward cells the exit wrote (before: 306 written
        by the exit became 915 at the middle and 2,134 at the first hop), every relay forwards
        each forward cell once, and each drops and counts the copies."""
        circuit = await self.build(3)
        nodes = {n.address: n for n in self.net.nodes}
        first, middle, last = (nodes[h.address] for h in circuit.hops)
        taps = {n.address: Duplicator(n.endpoint) for n in (first, middle, last, self.net.clients[0])}
        joined = {n.address: n.community.joined_circuits[0] for n in (first, middle, last)}
        payloads = [b"echo %d" % i for i in range(30)]  # below the exit's unanswered-packet limit
        got: list[bytes] = []
        self.client.add_data_handler(lambda c, source, data: got.append(data))
        for payload in payloads:
            self.client.tunnel_data(circuit, self.net.echo_address, "data", payload)
        await wait_for(lambda: sorted(set(got)) == sorted(payloads), 10, what="every echo")

        def backward(node: Any) -> int:
            return taps[node.address].relay_cells(joined[node.address].prev_address, joined[node.address].prev_id)

        def forward(node: Any) -> int:
            jc = joined[node.address]
            return taps[node.address].relay_cells(jc.next_address, jc.next_id)
        client = self.net.clients[0]

        def snapshot() -> dict[str, tuple[int, ...]]:
            """What the exit wrote and the client sent, and what each node passed on and dropped."""
            sent = taps[client.address].relay_cells(first.address, circuit.circuit_id)
            return {"written by the exit, sent by the client": (backward(last), sent),
                    "backward passed on by middle, first": (backward(middle), backward(first)),
                    "forward passed on by first, middle": (forward(first), forward(middle)),
                    "backward copies dropped by middle, first, client": tuple(
                        n.community.stats.drops[r] for n, r in ((middle, "backward_duplicate"),
                                                                 (first, "backward_duplicate"), (client, "replay"))),
                    "forward copies dropped by first, middle, exit": tuple(
                        n.community.stats.drops["replay"] for n in (first, middle, last))}

        def expected(counts: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
            written, sent = counts["written by the exit, sent by the client"]
            return {"written by the exit, sent by the client": (written, sent),
                    "backward passed on by middle, first": (written, written),
                    "forward passed on by first, middle": (sent, sent),
                    "backward copies dropped by middle, first, client": (written,) * 3,
                    "forward copies dropped by first, middle, exit": (sent,) * 3}
        try:  # the exact comparison below decides; this only lets the last copies arrive
            await wait_for(lambda: snapshot() == expected(snapshot()), 5)
        except AssertionError:
            pass
        counts = snapshot()
        self.assertEqual(counts, expected(counts))
        self.assertGreaterEqual(backward(last), len(payloads))
        self.assertEqual(got.count(payloads[0]), 1)
        self.assertEqual(len(got), len(payloads))
