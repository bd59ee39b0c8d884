"""pyipv8 3.x TunnelCommunity node process (client, relay or exit), pure Python or Rust.

pyipv8 picks its data path by endpoint type: a plain ``UDPEndpoint`` (here inside a
``DispatcherEndpoint`` as IPv8 itself builds it) makes TunnelCommunity wrap it in its
``PythonCryptoEndpoint`` (cells relayed/encrypted in Python); an ``ipv8_rust_tunnels.endpoint.
Endpoint`` (what Tribler passes as ``IPv8(..., endpoint_override=...)``) is itself a
``CryptoEndpoint``, and relaying, exiting and cell crypto for known circuits happen in Rust
worker threads.  ``--rust`` selects the latter.

No bootstrap servers, no walker, no LAN discovery: the harness tells every node the others'
127.0.0.1 addresses and nodes introduce themselves with ``walk_to``.
"""
import argparse
import asyncio
import hashlib
import json
import logging
import os
import sys
import time

from ipv8.dht.provider import DHTIntroPointPayload
from ipv8.keyvault.crypto import default_eccrypto
from ipv8.messaging.anonymization.hidden_services import HiddenTunnelCommunity, HiddenTunnelSettings
from ipv8.messaging.serialization import default_serializer
from ipv8.messaging.anonymization import exit_socket as exit_mod
from ipv8.messaging.anonymization.community import TunnelCommunity, TunnelSettings
from ipv8.messaging.anonymization.tunnel import (
    PEER_FLAG_EXIT_BT, PEER_FLAG_RELAY, PEER_FLAG_SPEED_TEST, PEER_SOURCE_DHT, IntroductionPoint,
)
from ipv8.messaging.interfaces.dispatcher.endpoint import DispatcherEndpoint
from ipv8.messaging.interfaces.udp.endpoint import UDPEndpoint, UDPv4Address
from ipv8.peer import Peer
from ipv8.peerdiscovery.network import Network

from bench import ctl
from bench.proto import SinkCounter, WindowedSender

COUNTERS = {"cells": 0}


# -- bench-only patches of the pure Python path: count datagrams, bind exits to 127.0.0.1 --
_orig_dgram = UDPEndpoint.datagram_received


def _counting_dgram(self, datagram, addr):
    COUNTERS["cells"] += 1
    return _orig_dgram(self, datagram, addr)


UDPEndpoint.datagram_received = _counting_dgram

_orig_exit_dgram = exit_mod.TunnelExitSocket.datagram_received


def _counting_exit_dgram(self, data, source):
    COUNTERS["cells"] += 1
    return _orig_exit_dgram(self, data, source)


exit_mod.TunnelExitSocket.datagram_received = _counting_exit_dgram


def _enable_loopback(self):
    # pyipv8 binds exit sockets to 0.0.0.0 and ::; the benchmark must bind 127.0.0.1 only.
    if not self.enabled:
        self.enabled = True

        async def create_transports():
            self.transport_ipv4 = await exit_mod.TunnelProtocol(self.datagram_received_ipv4,
                                                                ("127.0.0.1", 0)).open()
            while self.queue:
                self.sendto(*self.queue.popleft())

        self.register_task("create_transports", create_transports)


exit_mod.TunnelExitSocket.enable = _enable_loopback


class BenchTunnelCommunity(TunnelCommunity):
    sender = None

    def on_raw_data(self, circuit, origin, data):
        if self.sender is not None:
            self.sender.on_ack(data)


