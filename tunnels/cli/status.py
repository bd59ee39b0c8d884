# -*- test-case-name: test.test_cli_status -*-
"""``txtunnels status [URL]``: a running node's figures in the terminal, for an operator over SSH.

Reads the JSON of the status port (``URL``, default :data:`DEFAULT_URL`; a bare
``host:port`` works) and prints the same figures as the status page: identity and role,
circuits, throughput with a sparkline of the last minutes, drops and refusals by reason
with their explanations, guards and exits in use, front-end sections.  On a terminal it
redraws every ``--interval`` seconds until Ctrl-C; ``--once`` (or output to a pipe)
prints one report.  No reactor: one blocking HTTP GET per refresh (``urllib``).

A node that cannot be reached on the first try ends the command with one line on stderr
and status 1; later failures are shown in place and retried.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from ..daemon.page import human_bytes
from ..reasons import explain

DEFAULT_URL = "http://127.0.0.1:8091/"
"""Where ``--status-port 8091`` (the port used in the docs and the systemd unit) serves."""
SPARK = " ▁▂▃▄▅▆▇█"
CLEAR = "\x1b[H\x1b[2J"


class Unreachable(Exception):
    """The status port did not answer with a status (the message is one line)."""


def json_url(url: str) -> str:
    """``"127.0.0.1:8091"`` or ``"http://h:p/"`` -> ``"http://h:p/status.json"``."""
    if "://" not in url:
        url = "http://" + url
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    if not path or path == "status.json":
        path = "status.json"
    return f"{scheme}://{host}/{path}"


def fetch(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET the status JSON.

    :raises Unreachable: no answer, an HTTP error other than 503, or not a status document.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        if e.code != 503:
            raise Unreachable(f"{url} answered HTTP {e.code} {e.reason}") from None
        body = e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise Unreachable(f"cannot reach {url}: {getattr(reason, 'strerror', None) or reason}") from None
    try:
        status = json.loads(body)
    except ValueError:
        raise Unreachable(f"{url} did not answer with JSON (is it a txtunnels status port?)") from None
    if not isinstance(status, dict) or "state" not in status:
        raise Unreachable(f"{url} did not answer with a txtunnels status")
    return status


def sparkline(values: list[float], width: int = 60) -> str:
    """The last ``width`` values as block characters, scaled to their maximum."""
    values = values[-width:]
    top = max(values, default=0.0)
    if top <= 0:
        return SPARK[1] * len(values)
    return "".join(SPARK[1 + round(v / top * (len(SPARK) - 2))] for v in values)


def render(status: dict[str, Any], url: str) -> str:
    """The text report of one status document."""
    if status.get("state") != "running":
        error = f": {status['error']}" if status.get("error") else ""
        return f"txtunnels at {url}: {status.get('state')}{error}\n"
    s = status
    lines = [f"txtunnels {s['version']} at {url}: {s['role']}{' (testnet)' if s['testnet'] else ''}, "
             f"node {s['node_id'][:16]}, UDP {s['address'][0]}:{s['address'][1]}, up {int(s['uptime'])} s",
             f"peers {s['peers']}   circuits {s['circuits']} ({s['circuits_ready']} ready)   "
             f"carried {s['joined_circuits']}   exit sockets {s['exit_sockets']}   drops {s['drops']}",
             f"sent {human_bytes(s['bytes_up'])}   received {human_bytes(s['bytes_down'])}   "
             + "   ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["cells"].items())]
    history = s.get("history")
    if history:
        minutes = int(history["span"] // 60)
        for name, label in (("bytes_up", "sent/s"), ("bytes_down", "received/s")):
            rates = [r for _, r in history["rates"][name]]
            now = human_bytes(rates[-1]) if rates else "-"
            lines.append(f"{label:>11} {sparkline(rates)} now {now}/s (last {minutes} min)")
    kinds = ", ".join(f"{k['count']} {k['state']} {k['hops']}-hop {k['purpose']}" for k in s["circuits_by_kind"])
    lines.append(f"our circuits: {kinds or 'none'}")
    lines.append("carried, by position: " + ", ".join(f"{p} {n}" for p, n in s["joined_by_position"].items()))
    flow = s["flow"]
    lines.append(f"flow control: {flow['windows']} windows, {flow['blocked']} blocked, {flow['queued']} queued")
    for label, key in (("guards", "guards"), ("exits", "exits")):
        if s[key]:
            lines.append(f"{label} in use: " + ", ".join(f"{h['node']} ({h['circuits']})" for h in s[key]))
    lines.extend(_reasons("drops by reason", s["drops_by_reason"]))
    lines.extend(_reasons("refusals by reason", {f"{what}:{reason}": n for what, reasons in s["refusals"].items()
                                                  for reason, n in reasons.items()}))
    for name, section in s.get("sections", {}).items():
        figures = {**section.get("gauges", {}), **section.get("counters", {})}
        lines.append(f"{section.get('title', name)}: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                                                  for k, v in figures.items()))
        lines.extend(_reasons("  drops", section.get("drops") or {}))
        if section.get("refusals") is not None:
            lines.extend(_reasons("  refused by exits", {f"exit:{k}": n for k, n in section["refusals"].items()}))
        for row in section.get("rows") or []:
            lines.append("  " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in row.items()))
    return "\n".join(lines) + "\n"


def _reasons(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return [f"{title}: none"]
    return [f"{title}:"] + [f"  {n:>8} {reason}: {explain(reason)}"
                            for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def add_parser(sub: Any) -> None:
    """Add the ``status`` subcommand to ``sub`` (an argparse subparsers action)."""
    from . import positive_seconds

    status = sub.add_parser("status", help="show a running node's figures, refreshing",
                            description="Show the figures of a running node's status port (twistd tunnels "
                                        "--status-port): the same as its page, in the terminal.")
    status.add_argument("url", nargs="?", default=DEFAULT_URL,
                        help=f"the status port, as a URL or host:port (default {DEFAULT_URL})")
    status.add_argument("--interval", type=positive_seconds, default=2.0,
                        help="seconds between refreshes (default 2)")
    status.add_argument("--once", action="store_true", help="print one report and exit (the default on a pipe)")
    status.set_defaults(run=run, prog=status.prog)


def run(args: argparse.Namespace) -> int:
    """Show the status until Ctrl-C (or once); 1 with one line on stderr if the node cannot be reached."""
    url = json_url(args.url)
    try:
        status = fetch(url)
    except Unreachable as e:
        print(f"{args.prog}: {e}", file=sys.stderr)
        return 1
    live = not args.once and sys.stdout.isatty()
    while True:
        sys.stdout.write((CLEAR if live else "") + render(status, url))
        sys.stdout.flush()
        if not live:
            return 0
        time.sleep(args.interval)
        try:
            status = fetch(url)
        except Unreachable as e:
            status = {"state": "unreachable", "error": f"{e} (at {time.strftime('%H:%M:%S')}; retrying)"}
