# -*- test-case-name: test.test_cli -*-
"""``python -m tunnels demo``: a local network on 127.0.0.1, circuits of 1-3 hops, a hidden service.

Progress goes to stdout as the network starts; the summary explains every counted drop
(:mod:`tunnels.reasons`).  Exit status 0 on success, 1 with one line on stderr otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from ..reasons import explain
from ..runtime import install_reactor


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, flush=True)


async def run_demo(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Start a network, build 1-3 hop circuits, echo data through each; returns the summary."""
    from ..hidden.community import HiddenTunnelCommunity
    from ..runtime import as_future
    from ..settings import TunnelSettings
    from ..testnet.network import LocalNetwork

    summary: dict[str, Any] = {"relays": args.relays, "exits": args.exits, "circuits": [], "ok": False}
    net = LocalNetwork(reactor, relays=args.relays, exits=args.exits, clients=3,
                       settings=TunnelSettings(min_circuits=1), community_class=HiddenTunnelCommunity,
                       dht="mainline", lookup_interval=1.0)
    _say(args, f"Starting a local mainline DHT, {args.relays} relays, {args.exits} exits, 3 clients and a UDP echo "
               "server on 127.0.0.1 ...")
    started = time.monotonic()
    try:
        await net.start(progress=lambda line: _say(args, f"  {line}"))
        _say(args, f"  all {len(net.nodes)} nodes know each other after {time.monotonic() - started:.1f}s")
        client = net.client
        replies: list[tuple[Any, bytes]] = []
        client.add_data_handler(lambda circuit, source, payload: replies.append((circuit, payload)))
        for hops in (1, 2, 3):
            begun = time.monotonic()
            circuit = await as_future(client.create_circuit(hops))
            built_ms = (time.monotonic() - begun) * 1000
            path = " -> ".join(f"{hop.address[0]}:{hop.address[1]}" for hop in circuit.hops)
            _say(args, f"  {hops}-hop circuit {circuit.circuit_id:08x} ready in {built_ms:.1f} ms: you -> {path}")
            message = f"hello through {hops} hop(s)".encode()
            sent = time.monotonic()
            client.tunnel_data(circuit, net.echo_address, "data", message)
            while not any(c is circuit for c, _ in replies) and time.monotonic() - sent < 5:
                await asyncio.sleep(0.005)
            echoed = [p for c, p in replies if c is circuit]
            rtt_ms = (time.monotonic() - sent) * 1000
            ok = echoed == [message]
            _say(args, f"    sent {message!r} to the echo server, " +
                 (f"reply came back intact in {rtt_ms:.1f} ms" if ok else f"FAILED (got {echoed!r})"))
            summary["circuits"].append({"hops": hops, "build_ms": round(built_ms, 2), "rtt_ms": round(rtt_ms, 2),
                                        "echo_ok": ok})
        client.build_tunnels(1)
        deadline = time.monotonic() + 10
        while client.tunnels_ready(1) < 1.0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        summary["tunnels_ready_1_hop"] = client.tunnels_ready(1)
        summary["hidden_service"] = await _hidden_service_demo(args, net)
        summary["joined_circuits"] = sum(len(node.community.joined_circuits) for node in net.nodes)
        drops: dict[str, int] = {}
        for node in net.nodes:
            for reason, count in node.community.stats.drops.items():
                drops[reason] = drops.get(reason, 0) + count
        summary["drops"] = sum(drops.values())
        summary["drops_by_reason"] = dict(sorted(drops.items()))
        summary["ok"] = (all(c["echo_ok"] for c in summary["circuits"]) and summary["tunnels_ready_1_hop"] >= 1.0
                         and summary["hidden_service"]["ok"])
    finally:
        await net.stop()
    return summary