class StoreProvider:
    """``dht_provider`` for HiddenTunnelCommunity backed by bench/impls/dhtstore.py (same value
    encoding as pyipv8's DHTCommunityProvider)."""

    def __init__(self, addr):
        self.addr = tuple(addr)
        self.transport = None
        self.pending = {}
        self.n = 0

    async def _req(self, msg):
        loop = asyncio.get_running_loop()
        if self.transport is None:
            provider = self

            class Proto(asyncio.DatagramProtocol):
                def datagram_received(self, data, addr):
                    reply = json.loads(data)
                    fut = provider.pending.get(reply.get("id"))
                    if fut is not None and not fut.done():
                        fut.set_result(reply)
            self.transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        self.n += 1
        msg["id"] = self.n
        fut = self.pending[self.n] = loop.create_future()
        self.transport.sendto(json.dumps(msg).encode(), self.addr)
        try:
            return await asyncio.wait_for(fut, 2.0)
        finally:
            self.pending.pop(msg["id"], None)

    async def peer_lookup(self, mid, peer=None):
        return None

    async def lookup(self, info_hash):
        reply = await self._req({"op": "get", "key": info_hash.hex()})
        results = []
        for v in reply.get("values", []):
            payload, _ = default_serializer.unpack_serializable(DHTIntroPointPayload, bytes.fromhex(v))
            results.append(IntroductionPoint(Peer(b"LibNaCLPK:" + payload.intro_pk, payload.address),
                                             b"LibNaCLPK:" + payload.seeder_pk, PEER_SOURCE_DHT,
                                             payload.last_seen))
        return info_hash, results

    async def announce(self, info_hash, intro_point):
        value = default_serializer.pack_serializable(DHTIntroPointPayload(
            intro_point.peer.address, intro_point.last_seen,
            intro_point.peer.public_key.key_to_bin()[10:], intro_point.seeder_pk[10:]))
        await self._req({"op": "put", "key": info_hash.hex(), "value": value.hex()})


class BenchHiddenCommunity(HiddenTunnelCommunity):
    """Downloader: feeds acks to the sender.  Seeder: the acking sink is the hidden service."""
    sender = None
    sink = None

    def on_raw_data(self, circuit, origin, data):
        if self.sender is not None:
            self.sender.on_ack(data)
        elif self.sink is not None:
            self.sink.received(circuit, data)


class HSSink:
    """The acking sink of bench/sink.py, but inside the seeder, answering over the e2e circuit."""

    def __init__(self, community):
        self.community = community
        self.counter = SinkCounter(self.send_ack)
        self.reset = self.counter.reset
        self.received = lambda circuit, data: self.counter.received(data, circuit)
        self.stats = self.counter.stats
        self.task = asyncio.ensure_future(self._tick())

    def send_ack(self, ack, circuit):
        self.community.send_data(circuit.hop.address, circuit.circuit_id, ("0.0.0.0", 0), ("0.0.0.0", 0), ack)

    async def _tick(self):
        while True:
            await asyncio.sleep(0.005)
            self.counter.tick()


