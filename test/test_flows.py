# -*- test-case-name: test.test_flows -*-
"""Flows (doc/protocol.md 4.3): ids at the originator, routing of replies and refusals, and the
exit's per-flow sockets over real UDP on 127.0.0.1."""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tunnels.core.circuits import Circuit, CircuitState
from tunnels.core.destinations import DestinationCache
from tunnels.core.flows import forget_all, forget_flow, new_flow
from tunnels.core.origin import OriginRole
from tunnels.core.reassembly import ReassemblyBuffer
from tunnels.core.routing import LinkTable
from tunnels.errors import CircuitNotReady, FlowLimitReached
from tunnels.exit import refusals
from tunnels.exit.flows import ENDED_MEMORY, ExitFlows, FlowBudget
from tunnels.exit.policy import DestinationGuard, ExitPolicy
from tunnels.exit.sockets import ExitSocket
from tunnels.ratelimit import TokenBucket
from tunnels.runtime import listen_udp
from tunnels.settings import TunnelSettings
from tunnels.stats import Stats
from tunnels.testnet.network import EchoServer
from tunnels.wire import relay as msg
from test.util import async_test, wait_for

Address = tuple[str, int]


def ready_circuit() -> Circuit:
    circuit = Circuit(7, 1, [], 0.0, b"t" * 16)
    circuit.state = CircuitState.READY
    return circuit


class OriginFlowTests(SynchronousTestCase):
    """Flow ids and where replies and refusals go, at the originator (no I/O)."""

    def setUp(self) -> None:
        self.stats = Stats()
        self.origin = OriginRole(settings=TunnelSettings(), clock=Clock(), send=lambda address, cell: None,
                                 table=LinkTable(limit=10), stats=self.stats, on_closed=lambda circuit: None,
                                 reassembly=ReassemblyBuffer(70000, self.stats.drop))
        self.handled: list[tuple[Any, Address, bytes]] = []
        self.refused: list[tuple[Any, Address, str]] = []
        self.sent: list[tuple[int, bytes]] = []
        self.origin.send_message = lambda c, command, data: self.sent.append((command, data))  # type: ignore
        self.origin.data_handlers.append(lambda c, source, payload: self.handled.append((c, source, payload)))
        self.origin.refusal_handlers.append(lambda c, destination, reason: self.refused.append((c, destination,
                                                                                                 reason)))

    def test_ids_count_up_and_are_never_reused(self) -> None:
        """Ids start at 1 and count up; an ended flow's id is not given out again; at most
        MAX_FLOWS_PER_CIRCUIT are open; a closed or unready circuit opens none."""
        circuit = ready_circuit()
        flows = [new_flow(circuit, print, None) for _ in range(msg.MAX_FLOWS_PER_CIRCUIT)]
        self.assertEqual([f.flow_id for f in flows], list(range(1, msg.MAX_FLOWS_PER_CIRCUIT + 1)))
        self.assertRaises(FlowLimitReached, new_flow, circuit, print, None)
        self.assertTrue(forget_flow(flows[0]))
        self.assertFalse(forget_flow(flows[0]))
        self.assertEqual(new_flow(circuit, print, None).flow_id, msg.MAX_FLOWS_PER_CIRCUIT + 1)
        circuit.last_flow_id = msg.MAX_FLOW_ID
        forget_flow(flows[1])
        self.assertRaises(FlowLimitReached, new_flow, circuit, print, None)     # ids used up
        forget_all(circuit)
        self.assertEqual((circuit.flows, any(f.open for f in flows)), ({}, False))
        circuit.state = CircuitState.CLOSED
        self.assertRaises(CircuitNotReady, new_flow, circuit, print, None)

    def test_replies_reach_their_flow_only(self) -> None:
        """A reply on flow 1 reaches flow 1's owner, not flow 2's and not the data handlers; flow 0
        reaches the handlers; a reply for an ended or unknown flow reaches nobody (counted)."""
        circuit = ready_circuit()
        got: dict[int, list[tuple[Address, bytes]]] = {1: [], 2: []}
        first = self.origin.open_flow(circuit, lambda s, p: got[1].append((s, p)), None)
        self.origin.open_flow(circuit, lambda s, p: got[2].append((s, p)), None)
        source = ("192.0.2.1", 53)
        self.origin._on_data(circuit, msg.encode_data(source, b"one", first.flow_id))
        self.origin._on_data(circuit, msg.encode_data(source, b"zero"))
        self.assertEqual(got, {1: [(source, b"one")], 2: []})
        self.assertEqual(self.handled, [(circuit, source, b"zero")])
        self.origin.close_flow(first)
        self.origin._on_data(circuit, msg.encode_data(source, b"late", first.flow_id))
        self.origin._on_data(circuit, msg.encode_data(source, b"unknown", 99))
        self.assertEqual(got, {1: [(source, b"one")], 2: []})
        self.assertEqual(self.stats.drops["flow_closed"], 2)

    def test_refusals_reach_their_flow_only(self) -> None:
        """DATA_REFUSED on a flow goes to that flow's ``on_refused`` only; on flow 0, to the handlers."""
        circuit = ready_circuit()
        mine: list[tuple[Address, str]] = []
        flow = self.origin.open_flow(circuit, print, lambda d, r: mine.append((d, r)))
        self.origin._on_refused(circuit, msg.encode_refusal(flow.flow_id, ("192.0.2.1", 53), "port 53 below 1024"))
        self.origin._on_refused(circuit, msg.encode_refusal(0, ("192.0.2.1", 80), "port 80 below 1024"))
        self.assertEqual(mine, [(("192.0.2.1", 53), "port 53 below 1024")])
        self.assertEqual(self.refused, [(circuit, ("192.0.2.1", 80), "port 80 below 1024")])
        self.assertEqual(self.stats.events["data_refused"], 2)

    def test_close_flow_sends_flow_end_once(self) -> None:
        """Ending a flow on a ready circuit sends one FLOW_END naming it (idempotent)."""
        circuit = ready_circuit()
        flow = self.origin.open_flow(circuit, print, None)
        self.origin.close_flow(flow)
        self.origin.close_flow(flow)
        self.assertEqual(self.sent, [(msg.RelayCommand.FLOW_END, b"\x00\x01")])


