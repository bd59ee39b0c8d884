# -*- test-case-name: test.test_socks5 -*-
"""The SOCKS5 front end as a Twisted service: one server per hop count, started with the node."""
from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger

from .server import Socks5Server


class Socks5Service(Service):
    """SOCKS5 servers for hop counts ``hops`` on ``base_port``, ``base_port + 1``, ...

    Starts once ``tunnel`` (a :class:`~tunnels.daemon.service.TunnelService`) has a node.
    ``base_port`` 0 gives each a free port; see :attr:`ports` (hops -> TCP port).
    """

    log = Logger()

    def __init__(self, reactor: Any, tunnel: Any, base_port: int, hops: tuple[int, ...] = (1, 2, 3),
                 interface: str = "127.0.0.1") -> None:
        self.reactor = reactor
        self.tunnel = tunnel
        self.base_port = base_port
        self.hops = hops
        self.interface = interface
        self.servers: dict[int, Socks5Server] = {}
        self.listening: dict[int, Any] = {}
        self.ready: Deferred[Any] | None = None

    @property
    def ports(self) -> dict[int, int]:
        """TCP port of each hop count's server, once listening."""
        return {hops: int(port.getHost().port) for hops, port in self.listening.items()}

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Listen once the node runs."""
        super().startService()
        self.ready = self.tunnel.when_running()
        # The tunnel service reports its own start failure; ours (a busy port) is logged here.
        self.ready.addCallbacks(self._listen, lambda failure: None)
        self.ready.addErrback(lambda failure: self.log.failure("SOCKS5 could not start", failure))

    def _listen(self, node: Any) -> None:
        if not self.running:
            return
        for index, hops in enumerate(self.hops):
            server = Socks5Server(self.reactor, node.community, hops, self.interface)
            port = self.reactor.listenTCP(self.base_port + index if self.base_port else 0, server,
                                          interface=self.interface)
            server.start()
            self.servers[hops] = server
            self.listening[hops] = port
            self.log.info("SOCKS5 (UDP ASSOCIATE) for {hops}-hop circuits on {host}:{port}",
                          hops=hops, host=self.interface, port=port.getHost().port)

    def stopService(self) -> Deferred[Any]:  # noqa: N802 (Twisted API)
        """Stop listening and end every association."""
        super().stopService()
        stops = [port.stopListening() for port in self.listening.values()]
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        self.listening.clear()
        return DeferredList([d for d in stops if d is not None]) if stops else succeed(None)
