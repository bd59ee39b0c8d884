# -*- test-case-name: test.test_socks5_server -*-
"""The SOCKS5 server's control connections and associations over real TCP and UDP on 127.0.0.1,
with a recording community (unit tests: the same paths run through real circuits in
test_socks5_isolation and test_socks5_lifecycle), and its timers on a Clock."""
from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tunnels.core.circuits import CircuitState
from tunnels.core.flows import Flow, forget_flow, new_flow
from tunnels.errors import CircuitNotReady
from tunnels.settings import TunnelSettings
from tunnels.socks5 import Command, Reply, Socks5Server, encode_address, encode_reply, encode_userpass
from tunnels.socks5.control import HANDSHAKE_TIMEOUT
from tunnels.socks5.server import MAX_HANDSHAKES, MAX_ISOLATION_GROUPS

from .test_socks5 import Socks5UdpClient, _Datagrams, control_exchange
from .util import async_test, wait_for

Address = tuple[str, int]


# --- server with a recording community ----------------------------------------------------

class FakeCircuit:
    """Just what the SOCKS5 server and :mod:`tunnels.core.flows` read of a circuit."""

    def __init__(self, circuit_id: int, goal_hops: int, ready: bool = True) -> None:
        self.circuit_id = circuit_id
        self.goal_hops = goal_hops
        self.state = CircuitState.READY if ready else CircuitState.EXTENDING
        self.flows: dict[int, Flow] = {}
        self.last_flow_id = 0
        self.on_ready: list[Any] = []
        self.on_closed: list[Any] = []
        self.close_reason: str | None = None
        self.hops: list[Any] = []
        self.created = 0.0

    @property
    def ready(self) -> bool:
        return self.state is CircuitState.READY


class RecordingCommunity:
    """A community stand-in: real :class:`Flow` objects, ``flow_data`` calls recorded (unit tests
    only; the same paths run through real circuits in test_socks5_isolation)."""

    def __init__(self, circuits: list[FakeCircuit], builds: bool = True) -> None:
        self.builds = builds
        self.circuits = circuits
        self.sent: list[tuple[Flow, Address, bytes]] = []
        self.ended: list[Flow] = []
        self.built: list[int] = []
        self.started: list[tuple[FakeCircuit, str]] = []
        self.settings = TunnelSettings()

    def active_data_circuits(self, hops: int | None = None) -> list[FakeCircuit]:
        return [c for c in self.circuits if c.ready and (hops is None or c.goal_hops == hops)]

    def open_flow(self, circuit: Any, on_data: Any, on_refused: Any = None) -> Flow:
        return new_flow(circuit, on_data, on_refused)

    def flow_data(self, flow: Flow, destination: Address, payload: bytes) -> None:
        if not flow.open:
            raise CircuitNotReady("gone")
        self.sent.append((flow, destination, payload))

    def close_flow(self, flow: Flow) -> None:
        if forget_flow(flow):
            self.ended.append(flow)

    def build_tunnels(self, hops: int) -> None:
        self.built.append(hops)

    def start_circuit(self, hops: int, purpose: str) -> FakeCircuit:
        """A circuit of an isolation group: ready on the reactor's next turn if :attr:`builds`,
        else building for ever."""
        circuit = FakeCircuit(100 + len(self.started), hops, ready=False)
        self.started.append((circuit, purpose))
        if self.builds:
            reactor.callLater(0, self._built, circuit)
        return circuit

    def _built(self, circuit: FakeCircuit) -> None:
        if circuit.state is CircuitState.EXTENDING:
            circuit.state = CircuitState.READY
            for callback in circuit.on_ready:
                callback(circuit, None)

    def remove_circuit(self, circuit: FakeCircuit) -> None:
        circuit.state, circuit.close_reason = CircuitState.CLOSED, "removed"
        for callback in circuit.on_closed:
            callback(circuit)


