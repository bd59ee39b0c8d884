"""Entry guards and vanguards (DESIGN.md property 16): the rules, the file, and real nodes."""
from __future__ import annotations

import os
import random
import secrets
import stat

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tunnels.core import guards as g
from tunnels.core.guards import DAY, EntryGuards, Guard, Vanguards
from tunnels.core.pathsel import Candidate, PeerFlag, select_path
from tunnels.daemon.guardfile import GuardFileError, decode, encode, guard_path, load_guards, save_guards
from tunnels.daemon.service import TunnelService
from tunnels.node import new_key_bin
from tunnels.runtime import as_deferred, as_future
from tunnels.settings import TunnelSettings
from tunnels.testnet import LocalNetwork
from test.hiddencase import HiddenNetworkCase
from test.util import async_test, wait_for

T0 = 1_700_000_000.0


def view(relays: int = 8, exits: int = 3) -> list[Candidate]:
    """A view of ``relays`` non-exit relays and ``exits`` exits in distinct /16s."""
    nodes = [Candidate((f"198.{i}.0.1", 7000), bytes([i]) * 20, bytes(32), PeerFlag.RELAY) for i in range(relays)]
    nodes += [Candidate((f"203.{i}.0.1", 7000), bytes([100 + i]) * 20, bytes(32), PeerFlag.RELAY | PeerFlag.EXIT)
              for i in range(exits)]
    return nodes


class EntryGuardTests(SynchronousTestCase):
    def test_every_circuit_starts_at_the_first_primary_guard(self) -> None:
        """1000 paths of 2-4 hops over a view of 11 relays all start at the same guard, a non-exit;
        without guards they would have started at every relay."""
        guards = EntryGuards(random.Random(1))
        candidates = view()
        rng = random.Random(2)
        firsts = {select_path(candidates, rng.choice((2, 3, 4)), True, rng,
                              guards=guards.usable(candidates, T0))[0].node_id for _ in range(1000)}
        self.assertEqual(len(guards.sampled), g.N_PRIMARY)
        self.assertEqual(firsts, {guards.ids()[0]})
        self.assertNotIn(PeerFlag.EXIT, next(c for c in candidates if c.node_id in firsts).flags)
        unguarded = {select_path(candidates, 3, True, rng)[0].node_id for _ in range(1000)}
        self.assertEqual(len(unguarded), 8)

    def test_failure_moves_to_the_next_guard_then_back(self) -> None:
        """A guard that failed is skipped until its retry time (30 s, doubling); the primaries
        are not replaced, and no new guard is sampled while one of them works."""
        guards = EntryGuards(random.Random(3))
        candidates = view()
        first, second, third = (c.node_id for c in guards.usable(candidates, T0))
        guards.failed(first, T0)
        self.assertEqual([c.node_id for c in guards.usable(candidates, T0 + 29)], [second, third])
        self.assertEqual(guards.usable(candidates, T0 + 31)[0].node_id, first)
        guards.failed(first, T0 + 31)
        self.assertEqual(guards.usable(candidates, T0 + 31 + 59)[0].node_id, second)
        self.assertEqual(guards.usable(candidates, T0 + 31 + 61)[0].node_id, first)
        for node_id in (first, second, third):
            guards.failed(node_id, T0 + 100)
        fourth = guards.usable(candidates, T0 + 100)
        self.assertEqual(len(fourth), 1)
        self.assertNotIn(fourth[0].node_id, (first, second, third))
        self.assertEqual(len(guards.sampled), 4)

    def test_a_guard_missing_from_the_view_is_skipped_then_dropped(self) -> None:
        """An unlisted guard is not used; after 20 days unlisted it leaves the sample."""
        guards = EntryGuards(random.Random(4))
        candidates = view()
        first = guards.usable(candidates, T0)[0].node_id
        rest = [c for c in candidates if c.node_id != first]
        self.assertNotEqual(guards.usable(rest, T0 + 1)[0].node_id, first)
        self.assertIn(first, guards.ids())
        self.assertEqual(guards.usable(candidates, T0 + 2)[0].node_id, first)  # back in view: first again
        guards.usable(rest, T0 + 3)
        guards.usable(rest, T0 + 3 + g.REMOVE_UNLISTED_AFTER)
        self.assertNotIn(first, guards.ids())

    def test_rotation(self) -> None:
        """An unconfirmed guard lives at most GUARD_LIFETIME from its (backdated) sampling; a
        confirmed one also at least CONFIRMED_LIFETIME after its confirmation."""
        guards = EntryGuards(random.Random(5))
        candidates = view()
        first, second, _ = (c.node_id for c in guards.usable(candidates, T0))
        self.assertTrue(all(T0 - g.GUARD_LIFETIME / 10 <= s.added_on <= T0 for s in guards.sampled))
        guards.succeeded(first, T0 + 115 * DAY)
        guards.usable(candidates, T0 + g.GUARD_LIFETIME + 1)
        self.assertNotIn(second, guards.ids())
        self.assertEqual(guards.ids()[0], first)
        guards.usable(candidates, T0 + 115 * DAY + g.CONFIRMED_LIFETIME + 1)
        self.assertNotIn(first, guards.ids())
        self.assertEqual(len(guards.ids()), g.N_PRIMARY)

    def test_confirmed_guards_come_first_and_changes_are_reported(self) -> None:
        """A confirmed guard leads the order; sampling and confirming call ``on_change``."""
        changes: list[list[bytes]] = []
        guards = EntryGuards(random.Random(6), on_change=lambda s: changes.append(s.ids()))
        candidates = view()
        ids = [c.node_id for c in guards.usable(candidates, T0)]
        self.assertEqual(len(changes), 1)
        guards.succeeded(ids[2], T0 + 1)
        self.assertEqual(guards.ids()[0], ids[2])
        self.assertEqual(changes[-1][0], ids[2])
        guards.succeeded(ids[2], T0 + 2)
        self.assertEqual(len(changes), 2)

    def test_fixed_last_hop_that_is_the_guard(self) -> None:
        """A circuit to a fixed last hop that is our first guard starts at the second guard."""
        guards = EntryGuards(random.Random(7))
        candidates = view()
        usable = guards.usable(candidates, T0)
        path = select_path(candidates, 2, False, random.Random(1), last=usable[0], guards=usable)
        self.assertEqual([c.node_id for c in path], [usable[1].node_id, usable[0].node_id])
        self.assertIsNone(select_path(candidates, 2, True, random.Random(1), guards=[]))


