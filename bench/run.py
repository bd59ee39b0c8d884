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
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.harness import Cluster, log  # noqa: E402
from bench.results import Results, table  # noqa: E402
from bench.scenarios import SCENARIOS, Context  # noqa: E402

WINDOW = 128
BASE_CONFIG = {"quick": {"runs": 1, "warmup": 0.7, "measure": 1.5}, "full": {"runs": 3, "warmup": 1.5, "measure": 3.0}}


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
    mode = "quick" if args.quick else "full"
    cfg = dict(BASE_CONFIG[mode])
    for name in scen:
        cfg.update(SCENARIOS[name].CONFIG[mode])
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
        need_adapters = any(not getattr(SCENARIOS[s], "OWN_NODES", False) for s in scen)
        for name, a in adapters.items() if need_adapters else ():
            log("starting %s nodes", name)
            c = Cluster(logdir)
            clusters.append(c)
            sinks[name] = c.start(name + "-sink", "bench.sink")
            a.start(c, 3, sinks[name].addr)
        extra = Cluster(logdir)
        clusters.append(extra)
        ctx = Context(adapters, sinks, res, cfg, detail, cluster=extra)
        for name in SCENARIOS:
            if name in scen:
                SCENARIOS[name].run(ctx)
        for name, a in adapters.items() if need_adapters else ():
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
