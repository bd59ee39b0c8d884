# -*- test-case-name: test.test_community -*-
"""A local tunnel network on 127.0.0.1: relays, exits, a client and a UDP echo server.

Used by the demo (``python -m tunnels demo``), the tests and the examples; shipped
so applications can test against a real network of their own.  Nothing here
contacts any address but 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.protocol import DatagramProtocol

from ..community import TunnelCommunity
from ..dht.node import DHTNode
from ..dht.provider import MainlineDHTProvider, MemoryDHTProvider, MemoryDHTStore
from ..dht.testing import LOCAL_CONFIG, start_local_network, stop_all
from ..node import TunnelNode, start_node
from ..runtime import as_future, listen_udp
from ..settings import TunnelSettings

Address = tuple[str, int]
HOST = "127.0.0.1"


class EchoServer(DatagramProtocol):
    """Sends every datagram back to where it came from, and remembers what it saw."""

    def __init__(self) -> None:
        self.received: list[tuple[Address, bytes]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        self.received.append(((addr[0], addr[1]), datagram))
        self.transport.write(datagram, addr)


class LocalNetwork:
    """``relays`` plain relays, ``exits`` exit nodes and ``clients`` client nodes on 127.0.0.1.

    ``dht="memory"`` gives every node a :class:`MemoryDHTProvider` on one shared store;
    ``dht="mainline"`` starts ``dht_nodes`` real BEP 5 nodes and gives every tunnel node its own
    node and :class:`MainlineDHTProvider` (so every node can serve as an introduction point).
    """

    def __init__(self, reactor: Any, relays: int = 4, exits: int = 2, clients: int = 1,
                 settings: TunnelSettings | None = None, client_settings: TunnelSettings | None = None,
                 community_class: type[TunnelCommunity] = TunnelCommunity, testnet: bool = True,
                 dht: str | None = None, dht_nodes: int = 6, **extra: Any) -> None:
        self.reactor = reactor
        self.counts = (relays, exits, clients)
        self.settings = settings or TunnelSettings()
        self.client_settings = client_settings or self.settings
        self.community_class = community_class
        self.testnet = testnet
        if dht not in (None, "memory", "mainline"):
            raise ValueError("dht must be None, 'memory' or 'mainline'")
        self.dht = dht
        self.dht_nodes = dht_nodes
        self.dht_store = MemoryDHTStore()
        """The shared store when ``dht="memory"``."""
        self.dht_network: list[DHTNode] = []
        """With ``dht="mainline"``: the standalone BEP 5 nodes, then one node per tunnel node."""
        self._own_dht: list[DHTNode] = []
        self.extra = extra
        self.relays: list[TunnelNode] = []
        self.exits: list[TunnelNode] = []
        self.clients: list[TunnelNode] = []
        self.echo = EchoServer()
        self._echo_port: Any = None

    @property
    def nodes(self) -> list[TunnelNode]:
        """Every node: relays, then exits, then clients."""
        return self.relays + self.exits + self.clients

    @property
    def client(self) -> TunnelCommunity:
        """The first client's community."""
        return self.clients[0].community

    @property
    def echo_address(self) -> Address:
        """Where the UDP echo server listens."""
        return (HOST, self._echo_port.getHost().port)

    async def _node(self, settings: TunnelSettings) -> TunnelNode:
        bootstrap = [node.address for node in self.nodes]
        extra = dict(self.extra)
        if self.dht == "memory":
            extra["dht_provider"] = MemoryDHTProvider(self.dht_store, HOST)
        elif self.dht == "mainline":
            seeds = tuple(node.address for node in self.dht_network[:2])
            own = DHTNode(self.reactor, dataclasses.replace(LOCAL_CONFIG, bootstrap=seeds))
            await as_future(own.start(0, HOST))
            self._own_dht.append(own)
            extra["dht_provider"] = MainlineDHTProvider(own)
        return await as_future(start_node(self.reactor, HOST, 0, bootstrap=bootstrap, settings=settings,
                                          testnet=self.testnet, community_class=self.community_class, **extra))

    async def start(self, timeout: float = 20.0, progress: Callable[[str], None] | None = None) -> None:
        """Start the echo server and every node, and wait until each knows all the others.

        ``progress(line)``, if given, hears each step (DHT up, nodes started, peers found).
        """
        say = progress or (lambda line: None)
        self._echo_port = listen_udp(self.reactor, 0, self.echo, HOST)
        relays, exits, clients = self.counts
        total = relays + exits + clients
        try:
            if self.dht == "mainline":
                self.dht_network = await as_future(start_local_network(self.reactor, self.dht_nodes))
                say(f"mainline DHT: {len(self.dht_network)} BEP 5 nodes up")
            for kind, count, settings in (("relay", relays, self.settings),
                                          ("exit", exits, replace(self.settings, become_exitnode=True)),
                                          ("client", clients, self.client_settings)):
                group = {"relay": self.relays, "exit": self.exits, "client": self.clients}[kind]
                for _ in range(count):
                    group.append(await self._node(settings))
                if count:
                    say(f"{len(self.nodes)}/{total} nodes up ({count} {kind}{'s' if count > 1 else ''} started)")
            await self.wait_connected(timeout, say)
        except BaseException:
            await self.stop()
            raise

    async def wait_connected(self, timeout: float, progress: Callable[[str], None] | None = None) -> None:
        """Wait until every node knows every other node and what it offers."""
        deadline = time.monotonic() + timeout
        want = len(self.nodes) - 1
        reported = -1

        def known(community: TunnelCommunity) -> int:
            return sum(1 for peer in community.get_peers() if peer.mid in community.peer_flags)
        while any(known(node.community) < want for node in self.nodes):
            complete = sum(1 for node in self.nodes if known(node.community) >= want)
            if progress is not None and complete != reported:
                progress(f"peer discovery: {complete}/{len(self.nodes)} nodes know all the others")
                reported = complete
            if time.monotonic() > deadline:
                counts = [known(node.community) for node in self.nodes]
                raise TimeoutError(f"peer discovery incomplete after {timeout}s: {counts} of {want}")
            for node in self.nodes:
                if known(node.community) < want:
                    for other in self.nodes:
                        if other is not node:
                            node.community.walk_to(other.address)
            await asyncio.sleep(0.2)
        if progress is not None:
            progress(f"peer discovery: all {len(self.nodes)} nodes know each other")

    async def stop(self) -> None:
        """Stop every node (destroying circuits) and the echo server."""
        for node in reversed(self.nodes):
            await as_future(node.stop())
        await as_future(stop_all(self._own_dht + self.dht_network))
        self._own_dht, self.dht_network = [], []
        if self._echo_port is not None:
            await as_future(self._echo_port.stopListening())
            self._echo_port = None
