#!/usr/bin/env python3
"""Keeping SOCKS5 associations apart by exit flows or by circuits: the figures behind the choice.

One process, a local network on 127.0.0.1 (2 relays, 1 exit, 1 client keeping its default pool),
a UDP echo server as the destination; a fresh network per hop count (1 and 3).  Associations are
opened two ways:

- ``flows``: no credentials; they share the client's pool of circuits, each with exit flows of
  its own (what txtunnels does by default);
- ``circuits``: each with RFC 1929 credentials of its own, so each gets circuits of its own
  (what txtunnels does on request, Tor's ``IsolateSOCKSAuth``).

Then, with front ends for 1, 2 and 3 hops (so the pools of all three are kept), ``--groups``
associations with credentials of their own each ask for 3-hop circuits at once: how many get one.
Every circuit of two hops or more starts at the client's first entry guard, which takes at most
its per-source share of circuits from one client; the pools hold 16 of them.

Reported per way: circuits the client started for the N associations, circuits joined by the
relays and the exit, CREATEs the relays refused (every node here shares 127.0.0.1, so the
per-source CREATE rate and shares are shared too), UDP sockets the exit opened, the time from
the UDP ASSOCIATE request to the first echo (median and 90th percentile over ``--samples``
associations opened and closed one after the other; an isolated association's reply waits for
its circuit), and the Python memory (tracemalloc, every node of the process) per association
and the relay circuits held, N opened at once.  Loopback has no
latency: on a real network a circuit build costs about one round trip per hop on top.

    python bench/socks5_isolation.py [--associations 10] [--samples 40] [--groups 20]

Figures measured while others load the machine are provisional: the load average is printed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import tracemalloc

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tunnels.runtime import as_deferred, as_future, install_reactor  # noqa: E402

reactor = install_reactor()

from twisted.internet.task import react  # noqa: E402

from tunnels.socks5 import Socks5Server, encode_address, encode_userpass  # noqa: E402
from tunnels.testnet import LocalNetwork  # noqa: E402

Address = tuple[str, int]
HOPS = (1, 3)
REFILL = 10.0
"""Seconds between runs: a relay's CREATE bucket (5 a second, burst 50) refills from empty."""


class Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.queue.put_nowait(data)


