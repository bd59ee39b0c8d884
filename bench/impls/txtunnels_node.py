"""txtunnels node process (client, relay, exit, or hidden-service seeker / seeder).

Same control protocol as the other node processes (bench/ctl.py): one JSON ``ready`` line, then
JSON requests on stdin.  The node is ``tunnels.node.start_node`` on 127.0.0.1:0 with
``testnet=True`` (loopback destinations and extends allowed), on Twisted's asyncio reactor.

No bootstrap list, no DHT but the bench's stand-in (``--store``): the harness hands out the
other nodes' 127.0.0.1 addresses and the node introduces itself with ``walk_to``.

Cells handled (``stats()["cells"]``), as the harness defines it: datagrams received on the
node's tunnel socket plus datagrams its exit sockets received.  Every cell is exactly
``CELL_SIZE`` (1232) bytes, so the first is ``endpoint.bytes_down // 1232`` (the few IPv8
introduction packets, a few hundred bytes a minute, round away); the second is the exit's own
``exit_packets_in`` counter.  Both are counters txtunnels keeps anyway, so counting costs nothing
on the cell path (no wrapper).  ``joined_cells`` (``sum(JoinedCircuit.cells)``) is reported as a
cross-check: at a relay it is the same number; at an exit it also counts the SENDMEs the exit
originates (one per 64 data cells).
"""
from tunnels.runtime import as_deferred, as_future, install_reactor

reactor = install_reactor()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from twisted.internet.defer import Deferred, gatherResults  # noqa: E402
from twisted.internet.protocol import DatagramProtocol  # noqa: E402
from zope.interface import implementer  # noqa: E402

from tunnels.community import TunnelCommunity  # noqa: E402
from tunnels.dht.provider import IDHTProvider  # noqa: E402
from tunnels.errors import DHTError  # noqa: E402
from tunnels.hidden.community import HiddenTunnelCommunity  # noqa: E402
from tunnels.crypto.service_keys import ServiceKey, parse_service_id  # noqa: E402
from tunnels.node import start_node  # noqa: E402
from tunnels.core.origin import PathHop  # noqa: E402
from tunnels.settings import TunnelSettings  # noqa: E402
from tunnels.socks5 import Socks5Server  # noqa: E402
from tunnels.wire.cells import CELL_SIZE  # noqa: E402

from bench import ctl  # noqa: E402
from bench.proto import SinkCounter, WindowedSender  # noqa: E402

GiB = 1024 ** 3
HOST = "127.0.0.1"
SAMPLE_TIMEOUT = 30.0
"""Seconds a hidden-service setup sample may take before it is written off (counted as 30 s)."""


def settings_for(role):
    """No limit of txtunnels may interfere with a run: long lifetimes, no traffic cap, no
    per-source CREATE rate limit or share limit (one client builds every circuit)."""
    relay = role in ("relay", "exit")
    return TunnelSettings(
        min_circuits=0, max_circuits=1 if role in ("seeker", "seeder") else 8,
        max_joined_circuits=4000 if relay else 0,
        max_time=86400.0, max_time_inactive=3600.0, max_traffic=100 * GiB,
        become_exitnode=role == "exit",
        max_joined_share=1.0, create_rate=1e6, create_burst=1000000,
        build_timeout=10.0,
        exit_unanswered_packets=10 ** 9, exit_bandwidth=GiB)


