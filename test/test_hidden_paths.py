"""The rules that keep a rendezvous point from ever refusing the splice (pure, no network)."""
from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from tunnels.core.pathsel import Candidate, PeerFlag, select_path
from tunnels.hidden.rendezvous import (
    choose_rendezvous_point, member_half_options, same_hop, seeker_half_hops)

RELAY, EXIT = PeerFlag.RELAY | PeerFlag.INTRO, PeerFlag.RELAY | PeerFlag.EXIT


def relay(i: int, flags: PeerFlag = RELAY) -> Candidate:
    return Candidate(("127.0.0.1", 2000 + i), bytes([i]) * 20, bytes([i]) * 32, flags)


def meet(view: list[Candidate], hops: int, intro: Candidate, last_hop: Candidate, rng: random.Random,
         guards: tuple[list[Candidate], list[Candidate]] | None = None) -> tuple[list[Candidate], list[Candidate]] | None:
    """Both halves as the member and the seeker choose them, with their entry guards if given (None
    if the member cannot build)."""
    member_guards, seeker_guards = guards or (None, None)
    point = choose_rendezvous_point(view, rng, intro.node_id, last_hop.address)
    if point is None:
        return None
    member_half = None
    for exclude, penultimate in member_half_options(view, rng, intro.node_id, point, last_hop.address, hops + 1):
        member_half = select_path(view, hops + 1, False, rng, exclude, point, member_guards, penultimate=penultimate)
        if member_half is not None:
            break
    if member_half is None:
        return None
    seeker_half = select_path(view, hops + 1, False, rng, frozenset({intro.node_id}), point, seeker_guards,
                              penultimate=last_hop)
    if seeker_half is None:  # only when each of the seeker's guards is I, L or R
        assert seeker_guards and hops > 1 and all(g in (intro, last_hop, point) for g in seeker_guards)
        return None
    return member_half, seeker_half


class HalvesTests(SynchronousTestCase):
    def test_the_point_always_sees_two_neighbours(self) -> None:
        """On random views, with and without entry guards, whenever the member can answer: R's
        neighbours on the two halves differ, R is neither the intro point nor L, the intro point is
        on neither half, each half starts at one of its member's guards (the seeker's, with one
        hop a side, at L), and L is off the member's whole half when the view has room."""
        rng = random.Random(15)
        met = 0
        for trial in range(3000):
            view = [relay(i, EXIT if rng.random() < 0.25 else RELAY) for i in range(rng.randrange(3, 10))]
            intro, last_hop = rng.sample(view, 2)
            hops = rng.randrange(1, 4)
            guards = (rng.sample(view, min(3, len(view))), rng.sample(view, min(3, len(view)))) if trial % 2 else None
            halves = meet(view, hops, intro, last_hop, rng, guards)
            if halves is None:
                # only when the view has no room: R and the hop next to it besides I and L, and
                # hops + 1 relays besides I; or no guard fits besides I, L and R
                self.assertTrue(len(view) < max(4, hops + 2) or guards is not None, (len(view), hops))
                continue
            member_half, seeker_half = halves
            met += 1
            self.assertEqual(member_half[-1], seeker_half[-1])
            self.assertNotEqual(member_half[-2].address, seeker_half[-2].address)
            self.assertEqual(seeker_half[-2], last_hop)
            self.assertNotIn(member_half[-1].node_id, (intro.node_id, last_hop.node_id))
            self.assertNotIn(intro, member_half + seeker_half)
            if guards:
                self.assertIn(member_half[0], guards[0])
                self.assertIn(seeker_half[0], guards[1] if hops > 1 else [last_hop])
            if len(view) >= hops + 3 and not guards:  # room besides I and L: L is off the whole member half
                self.assertNotIn(last_hop, member_half)
        self.assertGreater(met, 2000)

    def test_the_reported_network(self) -> None:
        """The bench's network (3 relays and 1 exit; members relay nothing), where about 5 of 6
        splices were refused before: none is now, at 1 and 2 hops a side, without and with entry
        guards on both sides (there, with 2 hops a side, only L a relay and R the exit work: the
        seeker's L is a relay and R is an exit when so few relays are left)."""
        rng = random.Random(6)
        view = [relay(1), relay(2), relay(3), relay(4, EXIT)]
        for guarded in (False, True):
            for hops in (1, 2):
                for _ in range(300):
                    intro = rng.choice(view[:3])  # exits serve no intro points there
                    others = [c for c in view if c is not intro]
                    # as _new_seek_circuit chooses it (a relay, not an exit), or a data circuit's exit at 1 hop
                    last_hop = rng.choice([c for c in others if PeerFlag.EXIT not in c.flags] if hops > 1 else others)
                    guards = (rng.sample(view[:3], 3), rng.sample(view[:3], 3)) if guarded else None
                    halves = meet(view, hops, intro, last_hop, rng, guards)
                    assert halves is not None, (guarded, hops)
                    self.assertNotEqual(halves[0][-2].address, halves[1][-2].address)

    def test_point_is_an_exit_when_few_relays_are_left(self) -> None:
        """With at most N_PRIMARY relays left besides I and L (all possibly the seeker's guards), R is
        an exit if one is left; with more, any relay."""
        rng = random.Random(9)
        small = [relay(1), relay(2), relay(3), relay(4), relay(5), relay(9, EXIT)]
        picks = {choose_rendezvous_point(small, rng, small[0].node_id, small[1].address) for _ in range(50)}
        self.assertEqual(picks, {small[-1]})
        large = small + [relay(6), relay(7)]
        picks = {choose_rendezvous_point(large, rng, large[0].node_id, large[1].address) for _ in range(200)}
        self.assertEqual(picks, set(large[2:]))

    def test_no_point_without_room(self) -> None:
        """With only the intro point and L known, nothing can be built: the member says so first.
        The fallback (L off the hop next to R only) exists for halves of three hops or more."""
        view = [relay(1), relay(2)]
        self.assertIsNone(choose_rendezvous_point(view, random.Random(1), view[0].node_id, view[1].address))
        point = relay(3)
        for hops in (2, 3):
            options = member_half_options(view + [point], random.Random(1), view[0].node_id, point, view[1].address,
                                          hops)
            self.assertEqual(options, [(frozenset({view[0].node_id, view[1].node_id}), None)])
        more = view + [point, relay(4)]
        self.assertEqual(len(member_half_options(more, random.Random(1), view[0].node_id, point, view[1].address, 2)), 1)
        self.assertEqual(member_half_options(more, random.Random(1), view[0].node_id, point, view[1].address, 3)[1],
                         (frozenset({view[0].node_id}), more[-1]))

    def test_loop_when_the_seeker_is_the_point(self) -> None:
        """A seeker that is R itself builds one hop more with a single hop a side (L never extends
        back to the hop it came from); otherwise its half has the usual hops + 1."""
        self.assertEqual([seeker_half_hops(h, True) for h in (1, 2, 3)], [3, 3, 4])
        self.assertEqual([seeker_half_hops(h, False) for h in (1, 2, 3)], [2, 3, 4])

    def test_same_hop(self) -> None:
        """One relay by id or by address."""
        a, b = relay(1), relay(2)
        self.assertTrue(same_hop(a, a))
        self.assertTrue(same_hop(Candidate(a.address, b"x" * 20, a.onion_key, RELAY), a))
        self.assertFalse(same_hop(a, b))
        self.assertFalse(same_hop(None, a))
