#!/usr/bin/env python3
"""txtunnels benchmark: ours against pyipv8 3.x (Python and Rust) and a Twisted floor.

    python bench/run.py                 # full run (~15 min)
    python bench/run.py --quick         # short run (< 3 min)
    python bench/run.py --json out.json --impl pyipv8-py,floor --scenario bulk --runs 5

One OS process per node on 127.0.0.1.  Progress goes to stderr, the table to stdout.
See doc/benchmarks.md for what each figure means.
"""
import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.harness import Cluster, NodeError, log  # noqa: E402
from bench.impls.base import Unsupported  # noqa: E402

SCENARIOS = ["memory", "build", "bulk", "hs"]
WINDOW = 128


def make_registry():
    from bench.impls.floor import FloorAdapter
    from bench.impls.pyipv8 import PyIPv8Adapter
    reg = {
        "pyipv8-py": lambda: PyIPv8Adapter(rust=False),
        "pyipv8-rust": lambda: PyIPv8Adapter(rust=True),
        "floor": lambda: FloorAdapter(crypto=True),
        "floor-nocrypto": lambda: FloorAdapter(crypto=False),
    }
    try:  # our implementation, once its adapter exists
        from bench.impls.txtunnels import TxTunnelsAdapter
        reg = {"txtunnels": TxTunnelsAdapter, **reg}
    except ImportError:
        pass
    return reg


def machine_info(adapters):
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for a in adapters.values():
        versions.update(a.versions())
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(),
            "loadavg_start": list(os.getloadavg()), "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


