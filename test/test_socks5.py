# -*- test-case-name: test.test_socks5 -*-
"""Tests for :mod:`tunnels.socks5`: the RFC 1928 and RFC 1929 codec, an RFC 1928 client the other
SOCKS5 tests share, and an end-to-end run through circuits (the server's unit tests are in
test_socks5_server, isolation in test_socks5_isolation, the lifecycle in test_socks5_lifecycle)."""
from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tunnels.node import start_node
from tunnels.runtime import as_future
from tunnels.settings import TunnelSettings
from tunnels.socks5 import (Command, Reply, Request, Socks5Error, Socks5Server, encode_address, encode_reply,
                            encode_udp_datagram, encode_userpass, parse_greeting, parse_request, parse_udp_datagram,
                            parse_userpass)

from .util import async_test, wait_for

Address = tuple[str, int]


# --- a SOCKS5 UDP client written from the RFC, on plain asyncio ---------------------------

class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.queue.put_nowait((data, addr))


class Socks5UdpClient:
    """Negotiate (no auth, or RFC 1929 credentials), UDP ASSOCIATE, then send and receive framed datagrams."""

    async def open(self, port: int, announce: Address = ("0.0.0.0", 0),
                   credentials: tuple[bytes, bytes] | None = None) -> None:
        """Associate through the server on 127.0.0.1:``port`` (isolated by ``credentials`` if given)."""
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        if credentials is None:
            self.writer.write(b"\x05\x01\x00")                 # VER 5, 1 method: no auth
            assert await self.reader.readexactly(2) == b"\x05\x00"
        else:
            self.writer.write(b"\x05\x02\x00\x02")             # VER 5, 2 methods: no auth, username/password
            assert await self.reader.readexactly(2) == b"\x05\x02"
            self.writer.write(encode_userpass(*credentials))
            assert await self.reader.readexactly(2) == b"\x01\x00"    # RFC 1929: success
        self.writer.write(b"\x05\x03\x00" + encode_address(*announce))    # UDP ASSOCIATE
        head = await self.reader.readexactly(4)
        assert head[:3] == b"\x05\x00\x00" and head[3] == 1, head
        raw = await self.reader.readexactly(6)
        self.relay = (".".join(str(b) for b in raw[:4]), int.from_bytes(raw[4:], "big"))
        loop = asyncio.get_running_loop()
        self.udp, self.protocol = await loop.create_datagram_endpoint(_Datagrams, local_addr=("127.0.0.1", 0))

    def send(self, destination: Address, payload: bytes, frag: int = 0) -> None:
        """Send ``payload`` to ``destination`` through the relay."""
        self.udp.sendto(b"\x00\x00" + bytes((frag,)) + encode_address(*destination) + payload, self.relay)

    async def receive(self, timeout: float = 5.0) -> tuple[Address, bytes]:
        """The next reply: (source, payload), header checked."""
        data, addr = await asyncio.wait_for(self.protocol.queue.get(), timeout)
        assert addr == self.relay, (addr, self.relay)
        packet = parse_udp_datagram(data)
        assert packet.frag == 0
        return (packet.host, packet.port), packet.payload

    def close(self) -> None:
        """Close both sockets."""
        self.udp.close()
        self.writer.close()


async def control_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh control connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


class Echo(DatagramProtocol):
    """A UDP echo server."""

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        """Send the datagram back."""
        self.transport.write(datagram, addr)


# --- codec --------------------------------------------------------------------------------

