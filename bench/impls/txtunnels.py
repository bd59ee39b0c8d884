"""Adapter for txtunnels (ours): tunnels.node.start_node nodes, one process each.

Circuits for the bulk scenarios follow a forced path, client -> relays[:h-1] -> exit, built with
``community.origin.build`` from the client's candidates; build and memory scenarios use
``community.create_circuit(h)`` (our own path selection, as pyipv8's ``create_circuit`` does).
Hidden services: ``HiddenTunnelCommunity`` with the bench's DHT stand-in (bench/impls/dhtstore.py)
as ``dht_provider``; the seeder registers the service with its ``ServiceKey`` (findable), the
seeker with the public service id only.
"""
import time
from importlib.metadata import version

import cryptography
import twisted

from bench.harness import log
from bench.impls.base import Adapter, socks5_proxy
from tunnels.wire.relay import data_cells, encode_data

MODULE = "bench.impls.txtunnels_node"


class TxTunnelsAdapter(Adapter):
    name = "txtunnels"
    ours = True
    scenarios = frozenset({"build", "bulk", "cpu", "memory", "hs", "libtorrent"})

    #: relays of the hidden-service network: 3, as for pyipv8 (a larger one is only for the
    #: diagnosis in doc/benchmarks.md)
    hs_relay_count = 3

    def __init__(self):
        self.hs_log = []

    def versions(self):
        v = {"twisted": twisted.__version__, "cryptography": cryptography.__version__}
        try:
            v["pyipv8"] = version("pyipv8")
        except Exception:
            pass
        return v

    def start(self, cluster, max_hops, sink_addr):
        self.cluster = cluster
        self.sink_addr = list(sink_addr)
        self.client = cluster.start(self.name + "-client", MODULE, "client")
        self.relays = [cluster.start("%s-relay%d" % (self.name, i), MODULE, "relay")
                       for i in range(max_hops - 1)]
        self.exit = cluster.start(self.name + "-exit", MODULE, "exit")
        self.nodes = [self.client] + self.relays + [self.exit]
        self.by_key = {n.info["key"]: n for n in self.nodes}
        self._introduce(self.nodes)

    def _introduce(self, nodes):
        addrs = [list(n.addr) for n in nodes]
        keys = {n.addr: n.info["key"] for n in nodes}
        deadline = time.monotonic() + 20
        while True:
            for n in nodes:
                n.call("introduce", addrs=[a for a in addrs if tuple(a) != n.addr])
            time.sleep(0.3)
            # every node must see every other relay-flagged node as a candidate (clients and
            # seeders do not relay, so they are nobody's candidate)
            relaying = {keys[n.addr] for n in nodes if n.info.get("relay")}
            ok = True
            for n in nodes:
                seen = set(n.call("candidates")["ids"])
                if not (relaying - {keys[n.addr]}) <= seen:
                    ok = False
                    break
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("txtunnels nodes did not discover each other: %s"
                                   % [n.call("candidates") for n in nodes])

    # -- build --------------------------------------------------------------------------
    def build_times(self, hops, count, parallel):
        return self.client.call("build", hops=hops, count=count, parallel=parallel,
                                timeout=60 + count * parallel)

    # -- bulk ---------------------------------------------------------------------------
    def open_circuit(self, hops):
        chain = self.relays[:hops - 1] + [self.exit]
        c = self.client.call("open_circuit", path=[n.info["key"] for n in chain])
        got = [self.by_key.get(k) for k in c["hops"]]
        if got != chain:
            self.client.call("close_circuit", cid=c["id"])
            raise RuntimeError("circuit hops %s are not the path asked for" % c["hops"])
        return c["id"], chain

    def bulk_start(self, handle, size, window):
        self.client.call("bulk_start", cid=handle, sink=self.sink_addr, size=size, window=window)

    def bulk_stop(self, handle):
        return self.client.call("bulk_stop")

    def close_circuit(self, handle):
        self.client.call("close_circuit", cid=handle)

    # -- memory -------------------------------------------------------------------------
    def hold_circuits(self, count, hops):
        return self.client.call("hold", hops=hops, count=count, timeout=120 + count * 0.2)

    def release_circuits(self):
        self.client.call("release", timeout=120)

    # -- hidden services ----------------------------------------------------------------
    def _hs_start(self):
        c = self.cluster
        self.hs_store = c.start(self.name + "-hs-store", "bench.impls.dhtstore")
        store = ["--store", "%s:%d" % self.hs_store.addr]
        self.hs_client = c.start(self.name + "-hs-seeker", MODULE, "seeker", *store)
        self.hs_seeder = c.start(self.name + "-hs-seeder", MODULE, "seeder", *store)
        self.hs_relays = [c.start("%s-hs-relay%d" % (self.name, i), MODULE, "relay", *store)
                          for i in range(self.hs_relay_count)]
        self.hs_exit = c.start(self.name + "-hs-exit", MODULE, "exit", *store)
        self.hs_nodes = [self.hs_store, self.hs_client, self.hs_seeder] + self.hs_relays + [self.hs_exit]
        self._introduce(self.hs_nodes[1:])
        self.hs_seeded = set()

    def _hs_seed(self, hops):
        if getattr(self, "hs_client", None) is None:
            self._hs_start()
        name = "bench-hs-%d" % hops
        if name not in self.hs_seeded:
            self.hs_seeder.call("hs_seed", name=name, hops=hops, timeout=30)
            self.hs_seeded.add(name)
        return name

    def hs_setup_times(self, hops, count):
        name = self._hs_seed(hops)
        r = self.hs_client.call("hs_connect", name=name, hops=hops, count=count,
                                timeout=60 + 35 * count)
        self.hs_log.append({"hops": hops, "times": r["times"], "timeouts": r["timeouts"],
                            "seeker_events": r["events"]})
        log("txtunnels hs setup %d hop(s): %s s, %d timeout(s), seeker events %s", hops,
            ["%.3f" % t for t in r["times"]], r["timeouts"], r["events"])
        return r["times"]

    def hs_bulk(self, hops, size, window, warmup, measure):
        name = self._hs_seed(hops)
        self.hs_client.call("hs_connect", name=name, hops=hops, count=1, keep=True, timeout=90)
        try:
            self.hs_seeder.call("sink_reset")
            self.hs_client.call("hs_bulk_start", size=size, window=window)
            try:
                time.sleep(warmup)
                self.hs_seeder.call("sink_reset")
                time.sleep(measure)
                s = self.hs_seeder.call("sink_stats")
            finally:
                self.hs_client.call("bulk_stop")
        finally:
            self.hs_client.call("hs_leave", name=name)
        return {"mbps": s["bytes"] / s["elapsed"] / 1e6, "pps": s["packets"] / s["elapsed"]}

    def socks5_proxy(self, hops):
        return socks5_proxy(self.client, hops)

    def cells_per_datagram(self, size):
        return data_cells(len(encode_data(("127.0.0.1", 4242), b"")) + size)     # flow id and address

    def hs_reset_sink(self):
        if getattr(self, "hs_seeder", None) is not None:
            self.hs_seeder.call("sink_reset")

    def hs_close(self):
        for n in getattr(self, "hs_nodes", []):
            self.cluster.remove(n)
        self.hs_nodes = []
        self.hs_client = None
