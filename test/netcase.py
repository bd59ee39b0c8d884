"""A trial base class running a :class:`~tunnels.testnet.LocalNetwork` per test, on real UDP."""
from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tunnels.core.circuits import Circuit, JoinedCircuit
from tunnels.community import TunnelCommunity
from tunnels.runtime import as_deferred, as_future
from tunnels.settings import TunnelSettings
from tunnels.testnet import LocalNetwork
from test.util import wait_for


class NetworkTestCase(TestCase):
    """Each test gets ``self.net``: relays, exits and a client on 127.0.0.1."""

    relays = 4
    exits = 2
    clients = 1
    settings = TunnelSettings()
    client_settings: TunnelSettings | None = None
    testnet = True
    timeout = 60

    def setUp(self) -> Deferred[None]:
        self.net = LocalNetwork(reactor, relays=self.relays, exits=self.exits, clients=self.clients,
                                settings=self.settings, client_settings=self.client_settings, testnet=self.testnet)
        return as_deferred(self.net.start())

    def tearDown(self) -> Deferred[None]:
        return as_deferred(self.net.stop())

    @property
    def client(self) -> TunnelCommunity:
        return self.net.client

    async def build(self, hops: int, community: TunnelCommunity | None = None) -> Circuit:
        """Build a data circuit and return it once ready."""
        return await as_future((community or self.client).create_circuit(hops))

    def joined(self) -> list[tuple[TunnelCommunity, JoinedCircuit]]:
        """Every joined circuit in the network with the community carrying it."""
        return [(node.community, jc) for node in self.net.nodes for jc in node.community.joined_circuits]

    async def echo_round_trip(self, circuit: Circuit, payload: bytes, timeout: float = 5.0) -> list[bytes]:
        """Send ``payload`` to the echo server through ``circuit``; return what came back."""
        got: list[bytes] = []

        def handler(c: Circuit, source: Any, data: bytes) -> None:
            if c is circuit:
                got.append(data)
        self.client.add_data_handler(handler)
        try:
            self.client.tunnel_data(circuit, self.net.echo_address, "data", payload)
            await wait_for(lambda: bool(got), timeout, what="echo reply")
            await asyncio.sleep(0.1)
        finally:
            self.client.remove_data_handler(handler)
        return got
