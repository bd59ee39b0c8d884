# -*- test-case-name: test.test_dht_network -*-
"""Run a local mainline DHT of N nodes on 127.0.0.1 and show an announce and a lookup.

    python -m tunnels.dht.demo --nodes 20

Prints progress and a summary; exits 0 if the lookup found the announced peer.
Nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from typing import Any

from twisted.python.failure import Failure

from tunnels.runtime import install_reactor


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tunnels.dht.demo", description=__doc__)
    parser.add_argument("--nodes", type=int, default=20, help="number of DHT nodes (>= 2)")
    parser.add_argument("--port", type=int, default=7001, help="the UDP port to announce")
    args = parser.parse_args(argv)
    if args.nodes < 2:
        parser.error("--nodes must be at least 2")
    return args


async def _main(reactor: Any, args: argparse.Namespace) -> int:
    from tunnels.dht.testing import start_local_network, stop_all
    from tunnels.runtime import as_future

    t0 = time.monotonic()
    print(f"starting {args.nodes} DHT nodes on 127.0.0.1 ...", flush=True)
    nodes = await as_future(start_local_network(reactor, args.nodes))
    sizes = [len(n.routing) for n in nodes]
    print(f"  up in {time.monotonic() - t0:.2f}s; routing table sizes min/avg/max "
          f"{min(sizes)}/{sum(sizes) / len(sizes):.1f}/{max(sizes)}", flush=True)
    info_hash = hashlib.sha1(b"txtunnels demo").digest()
    announcer, seeker = nodes[1], nodes[-1]
    try:
        t1 = time.monotonic()
        accepted = await as_future(announcer.announce_peer(info_hash, args.port))
        print(f"node {announcer.address[1]} announced port {args.port} for "
              f"{info_hash.hex()[:16]}...: accepted by {accepted} nodes "
              f"({time.monotonic() - t1:.2f}s)", flush=True)
        t2 = time.monotonic()
        peers = await as_future(seeker.get_peers(info_hash))
        print(f"node {seeker.address[1]} looked it up: {peers} ({time.monotonic() - t2:.2f}s)",
              flush=True)
    finally:
        sent = sum(n.stats.sent for n in nodes)
        dropped = sum(n.stats.total_dropped for n in nodes)
        await as_future(stop_all(nodes))
    ok = ("127.0.0.1", args.port) in peers
    print(f"summary: {args.nodes} nodes, {sent} datagrams sent, {dropped} dropped, "
          f"lookup {'FOUND' if ok else 'DID NOT FIND'} the announced peer "
          f"in {time.monotonic() - t0:.2f}s total", flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parse(argv)
    reactor = install_reactor()
    from tunnels.runtime import as_deferred
    status: list[int] = []

    def failed(f: Failure) -> int:
        print(f"demo failed: {f.getErrorMessage()}", file=sys.stderr)
        return 1

    def finish(code: int) -> None:
        status.append(code)
        reactor.stop()

    def run() -> None:
        as_deferred(_main(reactor, args)).addErrback(failed).addCallback(finish)
    reactor.callWhenRunning(run)
    reactor.run()
    return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main())