class ExitFlowTests(TestCase):
    """An exit circuit's flows over real UDP on 127.0.0.1, with a test-network policy."""

    def setUp(self) -> None:
        self.stats = Stats()
        self.replies: list[tuple[int, Address, bytes]] = []
        self.flows = self.exit_flows(DestinationGuard(8, 8))
        self.echo = EchoServer()
        port = listen_udp(reactor, 0, self.echo, "127.0.0.1")
        self.addCleanup(port.stopListening)
        self.echo_address = ("127.0.0.1", port.getHost().port)

    def exit_flows(self, guard: DestinationGuard) -> ExitFlows:
        """The flows of one exit circuit whose limits are ``guard``."""
        self.guard = guard
        self.budget = FlowBudget()

        def open_socket(flow: int) -> ExitSocket:
            return ExitSocket(reactor, ("127.0.0.1", "::1"), ExitPolicy(allow_non_global=True), guard,
                              TokenBucket(1e9, 1e9, 0.0), self.stats,
                              lambda source, payload: self.replies.append((flow, source, payload)),
                              lambda destination, reason: None)
        flows = ExitFlows(open_socket, guard, self.budget, self.stats)
        self.addCleanup(flows.close)
        return flows

    @async_test
    async def test_each_flow_has_its_own_socket(self) -> None:
        """Two flows to one destination leave from two source ports, and each reply comes back on
        the flow that sent it."""
        for flow in (1, 2):
            self.assertIsNone(self.flows.send(flow, self.echo_address, b"from %d" % flow))
        await wait_for(lambda: len(self.replies) == 2, 5, what="the echoes")
        self.assertEqual(sorted(self.replies), [(1, self.echo_address, b"from 1"), (2, self.echo_address, b"from 2")])
        self.assertEqual(len({source for source, _ in self.echo.received}), 2)
        self.assertEqual(len(self.guard), 1)                     # the circuit's limits count both together

    @async_test
    async def test_a_flow_only_hears_what_it_contacted(self) -> None:
        """A destination that flow 1 contacted cannot reach flow 2's application by writing to flow
        2's port (counted ``exit_unsolicited``)."""
        self.flows.send(1, self.echo_address, b"hello")
        other = EchoServer()
        port = listen_udp(reactor, 0, other, "127.0.0.1")
        self.addCleanup(port.stopListening)
        self.flows.send(2, ("127.0.0.1", port.getHost().port), b"hello")
        await wait_for(lambda: len(self.replies) == 2, 5, what="the echoes")
        flow2_port = self.flows.sockets[2].port.getHost().port
        self.echo.transport.write(b"guessed", ("127.0.0.1", flow2_port))
        await wait_for(lambda: self.stats.drops["exit_unsolicited"] == 1, 5, what="the guessed write")
        self.assertEqual([r for r in self.replies if r[2] == b"guessed"], [])

    @async_test
    async def test_bounds_and_ended_flows(self) -> None:
        """Flow 0 plus MAX_FLOWS_PER_CIRCUIT flows, then "too many flows"; an ended flow's socket
        closes, its late datagram is dropped without reopening it; the node-wide budget refuses
        with "no socket at this exit" and is given back on close; the circuit's unanswered-packet
        limit counts every flow's packets together."""
        self.assertEqual([self.flows.send(flow, ("127.0.0.1", 4000), b"x") for flow in range(1, 10)],
                         [None] * 8 + ["destination never answered"])
        self.flows = self.exit_flows(DestinationGuard(64, 64))
        for flow in range(msg.MAX_FLOWS_PER_CIRCUIT + 1):
            self.assertIsNone(self.flows.send(flow, ("127.0.0.1", 4000), b"x"))
        self.assertEqual(self.flows.send(99, ("127.0.0.1", 4000), b"x"), refusals.TOO_MANY_FLOWS)
        self.assertEqual(self.budget.used, msg.MAX_FLOWS_PER_CIRCUIT + 1)
        port = self.flows.sockets[3].port
        self.flows.end(3)
        await wait_for(lambda: not port.connected, 5, what="the ended flow's port to close")
        self.assertIsNone(self.flows.send(3, ("127.0.0.1", 4000), b"late"))
        self.assertNotIn(3, self.flows.sockets)
        self.assertEqual(self.stats.drops["exit_flow_ended"], 1)
        self.budget.limit = self.budget.used
        self.assertEqual(self.flows.send(100, ("127.0.0.1", 4000), b"x"), refusals.NO_SOCKET)
        self.flows.close()
        self.assertEqual(self.budget.used, 0)

    def test_ended_ids_are_remembered_within_bounds(self) -> None:
        """The last ENDED_MEMORY ended ids are remembered, no more."""
        for flow in range(1, ENDED_MEMORY + 11):
            self.flows.end(flow)
        self.assertEqual(list(self.flows.ended), list(range(11, ENDED_MEMORY + 11)))


class DestinationTests(SynchronousTestCase):
    """What ``tunnel_data`` and flows accept as a destination (checked before any I/O)."""

    def test_hidden_names_never_go_to_an_exit(self) -> None:
        """A hidden-service peer name is refused in any case and with the root dot (names are
        case-insensitive: ``PEER.HIDDEN.`` must not reach an exit's resolver either)."""
        cache = DestinationCache()
        for host in ("abc.hidden", "ABC.HIDDEN", "abc.Hidden.", "x.y.hidden"):
            self.assertRaises(CircuitNotReady, cache.prefix, (host, 1024))
        self.assertEqual(cache.prefix(("hidden.example", 4000)), msg.encode_address("hidden.example", 4000))
        self.assertEqual(cache.encoded, {("hidden.example", 4000): msg.encode_address("hidden.example", 4000)})
