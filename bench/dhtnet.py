"""A mixed mainline DHT on 127.0.0.1 for the churn scenario: our nodes and libtorrent nodes in
one process, real UDP between them.  One control command, ``churn``, runs the whole
experiment and returns the lookup times (see bench/scenarios/dht_churn.py).

libtorrent runs with the settings of test/test_dht_interop.py (127.0.0.1 only, no routers,
LSD/UPnP/NAT-PMP off, per-IP limits lifted since every node shares 127.0.0.1).  A node dies by
closing its socket (ours) or switching its DHT off (libtorrent's): either way it goes silent.
"""
import asyncio
import dataclasses
import os
import random
import statistics
import time

from twisted.internet import asyncioreactor

asyncioreactor.install()

from twisted.internet import reactor  # noqa: E402

from bench import ctl  # noqa: E402
from tunnels.dht.node import DHTNode  # noqa: E402
from tunnels.dht.testing import LOCAL_CONFIG  # noqa: E402
from tunnels.runtime import as_future  # noqa: E402

LT_SETTINGS = {
    "listen_interfaces": "127.0.0.1:0", "outgoing_interfaces": "127.0.0.1", "enable_dht": True,
    "dht_bootstrap_nodes": "", "enable_lsd": False, "enable_upnp": False,
    "enable_natpmp": False, "enable_ip_notifier": False, "enable_incoming_tcp": False,
    "enable_outgoing_tcp": False, "enable_incoming_utp": False, "enable_outgoing_utp": False,
    "dht_restrict_routing_ips": False, "dht_restrict_search_ips": False,
    "dht_block_ratelimit": 100_000, "dht_upload_rate_limit": 10_000_000,
}


def summary(times):
    """Median and 90th percentile (ms) of lookup times in seconds."""
    if not times:
        return None
    ms = sorted(t * 1000 for t in times)
    return {"n": len(ms), "median": statistics.median(ms),
            "p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))]}


class ChurnNet:
    def __init__(self):
        self.ours = []
        self.lts = []
        self.rng = random.Random(1)

    async def _lookups(self, seconds, interval, alive):
        """Back-to-back lookups from random live nodes of ours, one every ``interval`` s at
        most; returns (start offset, duration, queries the lookup stopped waiting for)."""
        out = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            node = self.rng.choice(alive)
            target = self.rng.randbytes(20)
            start = time.monotonic()
            result = await as_future(node.lookup(target, b"get_peers"))
            took = time.monotonic() - start
            out.append((start - t0, took, result.slow))
            await asyncio.sleep(max(0.0, interval - took))
        return out

    async def churn(self, ours=28, lts=12, kill=0.3, settle=10.0, before=15.0, after=60.0,
                    window=10.0, interval=0.1):
        import libtorrent as lt
        config = LOCAL_CONFIG
        for _ in range(lts):
            self.lts.append(lt.session(LT_SETTINGS))
        lt_addrs = [("127.0.0.1", s.listen_port()) for s in self.lts]
        first = DHTNode(reactor, config)
        await as_future(first.start(0, "127.0.0.1"))
        self.ours.append(first)
        for i, s in enumerate(self.lts):
            s.add_dht_node(first.address)
            s.add_dht_node(lt_addrs[i - 1])
        for i in range(1, ours):
            seeds = (lt_addrs[i % lts], self.ours[-1].address)
            node = DHTNode(reactor, dataclasses.replace(config, bootstrap=seeds))
            await as_future(node.start(0, "127.0.0.1"))
            self.ours.append(node)
        await asyncio.sleep(settle)
        tables = [len(n.routing) for n in self.ours]
        base = await self._lookups(before, interval, self.ours)
        dead_ours = self.rng.sample(self.ours, round(kill * ours))
        dead_lts = self.rng.sample(self.lts, round(kill * lts))
        dead_addrs = {n.address for n in dead_ours} | {
            ("127.0.0.1", s.listen_port()) for s in dead_lts}
        for n in dead_ours:
            await as_future(n.stop())
        for s in dead_lts:
            s.apply_settings({"enable_dht": False})
        alive = [n for n in self.ours if n not in dead_ours]
        samples = []

        async def sample():
            """At the end of each window: dead nodes our tables still hold, and those they
            would still hand out in replies (confirmed entries)."""
            for _ in range(int(after // window)):
                await asyncio.sleep(window)
                entries = [e for n in alive for e in n.routing.entries()
                           if e.node.addr in dead_addrs]
                samples.append((len(entries), sum(1 for e in entries if e.failures == 0)))
        sampler = asyncio.ensure_future(sample())
        runs = await self._lookups(after, interval, alive)
        await sampler
        windows = []
        for w in range(int(after // window)):
            part = [t for off, t, _ in runs if w * window <= off < (w + 1) * window]
            waits = sum(s for off, _, s in runs if w * window <= off < (w + 1) * window)
            held, handed = samples[w]
            windows.append({"from": w * window, "to": (w + 1) * window, "waited": waits,
                            "dead_held": held, "dead_handed_out": handed,
                            **(summary(part) or {"n": 0})})
        return {"nodes": {"ours": ours, "libtorrent": lts},
                "killed": {"ours": len(dead_ours), "libtorrent": len(dead_lts)},
                "tables": {"min": min(tables), "median": statistics.median(tables),
                           "max": max(tables)},
                "before": summary([t for _, t, _ in base]),
                "before_waited": sum(s for _, _, s in base),
                "after": windows, "loadavg": list(os.getloadavg())}

    def close(self):
        for n in self.ours:
            n.stop()
        for s in self.lts:
            s.pause()


def main():
    net = ChurnNet()
    ctl.serve_on_reactor(reactor, {"churn": net.churn}, addr=["127.0.0.1", 0])


if __name__ == "__main__":
    main()
