# -*- test-case-name: test.test_socks5 -*-
"""The SOCKS5 front end as a Twisted service: one server per hop count, started with the node.

The TCP ports bind in ``privilegedStartService`` (before the reactor runs, so a port in
use is a :class:`~tunnels.errors.StartupError` at once); connections are refused until
the node runs.  Stopping closes every control connection (clients see EOF), relay port and
flow before the node stops.  The service adds a ``socks5`` section to the node's status,
page and metrics (:meth:`status_section`): one row per association, with counts only
(``show_destinations`` adds each association's destinations, a debug mode).
"""
from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from ..errors import listen_error
from .control import Phase
from .server import Socks5Server

SECTION = "socks5"
"""The name of our status section (prefix of our metrics: ``txtunnels_socks5_...``)."""
COUNTERS = {"sent": "datagrams_sent", "delivered": "datagrams_delivered", "associations": "associations_opened",
            "malformed_requests": "malformed_requests", "refused_commands": "refused_commands",
            "refused_not_started": "connections_before_start", "refused_busy": "connections_refused_busy",
            "refused_associations": "associations_refused_limit",
            "refused_isolation_groups": "associations_refused_isolation_groups",
            "refused_no_port": "associations_refused_no_port",
            "refused_no_circuit": "associations_refused_no_circuit"}
"""Server counters shown in the status section, under the names shown."""


class Socks5Service(Service):
    """SOCKS5 servers for hop counts ``hops`` on ``base_port``, ``base_port + 1``, ...

    Serves once ``tunnel`` (a :class:`~tunnels.daemon.service.TunnelService`) has a node.
    ``base_port`` 0 gives each a free port; see :attr:`ports` (hops -> TCP port).
    ``label`` names the ports in error messages (``--socks5-port``).
    """

    log = Logger()

    def __init__(self, reactor: Any, tunnel: Any, base_port: int, hops: tuple[int, ...] = (1, 2, 3),
                 interface: str = "127.0.0.1", label: str = "SOCKS5 port", show_destinations: bool = False) -> None:
        self.show_destinations = show_destinations
        self.reactor = reactor
        self.tunnel = tunnel
        self.base_port = base_port
        self.hops = hops
        self.interface = interface
        self.label = label
        self.servers: dict[int, Socks5Server] = {}
        self.listening: dict[int, Any] = {}
        self.ready: Deferred[Any] | None = None

    @property
    def ports(self) -> dict[int, int]:
        """TCP port of each hop count's server, once listening."""
        return {hops: int(port.getHost().port) for hops, port in self.listening.items()}

    def privilegedStartService(self) -> None:  # noqa: N802 (Twisted API)
        """Bind every port.

        :raises tunnels.errors.StartupError: a port is in use or the interface not ours.
        """
        super().privilegedStartService()
        self.bind()

    def bind(self) -> None:
        """Listen now on every port (idempotent); connections wait for the node.

        :raises tunnels.errors.StartupError: a port is in use or the interface not ours.
        """
        for index, hops in enumerate(self.hops):
            if hops in self.listening:
                continue
            port = self.base_port + index if self.base_port else 0
            server = Socks5Server(self.reactor, None, hops, self.interface, show_destinations=self.show_destinations)
            try:
                self.listening[hops] = self.reactor.listenTCP(port, server, interface=self.interface)
            except CannotListenError as e:
                raise listen_error("TCP", self.interface, port, f"{self.label}, {hops}-hop circuits", e) from None
            self.servers[hops] = server

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Bind (if not yet), then serve once the node runs."""
        self.bind()
        super().startService()
        if hasattr(self.tunnel, "add_status_section"):
            self.tunnel.add_status_section(SECTION, self.status_section)
        self.ready = self.tunnel.when_running()
        # The tunnel service reports its own start failure.
        self.ready.addCallbacks(self._serve, lambda failure: None)

    def _serve(self, node: Any) -> None:
        if not self.running:
            return
        for hops, server in self.servers.items():
            server.start(node.community)
            self.log.info("SOCKS5 (UDP ASSOCIATE) for {hops}-hop circuits on {host}:{port}",
                          hops=hops, host=self.interface, port=self.listening[hops].getHost().port)

    def status_section(self) -> dict[str, Any]:
        """Our figures for the node's status (see :mod:`tunnels.daemon.status` for the shape): totals,
        drops and exit refusals by reason, and one row per association."""
        counters = {name: 0 for name in COUNTERS.values()}
        drops: dict[str, int] = {}
        refusals: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        now = self.reactor.seconds()
        for _, server in sorted(self.servers.items()):
            for key, value in server.stats.items():
                if key.startswith("dropped_"):
                    drops[key[len("dropped_"):]] = drops.get(key[len("dropped_"):], 0) + value
                elif key in COUNTERS:
                    counters[COUNTERS[key]] += value
            for kind, value in server.refusals.items():
                refusals[kind] = refusals.get(kind, 0) + value
            rows.extend(server.association_rows(now))
        servers = self.servers.values()
        gauges = {"associations": sum(len(s.associations) for s in servers),
                  "associations_isolated": sum(1 for s in servers for a in s.associations if a.circuits.isolated),
                  "isolation_groups": sum(len(s.groups) for s in servers),
                  "flows": sum(a.open_flows for s in servers for a in s.associations),
                  "handshakes": sum(len(s.connections) - len(s.associations) for s in servers),
                  "associations_waiting": sum(1 for s in servers for c in s.connections if c.phase is Phase.PENDING)}
        return {"title": "SOCKS5 front end (UDP ASSOCIATE)", "gauges": gauges, "counters": counters,
                "drops": dict(sorted(drops.items())), "refusals": dict(sorted(refusals.items())), "rows": rows}

    def stopService(self) -> Deferred[Any]:  # noqa: N802 (Twisted API)
        """Stop listening, close every control connection and end every association; the
        Deferred fires once all are gone (before the node stops: :class:`TunnelService`
        stops its children first)."""
        super().stopService()
        if hasattr(self.tunnel, "remove_status_section"):
            self.tunnel.remove_status_section(SECTION)
        stops = [port.stopListening() for port in self.listening.values()]
        stops.extend(server.stop() for server in self.servers.values())
        self.servers.clear()
        self.listening.clear()
        return DeferredList([d for d in stops if d is not None], consumeErrors=True)
