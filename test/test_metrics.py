# -*- test-case-name: test.test_metrics -*-
"""``/metrics``: parsed with prometheus_client's own parser, and its figures agree with the JSON."""
from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from tunnels.daemon.metrics import families

from .statuscase import StatusNodeCase, http_get
from .util import async_test


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of an exposition, parsed by prometheus_client."""
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def expected_samples(status: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every figure of a JSON status, under the sample name and labels /metrics must give it."""
    def key(name: str, **labels: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
        return f"txtunnels_{name}", tuple(sorted((k, str(v)) for k, v in labels.items()))
    want = {key("node_running"): 1, key("uptime_seconds"): status["uptime"], key("peers"): status["peers"],
            key("traffic_bytes_total", direction="read"): status["bytes_down"],
            key("traffic_bytes_total", direction="written"): status["bytes_up"],
            key("exit_sockets"): status["exit_sockets"], key("exit_destinations"): status["exit_destinations"],
            key("exit_flows"): status["exit_flows"]}
    for kind in status["circuits_by_kind"]:
        want[key("origin_circuits", state=kind["state"], hops=kind["hops"], purpose=kind["purpose"])] = kind["count"]
    for position, n in status["joined_by_position"].items():
        want[key("relay_circuits", position=position)] = n
    for name, n in status["cells"].items():
        circuit, direction = name.split("_")
        want[key("cells_total", circuit=circuit, direction=direction)] = n
    for reason, n in status["drops_by_reason"].items():
        want[key("dropped_total", reason=reason)] = n
    for what, reasons in status["refusals"].items():
        for reason, n in reasons.items():
            want[key("refused_total", type=what, reason=reason)] = n
    for event, n in status["events"].items():
        want[key("events_total", event=event)] = n
    for reason, n in status["circuits_closed"].items():
        want[key("origin_circuits_closed_total", reason=reason)] = n
    for reason, n in status["joined_closed"].items():
        want[key("relay_circuits_closed_total", reason=reason)] = n
    flow = status["flow"]
    want[key("flow_windows", state="open")] = flow["windows"] - flow["blocked"]
    want[key("flow_windows", state="blocked")] = flow["blocked"]
    want[key("flow_window_cells")] = flow["window_cells"]
    want[key("flow_queued_messages")] = flow["queued"]
    want[key("flow_queue_limit_messages")] = flow["queue_limit"]
    want[key("flow_send_window_cells")] = flow["send_window"]
    hidden = status["hidden"]
    want[key("hs_serving_intro_points")] = hidden["serving_intro_points"]
    want[key("hs_serving_rendezvous", state="waiting")] = hidden["serving_rendezvous_waiting"]
    want[key("hs_serving_rendezvous", state="spliced")] = hidden["serving_rendezvous_spliced"]
    for name, section in status["sections"].items():
        for gauge, n in section.get("gauges", {}).items():
            want[key(f"{name}_{gauge}")] = n
        for counter, n in section.get("counters", {}).items():
            want[key(f"{name}_{counter}_total")] = n
        for reason, n in section.get("drops", {}).items():
            want[key(f"{name}_dropped_total", reason=reason)] = n
        for reason, n in section.get("refusals", {}).items():
            want[key(f"{name}_refused_total", reason=reason)] = n
    return want


class MetricsEndpointTests(StatusNodeCase):
    """A running node's ``/metrics`` over real HTTP."""

    @async_test
    async def test_metrics_agree_with_json(self) -> None:
        """Every JSON figure is a metric of the same value (taken between two JSON reads, so moving
        counters must lie between them), and the metrics hold nothing else."""
        await self.start_status_node()
        before = expected_samples(await self.get_json())
        code, headers, body = await http_get(self.base_url + "/metrics")
        after = expected_samples(await self.get_json())
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-type"], ["text/plain; version=0.0.4; charset=utf-8"])
        metrics = samples_of(body.decode("utf-8"))
        info = {k: v for k, v in metrics.items() if k[0] == "txtunnels_info"}
        self.assertEqual(list(info.values()), [1.0])
        [(_, labels)] = info
        self.assertEqual(dict(labels)["role"], "relay")
        others = {k: v for k, v in metrics.items() if k[0] != "txtunnels_info"}
        self.assertEqual(set(others), set(before) | set(after))
        for sample, value in others.items():
            low = min(before.get(sample, 0), after.get(sample, 0))
            high = max(before.get(sample, 0), after.get(sample, 0))
            self.assertTrue(low <= value <= high, (sample, low, value, high))
        # the traffic of start_status_node is there, under Tor-style names and bounded labels
        self.assertEqual(others[("txtunnels_origin_circuits", (("hops", "1"), ("purpose", "data"),
                                                                ("state", "ready")))], 1)
        self.assertGreaterEqual(others[("txtunnels_cells_total", (("circuit", "origin"), ("direction", "forward")))],
                                2)
        self.assertEqual(others[("txtunnels_events_total", (("event", "data_refused"),))], 1)
        self.assertEqual(others[("txtunnels_socks5_associations", ())], 0)

    @async_test
    async def test_exit_refusals_by_reason(self) -> None:
        """At the exit, the refused datagram is counted under type exit, reason port_not_allowed."""
        await self.start_status_node()
        from tunnels.daemon.status import node_status
        exit_status = node_status(self.exit_node, 0.0)
        self.assertEqual(exit_status["refusals"], {"exit": {"port_not_allowed": 1}})
        self.assertEqual(exit_status["joined_by_position"], {"middle": 0, "extending": 0, "exit": 1, "end": 0})
        self.assertEqual(exit_status["exit_destinations"], 1)     # the refused one never counted
        metrics = {(f.name, tuple(sorted(s.labels.items()))): s.value
                   for f in families(exit_status) for s in f.samples}
        self.assertEqual(metrics[("txtunnels_refused", (("reason", "port_not_allowed"), ("type", "exit")))], 1)

    @async_test
    async def test_openmetrics_and_starting(self) -> None:
        """A scraper asking for OpenMetrics gets it; before the node runs, node_running is 0."""
        await self.start_status_node()
        code, headers, body = await http_get(self.base_url + "/metrics",
                                             accept="application/openmetrics-text; version=1.0.0")
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"][0].startswith("application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))


class FamiliesTests(SynchronousTestCase):
    """:func:`families` of a node that is not running."""

    def test_not_running(self) -> None:
        """While starting or after a failure: only the info and node_running 0."""
        for status in (None, {"state": "failed", "error": "x"}):
            names = {f.name: [s.value for s in f.samples] for f in families(status)}
            self.assertEqual(names, {"txtunnels": [1.0], "txtunnels_node_running": [0]})
