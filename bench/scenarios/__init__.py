"""Benchmark scenarios: one module each, with ``CONFIG`` (quick and full settings) and ``run(ctx)``.

To add a scenario, write its module and list it in :data:`SCENARIOS` (run order).  ``ctx`` is a
:class:`Context`; a scenario adds figures with ``ctx.res.add(key, unit, better, impl, value)``.
A module with ``OWN_NODES = True`` starts its own nodes: when only such scenarios are chosen,
run.py starts no adapter.
"""
from dataclasses import dataclass, field
from typing import Any

from bench.scenarios import build, bulk, dht_churn, hs, hs_swarm, libtorrent, memory

SCENARIOS = {"memory": memory, "build": build, "bulk": bulk, "hs": hs, "hs_swarm": hs_swarm,
             "dht_churn": dht_churn, "libtorrent": libtorrent}
"""Name -> module, in the order a run performs them."""


@dataclass
class Context:
    """What a scenario gets: the running adapters, their sinks, where figures go, the settings."""

    adapters: dict
    sinks: dict
    res: Any
    cfg: dict
    detail: dict = field(default_factory=dict)
    cluster: Any = None
    """A :class:`~bench.harness.Cluster` for processes a scenario starts itself."""
