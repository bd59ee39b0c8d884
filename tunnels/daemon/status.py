# -*- test-case-name: test.test_status -*-
"""What a running node is doing: one snapshot for the log line, the JSON, the page and the metrics.

:func:`node_status` is the one place figures are read from the node (its counters and
tables, at the moment of the request: nothing runs per cell).  The JSON endpoint serves
it as is; :mod:`tunnels.daemon.metrics` turns the same dict into Prometheus families,
:mod:`tunnels.daemon.page` into HTML, ``txtunnels status`` into text.

Privacy: the status never lists the addresses of our hops or of the circuits we carry
for others, and no destination; guards and exits in use appear by node id.  Keep the
endpoint on 127.0.0.1 all the same (the default): it shows how much a node does and when.

Front ends add sections (:meth:`TunnelService.add_status_section
<tunnels.daemon.service.TunnelService.add_status_section>`): a dict with the optional keys
``title`` (str), ``gauges`` and ``counters`` (name -> number), ``drops`` (reason -> count),
``refusals`` (an exit refusal kind of :data:`tunnels.reasons.REFUSALS` -> count) and ``rows``
(a list of flat dicts, shown as a table on the page).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ..core.flow import flow_summary
from ..version import VERSION

StatusSource = Callable[[], "dict[str, Any] | None"]
"""Returns the current status, or None while the node is starting."""
SectionSource = Callable[[], "dict[str, Any]"]
"""Returns one front end's section (see the module docstring)."""

REFUSAL = re.compile(r"^(?P<what>[a-z0-9]+)_refused_(?P<reason>[a-z0-9_]+)$")
"""Events named ``<what>_refused_<reason>`` are refusals (see :mod:`tunnels.stats`)."""
STRUCTURED_EVENTS = {"circuits_closed_": "circuits_closed", "joined_closed_": "joined_closed"}
"""Event prefixes moved out of ``events`` into their own reason tables."""
HIDDEN_EVENTS = frozenset({"dht_lookups", "dht_lookup_failed"})
"""Events shown under ``hidden`` instead of ``events``."""
NODE_ID_CHARS = 16
"""Hex digits of a node id shown for guards and exits (8 bytes of the SHA-1 member id)."""


def node_status(node: Any, now: float, started: float | None = None) -> dict[str, Any]:
    """Snapshot of ``node`` (a :class:`~tunnels.node.TunnelNode`) at time ``now`` (seconds).

    ``started`` is when the service started (for ``uptime``).  The keys are documented in
    doc/user-guide.md (section 7); every number is an int or a float.
    """
    community = node.community
    circuits = community.circuits
    joined = community.joined_circuits
    stats = community.stats
    events, refusals, closed = _split_events(stats.events)
    settings = community.settings
    status: dict[str, Any] = {
        "state": "running",
        "version": VERSION,
        "node_id": community.my_peer.mid.hex(),
        "role": _role(settings),
        "address": list(node.address),
        "exit": bool(settings.become_exitnode),
        "testnet": bool(community.testnet),
        "uptime": round(now - (started if started is not None else now), 3),
        "peers": len(community.get_peers()),
        "circuits": len(circuits),
        "circuits_ready": sum(1 for c in circuits if c.ready),
        "circuits_by_kind": _circuit_kinds(circuits),
        "joined_circuits": len(joined),
        "joined_by_position": _positions(joined),
        "exit_sockets": sum(1 for c in joined if c.exit is not None),
        "exit_destinations": sum(len(c.exit.guard) for c in joined if c.exit is not None),
        "exit_flows": sum(len(c.exit) for c in joined if c.exit is not None),
        "bytes_up": node.endpoint.bytes_up,
        "bytes_down": node.endpoint.bytes_down,
        "cells": _cells(circuits, joined, stats.retired_cells),
        "drops": sum(stats.drops.values()),
        "drops_by_reason": dict(sorted(stats.drops.items())),
        "refusals": refusals,
        "circuits_closed": closed["circuits_closed"],
        "joined_closed": closed["joined_closed"],
        "events": events,
        "flow": flow_summary([c.flow for c in circuits] + [c.flow for c in joined]),
        "guards": _hops_in_use(circuits, 0),
        "entry_guards": [node_id.hex()[:NODE_ID_CHARS] for node_id in community.guards.primary()],
        "exits": _hops_in_use([c for c in circuits if c.purpose == "data"], -1),
        "dht": _dht(community),
        "hidden": _hidden(community),
        "circuit_details": [
            {"id": f"{c.circuit_id:08x}", "hops": c.hop_count, "goal_hops": c.goal_hops, "state": c.state.name,
             "purpose": c.purpose, "age": round(now - c.created, 3), "cells_sent": c.cells_sent,
             "cells_received": c.cells_received}
            for c in sorted(circuits, key=lambda c: c.created)],
        "sections": {},
    }
    return status


