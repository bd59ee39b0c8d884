# -*- test-case-name: test.test_page -*-
"""The status page at ``/`` of the status port: server-rendered HTML with inline SVG plots.

Pure functions of a :func:`~tunnels.daemon.status.node_status` snapshot and a
:class:`~tunnels.daemon.history.History`: no script, no external request (the icon is
a ``data:`` URL, the style is inline), so the page works offline and under the strict
``Content-Security-Policy`` the web layer sends.  It reloads itself every
:data:`REFRESH` seconds with ``<meta http-equiv="refresh">``.  Every value is escaped.

Figures carry ``id`` attributes (``circuits``, ``bytes-up``, ...) so tests and scrapers
can find them; counted reasons carry their one-line explanation (:mod:`tunnels.reasons`).
"""
from __future__ import annotations

from html import escape
from typing import Any

from .history import History
from ..reasons import explain

REFRESH = 5
"""Seconds between reloads of the page."""
PLOT_WIDTH, PLOT_HEIGHT = 640, 140
"""Size of a plot in CSS pixels."""
MAX_CIRCUIT_ROWS = 50
"""Rows of the table of our circuits (the oldest first)."""

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:72em}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse} td,th{padding:.15em .8em .15em 0;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums} .muted{color:#777} .bad{color:#a40}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(11em,1fr));gap:.3em 1.5em}
.fig b{font-size:1.3em;display:block} svg{background:#fafafa;border:1px solid #ddd}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def human_bytes(value: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """``3725`` -> ``"1 h 2 min"``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def plot(element_id: str, lines: list[tuple[str, str, list[tuple[float, float]]]], span: float, now: float,
         unit: str) -> str:
    """An SVG plot of ``(label, colour, [(time, value), ...])`` lines over the last ``span`` seconds."""
    top = max([v for _, _, points in lines for _, v in points] + [0.0])
    scale = top * 1.1 or 1.0
    parts = [f'<svg id="{_e(element_id)}" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
             f'viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for label, colour, points in lines:
        coords = " ".join(f"{PLOT_WIDTH * (1 - (now - t) / span):.1f},{PLOT_HEIGHT * (1 - v / scale):.1f}"
                          for t, v in points if now - t <= span)
        parts.append(f'<polyline data-series="{_e(label)}" fill="none" stroke="{_e(colour)}" stroke-width="2" '
                     f'points="{coords}"/>')
    top_text = human_bytes(top) + "/s" if unit == "bytes" else f"{top:.1f} {unit}/s"
    parts.append(f'<text x="4" y="14" font-size="12" fill="#555">max {_e(top_text)}</text>')
    parts.append(f'<text x="4" y="{PLOT_HEIGHT - 4}" font-size="12" fill="#555">-{int(span // 60)} min</text>')
    parts.append(f'<text x="{PLOT_WIDTH - 30}" y="{PLOT_HEIGHT - 4}" font-size="12" fill="#555">now</text>')
    legend = " ".join(f'<tspan fill="{_e(colour)}">&#9632; {_e(label)}</tspan>' for label, colour, _ in lines)
    parts.append(f'<text x="{PLOT_WIDTH // 3}" y="14" font-size="12">{legend}</text></svg>')
    return "".join(parts)


def _figure(element_id: str, label: str, value: Any) -> str:
    return f'<div class="fig"><b id="{_e(element_id)}">{_e(value)}</b>{_e(label)}</div>'


def _reason_rows(counts: dict[str, int]) -> str:
    """Rows of reason, count and explanation (a drop reason, or ``what:reason`` for a refusal)."""
    if not counts:
        return '<tr><td class="muted" colspan="3">none</td></tr>'
    return "".join(f'<tr><td>{_e(reason)}</td><td class="n">{_e(n)}</td>'
                   f'<td class="muted">{_e(explain(reason))}</td></tr>'
                   for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    if not rows:
        return f'<table><tr>{head}</tr><tr><td class="muted" colspan="{len(headers)}">none</td></tr></table>'
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{_e(v)}</td>'
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_page(status: dict[str, Any], history: History, now: float) -> str:
    """The whole page for a status snapshot (or ``{"state": "starting"|"failed", ...}``) with plots
    from ``history`` at time ``now`` (seconds, the history's clock)."""
    head = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="{REFRESH}"><link rel="icon" href="data:,">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>txtunnels status</title><style>{STYLE}</style></head><body>")
    if status.get("state") != "running":
        error = f'<p class="bad" id="error">{_e(status["error"])}</p>' if status.get("error") else ""
        return head + f'<h1>txtunnels</h1><p id="state">{_e(status.get("state"))}</p>{error}</body></html>'
    return head + "".join([_header(status), _throughput(history, now), _circuits(status), _counted(status),
                           _services(status), _sections(status), _details(status), _footer()]) + "</body></html>"


def _header(s: dict[str, Any]) -> str:
    host, port = s["address"]
    flags = [s["role"]] + (["testnet"] if s["testnet"] else [])
    return (f'<h1>txtunnels {_e(s["version"])}: <span id="role">{_e(" ".join(flags))}</span></h1>'
            f'<p>node <code id="node-id">{_e(s["node_id"])}</code> on UDP {_e(host)}:{_e(port)}, '
            f'<span id="state">running</span> for <span id="uptime">{_e(human_duration(s["uptime"]))}</span></p>'
            '<div class="grid">'
            + _figure("peers", "peers known", s["peers"])
            + _figure("circuits", "circuits of ours", s["circuits"])
            + _figure("circuits-ready", "of them ready", s["circuits_ready"])
            + _figure("joined", "circuits we carry", s["joined_circuits"])
            + _figure("exit-sockets", "exit sockets", s["exit_sockets"])
            + _figure("bytes-up", "sent (UDP)", human_bytes(s["bytes_up"]))
            + _figure("bytes-down", "received (UDP)", human_bytes(s["bytes_down"]))
            + _figure("drops", "datagrams dropped", s["drops"])
            + "</div>")


def _throughput(history: History, now: float) -> str:
    span = history.span
    bytes_plot = plot("plot-bytes", [("sent", "#1f77b4", history.rates("bytes_up")),
                                     ("received", "#ff7f0e", history.rates("bytes_down"))], span, now, "bytes")
    cells_plot = plot("plot-cells", [("relayed", "#2ca02c", history.rates("cells_relayed")),
                                     ("our circuits", "#9467bd", history.rates("cells_own")),
                                     ("drops", "#d62728", history.rates("drops"))], span, now, "cells")
    latest = history.latest_rate("bytes_up")
    note = ("collecting the first samples" if latest is None else
            f'now {human_bytes(latest)}/s sent, {human_bytes(history.latest_rate("bytes_down") or 0)}/s received')
    return (f'<h2>Throughput, last {int(span // 60)} minutes (a sample every {history.interval:g} s)</h2>'
            f'<p id="throughput-now">{_e(note)}</p>{bytes_plot}<br>{cells_plot}')


def _circuits(s: dict[str, Any]) -> str:
    kinds = [[k["state"], k["hops"], k["purpose"], k["count"]] for k in s["circuits_by_kind"]]
    positions = [[p, n] for p, n in s["joined_by_position"].items()]
    cells = [[k.replace("_", " "), n] for k, n in s["cells"].items()]
    flow = s["flow"]
    hops = [["guard", g["node"], g["circuits"]] for g in s["guards"]] + \
        [["exit", x["node"], x["circuits"]] for x in s["exits"]]
    return ("<h2>Circuits</h2>" + _table(["state", "hops", "purpose", "circuits"], kinds, {1, 3})
            + "<h2>Circuits we carry, by our position</h2>" + _table(["position", "circuits"], positions, {1})
            + "<h2>Cells since start</h2>" + _table(["circuits and direction", "cells"], cells, {1})
            + f'<p>Flow control: {_e(flow["windows"])} windows, {_e(flow["blocked"])} blocked (waiting for the '
              f'far end to acknowledge), {_e(flow["queued"])} messages queued.</p>'
            + "<h2>Guards and exits in use</h2><p class=muted>Relays by node id (never by address), "
              "with the ready circuits of ours through them.</p>"
            + _table(["as", "node", "circuits"], hops, {2}))


def _counted(s: dict[str, Any]) -> str:
    refusals = "".join(_reason_rows({f"{what}:{r}": n for r, n in reasons.items()})
                       for what, reasons in sorted(s["refusals"].items())) or _reason_rows({})
    closed = {**{f"ours: {r}": n for r, n in s["circuits_closed"].items()},
              **{f"carried: {r}": n for r, n in s["joined_closed"].items()}}
    return ('<h2>Drops by reason</h2><p class=muted>Datagrams dropped without a reply: mostly harmless '
            'late or duplicated cells; the explanation says which.</p>'
            f'<table id="drops-by-reason">{_reason_rows(s["drops_by_reason"])}</table>'
            f'<h2>Refusals by reason</h2><table id="refusals">{refusals}</table>'
            f'<h2>Circuits closed, by reason</h2><table>{_reason_rows(closed)}</table>')


def _services(s: dict[str, Any]) -> str:
    hidden = s["hidden"]
    rows = [[k.replace("_", " "), v] for k, v in hidden.items()]
    out = "<h2>Hidden services</h2>" + _table(["", ""], rows, {1})
    if s["dht"] is not None:
        dht = s["dht"]
        out += "<h2>DHT (BEP 5)</h2>" + _table(["", ""], [[k.replace("_", " "), v] for k, v in dht.items()
                                                         if k != "drops_by_reason"], {1})
        out += f'<table>{_reason_rows(dht["drops_by_reason"])}</table>'
    return out


def _sections(s: dict[str, Any]) -> str:
    out = []
    for name, section in s["sections"].items():
        out.append(f'<h2 id="section-{_e(name)}">{_e(section.get("title", name))}</h2>')
        figures = {**section.get("gauges", {}), **section.get("counters", {})}
        out.append(_table(["", ""], [[k.replace("_", " "), v] for k, v in figures.items()], {1}))
        if section.get("drops") is not None:
            out.append(f'<p>Dropped, by reason:</p><table>{_reason_rows(section["drops"])}</table>')
        if section.get("refusals") is not None:
            refused = {f"exit:{kind}": n for kind, n in section["refusals"].items()}
            out.append(f'<p>Refused by exits, by reason:</p><table>{_reason_rows(refused)}</table>')
        rows = section.get("rows") or []
        if rows:
            columns = list(rows[0])
            out.append(_table(columns, [[row.get(c, "") for c in columns] for row in rows]))
    return "".join(out)


def _details(s: dict[str, Any]) -> str:
    rows = [[d["id"], d["purpose"], d["state"], f'{d["hops"]}/{d["goal_hops"]}', human_duration(d["age"]),
             d["cells_sent"], d["cells_received"]] for d in s["circuit_details"][:MAX_CIRCUIT_ROWS]]
    more = len(s["circuit_details"]) - len(rows)
    return ("<h2>Our circuits</h2>" + _table(["id", "purpose", "state", "hops", "age", "cells sent", "cells received"],
                                             rows, {5, 6})
            + (f'<p class="muted">and {more} more</p>' if more > 0 else ""))


def _footer() -> str:
    return ('<p class="muted">Also: <a href="/status.json">status.json</a>, '
            '<a href="/metrics">metrics</a> (Prometheus). This page reloads every '
            f'{REFRESH} s and runs no script.</p>')
