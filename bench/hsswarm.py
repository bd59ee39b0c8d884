"""A hidden-service swarm on 127.0.0.1 for the hs_swarm scenario: relays, exits and the members
of one service in one process (``tunnels.testnet.LocalNetwork``), each tunnel node on its own
real BEP 5 node of a local mainline DHT, real UDP between all of them.

One control command, ``swarm``, starts a fresh network, lets every member register at once and
returns, for every pair of members, the time until both had their callback for the other
(bench/scenarios/hs_swarm.py).  Settings: the defaults (a test network counts each node as its
own source for relays' per-source limits) but relays that carry up to 1000 circuits instead of
100: with entry guards every circuit of a member starts at its first guard, a relay gives one
source a quarter of its circuits, and a member of a swarm of 20 has about 35 (with the default,
one run saw 198 CREATEs refused and the 95th percentile at 12.8 s; doc/benchmarks.md).  IPv8's
peer cap (30) is raised so that, as in every local network, each node knows all the others, and
lookups are an hour apart, so nothing in the setup can wait for one.
"""
import asyncio
import os
import time

from tunnels.runtime import install_reactor

reactor = install_reactor()

from bench import ctl  # noqa: E402
from tunnels.hidden.community import HiddenTunnelCommunity  # noqa: E402
from tunnels.settings import TunnelSettings  # noqa: E402
from tunnels.testnet import LocalNetwork  # noqa: E402

SETTINGS = TunnelSettings(max_joined_circuits=1000)
EVENTS = ("dht_lookups", "introductions_sent", "introduce_timeout", "rendezvous_joined", "hs_duplicate_session",
          "rendezvous_retried", "rendezvous_half_rebuilt", "session_join_timeout", "join_refused_same_neighbour",
          "hs_peers_connected", "hs_peers_lost")


async def swarm(members, nodes, hops, dht_nodes, wait):
    """Run one swarm; pair times in seconds from the moment every member has registered."""
    relays = nodes - members
    exits = max(2, relays // 5)
    net = LocalNetwork(reactor, relays=relays - exits, exits=exits, clients=members, settings=SETTINGS,
                       community_class=HiddenTunnelCommunity, dht="mainline", dht_nodes=dht_nodes,
                       lookup_interval=3600.0, max_peers=4 * nodes)
    t = time.monotonic()
    await net.start(timeout=120)
    started = time.monotonic() - t
    try:
        comms = [n.community for n in net.clients]
        got = [{} for _ in comms]
        t0 = time.monotonic()

        def on_peer(i):
            def callback(peer):
                session = comms[i].sessions_by_peer.get(peer)
                if session is not None:
                    got[i].setdefault(session.member, time.monotonic() - t0)
            return callback
        for i, community in enumerate(comms):
            community.register_service("bench swarm", hops, on_peer(i))
        ids = [next(iter(c.registrations.values())).member_id for c in comms]
        pairs = [(i, j) for i in range(len(comms)) for j in range(i + 1, len(comms))]

        def done(i, j):
            return ids[j] in got[i] and ids[i] in got[j]
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not all(done(i, j) for i, j in pairs):
            await asyncio.sleep(0.05)
        times = [max(got[i][ids[j]], got[j][ids[i]]) for i, j in pairs if done(i, j)]
        events = {name: 0 for name in EVENTS}
        for node in net.nodes:
            for name in EVENTS:
                events[name] += node.community.stats.events.get(name, 0)
        return {"pairs": len(pairs), "times": times, "network_start": started, "events": events,
                "loadavg": os.getloadavg()}
    finally:
        await net.stop()


def main():
    ctl.serve_on_reactor(reactor, {"swarm": swarm}, addr=["127.0.0.1", 0])


if __name__ == "__main__":
    main()