class Results:
    def __init__(self):
        self.data = {}   # key -> {"unit":, "better":, "impls": {name: [values]}}
        self.order = []

    def add(self, key, unit, better, impl, value):
        if key not in self.data:
            self.data[key] = {"unit": unit, "better": better, "impls": {}}
            self.order.append(key)
        self.data[key]["impls"].setdefault(impl, []).append(value)

    def median(self, key, impl):
        vals = self.data.get(key, {}).get("impls", {}).get(impl)
        return statistics.median(vals) if vals else None

    def to_json(self):
        out = {}
        for key in self.order:
            d = self.data[key]
            out[key] = {"unit": d["unit"], "better": d["better"],
                        "median": {i: statistics.median(v) for i, v in d["impls"].items()},
                        "runs": d["impls"]}
        return out


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def table(results, impls, ours):
    theirs = [i for i in impls if i != ours]
    ratio_cols = [t for t in theirs if t.startswith("pyipv8")]
    head = ["scenario", "unit"] + list(impls) + ["%s/%s" % ("ours", t) for t in ratio_cols]
    rows = []
    for key in results.order:
        d = results.data[key]
        row = [key, d["unit"]] + [fmt(results.median(key, i)) for i in impls]
        for t in ratio_cols:
            o = results.median(key, ours) if ours else None
            r = results.median(key, t)
            row.append("%.2f" % (o / r) if (o is not None and r) else "-")
        rows.append(row)
    widths = [max(len(str(r[c])) for r in [head] + rows) for c in range(len(head))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- scenarios
def scenario_build(adapters, res, cfg):
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


def scenario_bulk(adapters, sinks, res, cfg, detail):
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


def scenario_memory(adapters, res, cfg):
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


def scenario_hs(adapters, res, cfg):
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
                        res.add("hidden-service setup, " + label, "ms", "lower", name,
                                statistics.median(times) * 1000)
                        r = a.hs_bulk(hops, 1024, cfg["window"], cfg["warmup"], cfg["measure"])
                        res.add("hidden-service throughput, %s, 1 KiB" % label, "MB/s", "higher",
                                name, r["mbps"])
                    except Unsupported:
                        continue
    finally:
        for a in adapters.values():
            a.hs_close()


# ----------------------------------------------------------------------------- main
def main(argv=None):
    reg = make_registry()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short run (< 3 minutes)")
    p.add_argument("--json", metavar="FILE", help="write figures and raw runs to FILE")
    p.add_argument("--impl", default=",".join(reg), help="comma-separated, from: %s" % ", ".join(reg))
    p.add_argument("--scenario", default=",".join(SCENARIOS),
                   help="comma-separated, from: %s" % ", ".join(SCENARIOS))
    p.add_argument("--runs", type=int, help="runs per figure (default 3, --quick 1)")
    p.add_argument("--window", type=int, default=WINDOW,
                   help="packets in flight for the windowed sender (default %d)" % WINDOW)
    p.add_argument("--keep-logs", action="store_true", help="keep node logs (printed path)")
    args = p.parse_args(argv)

    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    for i in impls:
        if i not in reg:
            p.error("unknown implementation %r (have: %s)" % (i, ", ".join(reg)))
    scen = [s.strip() for s in args.scenario.split(",") if s.strip()]
    for s in scen:
        if s not in SCENARIOS:
            p.error("unknown scenario %r (have: %s)" % (s, ", ".join(SCENARIOS)))
    if args.quick:
        cfg = {"runs": 1, "warmup": 0.7, "measure": 1.5, "build_seq": 10, "build_par": 3,
               "mem_circuits": 1000, "hs_samples": 3}
    else:
        cfg = {"runs": 3, "warmup": 1.5, "measure": 3.0, "build_seq": 20, "build_par": 5,
               "mem_circuits": 1000, "hs_samples": 5}
    if args.runs:
        cfg["runs"] = args.runs
    cfg["window"] = args.window

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    logdir = tempfile.mkdtemp(prefix="txtunnels-bench-")
    adapters = {i: reg[i]() for i in impls}
    ours = next((i for i, a in adapters.items() if a.ours), None)
    res = Results()
    detail = {}
    info = machine_info(adapters)
    t_start = time.monotonic()
    clusters = []
    try:
        sinks = {}
        for name, a in adapters.items():
            log("starting %s nodes", name)
            c = Cluster(logdir)
            clusters.append(c)
            sinks[name] = c.start(name + "-sink", "bench.sink")
            a.start(c, 3, sinks[name].addr)
        if "memory" in scen:
            scenario_memory(adapters, res, cfg)
        if "build" in scen:
            scenario_build(adapters, res, cfg)
        if "bulk" in scen:
            scenario_bulk(adapters, sinks, res, cfg, detail)
        if "hs" in scen:
            scenario_hs(adapters, res, cfg)
        for name, a in adapters.items():
            a.stop()
    except KeyboardInterrupt:
        log("interrupted; stopping every node")
        raise SystemExit(130)
    finally:
        for c in clusters:
            c.close()
    info["loadavg_end"] = list(os.getloadavg())
    info["duration_s"] = round(time.monotonic() - t_start, 1)
    if not args.keep_logs:
        for f in os.listdir(logdir):
            os.unlink(os.path.join(logdir, f))
        os.rmdir(logdir)
    else:
        log("node logs in %s", logdir)

    out = sys.stdout
    v = info["versions"]
    out.write("Machine: %s, %s cores, %s; Python %s; %s\n" % (
        info["cpu"], info["cores"], info["platform"], v.pop("python"),
        ", ".join("%s %s" % kv for kv in sorted(v.items()))))
    v["python"] = platform.python_version()
    out.write("Load average at start %s, at end %s; %s; %d run(s) per figure, medians shown; "
              "window %d packets; %.0f s\n\n" % (
                  " ".join("%.2f" % x for x in info["loadavg_start"]),
                  " ".join("%.2f" % x for x in info["loadavg_end"]), info["date"], cfg["runs"],
                  cfg["window"], info["duration_s"]))
    out.write(table(res, list(adapters), ours) + "\n")
    if "hs" in scen and not any(k.startswith("hidden") for k in res.order):
        out.write("\nhidden-service scenarios: pending (no adapter implements them yet)\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "config": cfg, "ours": ours,
                       "results": res.to_json(), "bulk_detail": detail}, f, indent=1)
        log("wrote %s", args.json)


if __name__ == "__main__":
    main()
