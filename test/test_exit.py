"""Exit sockets (tunnels.exit.sockets): every datagram sent or refused with a reason, over real UDP."""
from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from tunnels.exit import refusals as reasons
from tunnels.exit import sockets
from tunnels.exit.policy import DestinationGuard, ExitPolicy
from tunnels.ratelimit import TokenBucket
from tunnels.settings import TunnelSettings
from tunnels.stats import Stats
from test.netcase import NetworkTestCase
from test.util import async_test, wait_for

Address = tuple[str, int]


class Echo(DatagramProtocol):
    """Sends every datagram back."""

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        self.transport.write(datagram, addr)


class NoIPv6Reactor:
    """The real reactor, except that no IPv6 port can be opened (a host without IPv6)."""

    def __init__(self) -> None:
        self.nameResolver = reactor.nameResolver

    def seconds(self) -> float:
        return reactor.seconds()

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:  # noqa: N802
        if ":" in interface:
            raise CannotListenError(interface, port, OSError("Address family not supported"))
        return reactor.listenUDP(port, protocol, interface=interface, maxPacketSize=maxPacketSize)


class ExitSocketTests(TestCase):
    """One exit socket with a production policy (no loopback) or a test one, on 127.0.0.1."""

    def make(self, policy: ExitPolicy, the_reactor: Any = reactor) -> sockets.ExitSocket:
        self.replies: list[tuple[Address, bytes]] = []
        self.refusals: list[tuple[Address, str]] = []
        self.stats = Stats()
        exit_socket = sockets.ExitSocket(the_reactor, ("127.0.0.1", "::1"), policy, DestinationGuard(8, 8),
                                         TokenBucket(1e9, 1e9, 0.0), self.stats,
                                         lambda source, payload: self.replies.append((source, payload)),
                                         lambda destination, reason: self.refusals.append((destination, reason)))
        self.addCleanup(exit_socket.close)
        return exit_socket

    @async_test
    async def test_first_datagram_to_a_refused_name_is_refused(self) -> None:
        """``localhost`` at a production exit: the first datagram (waiting for the resolver) is
        refused with the resolver's reason, not dropped in silence; later ones at once."""
        exit_socket = self.make(ExitPolicy())
        self.assertIsNone(exit_socket.send(("localhost", 4242), b"first"))
        await wait_for(lambda: bool(self.refusals), 5, what="the resolution")
        self.assertEqual(self.refusals, [(("localhost", 4242), "resolved address '127.0.0.1' refused: loopback")])
        self.assertEqual(exit_socket.send(("localhost", 4242), b"second"), reasons.REFUSED_NAME)
        self.assertEqual(exit_socket.ports, {})

    @async_test
    async def test_ipv6_destination_without_ipv6_is_refused(self) -> None:
        """A host that cannot open an IPv6 port refuses IPv6 destinations with a reason; IPv4 still works."""
        echo = reactor.listenUDP(0, Echo(), interface="127.0.0.1")
        self.addCleanup(echo.stopListening)
        exit_socket = self.make(ExitPolicy(allow_non_global=True), NoIPv6Reactor())
        self.assertEqual(exit_socket.send(("::1", 4242), b"x"), reasons.NO_IPV6)
        self.assertEqual(exit_socket.send(("::1", 4242), b"x"), reasons.NO_IPV6)
        self.assertEqual(self.stats.drops["exit_no_ipv6"], 2)
        self.assertIsNone(exit_socket.send(("127.0.0.1", echo.getHost().port), b"v4"))
        await wait_for(lambda: bool(self.replies), 5, what="the IPv4 reply")

    @async_test
    async def test_replies_are_read_whole(self) -> None:
        """A 65,507-byte reply reaches the circuit whole (Twisted's default would cut it at 8,192)."""
        echo = reactor.listenUDP(0, Echo(), interface="127.0.0.1", maxPacketSize=65535)
        self.addCleanup(echo.stopListening)
        exit_socket = self.make(ExitPolicy(allow_non_global=True))
        payload = bytes(range(256)) * 255 + bytes(227)
        self.assertIsNone(exit_socket.send(("127.0.0.1", echo.getHost().port), payload))
        await wait_for(lambda: bool(self.replies), 5, what="the reply")
        self.assertEqual([len(p) for _, p in self.replies], [65507])
        self.assertEqual(self.replies[0][1], payload)

    def test_oversized_send_is_refused(self) -> None:
        """A datagram the kernel cannot send gives a reason, not an exception."""
        exit_socket = self.make(ExitPolicy(allow_non_global=True))
        self.assertEqual(exit_socket.send(("127.0.0.1", 4242), bytes(65508)), reasons.DATAGRAM_TOO_LARGE)


