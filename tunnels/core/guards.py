# -*- test-case-name: test.test_guards -*-
"""Entry guards (Tor's guard-spec) and layer-2 vanguards (proposal 333, vanguards-lite).

Without guards a client picks a fresh first hop for every circuit, so over time every
relay, an adversary's included, is its first hop and sees its address next to its
traffic: with a fraction f of relays hostile, a client is seen with certainty in the
long run (guard-spec section 1).  With guards, a client's first hops come from a small
set kept for months: it is either unlucky from the start (probability about f) or safe
for the whole guard lifetime.

:class:`EntryGuards` keeps the *sampled* set (ordered, persistent, at most
:data:`MAX_SAMPLE`), of which the first :data:`N_PRIMARY` listed ones are *primary*:
a circuit starts at the first primary guard that is listed (in our IPv8 view) and not
waiting out a failure.  A guard leaves the sample after :data:`GUARD_LIFETIME` (later
if confirmed, :data:`CONFIRMED_LIFETIME` after its first success), or after being
unlisted for :data:`REMOVE_UNLISTED_AFTER`.  The sample is kept at :data:`N_PRIMARY`
listed guards; more are sampled only when none of them is usable, so failures, not
time, widen the exposure.

:class:`Vanguards` pins the second hop of hidden-service circuits to :data:`L2_COUNT`
relays that each live ``max(X, X)`` with ``X`` uniform in 1..12 days (proposal 333):
an adversary who makes a service build circuit after circuit (guard discovery) meets
the same few second hops instead of eventually one of its own, which would learn the
guard.  As in proposal 333, vanguards are not written to disk.

Pure state: the time (seconds, the reactor's clock) and the random source are handed in.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .pathsel import Candidate, PeerFlag, network16

DAY = 86400.0
N_PRIMARY = 3
"""Primary guards (guard-spec N_PRIMARY_GUARDS)."""
MAX_SAMPLE = 20
"""Most guards ever sampled at once (guard-spec MAX_SAMPLE_SIZE is 60 or 20% of all guards;
our views are smaller)."""
GUARD_LIFETIME = 120 * DAY
"""How long a guard stays sampled (guard-spec GUARD_LIFETIME)."""
CONFIRMED_LIFETIME = 60 * DAY
"""How long a guard stays sampled after its first successful circuit, at least
(guard-spec GUARD_CONFIRMED_MIN_LIFETIME)."""
REMOVE_UNLISTED_AFTER = 20 * DAY
"""A guard missing from our view this long is dropped (guard-spec REMOVE_UNLISTED_GUARDS_AFTER)."""
RETRY_BASE = 30.0
RETRY_CAP = 6 * 3600.0
"""After a failure a guard waits ``RETRY_BASE * 2**(failures - 1)`` seconds, at most
``RETRY_CAP``, before it is tried again (arti's primary-guard schedule: 30 s to 6 h)."""
L2_COUNT = 4
"""Layer-2 vanguards (proposal 333 NUM_LAYER2_GUARDS)."""
L2_MIN_LIFETIME = 1 * DAY
L2_MAX_LIFETIME = 12 * DAY
"""A vanguard lives max(X, X) with X uniform in [L2_MIN_LIFETIME, L2_MAX_LIFETIME] (proposal 333)."""
HIDDEN_PURPOSES = frozenset({"intro", "rendezvous", "seek", "dht"})
"""Purposes of hidden-service circuits: their second hop is a layer-2 vanguard."""


@dataclass
class Guard:
    """One sampled guard.  Times are seconds on the node's clock (Unix time in production)."""

    node_id: bytes
    added_on: float
    confirmed_on: float | None = None
    unlisted_since: float | None = None
    failures: int = 0
    """Failures in a row (not persisted: a restart retries every guard)."""
    retry_at: float = 0.0

    def expired(self, now: float) -> bool:
        """Whether the guard's lifetime is over."""
        if now < self.added_on + GUARD_LIFETIME:
            return False
        return self.confirmed_on is None or now >= self.confirmed_on + CONFIRMED_LIFETIME


class EntryGuards:
    """The guard sample of one node: which relays its own circuits may start at."""

    def __init__(self, rng: random.Random, guards: Iterable[Guard] = (),
                 on_change: Callable[[EntryGuards], None] | None = None) -> None:
        self.rng = rng
        self.sampled: list[Guard] = list(guards)[:MAX_SAMPLE]
        self.on_change = on_change
        """Called after the sample changed (a guard added, confirmed or removed): persist it."""

    def ids(self) -> list[bytes]:
        """Node ids in preference order: confirmed guards by confirmation time, then the rest
        in sample order (guard-spec's primary-guard order)."""
        confirmed = sorted((g for g in self.sampled if g.confirmed_on is not None), key=lambda g: g.confirmed_on or 0.0)
        return [g.node_id for g in confirmed] + [g.node_id for g in self.sampled if g.confirmed_on is None]

    def usable(self, candidates: Sequence[Candidate], now: float) -> list[Candidate]:
        """The guards a circuit may start at now, best first.

        Keeps :data:`N_PRIMARY` listed guards sampled (while the sample has room), and samples
        one more when none is usable.  Primary guards come first; a guard waiting out a
        failure is skipped, as is one missing from ``candidates`` (our current view).  Empty
        only when ``candidates`` offers no relay to sample.
        """
        by_id = {c.node_id: c for c in candidates if PeerFlag.RELAY in c.flags}
        changed = self._refresh(by_id, now)
        listed = [by_id[i] for i in self.ids() if i in by_id]
        while len(listed) < N_PRIMARY and len(self.sampled) < MAX_SAMPLE:
            added = self._sample(by_id, now, exits=False)
            if added is None:
                break
            listed.append(added)
            changed = True
        primary = listed[:N_PRIMARY]
        ready = [c for c in primary if self._retry_at(c.node_id) <= now] + \
            [c for c in listed[N_PRIMARY:] if self._retry_at(c.node_id) <= now]
        if not ready and len(self.sampled) < MAX_SAMPLE:
            added = self._sample(by_id, now, exits=True)
            if added is not None:
                ready, changed = [added], True
        if changed and self.on_change is not None:
            self.on_change(self)
        return ready

    def primary(self) -> list[bytes]:
        """The first :data:`N_PRIMARY` guards in preference order (for the status)."""
        return self.ids()[:N_PRIMARY]

    def succeeded(self, node_id: bytes, now: float) -> None:
        """A circuit through ``node_id`` was built: the guard is confirmed and reachable."""
        guard = self._get(node_id)
        if guard is None:
            return
        guard.failures, guard.retry_at = 0, 0.0
        if guard.confirmed_on is None:
            guard.confirmed_on = now
            if self.on_change is not None:
                self.on_change(self)

    def watch(self, circuit: Any, guard: bytes, seconds: Callable[[], float]) -> None:
        """Learn from ``circuit`` (a :class:`~tunnels.core.circuits.Circuit` starting at ``guard``):
        built means the guard works (:meth:`succeeded`); closed before any hop answered means it
        did not (:meth:`failed`).  ``seconds`` is the clock."""
        def built(c: Any, error: Exception | None) -> None:
            if error is None:
                self.succeeded(guard, seconds())

        def closed(c: Any) -> None:
            if not c.hops:
                self.failed(guard, seconds())
        circuit.on_ready.append(built)
        circuit.on_closed.append(closed)

    def failed(self, node_id: bytes, now: float) -> None:
        """``node_id`` did not answer (or refused) our CREATE: try the next guard for a while."""
        guard = self._get(node_id)
        if guard is not None:
            guard.failures += 1
            guard.retry_at = now + min(RETRY_CAP, RETRY_BASE * 2 ** min(guard.failures - 1, 30))

    def _get(self, node_id: bytes) -> Guard | None:
        return next((g for g in self.sampled if g.node_id == node_id), None)

    def _retry_at(self, node_id: bytes) -> float:
        guard = self._get(node_id)
        return 0.0 if guard is None else guard.retry_at

    def _refresh(self, by_id: dict[bytes, Candidate], now: float) -> bool:
        """Mark guards listed or unlisted and drop the expired ones; True if the sample changed."""
        changed = False
        for guard in self.sampled:
            if guard.node_id in by_id:
                if guard.unlisted_since is not None:
                    guard.unlisted_since, changed = None, True
            elif guard.unlisted_since is None:
                guard.unlisted_since, changed = now, True
        keep = [g for g in self.sampled if not g.expired(now) and
                (g.unlisted_since is None or now - g.unlisted_since < REMOVE_UNLISTED_AFTER)]
        if len(keep) != len(self.sampled):
            self.sampled, changed = keep, True
        return changed

    def _sample(self, by_id: dict[bytes, Candidate], now: float, exits: bool) -> Candidate | None:
        """Add one relay to the sample: a non-exit from a /16 no guard is in, if there is one
        (exits see destinations; a first hop that is also an exit would see both ends), and an
        exit only if ``exits`` (no other guard is usable and a circuit is wanted now)."""
        taken = {g.node_id for g in self.sampled}
        pool = [c for c in by_id.values() if c.node_id not in taken]
        nets = {network16(by_id[g.node_id].address[0]) for g in self.sampled if g.node_id in by_id}
        for options in ([c for c in pool if PeerFlag.EXIT not in c.flags and network16(c.address[0]) not in nets],
                        [c for c in pool if PeerFlag.EXIT not in c.flags], pool if exits else []):
            if options:
                chosen = self.rng.choice(sorted(options, key=lambda c: c.node_id))
                # guard-spec: ADDED_ON_DATE is backdated by up to a tenth of the lifetime, so the
                # guards of many clients do not all rotate on the same day
                self.sampled.append(Guard(chosen.node_id, now - self.rng.uniform(0, GUARD_LIFETIME / 10)))
                return chosen
        return None


class Vanguards:
    """Layer-2 vanguards for hidden-service circuits (in memory only, as in proposal 333)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.layer2: list[tuple[bytes, float]] = []
        """(node id, expiry) of each vanguard."""

    def usable(self, candidates: Sequence[Candidate], now: float) -> list[Candidate]:
        """The vanguards in ``candidates``, topping the set up to :data:`L2_COUNT` first."""
        by_id = {c.node_id: c for c in candidates if PeerFlag.RELAY in c.flags}
        self.layer2 = [(i, expires) for i, expires in self.layer2 if expires > now]
        taken = {i for i, _ in self.layer2}
        pool = sorted((c for c in by_id.values() if c.node_id not in taken), key=lambda c: c.node_id)
        while len(self.layer2) < L2_COUNT and pool:
            chosen = pool.pop(self.rng.randrange(len(pool)))
            lifetime = max(self.rng.uniform(L2_MIN_LIFETIME, L2_MAX_LIFETIME),
                           self.rng.uniform(L2_MIN_LIFETIME, L2_MAX_LIFETIME))
            self.layer2.append((chosen.node_id, now + lifetime))
        return [by_id[i] for i, _ in self.layer2 if i in by_id]


def first_hops(guards: EntryGuards, vanguards: Vanguards, candidates: Sequence[Candidate], hops: int,
               purpose: str | None, now: float) -> tuple[list[Candidate] | None, list[Candidate]]:
    """What a path of ``hops`` hops for ``purpose`` must start with: the usable entry guards (None
    for one hop, which has no separate first hop) and the vanguards its second hop comes from
    (none unless it is a hidden-service path of three hops or more)."""
    entry = guards.usable(candidates, now) if hops > 1 else None
    layer2 = vanguards.usable(candidates, now) if hops > 2 and purpose in HIDDEN_PURPOSES else []
    return entry, layer2