async def associate_and_echo(port: int, destination: Address, credentials: bytes | None) -> tuple[float, object]:
    """Associate (with ``credentials`` if given), send one datagram, wait for its echo: seconds taken."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if credentials is None:
        writer.write(b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
    else:
        writer.write(b"\x05\x01\x02" + encode_userpass(credentials, b"x"))
        assert await reader.readexactly(4) == b"\x05\x02\x01\x00"
    writer.write(b"\x05\x03\x00" + encode_address("0.0.0.0", 0))
    reply = await asyncio.wait_for(reader.readexactly(10), 30)
    assert reply[1] == 0, reply
    relay = (".".join(str(b) for b in reply[4:8]), int.from_bytes(reply[8:10], "big"))
    udp, replies = await asyncio.get_running_loop().create_datagram_endpoint(Replies, local_addr=("127.0.0.1", 0))
    udp.sendto(b"\x00\x00\x00" + encode_address(*destination) + b"ping", relay)
    await asyncio.wait_for(replies.queue.get(), 30)
    return time.perf_counter() - started, (writer, udp)


def creates_refused(net: LocalNetwork) -> int:
    """CREATEs the relays and the exit refused so far (rate, share, capacity)."""
    return sum(n for node in net.relays + net.exits for event, n in node.community.stats.events.items()
               if event.startswith("create_refused_"))


async def measure(net: LocalNetwork, port: int, count: int, samples: int, isolated: bool,
                  tag: str) -> dict[str, float]:
    """Open ``samples`` associations one after the other, each closed after its echo (latency),
    then ``count`` at once under tracemalloc (memory, relay circuits held); close them all."""
    client = net.client
    exit_community = net.exits[0].community
    started = client.stats.events["circuits_started"]
    joined = sum(len(n.community.joined_circuits) for n in net.relays + net.exits)
    flows = exit_community.stats.events["exit_flows_opened"]
    refused = creates_refused(net)
    times = []
    for i in range(samples):
        result = await associate_and_echo(port, net.echo_address, f"{tag}-{i}".encode() if isolated else None)
        times.append(result[0])
        await close([result])
    figures = {"circuits started, per association": (client.stats.events["circuits_started"] - started) / samples,
               "CREATEs refused by relays": creates_refused(net) - refused,
               "exit sockets opened, per association": (exit_community.stats.events["exit_flows_opened"] - flows)
               / samples,
               "ASSOCIATE to first echo, median (ms)": statistics.median(times) * 1000,
               "ASSOCIATE to first echo, 90th pct (ms)": statistics.quantiles(times, n=10)[-1] * 1000}
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    results = await asyncio.gather(*[associate_and_echo(port, net.echo_address,
                                                        f"{tag}-m{i}".encode() if isolated else None)
                                     for i in range(count)])
    figures["Python memory per association (KiB)"] = (tracemalloc.get_traced_memory()[0] - base) / count / 1024
    tracemalloc.stop()
    figures["relay circuits held, N at once"] = sum(len(n.community.joined_circuits)
                                                    for n in net.relays + net.exits) - joined
    await close(results)
    return figures


async def close(results: list[tuple[float, object]]) -> None:
    """End the associations (the isolated ones' circuits close with them)."""
    for writer, udp in (handles for _, handles in results):
        writer.close()
        udp.close()
    await asyncio.sleep(0.2)


async def capacity(groups: int) -> None:
    """``groups`` isolated 3-hop associations at once, beside the pools of three front ends."""
    net = LocalNetwork(reactor, relays=2, exits=1)
    await net.start()
    servers = []
    try:
        for hops in (1, 2, 3):
            server = Socks5Server(reactor, net.client, hops)
            server.start()
            servers.append((server, reactor.listenTCP(0, server, interface="127.0.0.1")))
        while net.client.tunnels_ready() < 1.0:
            await asyncio.sleep(0.05)
        await asyncio.sleep(REFILL)
        pools = len(net.client.active_data_circuits())
        refused = creates_refused(net)
        started = time.perf_counter()
        port = servers[2][1].getHost().port
        results = await asyncio.gather(*[associate_and_echo(port, net.echo_address, b"group-%d" % i)
                                         for i in range(groups)], return_exceptions=True)
        answered = [r for r in results if not isinstance(r, BaseException)]
        print(f"\n{groups} isolated 3-hop associations at once, beside {pools} pool circuits: "
              f"{len(answered)} got a circuit, {groups - len(answered)} did not within the 30 s handshake; "
              f"CREATEs refused by relays: {creates_refused(net) - refused} "
              f"({time.perf_counter() - started:.1f} s)")
        await close(answered)
        for server, listening in servers:
            await as_future(server.stop())
            await as_future(listening.stopListening())
    finally:
        await net.stop()


async def main(count: int, samples: int, groups: int) -> None:
    for hops in HOPS:
        net = LocalNetwork(reactor, relays=2, exits=1)
        await net.start()
        try:
            server = Socks5Server(reactor, net.client, hops)
            server.start()
            listening = reactor.listenTCP(0, server, interface="127.0.0.1")
            port = listening.getHost().port
            while net.client.tunnels_ready(hops) < 1.0:
                await asyncio.sleep(0.05)
            table = {}
            for way in ("flows", "circuits"):
                await asyncio.sleep(REFILL)             # the pool full, the relays' CREATE buckets refilled
                table[way] = await measure(net, port, count, samples, way == "circuits", f"{hops}")
            print(f"\n{hops} hop{'s' if hops > 1 else ''}: {samples} associations one after the other, then "
                  f"{count} at once (pool: {len(net.client.active_data_circuits(hops))} ready circuits)")
            print(f"{'':40} {'flows':>10} {'circuits':>10}")
            for name in table["flows"]:
                print(f"{name:40} {table['flows'][name]:10.1f} {table['circuits'][name]:10.1f}")
            await as_future(server.stop())
            await as_future(listening.stopListening())
        finally:
            await net.stop()
    if groups:
        await capacity(groups)
    print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--associations", type=int, default=10, help="opened at once (memory)")
    parser.add_argument("--samples", type=int, default=40, help="opened one after the other (latency)")
    parser.add_argument("--groups", type=int, default=20, help="isolated at once beside the pools (0: skip)")
    args = parser.parse_args()
    react(lambda _: as_deferred(main(args.associations, args.samples, args.groups)))
