# -*- test-case-name: test.test_dht_lookup_client -*-
"""The socket-less lookup client: lookups through a caller-supplied sender."""
from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from test.util import async_test
from tunnels.dht import krpc
from tunnels.dht.lookup_client import DHTLookupClient
from tunnels.dht.node import DHTNode
from tunnels.dht.testing import start_local_network, stop_all
from tunnels.errors import DHTError
from tunnels.runtime import as_future


class Relay(DatagramProtocol):
    """Stands in for a circuit: a separate UDP socket that carries the client's datagrams
    and hands replies back, recording everything it sent."""

    def __init__(self) -> None:
        self.client: DHTLookupClient | None = None
        self.sent: list[bytes] = []

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)
        self.transport.write(data, addr)

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        assert self.client is not None
        self.client.datagram_received(data, (addr[0], addr[1]))


class LookupClientTests(TestCase):
    """Lookups and announces through a relay socket, never the nodes' own ports."""

    async def setup(self, count: int = 10, **kw: Any) -> tuple[list[DHTNode], Relay,
                                                                 DHTLookupClient]:
        nodes: list[DHTNode] = await as_future(start_local_network(reactor, count))
        self.addCleanup(lambda: stop_all(nodes))
        relay = Relay()
        port = reactor.listenUDP(0, relay, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        kw.setdefault("timeout", 0.5)
        client = DHTLookupClient(reactor, relay.send, [nodes[0].address],
                                 address_policy="loopback", **kw)
        relay.client = client
        self.relay_addr = ("127.0.0.1", port.getHost().port)
        return nodes, relay, client

    @async_test
    async def test_lookup_through_sender(self) -> None:
        """get_peers through the relay finds a peer announced by a node."""
        nodes, relay, client = await self.setup()
        info_hash = hashlib.sha1(b"hidden").digest()
        await as_future(nodes[6].announce_peer(info_hash, 9000))
        peers = await as_future(client.get_peers(info_hash))
        self.assertEqual(peers, [("127.0.0.1", 9000)])
        self.assertGreater(len(relay.sent), 1)

    @async_test
    async def test_unlinkable_and_read_only(self) -> None:
        """Each lookup uses a fresh id; queries carry ro=1 and no version; no node adds
        the relay's address to its routing table."""
        nodes, relay, client = await self.setup()
        target = hashlib.sha1(b"x").digest()
        await as_future(client.find_node(target))
        first = len(relay.sent)
        await as_future(client.find_node(target))
        msgs = [krpc.decode_message(d) for d in relay.sent]
        ids = {m.sender_id for m in msgs[:first]}, {m.sender_id for m in msgs[first:]}
        self.assertEqual((len(ids[0]), len(ids[1])), (1, 1))
        self.assertNotEqual(ids[0], ids[1])
        self.assertTrue(all(isinstance(m, krpc.Query) and m.read_only and m.version is None
                            for m in msgs))
        for node in nodes:
            self.assertFalse(any(e.node.addr == self.relay_addr
                                 for e in node.routing.entries()))

    @async_test
    async def test_announce_through_sender(self) -> None:
        """announce_peer through the relay stores the relay's IP with the given port."""
        nodes, relay, client = await self.setup()
        info_hash = hashlib.sha1(b"via exit").digest()
        accepted = await as_future(client.announce_peer(info_hash, 9100))
        self.assertGreaterEqual(accepted, 4)
        self.assertIn(("127.0.0.1", 9100), await as_future(nodes[3].get_peers(info_hash)))

    @async_test
    async def test_seeds_from_node(self) -> None:
        """Seeds can come from a callable, e.g. a node's routing table."""
        nodes, relay, _ = await self.setup()
        client = DHTLookupClient(reactor, relay.send,
                                 lambda t: nodes[2].routing.closest(t, 16),
                                 address_policy="loopback", timeout=0.5)
        relay.client = client
        result = await as_future(client.find_node(nodes[7].node_id))
        self.assertEqual(result[0].node_id, nodes[7].node_id)

    @async_test
    async def test_failures(self) -> None:
        """No seeds, or seeds that never answer, fail with DHTError; garbage is counted."""
        relay = Relay()
        port = reactor.listenUDP(0, relay, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        empty = DHTLookupClient(reactor, relay.send, [], address_policy="loopback")
        with self.assertRaises(DHTError):
            await as_future(empty.get_peers(b"h" * 20))
        client = DHTLookupClient(reactor, relay.send, [("127.0.0.1", silent.getHost().port)],
                                 address_policy="loopback", timeout=0.2, retries=0)
        relay.client = client
        with self.assertRaises(DHTError):
            await as_future(client.get_peers(b"h" * 20))
        client.datagram_received(b"garbage", ("127.0.0.1", 1))
        client.datagram_received(krpc.encode_query(b"q", b"ping", {b"id": b"i" * 20}),
                                 ("127.0.0.1", 1))
        self.assertEqual(client.stats.dropped["query_to_client"], 1)
        self.assertEqual(client.stats.total_dropped, 2)
        with self.assertRaises(ValueError):
            client.get_peers(b"short")
