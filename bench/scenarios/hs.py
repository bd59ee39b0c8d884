"""Hidden services: setup time (median and 95th percentile) and end-to-end throughput, 1 and 2
hops a side, in each implementation's 4-relay network."""
import math
import statistics

from bench.harness import log
from bench.impls.base import Unsupported

CONFIG = {"quick": {"hs_samples": 10}, "full": {"hs_samples": 20}}


def percentile(values, q):
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def run(ctx):
    adapters, res, cfg = ctx.adapters, ctx.res, ctx.cfg
    try:
        for hops in (1, 2):
            label = "%d hop%s a side" % (hops, "s" if hops > 1 else "")
            for run in range(cfg["runs"]):
                for name, a in adapters.items():
                    if "hs" not in a.scenarios:
                        continue
                    log("hidden service %s: %s (run %d)", name, label, run + 1)
                    try:
                        times = a.hs_setup_times(hops, cfg["hs_samples"])
                        a.hs_reset_sink()
                        res.add("hidden-service setup, %s, median" % label, "ms", "lower", name,
                                statistics.median(times) * 1000)
                        res.add("hidden-service setup, %s, p95" % label, "ms", "lower", name,
                                percentile(times, 0.95) * 1000)
                        r = a.hs_bulk(hops, 1024, cfg["window"], cfg["warmup"], cfg["measure"])
                        res.add("hidden-service throughput, %s, 1 KiB" % label, "MB/s", "higher",
                                name, r["mbps"])
                    except Unsupported:
                        continue
    finally:
        for a in adapters.values():
            a.hs_close()