class VanguardTests(SynchronousTestCase):
    def test_second_hops_are_pinned(self) -> None:
        """Hidden-service paths of 3 hops take their second hop from 4 vanguards, each living
        1-12 days; then they rotate."""
        vanguards = Vanguards(random.Random(8))
        guards = EntryGuards(random.Random(9))
        candidates = view(20, 3)
        rng = random.Random(10)
        seconds = set()
        for _ in range(500):
            path = select_path(candidates, 3, False, rng, guards=guards.usable(candidates, T0),
                               layer2=vanguards.usable(candidates, T0))
            seconds.add(path[1].node_id)
        layer2 = {i for i, _ in vanguards.layer2}
        self.assertEqual(len(layer2), g.L2_COUNT)
        self.assertLessEqual(seconds, layer2)
        self.assertTrue(all(T0 + g.L2_MIN_LIFETIME <= e <= T0 + g.L2_MAX_LIFETIME for _, e in vanguards.layer2))
        vanguards.usable(candidates, T0 + g.L2_MAX_LIFETIME + 1)
        self.assertEqual(len(vanguards.layer2), g.L2_COUNT)
        self.assertTrue(all(e > T0 + g.L2_MAX_LIFETIME for _, e in vanguards.layer2))


class GuardFileTests(SynchronousTestCase):
    def test_round_trip_and_path(self) -> None:
        """Guards survive the file, atomically written with mode 0600 next to the key file."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = guard_path(os.path.join(directory, "node.key"))
        self.assertEqual(path, os.path.join(directory, "node.guards"))
        self.assertEqual(guard_path("node"), "node.guards")
        self.assertEqual(guard_path("x.guards"), "x.guards.guards")
        stored = [Guard(secrets.token_bytes(20), T0, T0 + 5, None), Guard(secrets.token_bytes(20), T0 - 9, None, T0)]
        self.assertEqual(load_guards(path), [])
        save_guards(path, stored)
        self.assertEqual(load_guards(path), stored)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(os.listdir(directory), ["node.guards"])

    def test_bad_files_refused(self) -> None:
        """Every malformed guard file raises GuardFileError with a reason, nothing else."""
        good = {"node_id": "ab" * 20, "added_on": T0, "confirmed_on": None, "unlisted_since": None}
        import json
        cases = [b"", b"\xff", b"[]", b'{"version": 2, "guards": []}', b'{"version": 1}',
                 json.dumps({"version": 1, "guards": [good] * 2}).encode(),
                 json.dumps({"version": 1, "guards": [dict(good, node_id="zz" * 20)]}).encode(),
                 json.dumps({"version": 1, "guards": [dict(good, added_on=True)]}).encode(),
                 json.dumps({"version": 1, "guards": [dict(good, confirmed_on="x")]}).encode(),
                 b'{"version": 1, "guards": [{"node_id": "' + b"ab" * 20 + b'", "added_on": NaN}]}',
                 json.dumps({"version": 1, "guards": [dict(good, node_id=f"{i:040x}") for i in range(21)]}).encode(),
                 b"[" * 100000, b" " * 20000]
        for data in cases:
            self.assertRaises(GuardFileError, decode, data)
        self.assertEqual(decode(encode(decode(json.dumps({"version": 1, "guards": [good]}).encode()))),
                         [Guard(bytes.fromhex("ab" * 20), T0)])


class GuardedCircuitTests(HiddenNetworkCase):
    """Real nodes: every circuit of ours of two hops or more starts at a guard."""

    clients = 2

    @async_test
    async def test_every_own_circuit_starts_at_a_guard(self) -> None:
        """Data circuits of 2 and 3 hops and every hidden-service circuit (intro, seek, rendezvous,
        DHT) start at one of the member's guards; those of 3 hops take their second hop from its
        vanguards."""
        a, b = self.members
        a.register("guarded", hops=2)
        b.register("guarded", hops=1)
        a.community.build_tunnels(3)
        await self.connected(a, b, timeout=45)
        for hops in (2, 3):
            await as_future(a.community.create_circuit(hops))
        for member in (a, b):
            community = member.community
            guard_ids = set(community.guards.ids())
            layer2 = {i for i, _ in community.vanguards.layer2}
            circuits = [c for c in community.circuits if c.goal_hops > 1]
            self.assertTrue(circuits)
            for circuit in circuits:
                self.assertIn(circuit.path[0].node_id, guard_ids, f"{circuit.purpose} circuit")
                if circuit.purpose in ("intro", "rendezvous", "seek", "dht") and circuit.goal_hops >= 3:
                    self.assertIn(circuit.path[1].node_id, layer2, f"{circuit.purpose} circuit")
            self.assertLessEqual(len({c.path[0].node_id for c in circuits}), g.N_PRIMARY)
        self.assertTrue({"intro", "rendezvous"} <= {c.purpose for c in a.community.circuits})


class GuardRestartTests(TestCase):
    """A daemon's guards survive a restart (the service reads them back from the file)."""

    timeout = 60

    @async_test
    async def test_guards_kept_across_a_restart(self) -> None:
        """A node samples its guards, saves them next to its key file, and after a restart loads
        the same guards (shown in the status) and builds its circuits through them."""
        net = LocalNetwork(reactor, relays=5, exits=2, clients=0)
        await net.start()
        self.addCleanup(lambda: as_deferred(net.stop()))
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        guard_file = guard_path(os.path.join(directory, "txtunnels.key"))
        key = new_key_bin()

        async def run() -> tuple[TunnelService, list[bytes]]:
            service = TunnelService(reactor, host="127.0.0.1", port=0, settings=TunnelSettings(), key_bin=key,
                                    bootstrap=[n.address for n in net.nodes], testnet=True, status_interval=0,
                                    guard_file=guard_file)
            service.startService()
            node = await as_future(service.when_running())
            return service, list(node.community.guards.ids())

        service, loaded = await run()
        self.assertEqual(loaded, [])
        community = service.node.community
        await wait_for(lambda: len(community.guards.ids()) == g.N_PRIMARY, 10, what="guards sampled")
        circuit = await as_future(community.create_circuit(3))
        first = community.guards.ids()
        self.assertEqual(circuit.path[0].node_id, first[0])
        await as_future(service.stopService())
        self.assertEqual({s.node_id for s in load_guards(guard_file)}, set(first))

        service, loaded = await run()
        self.addCleanup(service.stopService)
        self.assertEqual(loaded, first)
        self.assertEqual(service.status()["entry_guards"], [i.hex()[:16] for i in first])
        community = service.node.community
        await wait_for(lambda: len(community.candidates()) == len(net.nodes), 10, what="peers found again")
        circuits = [await as_future(community.create_circuit(hops)) for hops in (2, 3, 3)]
        self.assertEqual({c.path[0].node_id for c in circuits}, {first[0]})
        self.assertEqual(community.guards.ids(), first)
