"""Flow control: SENDME windows, bounded queues, and a sender faster than the path."""
from __future__ import annotations

import asyncio

from twisted.trial.unittest import SynchronousTestCase

from tunnels.core.circuits import CircuitState
from tunnels.core.peering import DISCOVERY_DROPS
from tunnels.settings import TunnelSettings
from tunnels.core.flow import QUEUE_LIMIT, SEND_WINDOW, SENDME_EVERY, FlowWindow
from tunnels.wire.relay import RelayCommand
from test.netcase import NetworkTestCase
from test.util import async_test, wait_for


class WindowTests(SynchronousTestCase):
    def test_window_queue_and_sendme(self) -> None:
        """SEND_WINDOW cells go out, QUEUE_LIMIT wait, the rest is refused; a SENDME releases more."""
        sent: list[int] = []
        flow = FlowWindow()
        results = [flow.offer((RelayCommand.DATA, bytes([i % 256])), lambda c, d: sent.append(d[0]))
                   for i in range(SEND_WINDOW + QUEUE_LIMIT + 10)]
        self.assertEqual(len(sent), SEND_WINDOW)
        self.assertEqual(results.count(False), 10)
        self.assertTrue(flow.on_sendme(lambda c, d: sent.append(d[0])))
        self.assertEqual(len(sent), SEND_WINDOW + SENDME_EVERY)
        self.assertEqual(sent, [i % 256 for i in range(len(sent))])

    def test_a_datagram_is_queued_whole_or_not_at_all(self) -> None:
        """offer_all takes every piece of a datagram or none: never half a datagram queued."""
        sent: list[bytes] = []
        flow = FlowWindow()
        send = lambda c, d: sent.append(d)  # noqa: E731
        self.assertTrue(flow.offer_all([(RelayCommand.DATA_FRAGMENT, b"a")] * (SEND_WINDOW + QUEUE_LIMIT - 3), send))
        self.assertFalse(flow.offer_all([(RelayCommand.DATA_FRAGMENT, b"b")] * 4, send))
        self.assertEqual((len(sent), len(flow.queue)), (SEND_WINDOW, QUEUE_LIMIT - 3))
        self.assertTrue(flow.offer_all([(RelayCommand.DATA_FRAGMENT, b"c")] * 3, send))
        self.assertEqual(len(flow.queue), QUEUE_LIMIT)
        self.assertFalse(flow.offer_all([(RelayCommand.DATA_FRAGMENT, b"d")], send))

    def test_sendme_beyond_the_window_is_a_violation(self) -> None:
        """A SENDME for cells never sent is refused (the circuit must then end)."""
        self.assertFalse(FlowWindow().on_sendme(lambda c, d: None))

    def test_sendme_due_every_n_cells(self) -> None:
        """The receiver owes a SENDME after every SENDME_EVERY data cells."""
        flow = FlowWindow()
        due = [flow.on_data() for _ in range(3 * SENDME_EVERY)]
        self.assertEqual([i + 1 for i, d in enumerate(due) if d], [SENDME_EVERY, 2 * SENDME_EVERY, 3 * SENDME_EVERY])


class FastSenderTests(NetworkTestCase):
    # The exit's anti-amplification limit (packets before a destination answers) would refuse most of
    # a burst to a fresh destination; this test is about flow control, so it lifts that limit.
    settings = TunnelSettings(exit_unanswered_packets=100_000)

    @async_test
    async def test_faster_than_the_path(self) -> None:
        """A burst far beyond the window: nothing is lost inside the network (every accepted datagram
        leaves the exit), excess is dropped and counted at the sender, the circuit keeps delivering.
        (The echo server's own socket buffer may overflow; that loss is outside the network.)"""
        circuit = await self.build(3)
        burst = SEND_WINDOW + QUEUE_LIMIT + 2000
        payload = bytes(1000)
        for i in range(burst):
            self.client.tunnel_data(circuit, self.net.echo_address, "data", payload)
        dropped = self.client.stats.drops["flow_queue_full"]
        self.assertEqual(dropped, burst - SEND_WINDOW - QUEUE_LIMIT)
        exit_node = next(n.community for n in self.net.nodes if n.address == circuit.hops[-1].address)
        await wait_for(lambda: exit_node.stats.events["exit_packets_out"] == SEND_WINDOW + QUEUE_LIMIT, 20,
                       what="every accepted datagram to leave the exit")
        await wait_for(lambda: circuit.flow.window == SEND_WINDOW and not circuit.flow.queue, 10,
                       what="the window to reopen")
        self.assertTrue(circuit.ready)
        relay_drops = sum(count for n in self.net.nodes if n.community is not self.client
                          for reason, count in n.community.stats.drops.items() if reason not in DISCOVERY_DROPS)
        self.assertEqual(relay_drops, 0)
        got: list[bytes] = []
        self.client.add_data_handler(lambda c, source, payload: got.append(payload))
        self.client.tunnel_data(circuit, self.net.echo_address, "data", b"after the burst")
        await wait_for(lambda: b"after the burst" in got, 10, what="delivery after the burst")

    @async_test
    async def test_forged_sendme_ends_the_circuit(self) -> None:
        """SENDMEs for data never sent make the exit destroy the circuit (no window inflation)."""
        circuit = await self.build(2)
        for _ in range(3):
            self.client.origin.send_message(circuit, RelayCommand.SENDME, b"")
        await wait_for(lambda: circuit.state is CircuitState.CLOSED, 5)
        drops = sum(n.community.stats.drops["unexpected_sendme"] for n in self.net.nodes)
        self.assertEqual(drops, 1)
        await asyncio.sleep(0)
