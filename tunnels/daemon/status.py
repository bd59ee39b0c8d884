# -*- test-case-name: test.test_status -*-
"""What a running node is doing: one dict for the log line and the JSON endpoint.

The endpoint listens on 127.0.0.1 unless told otherwise: it shows our own
circuits (ids, ages, cell counts), which is private to the operator.  It never
lists the addresses of our hops or of the circuits we carry for others.
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

StatusSource = Callable[[], "dict[str, Any] | None"]
"""Returns the current status, or None while the node is starting."""


def node_status(node: Any, now: float) -> dict[str, Any]:
    """Snapshot of ``node`` (a :class:`~tunnels.node.TunnelNode`) at time ``now``.

    Keys: ``address``, ``exit``, ``testnet``, ``peers``, ``circuits``,
    ``circuits_ready``, ``joined_circuits``, ``exit_sockets``, ``bytes_up``,
    ``bytes_down``, ``drops`` (total), ``drops_by_reason``, ``events`` and
    ``circuit_details`` (one dict per circuit of ours: ``id``, ``hops``,
    ``goal_hops``, ``state``, ``age``, ``cells_sent``, ``cells_received``).
    """
    community = node.community
    circuits = community.circuits
    joined = community.joined_circuits
    stats = community.stats.as_dict()
    return {
        "address": list(node.address),
        "exit": bool(community.settings.become_exitnode),
        "testnet": bool(community.testnet),
        "peers": len(community.get_peers()),
        "circuits": len(circuits),
        "circuits_ready": sum(1 for c in circuits if c.ready),
        "joined_circuits": len(joined),
        "exit_sockets": sum(1 for c in joined if c.exit is not None),
        "bytes_up": node.endpoint.bytes_up,
        "bytes_down": node.endpoint.bytes_down,
        "drops": sum(stats["drops"].values()),
        "drops_by_reason": stats["drops"],
        "events": stats["events"],
        "circuit_details": [
            {"id": f"{c.circuit_id:08x}", "hops": c.hop_count, "goal_hops": c.goal_hops, "state": c.state.name,
             "age": round(now - c.created, 3), "cells_sent": c.cells_sent, "cells_received": c.cells_received}
            for c in sorted(circuits, key=lambda c: c.created)],
    }


STATUS_LINE = ("status: {circuits} circuits ({circuits_ready} ready), {joined_circuits} joined, "
               "{exit_sockets} exit sockets, {peers} peers, {bytes_up} B up, {bytes_down} B down, {drops} drops")
"""The periodic log line (a twisted.logger format string over :func:`node_status`)."""


class StatusResource(Resource):
    """``GET /`` (any path) answers the status as JSON; 503 while the node starts."""

    isLeaf = True

    def __init__(self, source: StatusSource) -> None:
        super().__init__()
        self.source = source

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 (Twisted API)
        """Render the JSON document."""
        status = self.source()
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        if status is None:
            request.setResponseCode(503)
            status = {"state": "starting"}
        else:
            status = {"state": "running", **status}
        return json.dumps(status, sort_keys=True).encode("utf-8") + b"\n"


class _QuietSite(Site):
    """A Site without an access log (polling the status must not flood the log)."""

    def log(self, request: Any) -> None:
        """Log nothing."""


def status_site(source: StatusSource) -> Site:
    """The twisted.web site serving :class:`StatusResource`."""
    site = _QuietSite(StatusResource(source))
    site.noisy = False
    return site


def _is_loopback(interface: str) -> bool:
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return interface == "localhost"


class StatusService(Service):
    """Listen for status requests on ``interface:port`` (127.0.0.1 by default).

    ``port`` 0 picks a free port; read it from :attr:`port` after start.
    """

    log = Logger()

    def __init__(self, reactor: Any, source: StatusSource, port: int, interface: str = "127.0.0.1") -> None:
        self.reactor = reactor
        self.source = source
        self.requested_port = port
        self.interface = interface
        self.listening: Any = None

    @property
    def port(self) -> int | None:
        """The TCP port we listen on, once started."""
        return None if self.listening is None else int(self.listening.getHost().port)

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Start listening (a busy port raises ``CannotListenError``, failing startup)."""
        super().startService()
        self.listening = self.reactor.listenTCP(self.requested_port, status_site(self.source),
                                                interface=self.interface)
        if not _is_loopback(self.interface):
            self.log.warn("The status endpoint on {interface}:{port} is reachable from other hosts",
                          interface=self.interface, port=self.port)

    def stopService(self) -> Any:  # noqa: N802 (Twisted API)
        """Stop listening."""
        super().stopService()
        listening, self.listening = self.listening, None
        return None if listening is None else listening.stopListening()