def _role(settings: Any) -> str:
    if settings.max_joined_circuits == 0:
        return "client"
    return "exit" if settings.become_exitnode else "relay"


def _split_events(events: Counter[str]) -> tuple[dict[str, int], dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """``events`` minus refusals and close reasons; refusals by what and reason; close reasons."""
    rest: dict[str, int] = {}
    refusals: dict[str, dict[str, int]] = {}
    closed: dict[str, dict[str, int]] = {name: {} for name in STRUCTURED_EVENTS.values()}
    for name, count in sorted(events.items()):
        match = REFUSAL.match(name)
        if match:
            refusals.setdefault(match["what"], {})[match["reason"]] = count
            continue
        prefix = next((p for p in STRUCTURED_EVENTS if name.startswith(p)), None)
        if name in HIDDEN_EVENTS:
            continue
        if prefix is not None:
            closed[STRUCTURED_EVENTS[prefix]][name[len(prefix):]] = count
        else:
            rest[name] = count
    return rest, refusals, closed


def _circuit_kinds(circuits: Iterable[Any]) -> list[dict[str, Any]]:
    """Our circuits counted by state, hop count (the goal) and purpose."""
    kinds = Counter((c.state.name.lower(), c.goal_hops, c.purpose) for c in circuits)
    return [{"state": state, "hops": hops, "purpose": purpose, "count": count}
            for (state, hops, purpose), count in sorted(kinds.items())]


def _positions(joined: Iterable[Any]) -> dict[str, int]:
    """Joined circuits by our place on them: ``middle`` (extended), ``extending``, ``exit`` (an
    exit socket open) and ``end`` (the last hop, no exit socket: intro, rendezvous or idle)."""
    counts = {"middle": 0, "extending": 0, "exit": 0, "end": 0}
    for circuit in joined:
        if circuit.extending:
            counts["extending"] += 1
        elif circuit.next_address is not None:
            counts["middle"] += 1
        elif circuit.exit is not None:
            counts["exit"] += 1
        else:
            counts["end"] += 1
    return counts


def _cells(circuits: Iterable[Any], joined: Iterable[Any], retired: Counter[str]) -> dict[str, int]:
    """Cells by circuit kind and direction since the node started (closed circuits included)."""
    cells = {key: retired.get(key, 0) for key in ("origin_forward", "origin_backward", "relay_forward",
                                                  "relay_backward")}
    for c in circuits:
        cells["origin_forward"] += c.cells_sent
        cells["origin_backward"] += c.cells_received
    for j in joined:
        cells["relay_forward"] += j.cells_forward
        cells["relay_backward"] += j.cells_backward
    return cells


def _hops_in_use(circuits: Iterable[Any], index: int) -> list[dict[str, Any]]:
    """Relays at hop ``index`` of our ready circuits (0: guards, -1: exits), by node id."""
    counts = Counter(c.hops[index].node_id.hex()[:NODE_ID_CHARS] for c in circuits if c.ready and c.hops)
    return [{"node": node, "circuits": n} for node, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _dht(community: Any) -> dict[str, Any] | None:
    """Our BEP 5 node's figures, when the community has one (``MainlineDHTProvider``)."""
    node = getattr(getattr(community, "dht_provider", None), "node", None)
    if node is None or not hasattr(node, "routing"):
        return None
    stats = node.stats
    return {"routing_table_nodes": len(node.routing), "queries_sent": stats.queries_sent,
            "queries_received": stats.queries_received, "responses_received": stats.responses_received,
            "timeouts": stats.timeouts, "drops_by_reason": dict(sorted(stats.dropped.items()))}


def _hidden(community: Any) -> dict[str, Any]:
    """Hidden-service figures: what we serve as a relay, and (for members) our services and sessions."""
    relay = community.hidden_relay
    hidden: dict[str, Any] = {
        "serving_intro_points": len(relay.intro_of),
        "serving_rendezvous_waiting": len(relay.point.rendezvous) + len(relay.point.joins),
        "serving_rendezvous_spliced": len(relay.point.spliced) // 2,
    }
    registrations = getattr(community, "registrations", None)
    if registrations is not None:
        sessions = list(community.sessions_by_peer.values())
        hidden.update({
            "services": len(registrations),
            "intro_circuits": sum(len(r.intro_circuits) for r in registrations.values()),
            "sessions_established": sum(1 for s in sessions if s.established),
            "sessions_joining": sum(1 for s in sessions if not s.established),
            "dht_lookups": community.stats.events.get("dht_lookups", 0),
            "dht_lookups_failed": community.stats.events.get("dht_lookup_failed", 0),
        })
    return hidden


STATUS_LINE = ("status: {circuits} circuits ({circuits_ready} ready), {joined_circuits} joined, "
               "{exit_sockets} exit sockets, {peers} peers, {bytes_up} B up, {bytes_down} B down, {drops} drops")
"""The periodic log line (a twisted.logger format string over :func:`node_status`)."""
