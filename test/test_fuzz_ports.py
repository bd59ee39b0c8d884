"""Generated datagrams to every UDP port of a running node (DESIGN.md property 15).

One node is exit, relay, DHT node (real BEP 5) and SOCKS5 front end at once.  Hypothesis
generates datagrams shaped like what each port parses (cells, IPv8 packets of our overlay,
bencoded KRPC, RFC 1928 UDP headers) and plain bytes.  Each is first handed straight to the
handler of every port (an exception fails the example, which hypothesis then shrinks), then
sent for real over UDP to every port: the IPv8 port, the exit's IPv4 and IPv6 ports, the DHT
port and the SOCKS5 relay port.  The node must count or handle every datagram, log nothing
to the reactor's error log, log no traceback and few lines, and still serve circuits after.
Generation is derandomized: the suite runs the same examples every time.
"""
from __future__ import annotations

import asyncio
import socket
from collections import Counter
from typing import Any

import fastbencode
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet import reactor

from tunnels.socks5 import Socks5Server
from tunnels.socks5.codec import encode_address
from tunnels.wire.cells import CELL_MARK, CELL_SIZE, CellType
from test.netcase import NetworkTestCase
from test.test_exit import Echo
from test.test_untrusted import LogCapture
from test.util import async_test, wait_for

Address = tuple[str, int]
BATCH = 48
"""Datagrams sent to one port before waiting until it has read them all (stays far below
the kernel's receive buffer, so none is lost on the way)."""


def _krpc() -> st.SearchStrategy[bytes]:
    """Bencoded dictionaries: BEP 5 queries with well- or ill-formed arguments, and anything."""
    scalars = st.one_of(st.binary(max_size=40), st.integers(-2 ** 40, 2 ** 40))
    values = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.binary(max_size=8), inner, max_size=4)), max_leaves=12)
    names = st.sampled_from([b"id", b"target", b"info_hash", b"token", b"port", b"implied_port", b"want"])
    arguments = st.dictionaries(names, st.one_of(st.binary(min_size=20, max_size=20), st.integers(-1, 70000),
                                                 values), max_size=5)
    method = st.one_of(st.sampled_from([b"ping", b"find_node", b"get_peers", b"announce_peer", b"get", b"put"]),
                       st.binary(max_size=12))
    queries = st.builds(lambda t, q, a: {b"t": t, b"y": b"q", b"q": q, b"a": a},
                        st.binary(max_size=4), method, arguments)
    keys = st.sampled_from([b"t", b"y", b"q", b"a", b"r", b"e", b"v"])
    anything = st.dictionaries(st.one_of(keys, st.binary(max_size=6)), values, max_size=6)
    return st.one_of(queries, anything).map(fastbencode.bencode)


def _socks5() -> st.SearchStrategy[bytes]:
    hosts = st.one_of(st.sampled_from(["127.0.0.1", "::1", "0.0.0.0", "224.0.0.1", "localhost", "x.hidden"]),
                      st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30))
    address = st.tuples(hosts, st.one_of(st.just(0), st.integers(1, 65535)))
    well_formed = st.builds(lambda a, frag, payload: b"\x00\x00" + bytes((frag,)) + encode_address(*a) + payload,
                            address, st.sampled_from([0, 0, 0, 1, 255]), st.binary(max_size=3000))
    header = st.builds(lambda rsv, frag, atyp, rest: rsv + bytes((frag, atyp)) + rest,
                       st.binary(min_size=2, max_size=2), st.integers(0, 255), st.integers(0, 255),
                       st.binary(max_size=40))
    return st.one_of(well_formed, header)


def datagrams(prefix: bytes, links: list[tuple[Address, int]]) -> st.SearchStrategy[tuple[bytes, Address]]:
    """``(datagram, source)``: datagrams shaped like what the node's ports parse, and raw bytes,
    from a stranger or, for cells on the node's live links, from the neighbour of that link."""
    stranger = ("127.0.0.1", 9)
    link = st.one_of(st.sampled_from(links or [(stranger, 1)]), st.tuples(st.just(stranger), st.integers(0, 2 ** 32 - 1)))
    cell_type = st.one_of(st.sampled_from(list(CellType)), st.integers(0, 255))
    body = st.binary(min_size=CELL_SIZE - 6, max_size=CELL_SIZE - 6)
    cells = st.builds(lambda kind, on, data: (bytes((CELL_MARK, kind)) + on[1].to_bytes(4, "big") + data, on[0]),
                      cell_type, link, body)
    misfits = st.builds(lambda cell, size, pad: ((cell[0] + pad)[:size], cell[1]), cells,
                        st.integers(0, CELL_SIZE + 4), st.binary(max_size=4))
    ipv8 = st.builds(lambda message, data: prefix + bytes((message,)) + data,
                     st.one_of(st.sampled_from([245, 246, 249, 250, 251, 255]), st.integers(0, 255)),
                     st.binary(max_size=300))
    others = st.one_of(st.binary(max_size=1500), ipv8, st.just(prefix), _krpc(), _socks5())
    return st.one_of(cells, misfits, st.tuples(others, st.just(stranger)))


