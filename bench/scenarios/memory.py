"""Memory per joined circuit at the relays, with many 3-hop circuits held open."""
import statistics
import time

from bench.harness import log

CONFIG = {"quick": {"mem_circuits": 1000}, "full": {"mem_circuits": 1000}}


def run(ctx):
    adapters, res, cfg = ctx.adapters, ctx.res, ctx.cfg
    n = cfg["mem_circuits"]
    for name, a in adapters.items():
        if "memory" not in a.scenarios:
            continue
        log("memory %s: %d circuits of 3 hops", name, n)
        relays = a.relays
        before = [r.call("stats") for r in relays]
        t0 = time.monotonic()
        built = a.hold_circuits(n, 3)
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
        after = [r.call("stats") for r in relays]
        per = []
        for b, e in zip(before, after):
            joined = e["joined"] - b["joined"]
            if joined > 0:
                per.append((e["rss"] - b["rss"]) / joined)
        log("memory %s: built %d in %.1f s, joined %s", name, built, elapsed,
            [e["joined"] for e in after])
        if per:
            res.add("memory per joined circuit (relay, %d circuits)" % n, "KiB", "lower", name,
                    statistics.mean(per) / 1024)
        a.release_circuits()
