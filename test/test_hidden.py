"""Hidden services over real UDP on 127.0.0.1: members find each other and talk end to end."""
from __future__ import annotations

import asyncio
import secrets

from twisted.internet import reactor

from tunnels.core.circuits import CircuitState
from tunnels.daemon.metrics import families
from tunnels.daemon.status import node_status
from tunnels.errors import CircuitNotReady
from tunnels.hidden.community import NoDHTProvider
from tunnels.crypto.service_keys import ServiceKey, parse_service_id
from tunnels.wire.hidden import EstablishIntro, Introduce
from tunnels.runtime import as_future
from tunnels.wire.relay import RelayCommand
from test.hiddencase import HiddenNetworkCase, MainlineNetworkCase
from test.util import async_test, wait_for


class TwoMemberTests(HiddenNetworkCase):
    @async_test
    async def test_seed_example(self) -> None:
        """The seed's hidden-service example (with its keyword fixed so it is valid Python) works."""
        a, b = self.members
        community = a.community
        inbox: list[bytes] = []
        b.community.add_data_handler(lambda circuit, peer, payload: inbox.append(payload))

        def on_peer(peer):  # type: ignore[no-untyped-def]
            community.tunnel_data(community.active_data_circuits()[0], peer, u"data", "my message to this peer")
        community.register_service("my service identifier", hops=1, callback=on_peer)
        b.register("my service identifier")
        await wait_for(lambda: inbox == [b"my message to this peer"], 20, what="the seed example's message")

    @async_test
    async def test_both_ways_exactly_once_hops_1_and_2(self) -> None:
        """Members at 1 and 2 hops a side exchange messages both ways, once each, byte-identical."""
        for hops, service in ((1, "svc-one"), (2, "svc-two")):
            a, b = self.members
            a.register(service, hops)
            b.register(service, hops)
            await self.connected(a, b)
            for i in range(5):
                a.send(a.peers[-1], b"a->b %d" % i + bytes(range(200)))
                b.send(b.peers[-1], b"b->a %d" % i)
            await wait_for(lambda: len(a.received) >= 5 and len(b.received) >= 5, 10)
            await asyncio.sleep(0.2)
            self.assertEqual([p for _, p in b.received], [b"a->b %d" % i + bytes(range(200)) for i in range(5)])
            self.assertEqual([p for _, p in a.received], [b"b->a %d" % i for i in range(5)])
            self.assertEqual({s for s, _ in b.received}, {b.peers[-1]})
            a.community.unregister_service(service)
            self.assertEqual(a.lost, [])  # leaving is not losing: the other side may report a loss
            b.community.unregister_service(service)
            for m in (a, b):
                m.received.clear()
                m.peers.clear()
                m.lost.clear()

    @async_test
    async def test_lookup_key_is_a_hash_not_the_id(self) -> None:
        """The DHT sees a domain-separated hash of the service id, never the id."""
        a, b = self.members
        a.register("secret-name")
        b.register("secret-name")
        await self.connected(a, b)
        keys = list(self.store.peers)
        self.assertEqual(keys, [parse_service_id("secret-name")[0].dht_key])
        self.assertNotIn(b"secret-name", b"".join(keys))

    @async_test
    async def test_unregister_stops_reachability(self) -> None:
        """A member that unregisters is reported lost to the other and cannot be reached again."""
        a, b = self.members
        a.register("svc")
        b.register("svc")
        await self.connected(a, b)
        peer = a.peers[0]
        b.community.unregister_service("svc")
        await wait_for(lambda: peer in a.lost, 10, what="the peer-lost event")
        with self.assertRaises(CircuitNotReady):
            a.send(peer, b"anyone?")
        await asyncio.sleep(2.5)
        self.assertEqual(len(a.peers), 1)
        self.assertEqual(b.community.registrations, {})

    @async_test
    async def test_rendezvous_point_death_noticed_by_both(self) -> None:
        """When the rendezvous relay stops, both members are told they lost the peer."""
        a, b = self.members
        self.keep_rendezvous_off_members()  # stopping a member's node would end the member too
        a.register("svc")
        b.register("svc")
        await self.connected(a, b)
        session = a.community.sessions_by_peer[a.peers[0]]
        point = session.circuit.hops[-1].address
        node = next(n for n in self.net.nodes if n.address == point)
        self.assertNotIn(node.community, (a.community, b.community))
        await as_future(node.stop())
        self.net.relays = [n for n in self.net.relays if n is not node]
        self.net.exits = [n for n in self.net.exits if n is not node]
        await wait_for(lambda: a.lost and b.lost, 10, what="both members to notice")

    @async_test
    async def test_no_provider_is_a_clear_error(self) -> None:
        """register_service without a dht_provider raises NoDHTProvider; bad arguments raise."""
        community = self.members[0].community
        community.dht_provider = None
        with self.assertRaises(NoDHTProvider):
            community.register_service("x", 1, lambda peer: None)
        community.dht_provider = object()
        for args, error in (((42, 1, print), TypeError), (("x", 0, print), ValueError), (("x", 1, "cb"), TypeError),
                            (("", 1, print), ValueError), (("hs1-!!", 1, print), ValueError)):
            with self.assertRaises(error):
                community.register_service(*args)


