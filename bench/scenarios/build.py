"""Circuit build time: 1-3 hops, one at a time and 8 at once (wall time in the client)."""
import statistics

from bench.harness import log

CONFIG = {"quick": {"build_seq": 10, "build_par": 3}, "full": {"build_seq": 20, "build_par": 5}}


def run(ctx):
    adapters, res, cfg = ctx.adapters, ctx.res, ctx.cfg
    for hops in (1, 2, 3):
        for parallel, count in ((1, cfg["build_seq"]), (8, cfg["build_par"])):
            for run in range(cfg["runs"]):
                for name, a in adapters.items():
                    if "build" not in a.scenarios:
                        continue
                    log("build %s: %d hops x%d (run %d)", name, hops, parallel, run + 1)
                    times = a.build_times(hops, count, parallel)
                    key = "build %d hop%s, %s" % (hops, "s" if hops > 1 else "",
                                                  "one at a time" if parallel == 1 else "8 at once")
                    # each run contributes the median of its samples
                    res.add(key, "ms", "lower", name, statistics.median(times) * 1000)