class NodeApp:
    def __init__(self, role, rust, workers, store=None):
        self.store = store
        self.role = role
        self.rust = rust
        self.workers = workers
        self.held = []
        self.bulk = None
        self.ticker = None

    async def setup(self):
        if self.rust:
            from ipv8_rust_tunnels.endpoint import Endpoint as RustEndpoint
            self.endpoint = RustEndpoint(port=0, ip="127.0.0.1", worker_threads=self.workers)
            self.udp = self.endpoint
        else:
            self.endpoint = DispatcherEndpoint(["UDPIPv4"], UDPIPv4={"port": 0, "ip": "127.0.0.1"})
            self.udp = self.endpoint.interfaces["UDPIPv4"]
        await self.endpoint.open()
        if self.rust:
            self.endpoint.set_exit_address(("127.0.0.1", 0))
        key = default_eccrypto.generate_key("curve25519")
        settings_cls = HiddenTunnelSettings if self.store else TunnelSettings
        settings = settings_cls(my_peer=Peer(key), endpoint=self.endpoint, network=Network())
        if self.store:
            # ipv8 stays None: pyipv8 would otherwise start a PexCommunity at introduction points,
            # which walks to the public bootstrap servers.
            settings.dht_provider = StoreProvider(self.store)
        settings.max_circuits = 0
        settings.min_circuits = 0
        settings.max_joined_circuits = 100000
        settings.max_time_inactive = 3600
        settings.remove_tunnel_delay = 0
        if self.role == "exit":
            settings.peer_flags = {PEER_FLAG_RELAY, PEER_FLAG_EXIT_BT, PEER_FLAG_SPEED_TEST}
        elif self.role == "relay":
            settings.peer_flags = {PEER_FLAG_RELAY, PEER_FLAG_SPEED_TEST}
        else:
            settings.peer_flags = set()
        self.community = (BenchHiddenCommunity if self.store else BenchTunnelCommunity)(settings)
        self.hs_sink = HSSink(self.community) if self.role == "seeder" else None
        self.community.sink = self.hs_sink
        if self.rust:
            self.endpoint.set_exit_address(("127.0.0.1", 0))
        addr = self.endpoint.get_address()
        return [addr[0], addr[1]]

    # ---------------------------------------------------------------- control commands
    def introduce(self, addrs):
        for a in addrs:
            self.community.walk_to(UDPv4Address(a[0], a[1]))
        return True

    def candidates(self):
        c = self.community
        return {"relays": len([p for p in c.get_candidates(PEER_FLAG_RELAY)
                               if PEER_FLAG_EXIT_BT not in c.candidates.get(p, [])]),
                "exits": len(c.get_candidates(PEER_FLAG_EXIT_BT)),
                "peers": len(c.get_peers())}

    async def _one(self, hops, timeout=10.0):
        c = self.community.create_circuit(hops, exit_flags=[PEER_FLAG_EXIT_BT])
        if c is None:
            raise RuntimeError("no candidates for a %d-hop circuit" % hops)
        res = await asyncio.wait_for(asyncio.shield(c.ready), timeout)
        if res is None:
            raise RuntimeError("circuit %d failed: %s" % (c.circuit_id, c.closing_info))
        return c

    async def _drop(self, circuits):
        for c in circuits:
            await self.community.remove_circuit(c.circuit_id, "bench", remove_now=True, destroy=True)

    async def build(self, hops, count, parallel):
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            circuits = await asyncio.gather(*[self._one(hops) for _ in range(parallel)])
            times.append(time.perf_counter() - t0)
            await self._drop(circuits)
            await asyncio.sleep(0.01)
        return times

    async def open_circuit(self, hops):
        c = await self._one(hops)
        self.held.append(c)
        return {"id": c.circuit_id, "hops": [h.public_key_bin.hex() for h in c.hops]}

    async def close_circuit(self, cid):
        for c in list(self.held):
            if c.circuit_id == cid:
                self.held.remove(c)
                await self._drop([c])
        return True

    async def hold(self, hops, count, parallel=16):
        built = 0
        while built < count:
            n = min(parallel, count - built)
            cs = await asyncio.gather(*[self._one(hops, 30.0) for _ in range(n)],
                                      return_exceptions=True)
            for c in cs:
                if not isinstance(c, BaseException):
                    self.held.append(c)
                    built += 1
        return built

    async def release(self):
        held, self.held = self.held, []
        await self._drop(held)
        return True

    # ---------------------------------------------------------------- hidden services
    async def hs_seed(self, name, hops):
        ih = hashlib.sha1(name.encode()).digest()
        comm = self.community
        comm.join_swarm(ih, hops, lambda addr: None, seeding=True)
        await comm.create_introduction_point(ih)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            _, ips = await comm.dht_provider.lookup(ih)
            if ips:
                return len(ips)
            await asyncio.sleep(0.05)
        raise RuntimeError("introduction point for %s never announced" % name)

    async def hs_connect(self, name, hops, count, keep=False):
        """Seeker: time from 'a ready data circuit, intro point known in the DHT' to the e2e
        callback (lookup through the exit, create-e2e via the introduction point, rendezvous)."""
        ih = hashlib.sha1(name.encode()).digest()
        comm = self.community
        times = []
        cid = None
        for i in range(count):
            fut = asyncio.get_running_loop().create_future()

            def cb(addr, fut=fut):
                if not fut.done():
                    fut.set_result(addr)
            comm.join_swarm(ih, hops, cb, seeding=False)
            data_circuit = await self._one(hops)
            t0 = time.perf_counter()
            await comm.do_peer_discovery()
            addr = await asyncio.wait_for(fut, 15.0)
            times.append(time.perf_counter() - t0)
            cid = comm.ip_to_circuit_id(addr[0])
            if keep and i == count - 1:
                self.held.append(data_circuit)
                break
            comm.leave_swarm(ih)
            await self._drop([data_circuit])
            await asyncio.sleep(0.05)
        return {"times": times, "cid": cid}

    def sink_reset(self):
        return self.hs_sink.reset()

    def sink_stats(self):
        return ctl.base_stats(self.hs_sink.stats())

    def hs_bulk_start(self, cid, size, window):
        return self.bulk_start(cid, None, size, window)

    def bulk_start(self, cid, sink, size, window):
        circuit = self.community.circuits[cid]
        comm = self.community
        dest = UDPv4Address(sink[0], sink[1]) if sink else ("0.0.0.0", 0)
        origin = ("0.0.0.0", 0)
        first = circuit.hop.address

        def send(payload):
            comm.send_data(first, cid, dest, origin, payload)

        self.bulk = WindowedSender(send, size, window)
        comm.sender = self.bulk
        self.bulk.start()

        async def tick():
            while self.bulk is not None and self.bulk.running:
                await asyncio.sleep(0.01)
                self.bulk.tick()
        self.ticker = asyncio.ensure_future(tick())
        return True

    def bulk_stop(self):
        b = self.bulk
        if b is None:
            return {}
        b.stop()
        return b.summary()

    def stats(self):
        c = self.community
        extra = {"cells": COUNTERS["cells"], "sent": self.bulk.seq if self.bulk else 0,
                 # a relayed circuit has two RelayRoute entries (one per direction)
                 "joined": len(c.relay_from_to) // 2 + len(c.exit_sockets),
                 "circuits": len(c.circuits)}
        if self.rust:
            extra["cells"] = self.rust_cells()
        return ctl.base_stats(extra)

    def rust_cells(self):
        # get_socket_statistics() of the Rust main socket is (packets up, bytes up, packets
        # down, bytes down).  Cells handled = datagrams received on the tunnel socket; at an
        # exit add the datagrams its exit sockets received, which are exactly the cells it
        # sends back into circuits (the sink's acks), i.e. its main socket's packets up.
        st = self.endpoint.rust_ep.get_socket_statistics()
        if not st:
            return 0
        return int(st[2]) + (int(st[0]) if self.role == "exit" else 0)

    def socks5_start(self, hops):
        """The Rust endpoint's own SOCKS5 server (TCP control + UDP associates) for ``hops``-hop
        circuits, as Tribler uses it; returns its TCP port.  The community keeps a pool of
        ``hops``-hop data circuits ending at BitTorrent exits for it."""
        if not self.rust:
            raise RuntimeError("only the Rust endpoint carries a SOCKS5 server")
        port = self.endpoint.create_socks5_server(0, hops)
        self.community.settings.max_circuits = 4
        self.community.build_tunnels(hops)
        return port

    def ready_circuits(self, hops):
        return len(self.community.find_circuits(hops=hops))

    def socks5_stats(self):
        return self.endpoint.get_socks5_statistics()

    def socket_stats(self):
        r = {"socket": list(self.endpoint.rust_ep.get_socket_statistics())} if self.rust else {}
        return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["client", "relay", "exit", "seeder"])
    p.add_argument("--rust", action="store_true")
    p.add_argument("--store", help="host:port of bench/impls/dhtstore.py: run HiddenTunnelCommunity")
    p.add_argument("--workers", type=int, default=4)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    store = None
    if a.store:
        host, port = a.store.rsplit(":", 1)
        store = (host, int(port))
    app = NodeApp(a.role, a.rust, a.workers, store)
    addr = loop.run_until_complete(app.setup())
    handlers = {n: getattr(app, n) for n in (
        "introduce", "candidates", "build", "open_circuit", "close_circuit", "hold", "release",
        "bulk_start", "bulk_stop", "stats", "socket_stats", "hs_seed", "hs_connect", "sink_reset",
        "sink_stats", "hs_bulk_start", "socks5_start", "ready_circuits", "socks5_stats")}
    c = ctl.Control(loop, handlers, loop.stop)
    c.start()
    c.ready(addr=addr, key=app.community.my_peer.public_key.key_to_bin().hex())
    try:
        loop.run_forever()
    finally:
        os._exit(0)  # do not wait for Rust worker threads or pending tasks


if __name__ == "__main__":
    main()