class ThreeMemberTests(HiddenNetworkCase):
    clients = 3

    @async_test
    async def test_every_member_finds_every_other(self) -> None:
        """Three members of a swarm end up connected pairwise, each reporting two peers."""
        for m in self.members:
            m.register("swarm")
        await self.connected(*self.members, count=2, timeout=30)
        await asyncio.sleep(2.5)
        # a connection lost and made again is reported as lost, then as a new peer
        self.assertEqual([len(m.peers) - len(m.lost) for m in self.members], [2, 2, 2])
        for m in self.members:
            live = [s for s in m.community.sessions_by_peer.values() if s.established]
            self.assertEqual(len({s.member for s in live}), 2)

    @async_test
    async def test_intro_point_death_is_repaired(self) -> None:
        """An intro point that dies is replaced, and the service stays findable for newcomers."""
        owner, newcomer, _ = self.members
        owner.register("findable")
        registration = owner.community.registrations[parse_service_id("findable")[0].dht_key]
        await wait_for(lambda: len(registration.established) == 2, 10)
        # Any intro point but the newcomer's node will do (two intro points are distinct, so one
        # qualifies): stop that node whatever its role, rather than wait for chance to put one on a relay.
        newcomer_address = newcomer.community.udp.host, newcomer.community.udp.port
        victim = next(c.hops[-1].address for c in registration.established if c.hops[-1].address != newcomer_address)
        node = next(n for n in self.net.nodes if n.address == victim)
        await as_future(node.stop())
        for group in (self.net.relays, self.net.exits, self.net.clients):
            if node in group:
                group.remove(node)
        # The others forget it, as IPv8 does once it stops answering (a relay that is still in
        # everyone's view costs each circuit through it a 10 s build timeout; that is not the subject).
        for other in self.net.nodes:
            other.community.network.remove_by_address(victim)
        await wait_for(lambda: len(registration.established) == 2 and
                       victim not in {c.hops[-1].address for c in registration.established}, 30,
                       what="a new intro point")
        newcomer.register("findable")
        await self.connected(owner, newcomer)


class SelfCertifyingTests(HiddenNetworkCase):
    @async_test
    async def test_key_holder_is_found_by_id(self) -> None:
        """A seeker knowing only the hs1- id reaches the key holder; data flows both ways."""
        owner, seeker = self.members
        key = ServiceKey()
        owner.register(key)
        seeker.register(key.service_id)
        await self.connected(owner, seeker)
        seeker.send(seeker.peers[0], b"hello owner")
        await wait_for(lambda: owner.received == [(owner.peers[0], b"hello owner")], 10)

    @async_test
    async def test_squatting_refused(self) -> None:
        """Without the key, nobody can run intro points for a self-certifying id; attempts are counted."""
        owner, squatter = self.members
        key = ServiceKey()
        dht_key = parse_service_id(key)[0].dht_key
        circuit = await as_future(squatter.community.create_circuit(2, exit_data=False))
        intro = next(n.community for n in self.net.nodes if n.address == circuit.hops[-1].address)
        forged = ServiceKey()
        cert = key.public + (2 ** 40).to_bytes(8, "big") + forged.sign(b"anything")
        squatter.community.origin.send_message(circuit, RelayCommand.ESTABLISH_INTRO,
                                               EstablishIntro(dht_key, bytes(32), cert).encode())
        await wait_for(lambda: circuit.state is CircuitState.CLOSED, 5)
        self.assertEqual(intro.stats.events["intro_refused_bad_record"], 1)
        self.assertNotIn(dht_key, intro.hidden_relay.intros)
        # An open registration under the same key is refused once the real owner registered there.
        owner.register(key)
        registration = owner.community.registrations[dht_key]
        await wait_for(lambda: len(registration.established) == 2, 10)
        point = next(c.hops[-1] for c in registration.established
                     if c.hops[-1].address != self.net.clients[1].address)
        squat = await as_future(squatter.community.create_circuit(
            2, exit_data=False, last_hop=next(c for c in squatter.community.candidates() if c.node_id == point.node_id)))
        squatter.community.origin.send_message(squat, RelayCommand.ESTABLISH_INTRO,
                                               EstablishIntro(dht_key, bytes(32)).encode())
        await wait_for(lambda: squat.state is CircuitState.CLOSED, 5)
        target = next(n.community for n in self.net.nodes if n.address == point.address)
        self.assertEqual(target.stats.events["intro_refused_squatting"], 1)


