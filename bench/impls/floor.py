"""Adapter for the floor: a bare chain of Twisted UDP forwarders, one AES-GCM layer per hop."""
import cryptography
import twisted

from bench.impls.base import Adapter

MODULE = "bench.impls.floor_node"


class FloorAdapter(Adapter):
    scenarios = frozenset({"bulk", "cpu"})

    def __init__(self, crypto=True):
        self.crypto = crypto
        self.name = "floor" if crypto else "floor-nocrypto"

    def versions(self):
        return {"twisted": twisted.__version__, "cryptography": cryptography.__version__}

    def start(self, cluster, max_hops, sink_addr):
        extra = [] if self.crypto else ["--nocrypto"]
        self.sink_addr = list(sink_addr)
        self.client = cluster.start(self.name + "-client", MODULE, "client", *extra)
        self.relays = [cluster.start("%s-relay%d" % (self.name, i), MODULE, "relay", *extra)
                       for i in range(max_hops - 1)]
        self.exit = cluster.start(self.name + "-exit", MODULE, "exit", *extra)

    def open_circuit(self, hops):
        chain = self.relays[:hops - 1] + [self.exit]
        for i, node in enumerate(chain):
            nxt = chain[i + 1].addr if i + 1 < len(chain) else self.sink_addr
            prev = chain[i - 1].addr if i else self.client.addr
            node.call("configure", prev=list(prev), next=list(nxt), index=i)
        for node in self.relays[hops - 1:]:  # idle relays: forward nothing
            node.call("configure", prev=["0.0.0.0", 0], next=["0.0.0.0", 0], index=0)
        self.client.call("configure", hops=hops, first=list(chain[0].addr))
        return hops, chain

    def bulk_start(self, handle, size, window):
        self.client.call("bulk_start", size=size, window=window)

    def bulk_stop(self, handle):
        return self.client.call("bulk_stop")
