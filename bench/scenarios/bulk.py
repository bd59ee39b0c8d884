"""Bulk throughput through 1-3 hops with 1 KiB and 256 B datagrams, and CPU per relayed cell."""
import statistics
import time

from bench.harness import NodeError, log

CONFIG = {"quick": {}, "full": {}}


def bulk_once(a, sink, hops, size, cfg):
    handle, chain = a.open_circuit(hops)
    sink.call("reset")  # forget the previous flow's sequence numbers before the sender starts
    try:
        a.bulk_start(handle, size, cfg["window"])
        time.sleep(cfg["warmup"])
        before = [n.call("stats") for n in chain]
        c0 = a.client.call("stats")
        sink.call("reset")
        time.sleep(cfg["measure"])
        s = sink.call("stats")
        c1 = a.client.call("stats")
        after = [n.call("stats") for n in chain]
        summary = a.bulk_stop(handle)
    finally:
        try:
            a.close_circuit(handle)
        except NodeError:
            pass
        time.sleep(0.3)  # let queues drain before the next measurement
    sent = c1.get("sent", 0) - c0.get("sent", 0)
    per_node = []
    for b, e in zip(before, after):
        cells = e["cells"] - b["cells"]
        cpu = e["cpu"] - b["cpu"]
        per_node.append({"cells": cells, "cpu": cpu,
                         "us_per_cell": cpu / cells * 1e6 if cells > 0 else None,
                         "util": cpu / (e["wall"] - b["wall"])})
    return {"mbps": s["bytes"] / s["elapsed"] / 1e6, "pps": s["packets"] / s["elapsed"],
            "loss": (1 - s["packets"] / sent) if sent > 0 else None,
            "client_util": (c1["cpu"] - c0["cpu"]) / (c1["wall"] - c0["wall"]), "nodes": per_node,
            "sender": summary}


def run(ctx):
    adapters, sinks, res, cfg, detail = ctx.adapters, ctx.sinks, ctx.res, ctx.cfg, ctx.detail
    for size in (1024, 256):
        for hops in (1, 2, 3):
            for run in range(cfg["runs"]):
                for name, a in adapters.items():
                    if "bulk" not in a.scenarios:
                        continue
                    log("bulk %s: %d hops, %d B (run %d)", name, hops, size, run + 1)
                    r = bulk_once(a, sinks[name], hops, size, cfg)
                    detail.setdefault(name, []).append(dict(r, hops=hops, size=size))
                    label = "%d hop%s, %s" % (hops, "s" if hops > 1 else "",
                                              "1 KiB" if size == 1024 else "%d B" % size)
                    res.add("throughput " + label, "MB/s", "higher", name, r["mbps"])
                    res.add("packets/s " + label, "kpkt/s", "higher", name, r["pps"] / 1000)
                    if hops == 3 and size == 1024:
                        relays = [n["us_per_cell"] for n in r["nodes"][:-1] if n["us_per_cell"]]
                        if relays:
                            res.add("CPU per relayed cell (relay, 3 hops 1 KiB)", "us", "lower",
                                    name, statistics.mean(relays))
                        if r["nodes"][-1]["us_per_cell"]:
                            res.add("CPU per relayed cell (exit, 3 hops 1 KiB)", "us", "lower",
                                    name, r["nodes"][-1]["us_per_cell"])
