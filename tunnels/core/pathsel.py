# -*- test-case-name: test.test_pathsel -*-
"""Path selection: the originator picks every hop from its own view of the network.

Rules: distinct peers at distinct addresses; the last hop of a data circuit is a
peer that advertises exit ability; for longer circuits the first hop is one of our
entry guards (:mod:`tunnels.core.guards`), which are not exits where possible (exits
see destinations, so an exit as first hop would see both ends); a hidden-service
circuit of three hops or more takes its second hop from the layer-2 vanguards; hops
come from distinct /16 networks where the candidates allow it.
"""
from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntFlag

Address = tuple[str, int]


class PeerFlag(IntFlag):
    """What a peer advertises in its introductions (never trusted blindly)."""

    RELAY = 1
    EXIT = 2
    INTRO = 4
    """Has a DHT provider, so it can announce itself as an introduction point."""


@dataclass(frozen=True)
class Candidate:
    """A peer we could use as a hop."""

    address: Address
    node_id: bytes
    onion_key: bytes
    flags: PeerFlag


def network16(host: str) -> str:
    """The /16 (IPv4) or /32 (IPv6) a host belongs to, for path diversity."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    prefix = 16 if ip.version == 4 else 32
    return str(ipaddress.ip_network(f"{host}/{prefix}", strict=False))


def _pick(pool: list[Candidate], chosen: list[Candidate], rng: random.Random) -> Candidate | None:
    used_ids = {c.node_id for c in chosen}
    used_addrs = {c.address for c in chosen}
    used_nets = {network16(c.address[0]) for c in chosen}
    usable = [c for c in pool if c.node_id not in used_ids and c.address not in used_addrs]
    diverse = [c for c in usable if network16(c.address[0]) not in used_nets]
    options = diverse or usable
    return rng.choice(options) if options else None


def select_path(candidates: list[Candidate], hops: int, need_exit: bool, rng: random.Random,
                exclude: frozenset[bytes] = frozenset(), last: Candidate | None = None,
                guards: Sequence[Candidate] | None = None,
                layer2: Sequence[Candidate] = (), penultimate: Candidate | None = None) -> list[Candidate] | None:
    """Choose ``hops`` distinct relays, or None if our view of the network is too small.

    ``last`` fixes the last hop (an introduction or rendezvous point) and ``penultimate`` the
    hop before it (a rendezvous half whose hop next to the rendezvous point is agreed,
    doc/hidden-services.md); neither need be in ``candidates``.  ``exclude`` lists node ids
    that must not appear anywhere else on the path.  ``guards`` (best first) gives the entry
    guards a path of two hops or more must start at: the first one allowed here is taken, and
    with none allowed there is no path.  Without ``guards`` the first hop is any non-exit relay
    (unit tests and relays' own needs).  A caller that fixes both hops of a two-hop path chose
    its first hop itself, and ``guards`` do not apply.  ``layer2`` gives the vanguards the second
    hop of a path of three hops or more comes from, when that hop is not fixed (any relay if
    none of them fits).  Raises ``ValueError`` for fewer than one hop, or a ``penultimate``
    without a distinct ``last`` or on a one-hop path.
    """
    if hops < 1:
        raise ValueError("a path needs at least one hop")
    if penultimate is not None and (last is None or hops < 2 or penultimate.node_id == last.node_id):
        raise ValueError("a fixed penultimate hop needs a distinct fixed last hop and two hops or more")
    fixed = [c for c in (penultimate, last) if c is not None]
    pool = [c for c in candidates if c.node_id not in exclude and c.node_id not in {c.node_id for c in fixed}]
    relays = [c for c in pool if PeerFlag.RELAY in c.flags]
    exits = [c for c in pool if PeerFlag.EXIT in c.flags]
    allowed = {c.node_id for c in pool}
    layer2 = [c for c in layer2 if c.node_id in allowed]  # excluded and fixed hops are never vanguards here
    first = None
    if hops > max(1, len(fixed)) and guards is not None:
        for guard in (g for g in guards if g.node_id in allowed):  # the best guard a last hop fits
            end = last or _pick(exits if need_exit else relays, [guard], rng)
            if end is not None and all(guard.address != c.address for c in (end, penultimate) if c is not None):
                first, last = guard, end
                break
        if first is None:
            return None
    if last is None:
        last = _pick(exits if need_exit else relays, [], rng)
        if last is None:
            return None
    tail = [c for c in (penultimate, last) if c is not None]
    free = hops - len(tail)
    if free == 0:
        return tail
    if first is None:
        non_exits = [c for c in relays if PeerFlag.EXIT not in c.flags]
        first = _pick(non_exits, tail, rng) or _pick(relays, tail, rng)
    if first is None or any(first.node_id == c.node_id or first.address == c.address for c in tail):
        return None
    middle: list[Candidate] = []
    for position in range(free - 1):
        hop = _pick(layer2, [first, *tail, *middle], rng) if position == 0 and layer2 else None
        hop = hop or _pick(relays, [first, *tail, *middle], rng)
        if hop is None:
            return None
        middle.append(hop)
    return [first, *middle, *tail]
