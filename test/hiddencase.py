"""Base classes for hidden-service tests: a local network of HiddenTunnelCommunity nodes."""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tunnels.hidden import rendezvous
from tunnels.hidden.community import HiddenTunnelCommunity
from tunnels.runtime import as_deferred
from tunnels.settings import TunnelSettings
from tunnels.testnet import LocalNetwork
from test.util import wait_for

Address = tuple[str, int]


class Member:
    """A client node registered (or about to be) in a service, with what it saw."""

    def __init__(self, community: HiddenTunnelCommunity) -> None:
        self.community = community
        self.peers: list[Address] = []
        self.lost: list[Address] = []
        self.received: list[tuple[Address, bytes]] = []
        community.add_data_handler(lambda circuit, source, payload: self.received.append((source, payload)))
        community.add_peer_lost_handler(lambda service, peer: self.lost.append(peer))

    def register(self, service_id: Any, hops: int = 1) -> None:
        self.community.register_service(service_id, hops, self.peers.append)

    def describe(self) -> str:
        """The member's hidden-service state, for failure messages."""
        c = self.community
        lines = [f"member with {len(self.peers)} peers, {len(c.active_data_circuits())} data circuits, "
                 f"{len(c.candidates())} candidates, {len(c.pending)} pending introductions"]
        for reg in c.registrations.values():
            lines.append(f"  intro circuits {len(reg.intro_circuits)} ({len(reg.established)} established), sessions "
                         + str([(s.initiator, s.established, s.circuit.state.name if s.circuit else None)
                                for s in reg.sessions]))
        lines.append(f"  events {dict(c.stats.events)}")
        lines.append(f"  drops {dict(c.stats.drops)}")
        return "\n".join(lines)

    def send(self, peer: Address, payload: bytes) -> None:
        self.community.tunnel_data(self.community.active_data_circuits()[0], peer, "data", payload)


class HiddenNetworkCase(TestCase):
    """Relays, exits and ``clients`` members on 127.0.0.1 sharing an in-memory DHT.

    Periodic lookups are an hour apart: members must meet through the lookups their own
    registration and intro points start, never by waiting for a timer.
    """

    relays = 6
    exits = 2
    clients = 2
    settings = TunnelSettings()
    client_settings: TunnelSettings | None = None
    """The members' settings (``settings`` when None)."""
    timeout = 90

    dht = "memory"
    extra: dict[str, Any] = {}
    """More community settings for every node."""

    def setUp(self) -> Deferred[None]:
        return as_deferred(self._start())

    async def _start(self) -> None:
        self.net = LocalNetwork(reactor, relays=self.relays, exits=self.exits, clients=self.clients,
                                settings=self.settings, client_settings=self.client_settings,
                                community_class=HiddenTunnelCommunity, dht=self.dht, lookup_interval=3600.0,
                                **self.extra)
        await self.net.start()
        self.store = self.net.dht_store
        self.members = [Member(node.community) for node in self.net.clients]  # type: ignore[arg-type]

    def tearDown(self) -> Deferred[None]:
        return as_deferred(self.net.stop())

    def keep_rendezvous_off_members(self) -> None:
        """Members relay, so one may be the other's rendezvous point (test_hidden_setup); a test
        that stops the point, or reaches it from a member, needs a third node there."""
        choose = rendezvous.choose_rendezvous_point
        members = {m.community.my_peer.mid for m in self.members}

        def not_a_member(candidates: list[Any], rng: Any, intro_id: bytes, last_hop: Any) -> Any:
            return choose([c for c in candidates if c.node_id not in members], rng, intro_id, last_hop)
        self.patch(rendezvous, "choose_rendezvous_point", not_a_member)

    async def connected(self, *members: Member, count: int = 1, timeout: float = 30.0) -> None:
        try:
            await wait_for(lambda: all(len(m.peers) >= count for m in members), timeout, what="members to connect")
        except AssertionError as error:
            raise AssertionError(f"{error}\n" + "\n".join(m.describe() for m in members)) from None


class MainlineNetworkCase(HiddenNetworkCase):
    """As :class:`HiddenNetworkCase`, with every node on its own real BEP 5 node of a local DHT."""

    dht = "mainline"