class CodecTests(SynchronousTestCase):
    """The pure RFC 1928 parsers and encoders."""

    def test_greeting(self) -> None:
        """Greetings parse, wait for more bytes, or raise on a bad version or no methods."""
        self.assertEqual(parse_greeting(b"\x05\x02\x00\x02"), (b"\x00\x02", 4))
        self.assertIsNone(parse_greeting(b"\x05"))
        self.assertIsNone(parse_greeting(b"\x05\x02\x00"))
        self.assertRaises(Socks5Error, parse_greeting, b"\x04\x01\x00")
        self.assertRaises(Socks5Error, parse_greeting, b"\x05\x00")

    def test_request(self) -> None:
        """IPv4, IPv6 and domain requests parse; partial ones return None."""
        self.assertEqual(parse_request(b"\x05\x03\x00\x01\x7f\x00\x00\x01\x04\x00"),
                         (Request(Command.UDP_ASSOCIATE, "127.0.0.1", 1024), 10))
        v6 = b"\x05\x01\x00\x04" + bytes(15) + b"\x01" + b"\x00\x35"
        self.assertEqual(parse_request(v6), (Request(Command.CONNECT, "::1", 53), 22))
        name = b"\x05\x03\x00\x03\x0bexample.com\x00\x35"
        self.assertEqual(parse_request(name), (Request(Command.UDP_ASSOCIATE, "example.com", 53), len(name)))
        for cut in range(len(name)):
            self.assertIsNone(parse_request(name[:cut]), cut)

    def test_malformed_request(self) -> None:
        """Bad version, non-zero RSV, unknown ATYP and bad names raise Socks5Error."""
        self.assertRaises(Socks5Error, parse_request, b"\x04\x03\x00\x01\x7f\x00\x00\x01\x00\x00")
        self.assertRaises(Socks5Error, parse_request, b"\x05\x03\x01\x01\x7f\x00\x00\x01\x00\x00")
        with self.assertRaises(Socks5Error) as caught:
            parse_request(b"\x05\x03\x00\x09\x00\x00")
        self.assertEqual(caught.exception.reply, Reply.ADDRESS_TYPE_NOT_SUPPORTED)
        self.assertRaises(Socks5Error, parse_request, b"\x05\x03\x00\x03\x00\x00\x35")
        self.assertRaises(Socks5Error, parse_request, b"\x05\x03\x00\x03\x02a\x00\x00\x35")

    def test_udp_datagram_roundtrip(self) -> None:
        """encode_udp_datagram and parse_udp_datagram are inverse for every address type."""
        for host in ("192.0.2.1", "2001:db8::1", "peer.hidden"):
            packet = parse_udp_datagram(encode_udp_datagram(host, 4000, b"payload"))
            self.assertEqual((packet.frag, packet.host, packet.port, packet.payload), (0, host, 4000, b"payload"))

    def test_udp_datagram_malformed(self) -> None:
        """Truncated headers and non-zero RSV raise; FRAG is reported, not hidden."""
        good = encode_udp_datagram("192.0.2.1", 53, b"x")
        for cut in range(len(good) - 1):
            self.assertRaises(Socks5Error, parse_udp_datagram, good[:cut])
        self.assertRaises(Socks5Error, parse_udp_datagram, b"\x01" + good[1:])
        self.assertEqual(parse_udp_datagram(good[:2] + b"\x01" + good[3:]).frag, 1)

    def test_userpass(self) -> None:
        """RFC 1929 requests parse (empty fields too), wait for more bytes, or raise on a bad version."""
        request = b"\x01\x05alice\x06secret"
        self.assertEqual(encode_userpass(b"alice", b"secret"), request)
        self.assertEqual(parse_userpass(request + b"\x05"), ((b"alice", b"secret"), len(request)))
        for cut in range(len(request)):
            self.assertIsNone(parse_userpass(request[:cut]), cut)
        self.assertEqual(parse_userpass(b"\x01\x00\x00"), ((b"", b""), 3))
        self.assertRaises(Socks5Error, parse_userpass, b"\x05\x01a\x01b")
        self.assertRaises(ValueError, encode_userpass, bytes(256), b"")

    def test_reply(self) -> None:
        """Replies carry VER, REP, RSV and the bound address."""
        self.assertEqual(encode_reply(Reply.SUCCEEDED, ("127.0.0.1", 1080)),
                         b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38")
        self.assertEqual(encode_reply(Reply.COMMAND_NOT_SUPPORTED)[:2], b"\x05\x07")


async def read_to_eof(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """What the server still sends, up to its EOF (fails if no EOF comes)."""
    return await asyncio.wait_for(reader.read(), timeout)


# --- end to end through real circuits -----------------------------------------------------

class EndToEndTests(TestCase):
    """A local network of four nodes; SOCKS5 datagrams through 1- and 2-hop circuits."""

    timeout = 40

    @async_test
    async def test_echo_through_circuits(self) -> None:
        """SOCKS5 datagrams to an IP and to a name are echoed back through 1- and 2-hop circuits."""
        echo = reactor.listenUDP(0, Echo(), interface="127.0.0.1")
        self.addCleanup(echo.stopListening)
        echo_address = ("127.0.0.1", echo.getHost().port)
        first = await as_future(start_node(reactor, "127.0.0.1", 0, testnet=True,
                                           settings=TunnelSettings(become_exitnode=True)))
        nodes = [first]
        for exit_ in (True, False, False):
            nodes.append(await as_future(start_node(reactor, "127.0.0.1", 0, testnet=True, bootstrap=[first.address],
                                                    settings=TunnelSettings(become_exitnode=exit_,
                                                                            min_circuits=1, max_circuits=2))))
        for node in nodes:
            self.addCleanup(node.stop)
        community = nodes[-1].community
        for hops in (1, 2):
            server = Socks5Server(reactor, community, hops)
            server.start()
            self.addCleanup(server.stop)
            listening = reactor.listenTCP(0, server, interface="127.0.0.1")
            self.addCleanup(listening.stopListening)
            await wait_for(lambda h=hops: community.tunnels_ready(h) >= 1.0, timeout=20, what=f"{hops}-hop circuits")
            client = Socks5UdpClient()
            await client.open(listening.getHost().port)
            self.addCleanup(client.close)
            for i in range(3):
                client.send(echo_address, b"ping %d via %d hops" % (i, hops))
            replies = sorted([await client.receive() for _ in range(3)])
            self.assertEqual(replies, [(echo_address, b"ping %d via %d hops" % (i, hops)) for i in range(3)])
            self.assertEqual(server.stats["delivered"], 3)
        client.send(("localhost", echo_address[1]), b"by name")       # resolved by the exit, not here
        self.assertEqual(await client.receive(), (echo_address, b"by name"))
