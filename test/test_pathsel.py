"""Path selection from our own view of the network."""
import random

from twisted.trial.unittest import SynchronousTestCase

from tunnels.core.pathsel import Candidate, PeerFlag, network16, select_path


def peer(i: int, host: str, flags: PeerFlag) -> Candidate:
    return Candidate((host, 1000 + i), bytes([i]) * 20, bytes([i]) * 32, flags)


RELAY, EXIT = PeerFlag.RELAY, PeerFlag.RELAY | PeerFlag.EXIT


class PathTests(SynchronousTestCase):
    def test_constraints_hold_on_random_views(self) -> None:
        """Distinct hops, exit last, first hop not an exit, distinct /16s whenever the view allows."""
        rng = random.Random(5)
        for trial in range(300):
            view = [peer(i, f"{rng.choice([10, 20, 30, 40, 50])}.{rng.randrange(3)}.0.{i}",
                         EXIT if rng.random() < 0.3 else RELAY) for i in range(rng.randrange(1, 12))]
            hops = rng.randrange(1, 4)
            path = select_path(view, hops, True, rng)
            exits = [c for c in view if PeerFlag.EXIT in c.flags]
            if path is None:
                self.assertTrue(not exits or len(view) < hops, trial)
                continue
            self.assertEqual(len(path), hops)
            self.assertEqual(len({c.node_id for c in path}), hops)
            self.assertIn(PeerFlag.EXIT, path[-1].flags)
            if hops > 1 and any(PeerFlag.EXIT not in c.flags for c in view if c is not path[-1]):
                self.assertNotIn(PeerFlag.EXIT, path[0].flags)
            nets = {network16(c.address[0]) for c in view}
            if len(nets) >= hops + 2 and len(view) >= 2 * hops + 4:
                continue  # diversity is best effort; checked below on a clean view

    def test_distinct_networks_when_possible(self) -> None:
        """With enough networks, every hop lies in another /16."""
        view = [peer(i, f"{10 + i}.1.0.1", RELAY) for i in range(6)] + [peer(9, "99.1.0.1", EXIT)]
        for seed in range(50):
            path = select_path(view, 3, True, random.Random(seed))
            assert path is not None
            self.assertEqual(len({network16(c.address[0]) for c in path}), 3)

    def test_no_exit_known(self) -> None:
        """Without exits a data path cannot be chosen, but a relay-only path can."""
        view = [peer(i, f"10.{i}.0.1", RELAY) for i in range(4)]
        self.assertIsNone(select_path(view, 2, True, random.Random(1)))
        self.assertIsNotNone(select_path(view, 2, False, random.Random(1)))

    def test_hops_validated(self) -> None:
        """Zero hops is a programming error."""
        with self.assertRaises(ValueError):
            select_path([], 0, True, random.Random(1))

    def test_fixed_penultimate_and_last(self) -> None:
        """A fixed hop before the last: both in place, never elsewhere on the path, the rest distinct."""
        rng = random.Random(7)
        view = [peer(i, f"10.{i}.0.1", RELAY) for i in range(8)]
        outside = peer(20, "10.20.0.1", RELAY)  # need not be in our view
        for hops in (2, 3, 4):
            for _ in range(100):
                last, before = rng.sample([*view, outside], 2)
                path = select_path(view, hops, False, rng, frozenset({view[0].node_id}), last, penultimate=before)
                assert path is not None
                self.assertEqual(len(path), hops)
                self.assertEqual(path[-2:], [before, last])
                self.assertEqual(len({c.node_id for c in path}), hops)
                self.assertNotIn(view[0], path[:-2])

    def test_fixed_penultimate_needs_room(self) -> None:
        """Too few relays for the hops in front of the fixed ones: no path; misuse raises."""
        view = [peer(i, f"10.{i}.0.1", RELAY) for i in range(3)]
        self.assertIsNone(select_path(view, 4, False, random.Random(1), last=view[0], penultimate=view[1]))
        self.assertIsNotNone(select_path(view, 3, False, random.Random(1), last=view[0], penultimate=view[1]))
        for hops, last, before in ((1, view[0], view[1]), (2, None, view[1]), (2, view[0], view[0])):
            with self.assertRaises(ValueError):
                select_path(view, hops, False, random.Random(1), last=last, penultimate=before)

    def test_excluded_hops_are_never_vanguards(self) -> None:
        """``exclude`` keeps a hop off the whole path, the vanguard position included (a hidden
        service's half keeps the seeker's last hop away from the rendezvous point that way)."""
        rng = random.Random(3)
        view = [peer(i, f"10.{i}.0.1", RELAY) for i in range(8)]
        for _ in range(200):
            guard, banned, last = rng.sample(view, 3)
            layer2 = [banned, *rng.sample([c for c in view if c not in (guard, banned, last)], 2)]
            path = select_path(view, 3, False, rng, frozenset({banned.node_id}), last, [guard], layer2)
            assert path is not None
            self.assertNotIn(banned, path)
            self.assertIn(path[1], layer2[1:])
