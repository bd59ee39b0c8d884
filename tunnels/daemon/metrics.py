# -*- test-case-name: test.test_metrics -*-
"""Prometheus metrics at ``/metrics`` of the status port, collected at scrape time.

:class:`SnapshotCollector` is a custom ``prometheus_client`` collector: each scrape takes
one :func:`~tunnels.daemon.status.node_status` snapshot (the same dict the JSON endpoint
serves) and turns it into metric families, so the two always agree and the packet path
pays nothing.  Names follow Tor's MetricsPort (``tor_relay_circuits_total{state}``,
``tor_relay_traffic_bytes{direction}``, ``tor_relay_dos_total{type}``): a ``txtunnels_``
prefix, the subsystem, then what is counted, with labels for state, direction and
reason.  The full list is in doc/operations.md.  Label values come from fixed sets
(states, hop counts, reason names in :mod:`tunnels.reasons`): no address, node id or
destination is ever a label.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import Resource
from twisted.web.server import Request

from .status import StatusSource
from ..version import VERSION

PREFIX = "txtunnels"


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _labelled(kind: type[Metric], name: str, documentation: str, labels: list[str],
              samples: list[tuple[list[str], float]]) -> Metric:
    family = kind(f"{PREFIX}_{name}", documentation, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def families(status: dict[str, Any] | None) -> Iterator[Metric]:
    """The metric families of one snapshot (``None``: the node is not running)."""
    info = InfoMetricFamily(PREFIX, "txtunnels build and node role", labels=["version", "role", "testnet"])
    running = status is not None and status.get("state") == "running"
    info.add_metric([VERSION, status["role"] if running else "", str(running and status["testnet"]).lower()], {})
    yield info
    yield _gauge("node_running", "1 when the node runs, 0 while it starts or after it failed", 1 if running else 0)
    if not running:
        return
    assert status is not None
    yield _gauge("uptime_seconds", "Seconds since the node service started", status["uptime"])
    yield _gauge("peers", "IPv8 peers known", status["peers"])
    yield _labelled(CounterMetricFamily, "traffic_bytes", "Bytes on the node's UDP socket (cells and IPv8)",
                    ["direction"], [(["read"], status["bytes_down"]), (["written"], status["bytes_up"])])
    yield _labelled(GaugeMetricFamily, "origin_circuits", "Our own circuits by state, hop count and purpose",
                    ["state", "hops", "purpose"],
                    [([k["state"], str(k["hops"]), k["purpose"]], k["count"]) for k in status["circuits_by_kind"]])
    yield _labelled(GaugeMetricFamily, "relay_circuits", "Circuits of others we carry (joined), by our position",
                    ["position"], [([p], n) for p, n in status["joined_by_position"].items()])
    cells = status["cells"]
    yield _labelled(CounterMetricFamily, "cells", "Cells on our circuits (origin) and on circuits we carry (relay)",
                    ["circuit", "direction"],
                    [([key.split("_")[0], key.split("_")[1]], n) for key, n in cells.items()])
    yield _labelled(CounterMetricFamily, "origin_circuits_closed", "Our circuits closed, by reason", ["reason"],
                    [([r], n) for r, n in status["circuits_closed"].items()])
    yield _labelled(CounterMetricFamily, "relay_circuits_closed", "Joined circuits closed, by reason", ["reason"],
                    [([r], n) for r, n in status["joined_closed"].items()])
    yield _labelled(CounterMetricFamily, "dropped", "Datagrams dropped without a reply, by reason", ["reason"],
                    [([r], n) for r, n in status["drops_by_reason"].items()])
    yield _labelled(CounterMetricFamily, "refused", "Requests refused, by type (exit, create, extend, ...) and reason",
                    ["type", "reason"],
                    [([what, r], n) for what, reasons in status["refusals"].items() for r, n in reasons.items()])
    yield _labelled(CounterMetricFamily, "events", "Other counted events (circuits started, ready, joined, ...)",
                    ["event"], [([e], n) for e, n in status["events"].items()])
    yield _gauge("exit_sockets", "Joined circuits with an open exit socket", status["exit_sockets"])
    yield _gauge("exit_destinations", "Destinations tracked by our exit sockets (no addresses are exported)",
                 status["exit_destinations"])
    yield _gauge("exit_flows", "Flows with open exit sockets (one per application on each exit circuit)",
                 status["exit_flows"])
    yield from _flow(status["flow"])
    if status["dht"] is not None:
        yield from _dht(status["dht"])
    yield from _hidden(status["hidden"])
    for name, section in status["sections"].items():
        yield from _section(name, section)


def _flow(flow: dict[str, int]) -> Iterator[Metric]:
    yield _labelled(GaugeMetricFamily, "flow_windows", "Flow-control windows (circuit ends), open or blocked at 0",
                    ["state"], [(["open"], flow["windows"] - flow["blocked"]), (["blocked"], flow["blocked"])])
    yield _gauge("flow_window_cells", "Cells the open windows still allow, summed", flow["window_cells"])
    yield _gauge("flow_queued_messages", "Messages waiting in flow-control queues, summed", flow["queued"])
    yield _gauge("flow_queue_limit_messages", "Most messages one flow-control queue holds", flow["queue_limit"])
    yield _gauge("flow_send_window_cells", "The size a flow-control window opens to", flow["send_window"])


def _dht(dht: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("dht_routing_table_nodes", "Nodes in our BEP 5 routing table", dht["routing_table_nodes"])
    yield _labelled(CounterMetricFamily, "dht_queries", "DHT queries by direction", ["direction"],
                    [(["sent"], dht["queries_sent"]), (["received"], dht["queries_received"])])
    yield _counter("dht_responses", "DHT responses received", dht["responses_received"])
    yield _counter("dht_timeouts", "DHT queries that timed out", dht["timeouts"])
    yield _labelled(CounterMetricFamily, "dht_dropped", "DHT datagrams dropped, by reason", ["reason"],
                    [([r], n) for r, n in dht["drops_by_reason"].items()])


def _hidden(hidden: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("hs_serving_intro_points", "Circuits we serve as an introduction point", hidden["serving_intro_points"])
    yield _labelled(GaugeMetricFamily, "hs_serving_rendezvous", "Rendezvous we serve, waiting or spliced", ["state"],
                    [(["waiting"], hidden["serving_rendezvous_waiting"]),
                     (["spliced"], hidden["serving_rendezvous_spliced"])])
    if "services" not in hidden:
        return
    yield _gauge("hs_services", "Hidden services we are a member of", hidden["services"])
    yield _gauge("hs_intro_circuits", "Our introduction circuits", hidden["intro_circuits"])
    yield _labelled(GaugeMetricFamily, "hs_sessions", "End-to-end sessions with other members", ["state"],
                    [(["established"], hidden["sessions_established"]), (["joining"], hidden["sessions_joining"])])
    yield _labelled(CounterMetricFamily, "hs_dht_lookups", "Service lookups in the DHT", ["result"],
                    [(["started"], hidden["dht_lookups"]), (["failed"], hidden["dht_lookups_failed"])])


def _section(name: str, section: dict[str, Any]) -> Iterator[Metric]:
    title = section.get("title", name)
    for gauge, value in section.get("gauges", {}).items():
        yield _gauge(f"{name}_{gauge}", f"{title}: {gauge}", value)
    for counter, value in section.get("counters", {}).items():
        yield _counter(f"{name}_{counter}", f"{title}: {counter}", value)
    drops = section.get("drops")
    if drops is not None:
        yield _labelled(CounterMetricFamily, f"{name}_dropped", f"{title}: datagrams dropped, by reason", ["reason"],
                        [([r], n) for r, n in drops.items()])
    refusals = section.get("refusals")
    if refusals is not None:
        yield _labelled(CounterMetricFamily, f"{name}_refused", f"{title}: datagrams exits refused, by reason",
                        ["reason"], [([r], n) for r, n in refusals.items()])


class SnapshotCollector:
    """A ``prometheus_client`` collector over a status source (one snapshot per scrape)."""

    def __init__(self, source: StatusSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        """Take a snapshot and yield its families."""
        return families(self.source())


def registry_for(source: StatusSource) -> CollectorRegistry:
    """A registry of its own holding only our collector (no process metrics of other libraries)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source))
    return registry


class MetricsResource(Resource):
    """``GET /metrics``: the registry in the text format the scraper asks for (Prometheus or OpenMetrics).

    Rendered on the reactor thread: collecting reads the node's tables, which only the
    reactor may touch (``prometheus_client.twisted.MetricsResource`` would collect in a
    thread pool).
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 (Twisted API)
        """Encode the registry."""
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return encoder(self.registry)
