"""Adapter for pyipv8 3.x's TunnelCommunity (pure Python, or with ipv8_rust_tunnels)."""
import time
from importlib.metadata import version

from bench.impls.base import Adapter

MODULE = "bench.impls.pyipv8_node"


class PyIPv8Adapter(Adapter):
    scenarios = frozenset({"build", "bulk", "cpu", "memory"})

    def __init__(self, rust=False):
        self.rust = rust
        self.name = "pyipv8-rust" if rust else "pyipv8-py"

    def versions(self):
        v = {"pyipv8": version("pyipv8")}
        if self.rust:
            v["ipv8-rust-tunnels"] = version("ipv8-rust-tunnels")
        return v

    def start(self, cluster, max_hops, sink_addr):
        extra = ["--rust"] if self.rust else []
        self.sink_addr = list(sink_addr)
        self.client = cluster.start(self.name + "-client", MODULE, "client", *extra)
        self.relays = [cluster.start("%s-relay%d" % (self.name, i), MODULE, "relay", *extra)
                       for i in range(max_hops - 1)]
        self.exit = cluster.start(self.name + "-exit", MODULE, "exit", *extra)
        self.nodes = [self.client] + self.relays + [self.exit]
        self.by_key = {n.info["key"]: n for n in self.nodes}
        addrs = [list(n.addr) for n in self.nodes]
        deadline = time.monotonic() + 20
        while True:
            for n in self.nodes:
                n.call("introduce", addrs=[a for a in addrs if tuple(a) != n.addr])
            time.sleep(0.3)
            ok = all(n.call("candidates")["relays"] >= len(self.relays) - (n in self.relays)
                     and n.call("candidates")["exits"] >= 1 - (n is self.exit)
                     for n in self.nodes)
            if ok:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("pyipv8 nodes did not discover each other: %s"
                                   % [n.call("candidates") for n in self.nodes])

    def build_times(self, hops, count, parallel):
        return self.client.call("build", hops=hops, count=count, parallel=parallel,
                                timeout=60 + count * parallel)

    def open_circuit(self, hops):
        for _ in range(5):
            c = self.client.call("open_circuit", hops=hops)
            chain = [self.by_key.get(k) for k in c["hops"]]
            if len(chain) == hops and None not in chain and chain[-1] is self.exit \
                    and len(set(map(id, chain))) == hops:
                return c["id"], chain
            self.client.call("close_circuit", cid=c["id"])
        raise RuntimeError("could not get a %d-hop circuit ending at our exit" % hops)

    def bulk_start(self, handle, size, window):
        self.client.call("bulk_start", cid=handle, sink=self.sink_addr, size=size, window=window)

    def bulk_stop(self, handle):
        return self.client.call("bulk_stop")

    def close_circuit(self, handle):
        self.client.call("close_circuit", cid=handle)

    def hold_circuits(self, count, hops):
        return self.client.call("hold", hops=hops, count=count, timeout=120 + count * 0.2)

    def release_circuits(self):
        self.client.call("release", timeout=120)