@implementer(IDHTProvider)
class StoreProvider:
    """``dht_provider`` on bench/impls/dhtstore.py (the DHT stand-in the pyipv8 adapter uses)."""

    def __init__(self, addr):
        self.addr = tuple(addr)
        self.pending = {}
        self.n = 0
        provider = self

        class Proto(DatagramProtocol):
            def datagramReceived(self, data, addr):  # noqa: N802
                try:
                    reply = json.loads(data)
                except ValueError:
                    return
                d = provider.pending.pop(reply.get("id"), None)
                if d is not None:
                    d.callback(reply)
        self.proto = Proto()
        self.port = reactor.listenUDP(0, self.proto, interface=HOST)

    def _req(self, msg):
        self.n += 1
        rid = msg["id"] = self.n
        d = self.pending[rid] = Deferred()
        self.proto.transport.write(json.dumps(msg).encode(), self.addr)

        def timeout():
            if self.pending.pop(rid, None) is not None:
                d.errback(DHTError("dht stand-in timed out"))
        call = reactor.callLater(2.0, timeout)

        def done(r):
            if call.active():
                call.cancel()
            return r
        return d.addBoth(done)

    def lookup(self, key):
        def parse(reply):
            out = []
            for v in reply.get("values", []):
                host, port = v.rsplit(":", 1)
                out.append((host, int(port)))
            return out
        return self._req({"op": "get", "key": key.hex()}).addCallback(parse)

    def announce(self, key, port):
        return self._req({"op": "put", "key": key.hex(), "value": "%s:%d" % (HOST, port)}).addCallback(
            lambda _: None)


class HSSink:
    """The acking sink of bench/sink.py, inside the service member, answering end to end."""

    def __init__(self, community):
        self.community = community
        self.counter = SinkCounter(self.send_ack)
        self.reset = self.counter.reset
        self.received = lambda circuit, peer, data: self.counter.received(data, (circuit, peer))
        self.stats = self.counter.stats
        self.ticker = reactor.callLater(0.005, self._tick)

    def send_ack(self, ack, reply_to):
        circuit, peer = reply_to
        try:
            self.community.tunnel_data(circuit, peer, "data", ack)
        except Exception:
            pass

    def _tick(self):
        self.counter.tick()
        self.ticker = reactor.callLater(0.005, self._tick)


