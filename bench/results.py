"""Figures of a benchmark run: medians per scenario and implementation, and the printed table."""
import statistics


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