class HostileHiddenTests(HiddenNetworkCase):
    @async_test
    async def test_forged_and_replayed_cookies_refused(self) -> None:
        """JOIN with a cookie already spent is refused at once; JOIN with an unknown cookie is held
        for a member's half that never comes, never spliced; both counted, the connection unharmed."""
        a, b = self.members
        self.keep_rendezvous_off_members()  # a member builds circuits to R below
        a.register("svc")
        b.register("svc")
        await self.connected(a, b)
        point = a.community.sessions_by_peer[a.peers[0]].circuit.hops[-1]
        community = a.community
        candidate = next(c for c in community.candidates() if c.node_id == point.node_id)
        rendezvous = next(n.community for n in self.net.nodes if n.address == point.address)
        used = community.sessions_by_peer[a.peers[0]].cookie
        self.assertEqual(len(used), 20)
        replayed = await as_future(community.create_circuit(2, exit_data=False, last_hop=candidate))
        community.origin.send_message(replayed, RelayCommand.JOIN, used)
        await wait_for(lambda: replayed.state is CircuitState.CLOSED, 10)
        self.assertEqual(rendezvous.stats.drops["join_reused_cookie"], 1)
        forged = await as_future(community.create_circuit(2, exit_data=False, last_hop=candidate))
        waited = rendezvous.stats.events["join_waiting"]  # the real seeker's JOIN may have come first
        community.origin.send_message(forged, RelayCommand.JOIN, secrets.token_bytes(20))
        await wait_for(lambda: rendezvous.stats.events["join_waiting"] == waited + 1, 10)
        self.assertEqual(len(rendezvous.hidden_relay.point.joins), 1)
        self.assertEqual(rendezvous.stats.events["rendezvous_joined"], 1)
        a.send(a.peers[0], b"still connected")
        try:
            await wait_for(lambda: (b.peers[-1], b"still connected") in b.received, 10, what="delivery")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{a.describe()}\n{b.describe()}\n{b.received!r}") from None

    @async_test
    async def test_introduction_for_unknown_service(self) -> None:
        """An introduction for a service the intro point does not serve is answered 'unknown' and counted."""
        a, _ = self.members
        community = a.community
        community.build_tunnels(1)
        await wait_for(lambda: community.tunnels_ready(1) == 1.0, 10)
        circuit = community.active_data_circuits(1)[0]
        intro = next(c for c in community.candidates() if c.address != circuit.hops[-1].address)
        intro_node = next(n.community for n in self.net.nodes if n.address == intro.address)
        message = Introduce(b"\x01" * 20, b"r" * 8, b"m" * 20, secrets.token_bytes(32), intro.address, intro.node_id)
        community.origin.send_message(circuit, RelayCommand.INTRODUCE1, message.encode())
        await wait_for(lambda: intro_node.stats.events["introduce_unknown_service"] == 1, 5)


class MainlineDHTTests(MainlineNetworkCase):
    @async_test
    async def test_members_meet_through_the_mainline_dht(self) -> None:
        """With real BEP 5 nodes, intro points announce themselves and seekers look up through circuits."""
        a, b = self.members
        a.register("mainline swarm")
        b.register("mainline swarm", hops=2)
        await self.connected(a, b, timeout=30)
        a.send(a.peers[0], b"over mainline")
        await wait_for(lambda: b.received == [(b.peers[0], b"over mainline")], 10)
        for m in (a, b):
            self.assertIsNotNone(m.community._dht_client)
            self.assertGreater(m.community._dht_circuit.cells_sent, 0)
            # the first lookup starts before its circuit exists: its queries waited, none was dropped
            self.assertGreaterEqual(m.community.stats.events["dht_lookups"], 1)
            self.assertEqual(m.community.stats.drops["dht_query_without_circuit"], 0)
        # the status of a member: its DHT node and its hidden-service session, in the JSON and the metrics
        status = node_status(self.net.clients[0], reactor.seconds())
        self.assertGreater(status["dht"]["routing_table_nodes"], 0)
        self.assertGreater(status["dht"]["queries_sent"], 0)
        self.assertEqual(status["hidden"]["services"], 1)
        self.assertGreaterEqual(status["hidden"]["sessions_established"], 1)
        self.assertEqual(status["hidden"]["dht_lookups"], a.community.stats.events["dht_lookups"])
        metrics = {(f.name, tuple(sorted(s.labels.items()))): s.value for f in families(status) for s in f.samples}
        self.assertEqual(metrics[("txtunnels_dht_routing_table_nodes", ())], status["dht"]["routing_table_nodes"])
        self.assertEqual(metrics[("txtunnels_hs_sessions", (("state", "established"),))],
                         status["hidden"]["sessions_established"])
        self.assertEqual(metrics[("txtunnels_hs_dht_lookups", (("result", "started"),))],
                         status["hidden"]["dht_lookups"])