class NodeApp:
    def __init__(self, role, store):
        self.role = role
        self.store = store
        self.held = {}
        self.bulk = None
        self.ticker = None
        self.exit_in = 0
        self.hs_sink = None
        self.hs_peer = None
        self.hs_circuit = None
        self.socks5 = {}

    async def setup(self):
        extra = {}
        cls = TunnelCommunity
        if self.store:
            cls = HiddenTunnelCommunity
            # the seeker looks the service up when it registers (the default interval of the
            # periodic lookups, 30 s, plays no part in a setup); the service member need not
            # look anything up beyond what its own registration starts
            if self.role == "seeder":
                extra["lookup_interval"] = 3600.0
            # only relays serve as introduction points (the INTRO flag needs a provider): the
            # exit stays a plain exit, so the seeker's data circuit can always carry INTRODUCE1
            if self.role != "exit":
                extra["dht_provider"] = StoreProvider(self.store)
        self.node = await as_future(start_node(reactor, HOST, 0, bootstrap=[], settings=settings_for(self.role),
                                               testnet=True, community_class=cls, walk_interval=60.0, **extra))
        self.community = self.node.community
        self.community.add_data_handler(self._on_data)
        if self.role == "seeder":
            self.hs_sink = HSSink(self.community)
        return [HOST, self.node.address[1]]

    def _on_data(self, circuit, source, payload):
        if self.bulk is not None:
            self.bulk.on_ack(payload)
        elif self.hs_sink is not None:
            self.hs_sink.received(circuit, source, payload)

    # ---------------------------------------------------------------- control commands
    def introduce(self, addrs):
        for a in addrs:
            self.community.walk_to((a[0], int(a[1])))
        return True

    def candidates(self):
        cands = self.community.candidates()
        return {"relays": len([c for c in cands if c.flags & 1 and not c.flags & 2]),
                "exits": len([c for c in cands if c.flags & 2]),
                "peers": len(self.community.get_peers()),
                "ids": [c.node_id.hex() for c in cands]}

    async def _ready(self, d, timeout=15.0):
        return await asyncio.wait_for(as_future(d), timeout)

    async def build(self, hops, count, parallel):
        comm = self.community
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            circuits = await self._ready(gatherResults([comm.create_circuit(hops) for _ in range(parallel)],
                                                       consumeErrors=True))
            times.append(time.perf_counter() - t0)
            for c in circuits:
                comm.remove_circuit(c)
            await asyncio.sleep(0.01)
        return times

    async def open_circuit(self, path):
        """Build a circuit along ``path`` (node ids in hex, exit last) and wait until ready."""
        comm = self.community
        by_id = {c.node_id.hex(): c for c in comm.candidates()}
        missing = [p for p in path if p not in by_id]
        if missing:
            raise RuntimeError("unknown hops %s" % missing)
        hops = [PathHop(by_id[p].address, by_id[p].node_id, by_id[p].onion_key) for p in path]
        circuit = comm.origin.build(hops, "data")
        await self._ready(comm.when_ready(circuit))
        self.held[circuit.circuit_id] = circuit
        return {"id": circuit.circuit_id, "hops": [h.node_id.hex() for h in circuit.hops]}

    def close_circuit(self, cid):
        c = self.held.pop(cid, None)
        if c is not None:
            self.community.remove_circuit(c)
        return True

    async def hold(self, hops, count, parallel=16):
        comm = self.community
        built = 0
        failures = 0
        while built < count and failures < 200:
            n = min(parallel, count - built)
            ds = [comm.create_circuit(hops) for _ in range(n)]
            for d in ds:
                try:
                    c = await self._ready(d, 30.0)
                except Exception:
                    failures += 1
                    continue
                self.held[c.circuit_id] = c
                built += 1
        return built

    async def release(self):
        held, self.held = self.held, {}
        for c in held.values():
            self.community.remove_circuit(c)
        await asyncio.sleep(0.2)
        return True

    def bulk_start(self, cid, sink, size, window):
        circuit = self.held[cid]
        comm = self.community
        dest = (sink[0], int(sink[1]))
        tunnel_data = comm.tunnel_data

        def send(payload):
            tunnel_data(circuit, dest, "data", payload)
        return self._start_sender(send, size, window)

    def _start_sender(self, send, size, window):
        self.bulk = WindowedSender(send, size, window)
        self.bulk.start()

        def tick():
            b = self.bulk
            if b is not None and b.running:
                b.tick()
                self.ticker = reactor.callLater(0.01, tick)
        self.ticker = reactor.callLater(0.01, tick)
        return True

    def bulk_stop(self):
        b = self.bulk
        if b is None:
            return {}
        b.stop()
        return b.summary()

    def _cells(self):
        comm = self.community
        for _ in range(5):
            try:
                joined = sum(jc.cells for jc in list(comm.relay.joined))
                own = sum(c.cells_sent + c.cells_received for c in list(comm.origin.circuits.values()))
                return joined + own
            except RuntimeError:  # changed size during iteration (read from the control thread)
                continue
        return 0

    def socks5_start(self, hops):
        """Our SOCKS5 front end for ``hops``-hop circuits on 127.0.0.1; returns its TCP port."""
        server = Socks5Server(reactor, self.community, hops)
        server.start()
        port = reactor.listenTCP(0, server, interface=HOST)
        self.socks5[hops] = (server, port)
        return port.getHost().port

    def ready_circuits(self, hops):
        return len(self.community.active_data_circuits(hops))

    def socks5_stats(self):
        return {hops: dict(server.stats) for hops, (server, _) in self.socks5.items()}

    def stats(self):
        comm = self.community
        ep = self.node.endpoint
        ev = comm.stats.events
        extra = {"cells": ep.bytes_down // CELL_SIZE + ev.get("exit_packets_in", 0),
                 "joined_cells": self._cells(),
                 "sent": self.bulk.seq if self.bulk else 0,
                 "joined": len(comm.relay.joined),
                 "circuits": len(comm.origin.circuits)}
        return ctl.base_stats(extra)

    def node_stats(self):
        return self.community.stats.as_dict()

    # ---------------------------------------------------------------- hidden services
    @staticmethod
    def _service_key(name):
        return ServiceKey(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest()))

    async def hs_seed(self, name, hops):
        """Service member with the key (findable): intro points built and announced."""
        comm = self.community
        key = self._service_key(name)
        comm.register_service(key, hops, lambda peer: None)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            reg = comm.registrations[parse_service_id(key)[0].dht_key]
            if reg.established:
                found = await as_future(comm.dht_provider.lookup(reg.service.dht_key))
                if found:
                    return len(found)
            await asyncio.sleep(0.05)
        raise RuntimeError("introduction point for %s never announced" % name)

    async def hs_connect(self, name, hops, count, keep=False):
        """Seeker: time from 'a ready data circuit, intro point announced' to the e2e callback
        (register_service -> DHT lookup -> INTRODUCE1 through the data circuit's last hop ->
        intro point -> member builds its rendezvous circuit -> our rendezvous circuit, JOINED)."""
        comm = self.community
        service_id = self._service_key(name).service_id
        times = []
        timeouts = 0
        ev = comm.stats.events
        before = dict(ev)
        loop = asyncio.get_running_loop()
        attempts = 0
        while len(times) - timeouts * keep < count and attempts < count + 3 * keep:
            attempts += 1
            data_circuit = await self._ready(comm.create_circuit(hops))
            fut = loop.create_future()

            def cb(peer, fut=fut):
                if not fut.done():
                    fut.set_result(peer)
            t0 = time.perf_counter()
            comm.register_service(service_id, hops, cb)
            try:
                peer = await asyncio.wait_for(fut, SAMPLE_TIMEOUT)
            except asyncio.TimeoutError:
                # censored sample: counted as SAMPLE_TIMEOUT (a lower bound) and reported
                timeouts += 1
                times.append(SAMPLE_TIMEOUT)
                comm.unregister_service(service_id)
                comm.remove_circuit(data_circuit)
                await asyncio.sleep(0.05)
                continue
            times.append(time.perf_counter() - t0)
            if keep:
                self.hs_peer = peer
                self.hs_circuit = data_circuit
                self.held[data_circuit.circuit_id] = data_circuit
                break
            comm.unregister_service(service_id)
            comm.remove_circuit(data_circuit)
            await asyncio.sleep(0.05)
        delta = {k: v - before.get(k, 0) for k, v in ev.items() if v != before.get(k, 0)}
        return {"times": times, "timeouts": timeouts, "events": delta}

    def hs_leave(self, name):
        comm = self.community
        service_id = self._service_key(name).service_id
        try:
            comm.unregister_service(service_id)
        except ValueError:
            pass
        if self.hs_circuit is not None:
            self.held.pop(self.hs_circuit.circuit_id, None)
            comm.remove_circuit(self.hs_circuit)
        self.hs_circuit = self.hs_peer = None
        return True

    def hs_bulk_start(self, size, window):
        if self.hs_peer is None:
            raise RuntimeError("no hidden-service session to send on")
        comm = self.community
        circuit, peer = self.hs_circuit, self.hs_peer
        tunnel_data = comm.tunnel_data

        def send(payload):
            tunnel_data(circuit, peer, "data", payload)
        return self._start_sender(send, size, window)

    def sink_reset(self):
        return self.hs_sink.reset()

    def sink_stats(self):
        return ctl.base_stats(self.hs_sink.stats())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["client", "relay", "exit", "seeker", "seeder"])
    p.add_argument("--store", help="host:port of bench/impls/dhtstore.py: run HiddenTunnelCommunity")
    a = p.parse_args()
    store = None
    if a.store:
        host, port = a.store.rsplit(":", 1)
        store = (host, int(port))
    app = NodeApp(a.role, store)
    loop = reactor._asyncioEventloop
    handlers = {n: getattr(app, n) for n in (
        "introduce", "candidates", "build", "open_circuit", "close_circuit", "hold", "release",
        "bulk_start", "bulk_stop", "stats", "node_stats", "hs_seed", "hs_connect", "hs_leave",
        "sink_reset", "sink_stats", "hs_bulk_start", "socks5_start", "ready_circuits", "socks5_stats")}

    def stop():
        if reactor.running:
            reactor.stop()

    def started(addr):
        c = ctl.Control(loop, handlers, stop)
        c.start()
        c.ready(addr=addr, key=app.community.my_peer.mid.hex(), relay=a.role in ("relay", "exit"))

    def failed(f):
        f.printTraceback(file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)

    reactor.callWhenRunning(lambda: as_deferred(app.setup()).addCallbacks(started, failed))
    try:
        reactor.run()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