def count_calls(case: Any, owner: Any, name: str) -> Counter[int]:
    """Count, by source port, the datagrams ``owner.name(datagram, address)`` has handled (it
    returned: an exception would have gone to the reactor's error log)."""
    calls: Counter[int] = Counter()
    original = getattr(owner, name)

    def counting(datagram: bytes, address: Any) -> None:
        original(datagram, address)
        calls[address[1]] += 1
    setattr(owner, name, counting)
    case.addCleanup(setattr, owner, name, original)
    return calls


class FuzzPortsTests(NetworkTestCase):
    relays = 2
    exits = 2
    timeout = 120

    def setUp(self) -> Any:
        from tunnels.testnet import LocalNetwork
        self.net = LocalNetwork(reactor, relays=self.relays, exits=self.exits, clients=1, dht="mainline",
                                dht_nodes=2, testnet=True)
        from tunnels.runtime import as_deferred
        return as_deferred(self.net.start())

    async def open_exit_ports(self) -> Any:
        """A circuit through the target (the first exit) to the echo servers on 127.0.0.1 and
        ::1: the target's exit socket for it (flow 0), with its IPv4 and IPv6 ports open."""
        target = self.net.exits[0]
        if not hasattr(self, "echo6"):
            self.echo6 = reactor.listenUDP(0, Echo(), interface="::1")
            self.addCleanup(self.echo6.stopListening)
        circuit = None
        while circuit is None or circuit.hops[-1].address != target.address:
            circuit = await self.build(1)
        for destination in (self.net.echo_address, ("::1", self.echo6.getHost().port)):
            got: list[bytes] = []
            self.client.add_data_handler(lambda c, s, p: got.append(p) if c is circuit else None)
            self.client.tunnel_data(circuit, destination, "data", b"open")
            await wait_for(lambda: bool(got), 10, what=f"a reply from {destination}")
        [joined] = [jc for jc in target.community.joined_circuits if jc.prev_id == circuit.circuit_id]
        return joined.exit.sockets[0]

    async def open_association(self, community: Any) -> tuple[Any, Any, socket.socket]:
        """A SOCKS5 front end on the target and an association whose client is a plain socket."""
        server = Socks5Server(reactor, community, 1)
        server.start()
        self.addCleanup(server.stop)
        listening = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        fuzzer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        fuzzer.bind(("127.0.0.1", 0))
        fuzzer.setblocking(False)
        self.addCleanup(fuzzer.close)
        reader, writer = await asyncio.open_connection("127.0.0.1", listening.getHost().port)
        self.addCleanup(writer.close)
        writer.write(b"\x05\x01\x00" + b"\x05\x03\x00" + encode_address("127.0.0.1", fuzzer.getsockname()[1]))
        await reader.readexactly(2 + 10)
        await wait_for(lambda: bool(server.associations), 5, what="the association")
        [association] = server.associations
        return server, association, fuzzer

    @async_test
    async def test_generated_datagrams_to_every_port(self) -> None:
        """Every generated datagram is handled or counted at every port, nothing raises or logs a
        traceback, and the node still serves a circuit and the SOCKS5 association afterwards."""
        logs = LogCapture(self)
        target = self.net.exits[0]
        community = target.community
        dht = community.dht_provider.node
        exit_socket = await self.open_exit_ports()
        server, association, fuzzer = await self.open_association(community)
        generated: list[bytes] = []

        @settings(max_examples=600, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(datagrams(community.get_prefix(), sorted(community.table.entries)))
        def every_handler(example: tuple[bytes, Address]) -> None:
            datagram, source = example
            generated.append(datagram)
            target.endpoint.datagram_received(datagram, source)
            dht.datagram_received(datagram, source)
            for port in exit_socket.ports.values():
                port.protocol.datagramReceived(datagram, source)
            association.datagramReceived(datagram, (association.client_host, association.client_port))
        every_handler()
        exit_socket = await self.open_exit_ports()   # garbage with live circuit ids ended the first

        v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        v6.bind(("::1", 0))
        v6.setblocking(False)
        self.addCleanup(v6.close)
        exit_v4, exit_v6 = (exit_socket.ports[f].getHost() for f in (4, 6))
        association_port = association.transport.getHost()
        targets = [
            (fuzzer, target.address, count_calls(self, target.endpoint, "datagram_received")),
            (fuzzer, dht.address, count_calls(self, dht, "datagram_received")),
            (fuzzer, (exit_v4.host, exit_v4.port), count_calls(self, exit_socket, "on_reply")),
            (v6, (exit_v6.host, exit_v6.port), count_calls(self, exit_socket, "on_reply")),
            (fuzzer, (association_port.host, association_port.port), count_calls(self, association,
                                                                                 "datagramReceived")),
        ]
        for sock, address, calls in targets:
            port = sock.getsockname()[1]
            for start in range(0, len(generated), BATCH):
                batch = generated[start:start + BATCH]
                want = calls[port] + len(batch)
                for datagram in batch:
                    sock.sendto(datagram, address)
                await wait_for(lambda: calls[port] >= want, 10, what=f"{address} to read every datagram")

        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(logs.tracebacks, [])
        self.assertLessEqual(len(logs.events) + len(logs.records), 10, [e.get("log_format") for e in logs.events])
        circuit = None
        while circuit is None or circuit.hops[-1].address != target.address:
            circuit = await self.build(1)
        self.assertEqual(await self.echo_round_trip(circuit, b"still serving"), [b"still serving"])