class ExitRefusalTests(NetworkTestCase):
    """Refusals reach the originator's refusal handlers through real circuits."""

    settings = TunnelSettings(exit_ports=(4242,))

    @async_test
    async def test_ipv6_destination_through_a_circuit(self) -> None:
        """An exit reaches an IPv6 destination through its second socket; the reply comes back
        from the IPv6 source (the issue's ``("::1", port)`` case raised in the exit before)."""
        echo = reactor.listenUDP(4242, Echo(), interface="::1", maxPacketSize=65535)
        self.addCleanup(echo.stopListening)
        circuit = await self.build(1)
        got: list[tuple[Address, bytes]] = []
        self.client.add_data_handler(lambda c, source, payload: got.append((source, payload)))
        for payload in (b"six", bytes(5000)):
            self.client.tunnel_data(circuit, ("::1", 4242), "data", payload)
        await wait_for(lambda: len(got) == 2, 10, what="the IPv6 replies")
        self.assertEqual(Counter(got), Counter([(("::1", 4242), b"six"), (("::1", 4242), bytes(5000))]))
        self.assertEqual(self.flushLoggedErrors(), [])

    @async_test
    async def test_first_datagram_to_a_name_gets_its_refusal(self) -> None:
        """A name whose every datagram is refused after resolution: the originator hears why for
        the very first one (it waited for the resolver), then for each later one."""
        circuit = await self.build(1)
        refusals: list[tuple[Address, str]] = []
        self.client.add_refusal_handler(lambda c, destination, reason: refusals.append((destination, reason)))
        self.client.tunnel_data(circuit, ("localhost", 4243), "data", b"first")
        await wait_for(lambda: len(refusals) == 1, 10, what="the first refusal")
        self.client.tunnel_data(circuit, ("localhost", 4243), "data", b"second")
        await wait_for(lambda: len(refusals) == 2, 10, what="the second refusal")
        self.assertEqual(refusals, [(("localhost", 4243), "resolved address '127.0.0.1' refused: port 4243 not in "
                                     "allow-list"), (("localhost", 4243), reasons.REFUSED_NAME)])

    @async_test
    async def test_too_large_for_the_exit_is_refused(self) -> None:
        """A datagram above the exit's own max_datagram_size is refused with a reason."""
        exit_node = self.net.exits[0].community
        exit_node.settings = TunnelSettings(exit_ports=(4242,), max_datagram_size=2000, become_exitnode=True)
        exit_node.relay.settings = exit_node.settings
        circuit = None
        while circuit is None or circuit.hops[-1].address != self.net.exits[0].address:
            circuit = await self.build(1)
        refusals: list[tuple[Address, str]] = []
        self.client.add_refusal_handler(lambda c, destination, reason: refusals.append((destination, reason)))
        self.client.tunnel_data(circuit, ("127.0.0.1", 4242), "data", bytes(2001))
        await wait_for(lambda: bool(refusals), 10, what="the refusal")
        self.assertEqual(refusals, [(("127.0.0.1", 4242), reasons.DATAGRAM_TOO_LARGE)])
