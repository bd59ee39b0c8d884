"""Mainline DHT under churn: lookup times before and after 30 % of the nodes die.

Runs its own network (bench/dhtnet.py, one process: 28 of our nodes and 12 libtorrent 2.1.1
nodes on 127.0.0.1), not the adapters'.  It measures lookups (iterative ``get_peers`` for
random keys, from random live nodes of ours, one at a time, at most 10 a second) for a while,
then kills 30 % of each kind at once and keeps measuring, window by window.  Each of the
``--runs`` runs builds a fresh network; run.py prints the median of each figure.  The target
(issue 15): the median back within 2x of its value before within 60 s.
"""
import tempfile

from bench.harness import Cluster, log

CONFIG = {"quick": {"churn_before": 10.0, "churn_after": 60.0},
          "full": {"churn_before": 20.0, "churn_after": 90.0}}
OWN_NODES = True
"""This scenario starts its own nodes: run.py need not start the adapters for it."""
IMPL = "txtunnels"


def run(ctx):
    res, cfg = ctx.res, ctx.cfg
    ctx.detail["dht_churn"] = []
    for n in range(cfg["runs"]):
        # the node's log is only needed when it fails, and NodeError then carries its tail
        with tempfile.TemporaryDirectory(prefix="txtunnels-dhtchurn-") as logdir, \
                Cluster(logdir) as cluster:
            net = cluster.start("dhtnet", "bench.dhtnet")
            log("dht churn (run %d): 28 of ours + 12 libtorrent nodes; %.0f s before, "
                "%.0f s after", n + 1, cfg["churn_before"], cfg["churn_after"])
            out = net.call("churn", timeout=cfg["churn_before"] + cfg["churn_after"] + 180,
                           before=cfg["churn_before"], after=cfg["churn_after"])
        ctx.detail["dht_churn"].append(out)
        report(res, out)


def report(res, out):
    """Add one run's figures (run.py shows the median over runs)."""
    before = out["before"]
    log("dht churn: tables %s; before: %s (queries waited for: %d); killed %s",
        out["tables"], before, out["before_waited"], out["killed"])
    res.add("DHT lookup before churn, median", "ms", "lower", IMPL, before["median"])
    res.add("DHT lookup before churn, p90", "ms", "lower", IMPL, before["p90"])
    recovered = None
    for w in out["after"]:
        log("dht churn: %3.0f-%3.0f s after: %s", w["from"], w["to"], w)
        label = "%.0f-%.0f s after 30%% died" % (w["from"], w["to"])
        if w["n"]:
            res.add("DHT lookup %s, median" % label, "ms", "lower", IMPL, w["median"])
            res.add("DHT lookup %s, p90" % label, "ms", "lower", IMPL, w["p90"])
            if recovered is None and w["median"] <= 2 * before["median"]:
                recovered = w["to"]
        res.add("DHT dead nodes our tables hand out, %.0f s after" % w["to"], "entries",
                "lower", IMPL, w["dead_handed_out"])
    if recovered is not None:
        res.add("DHT churn: median back within 2x (by end of window)", "s", "lower", IMPL,
                recovered)
    log("dht churn: median back within 2x of before by %s s; load average %s", recovered,
        out["loadavg"])
