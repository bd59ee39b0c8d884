"""Hidden-service swarm: 20 members of one service on a 40-node local network over real BEP 5
nodes on 127.0.0.1, all registering at once (issue 15).  Per pair of members, the time until
both had their callback for the other; run.py shows the median over runs of each figure, and
the log shows each run's distribution.  Target: every pair, and the 95th percentile within 10 s.

Runs its own network (bench/hsswarm.py, one process), not the adapters'.  pyipv8 is not run
here: its hidden services find each other through its own DHT community, not the mainline DHT,
so a swarm of its members would measure another system (doc/benchmarks.md).
"""
import statistics
import tempfile

from bench.harness import Cluster, log
from bench.scenarios.hs import percentile

CONFIG = {"quick": {"swarm_hops": (1,), "swarm_wait": 60.0},
          "full": {"swarm_hops": (1, 2), "swarm_wait": 60.0}}
OWN_NODES = True
"""This scenario starts its own nodes: run.py need not start the adapters for it."""
IMPL = "txtunnels"
MEMBERS, NODES, DHT_NODES = 20, 40, 8


def run(ctx):
    res, cfg = ctx.res, ctx.cfg
    ctx.detail["hs_swarm"] = []
    for hops in cfg["swarm_hops"]:
        for n in range(cfg["runs"]):
            with tempfile.TemporaryDirectory(prefix="txtunnels-hsswarm-") as logdir, Cluster(logdir) as cluster:
                net = cluster.start("hsswarm", "bench.hsswarm")
                log("hidden-service swarm (%d hop%s a side, run %d): %d members on %d nodes, %d more DHT nodes",
                    hops, "s" if hops > 1 else "", n + 1, MEMBERS, NODES, DHT_NODES)
                out = net.call("swarm", timeout=cfg["swarm_wait"] + 240, members=MEMBERS, nodes=NODES, hops=hops,
                               dht_nodes=DHT_NODES, wait=cfg["swarm_wait"])
            out["hops"] = hops
            ctx.detail["hs_swarm"].append(out)
            report(res, out)


def report(res, out):
    """Add one run's figures and log its distribution."""
    times, pairs = sorted(out["times"]), out["pairs"]
    label = "%d hop%s a side" % (out["hops"], "s" if out["hops"] > 1 else "")
    share = 100.0 * len(times) / pairs
    res.add("hidden-service swarm of %d, %s, pairs connected" % (MEMBERS, label), "%", "higher", IMPL, share)
    if times:
        for name, value in (("median", statistics.median(times)), ("p95", percentile(times, 0.95)),
                            ("slowest", times[-1])):
            res.add("hidden-service swarm of %d, %s, pair %s" % (MEMBERS, label, name), "s", "lower", IMPL, value)
    deciles = ["%.2f" % percentile(times, q / 10) for q in range(1, 11)] if times else []
    log("hs swarm %s: %d of %d pairs (%.0f %%); pair times p10..p100 (s) %s; network up in %.1f s; "
        "events %s; load average %s", label, len(times), pairs, share, deciles, out["network_start"],
        out["events"], out["loadavg"])
