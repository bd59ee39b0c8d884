# -*- test-case-name: test.test_dht_provider -*-
"""The dht_provider interface: memory and mainline implementations, argument checks."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyClass, verifyObject

from test.util import async_test
from tunnels.dht import (
    DHTNode, IDHTProvider, MainlineDHTProvider, MemoryDHTProvider, MemoryDHTStore)
from tunnels.dht.testing import LOCAL_CONFIG, start_local_network, stop_all
from tunnels.errors import DHTError
from tunnels.runtime import as_future

KEY = hashlib.sha1(b"service").digest()
BAD_CALLS: list[tuple[str, tuple[Any, ...], type[Exception]]] = [
    ("lookup", ("x" * 20,), TypeError),
    ("lookup", (b"short",), ValueError),
    ("lookup", (None,), TypeError),
    ("announce", (KEY, "80"), TypeError),
    ("announce", (KEY, True), TypeError),
    ("announce", (KEY, 0), ValueError),
    ("announce", (KEY, 65536), ValueError),
    ("announce", (b"k" * 21, 80), ValueError),
]


class MemoryProviderTests(SynchronousTestCase):
    """Providers on one MemoryDHTStore see each other's announces."""

    def test_interface(self) -> None:
        """Both providers implement IDHTProvider."""
        verifyClass(IDHTProvider, MemoryDHTProvider)
        verifyClass(IDHTProvider, MainlineDHTProvider)
        verifyObject(IDHTProvider, MemoryDHTProvider(MemoryDHTStore()))

    def test_shared_store(self) -> None:
        """An announce through one provider is found through another, once."""
        store = MemoryDHTStore()
        a, b = MemoryDHTProvider(store, "127.0.0.2"), MemoryDHTProvider(store)
        self.assertIsNone(self.successResultOf(a.announce(KEY, 4000)))
        self.successResultOf(a.announce(KEY, 4000))
        self.assertEqual(self.successResultOf(b.lookup(KEY)), [("127.0.0.2", 4000)])
        self.assertEqual(self.successResultOf(b.lookup(b"o" * 20)), [])

    def test_bad_arguments(self) -> None:
        """Bad keys and ports raise TypeError/ValueError at the call, storing nothing."""
        store = MemoryDHTStore()
        provider = MemoryDHTProvider(store)
        for method, args, exc in BAD_CALLS:
            with self.assertRaises(exc, msg=(method, args)):
                getattr(provider, method)(*args)
        self.assertEqual(store.peers, {})

    def test_failure_is_dhterror(self) -> None:
        """A failing store fails lookups and announces with DHTError."""
        store = MemoryDHTStore()
        store.fail_next = 2
        provider = MemoryDHTProvider(store)
        self.failureResultOf(provider.lookup(KEY), DHTError)
        self.failureResultOf(provider.announce(KEY, 1), DHTError)
        self.successResultOf(provider.lookup(KEY))


class MainlineProviderTests(TestCase):
    """MainlineDHTProvider on a local network of our nodes."""

    async def network(self, count: int = 10) -> list[DHTNode]:
        nodes: list[DHTNode] = await as_future(start_local_network(reactor, count))
        self.addCleanup(lambda: stop_all(nodes))
        return nodes

    @async_test
    async def test_announce_and_lookup(self) -> None:
        """An intro point announces through one provider and is found through another."""
        nodes = await self.network()
        a, b = MainlineDHTProvider(nodes[1]), MainlineDHTProvider(nodes[8])
        self.assertIsNone(await as_future(a.announce(KEY, 5000)))
        self.assertEqual(await as_future(b.lookup(KEY)), [("127.0.0.1", 5000)])

    @async_test
    async def test_bad_arguments_before_io(self) -> None:
        """Bad arguments raise before any datagram is sent."""
        nodes = await self.network(3)
        provider = MainlineDHTProvider(nodes[0])
        sent = nodes[0].stats.sent
        for method, args, exc in BAD_CALLS:
            with self.assertRaises(exc, msg=(method, args)):
                getattr(provider, method)(*args)
        self.assertEqual(nodes[0].stats.sent, sent)

    @async_test
    async def test_failures_are_dhterror(self) -> None:
        """With no reachable DHT node, lookup and announce fail with DHTError."""
        silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        config = dataclasses.replace(LOCAL_CONFIG, query_timeout=0.2, retries=0,
                                     bootstrap=(("127.0.0.1", silent.getHost().port),))
        node = DHTNode(reactor, config)
        self.addCleanup(node.stop)
        self.assertEqual(await as_future(node.start(0, "127.0.0.1")), 0)
        provider = MainlineDHTProvider(node)
        with self.assertRaises(DHTError):
            await as_future(provider.lookup(KEY))
        with self.assertRaises(DHTError):
            await as_future(provider.announce(KEY, 5000))
        stopped = MainlineDHTProvider(DHTNode(reactor, LOCAL_CONFIG))
        with self.assertRaises(DHTError):
            await as_future(stopped.lookup(KEY))

    @async_test
    async def test_use_sender(self) -> None:
        """After use_sender, lookups travel through the given sender only, seeded from the
        node's routing table, and still find the peer."""
        nodes = await self.network()
        await as_future(MainlineDHTProvider(nodes[2]).announce(KEY, 5100))
        seeker = MainlineDHTProvider(nodes[5])
        own_port: list[bytes] = []
        original = nodes[5].client._send

        def record(data: bytes, addr: tuple[str, int]) -> None:
            own_port.append(data)
            original(data, addr)
        nodes[5].client._send = record
        through: list[tuple[bytes, tuple[str, int]]] = []

        class Circuit(DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
                client.datagram_received(data, (addr[0], addr[1]))
        port = reactor.listenUDP(0, Circuit(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def send(data: bytes, addr: tuple[str, int]) -> None:
            through.append((data, addr))
            port.write(data, addr)
        client = seeker.use_sender(send, timeout=0.5)
        self.assertEqual(await as_future(seeker.lookup(KEY)), [("127.0.0.1", 5100)])
        self.assertGreater(len(through), 0)
        self.assertFalse([d for d in own_port if KEY in d], "the lookup left the node's port")
        self.assertTrue(all(KEY in d for d, _ in through))