class ServerTests(TestCase):
    """The control connection and UDP association over real sockets, with a recording community."""

    timeout = 20

    def setUp(self) -> None:
        """Serve 1-hop circuits from a community with four of them."""
        self.community = RecordingCommunity([FakeCircuit(i, 1) for i in range(1, 5)] + [FakeCircuit(9, 2)])
        self.server = self.serve(Socks5Server(reactor, self.community, hops=1))

    def serve(self, server: Socks5Server) -> Socks5Server:
        """Start ``server`` and listen on a free port (:attr:`port`)."""
        server.start()
        self.addCleanup(server.stop)
        self.listening = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(self.listening.stopListening)
        self.port = self.listening.getHost().port
        return server

    async def associate(self, credentials: tuple[bytes, bytes] | None = None) -> Socks5UdpClient:
        """A client with an open association."""
        client = Socks5UdpClient()
        await client.open(self.port, credentials=credentials)
        self.addCleanup(client.close)
        return client

    def test_starts_pool(self) -> None:
        """Starting the server asks the community for circuits of its hop count."""
        self.assertEqual(self.community.built, [1])

    @async_test
    async def test_connect_and_bind_refused(self) -> None:
        """CONNECT and BIND get reply 0x07 and the connection is closed."""
        for command in (Command.CONNECT, Command.BIND):
            answer = await control_exchange(self.port, b"\x05\x01\x00\x05" + bytes((command,)) + b"\x00"
                                            + encode_address("192.0.2.1", 80))
            self.assertEqual(answer[:2], b"\x05\x00")
            self.assertEqual(answer[2:4], b"\x05\x07")

    @async_test
    async def test_no_acceptable_method(self) -> None:
        """A client offering only GSSAPI (0x01) gets 0xFF and is closed."""
        self.assertEqual(await control_exchange(self.port, b"\x05\x01\x01"), b"\x05\xff")

    @async_test
    async def test_credentials_preferred_and_checked(self) -> None:
        """Offered both, the server picks username/password (RFC 1929), as Tor does; any credentials
        are accepted (they label an isolation group); a bad subnegotiation version closes."""
        client = await self.associate((b"app", b"one"))
        [association] = self.server.associations
        self.assertTrue(association.circuits.isolated)
        self.assertEqual(len(self.server.groups), 1)
        [(circuit, purpose)] = self.community.started        # its own circuit, not the pool's
        self.assertEqual((circuit.goal_hops, purpose), (1, "isolated"))
        answer = await control_exchange(self.port, b"\x05\x02\x00\x02" + b"\x05\x01a\x01b")
        self.assertEqual(answer, b"\x05\x02")
        client.writer.close()
        await wait_for(lambda: not self.server.groups, what="the group to close with its last association")
        self.assertIs(circuit.state, CircuitState.CLOSED)

    @async_test
    async def test_malformed_closes(self) -> None:
        """Wrong version, non-zero RSV and unknown ATYP close the connection cleanly."""
        self.assertEqual(await control_exchange(self.port, b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00"), b"")
        self.assertEqual(await control_exchange(self.port, b"\x05\x01\x00\x05\x03\x07\x01" + bytes(6)),
                         b"\x05\x00\x05\x01\x00\x01" + bytes(6))
        unknown_type = await control_exchange(self.port, b"\x05\x01\x00\x05\x03\x00\x07\x00\x00")
        self.assertEqual(unknown_type[2:4], b"\x05\x08")
        flood = await control_exchange(self.port, b"\x05\x01\x00" + b"\x05" * 2000)
        self.assertNotIn(b"\x05\x00\x00", flood)               # never a success reply
        self.assertEqual(self.server.associations, set())

    @async_test
    async def test_domain_passed_unchanged(self) -> None:
        """ATYP 3 destinations reach flow_data as the same name string, unresolved."""
        client = await self.associate()
        client.send(("Peer-Name.hidden-not", 4000), b"hi")
        await wait_for(lambda: bool(self.community.sent), what="flow_data")
        [(flow, destination, payload)] = self.community.sent
        self.assertEqual((destination, payload), (("Peer-Name.hidden-not", 4000), b"hi"))
        self.assertEqual(flow.circuit.goal_hops, 1)

    @async_test
    async def test_stable_spread(self) -> None:
        """Each destination sticks to one circuit; many destinations use several circuits, with one
        flow of the association on each circuit it uses."""
        client = await self.associate()
        for round_ in range(2):
            for port in range(5000, 5040):
                client.send(("192.0.2.1", port), b"%d" % round_)
        await wait_for(lambda: len(self.community.sent) == 80, what="80 datagrams")
        chosen: dict[Address, set[int]] = {}
        for flow, destination, _ in self.community.sent:
            chosen.setdefault(destination, set()).add(flow.circuit.circuit_id)
        self.assertTrue(all(len(ids) == 1 for ids in chosen.values()))
        used = set().union(*chosen.values())
        self.assertGreater(len(used), 1)
        self.assertNotIn(9, used)        # never a circuit of another hop count
        self.assertEqual(len({flow for flow, _, _ in self.community.sent}), len(used))

    @async_test
    async def test_replies_and_foreign_sources(self) -> None:
        """Replies on the association's flow come back framed; datagrams from another socket and
        fragments are dropped; after the association ends its flows are closed."""
        client = await self.associate()
        client.send(("192.0.2.1", 53), b"query")
        await wait_for(lambda: len(self.community.sent) == 1, what="the query")
        flow = self.community.sent[0][0]
        flow.on_data(("192.0.2.1", 53), b"answer")
        self.assertEqual(await client.receive(), (("192.0.2.1", 53), b"answer"))

        intruder = Socks5UdpClient()
        loop = asyncio.get_running_loop()
        intruder.udp, intruder.protocol = await loop.create_datagram_endpoint(_Datagrams,
                                                                              local_addr=("127.0.0.1", 0))
        self.addCleanup(intruder.udp.close)
        intruder.relay = client.relay
        intruder.send(("192.0.2.1", 53), b"sneaky")
        client.send(("192.0.2.1", 53), b"fragment", frag=1)
        client.send(("192.0.2.1", 53), b"last")
        await wait_for(lambda: len(self.community.sent) == 2, what="the last datagram")
        self.assertEqual([payload for _, _, payload in self.community.sent], [b"query", b"last"])
        self.assertEqual(self.server.stats["dropped_foreign_source"], 1)
        self.assertEqual(self.server.stats["dropped_fragment"], 1)
        client.writer.close()
        await wait_for(lambda: not self.server.associations, what="the association to end")
        self.assertEqual(self.community.ended, [flow])
        self.assertFalse(flow.open)
        self.assertEqual(self.server.stats["delivered"], 1)          # ended associations stay counted

    @async_test
    async def test_association_ends_with_tcp(self) -> None:
        """Closing the control connection closes the UDP relay port."""
        client = await self.associate()
        [association] = self.server.associations
        client.writer.close()
        await wait_for(lambda: not self.server.associations, what="the association to end")
        self.assertIsNone(association.port)
        self.assertFalse(association.transport is not None and association.transport.connected)

    @async_test
    async def test_association_limits(self) -> None:
        """Beyond max_associations (and beyond max_per_client) UDP ASSOCIATE gets reply 0x02 and EOF;
        a slot is free again once an association ends; a new credential group beyond the group
        bound is refused the same way."""
        self.server = self.serve(Socks5Server(reactor, self.community, hops=1, max_associations=3, max_per_client=2))
        first = await self.associate()
        await self.associate()
        request = b"\x05\x01\x00" + b"\x05\x03\x00" + encode_address("0.0.0.0", 0)
        refused = await control_exchange(self.port, request)
        self.assertEqual(refused, b"\x05\x00" + encode_reply(Reply.NOT_ALLOWED))     # per client (127.0.0.1)
        self.assertEqual(self.server.counters["refused_associations"], 1)
        first.writer.close()
        await wait_for(lambda: len(self.server.associations) == 1, what="a slot to free")
        await self.associate()
        self.assertEqual(len(self.server.associations), 2)
        wide = self.serve(Socks5Server(reactor, self.community, hops=1, max_associations=100, max_per_client=100))
        for i in range(MAX_ISOLATION_GROUPS):
            await self.associate((b"group", b"%d" % i))
        self.assertEqual(len(wide.groups), MAX_ISOLATION_GROUPS)
        over = await control_exchange(self.port, b"\x05\x01\x02" + encode_userpass(b"group", b"x") + request[3:])
        self.assertEqual(over, b"\x05\x02\x01\x00" + encode_reply(Reply.NOT_ALLOWED))
        await self.associate((b"group", b"0"))       # an existing group takes more members
        self.assertEqual(wide.counters["refused_isolation_groups"], 1)

    @async_test
    async def test_handshakes_bounded(self) -> None:
        """Beyond MAX_HANDSHAKES connections still negotiating, a new one is closed at once (EOF,
        nothing sent), counted; an association does not count against the bound."""
        await self.associate()
        waiting = [await asyncio.open_connection("127.0.0.1", self.port) for _ in range(MAX_HANDSHAKES)]
        for _, writer in waiting:
            self.addCleanup(writer.close)
        await wait_for(lambda: len(self.server.connections) == MAX_HANDSHAKES + 1, what="the handshakes")
        self.assertEqual(await control_exchange(self.port, b"\x05\x01\x00"), b"")
        self.assertEqual(self.server.counters["refused_busy"], 1)


class ClockReactor(Clock):
    """A Clock that also "opens" UDP ports (never bound: for the timer rules only)."""

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:  # noqa: N802
        host = IPv4Address("UDP", interface, 40000)

        class Port:
            def getHost(self) -> IPv4Address:  # noqa: N802
                return host

            def stopListening(self) -> None:  # noqa: N802
                return None
        return Port()


class HandshakeTimerTests(SynchronousTestCase):
    """The handshake timeout, on a Clock."""

    def connect(self, server: Socks5Server) -> tuple[Any, StringTransport]:
        protocol = server.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_timeout_closes(self) -> None:
        """A connection that sends its greeting in time but stalls is closed after HANDSHAKE_TIMEOUT;
        the timer goes with the connection."""
        clock = ClockReactor()
        server = Socks5Server(clock, RecordingCommunity([]), hops=1)
        server.start()
        protocol, transport = self.connect(server)
        protocol.dataReceived(b"\x05\x01\x00")
        self.assertEqual(transport.value(), b"\x05\x00")
        clock.advance(HANDSHAKE_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(None)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(server.connections, set())

    def test_isolated_reply_waits_for_a_circuit(self) -> None:
        """An isolated association's reply waits for its group's circuit; a circuit that never
        comes gets reply 0x03 at HANDSHAKE_TIMEOUT and the connection closes; one that comes in
        time gets the relay port and the timer is cancelled."""
        clock = ClockReactor()
        community = RecordingCommunity([FakeCircuit(1, 1)], builds=False)
        server = Socks5Server(clock, community, hops=1)
        server.start()
        request = b"\x05\x01\x02" + encode_userpass(b"a", b"b") + b"\x05\x03\x00" + encode_address("0.0.0.0", 0)
        late, late_transport = self.connect(server)
        late.dataReceived(request)
        self.assertEqual(late_transport.value(), b"\x05\x02\x01\x00")      # no UDP ASSOCIATE reply yet
        clock.advance(HANDSHAKE_TIMEOUT)
        self.assertEqual(late_transport.value()[4:], encode_reply(Reply.NETWORK_UNREACHABLE))
        self.assertTrue(late_transport.disconnecting)
        late.connectionLost(None)
        self.assertEqual((server.associations, server.groups), (set(), {}))
        self.assertEqual(server.counters["refused_no_circuit"], 1)

        prompt, transport = self.connect(server)
        prompt.dataReceived(request)
        [(circuit, _)] = community.started[1:]
        clock.advance(1.0)
        circuit.state = CircuitState.READY
        for callback in circuit.on_ready:
            callback(circuit, None)
        self.assertEqual(transport.value()[4:], encode_reply(Reply.SUCCEEDED, ("127.0.0.1", 40000)))
        self.assertEqual(clock.getDelayedCalls(), [])