async def _hidden_service_demo(args: argparse.Namespace, net: Any) -> dict[str, Any]:
    """Two members of a hidden service find each other through the DHT and exchange messages."""
    from ..errors import CircuitNotReady

    alice, bob = net.clients[1].community, net.clients[2].community
    members = {"alice": alice, "bob": bob}
    peers: dict[str, list[Any]] = {"alice": [], "bob": []}
    lost: dict[str, set[Any]] = {"alice": set(), "bob": set()}
    inbox: dict[str, list[bytes]] = {"alice": [], "bob": []}
    for name, member in members.items():
        member.add_data_handler(lambda circuit, peer, payload, name=name: inbox[name].append(payload))
        # Two members introducing to each other at once may replace the first connection:
        # like any application, follow the live peers.
        member.add_peer_lost_handler(lambda service, peer, name=name: lost[name].add(peer))

    def live(name: str) -> list[Any]:
        return [peer for peer in peers[name] if peer not in lost[name]]
    _say(args, "  hidden service 'demo-swarm': two members register (1 hop each) and look each other up ...")
    begun = time.monotonic()
    alice.register_service("demo-swarm", 1, peers["alice"].append)
    bob.register_service("demo-swarm", hops=1, callback=peers["bob"].append)
    while not (live("alice") and live("bob")) and time.monotonic() - begun < 30:
        await asyncio.sleep(0.05)
    result: dict[str, Any] = {"connect_ms": None, "ok": False}
    if not (live("alice") and live("bob")):
        _say(args, "    FAILED: the members did not find each other within 30 s")
        return result
    result["connect_ms"] = round((time.monotonic() - begun) * 1000, 1)
    _say(args, f"    connected through intro and rendezvous points in {result['connect_ms']:.0f} ms "
               f"(alice sees bob as {live('alice')[-1][0]})")
    messages = {"alice": b"hello bob, from alice", "bob": b"hello alice, from bob"}
    other = {"alice": "bob", "bob": "alice"}
    sent_at = {"alice": -1.0, "bob": -1.0}
    deadline = time.monotonic() + 10
    while not all(messages[other[name]] in inbox[name] for name in members) and time.monotonic() < deadline:
        for name, member in members.items():
            # (re)send while the other side has not got it: to the newest live peer, once a second
            if messages[name] not in inbox[other[name]] and live(name) and time.monotonic() - sent_at[name] > 1:
                try:
                    member.tunnel_data(member.active_data_circuits()[0], live(name)[-1], "data", messages[name])
                    sent_at[name] = time.monotonic()
                except CircuitNotReady:
                    pass
        await asyncio.sleep(0.01)
    result["ok"] = all(messages[other[name]] in inbox[name] for name in members)
    _say(args, f"    bob received {inbox['bob']!r}, alice received {inbox['alice']!r} "
               f"({'end to end, encrypted' if result['ok'] else 'FAILED'})")
    return result


def _print_summary(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print()
    print("Summary")
    print(f"  {'hops':>4}  {'build (ms)':>10}  {'round trip (ms)':>15}  echo")
    for c in summary["circuits"]:
        print(f"  {c['hops']:>4}  {c['build_ms']:>10.1f}  {c['rtt_ms']:>15.1f}  {'ok' if c['echo_ok'] else 'FAILED'}")
    hidden = summary.get("hidden_service", {})
    print(f"  hidden service: members connected in {hidden.get('connect_ms')} ms, messages "
          f"{'exchanged' if hidden.get('ok') else 'FAILED'}")
    print(f"  pool of 1-hop circuits ready: {summary.get('tunnels_ready_1_hop', 0):.0%}; "
          f"circuits relayed by the network: {summary.get('joined_circuits', 0)}")
    print(f"  dropped datagrams: {summary.get('drops', 0)}" +
          ("" if summary.get("drops") else " (nothing was lost)"))
    for reason, count in summary.get("drops_by_reason", {}).items():
        print(f"    {count} x {reason}: {explain(reason) or 'no explanation recorded'}")
    print("RESULT: " + ("success" if summary["ok"] else "FAILURE"))


def add_parser(sub: Any) -> None:
    """Add the ``demo`` subcommand to ``sub`` (an argparse subparsers action)."""
    from . import at_least

    demo = sub.add_parser("demo", help="run a local network on 127.0.0.1 and send data through circuits",
                          description="Start a local network on 127.0.0.1 (relays, exits, a mainline DHT, a UDP "
                                      "echo server), build 1-3 hop circuits, echo data through each and connect "
                                      "two hidden-service members. Needs no Internet access.")
    demo.add_argument("--relays", type=at_least(2, "3-hop circuits need two relays besides the exit"), default=6,
                      help="plain relays, at least 2 (default 6)")
    demo.add_argument("--exits", type=at_least(1, "data leaves through an exit"), default=2,
                      help="exit nodes, at least 1 (default 2)")
    demo.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    demo.set_defaults(run=run, prog=demo.prog)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 on success, 1 (with one line on stderr) on failure."""
    reactor = install_reactor()
    result: dict[str, Any] = {}

    async def go() -> None:
        try:
            result.update(await run_demo(reactor, args))
        except Exception as exc:  # the demo reports any failure and exits non-zero
            result.update({"ok": False, "error": " ".join(f"{type(exc).__name__}: {exc}".split())})
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: asyncio.ensure_future(go()))
    reactor.run()
    if "error" in result:
        print(f"{args.prog}: the demo failed: {result['error']}", file=sys.stderr)
        return 1
    _print_summary(args, result)
    return 0 if result.get("ok") else 1
