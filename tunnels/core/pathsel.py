# -*- test-case-name: test.test_pathsel -*-
"""Path selection: the originator picks every hop from its own view of the network.

Rules: distinct peers at distinct addresses; the last hop of a data circuit is a
peer that advertises exit ability; for longer circuits the first hop is not an
exit (exits see destinations, so an exit as first hop would see both ends);
hops come from distinct /16 networks where the candidates allow it.
"""
from __future__ import annotations

import ipaddress
import random
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
                exclude: frozenset[bytes] = frozenset(), last: Candidate | None = None) -> list[Candidate] | None:
    """Choose ``hops`` distinct relays, or None if our view of the network is too small.

    ``last`` fixes the last hop (an introduction or rendezvous point); ``exclude`` lists
    node ids that must not appear anywhere else on the path.
    """
    if hops < 1:
        raise ValueError("a path needs at least one hop")
    pool = [c for c in candidates if c.node_id not in exclude and (last is None or c.node_id != last.node_id)]
    relays = [c for c in pool if PeerFlag.RELAY in c.flags]
    exits = [c for c in pool if PeerFlag.EXIT in c.flags]
    if last is None:
        last = _pick(exits if need_exit else relays, [], rng)
    if last is None:
        return None
    if hops == 1:
        return [last]
    non_exits = [c for c in relays if PeerFlag.EXIT not in c.flags]
    first = _pick(non_exits, [last], rng) or _pick(relays, [last], rng)
    if first is None:
        return None
    middle: list[Candidate] = []
    for _ in range(hops - 2):
        hop = _pick(relays, [first, last, *middle], rng)
        if hop is None:
            return None
        middle.append(hop)
    return [first, *middle, last]
