# -*- test-case-name: test.test_status -*-
"""The status port: the page at ``/``, the JSON at ``/status.json``, Prometheus at ``/metrics``.

``/`` answers browsers (``Accept`` naming ``text/html``) with the page and everyone else
(curl, scripts) with the JSON it always served, so older scripts keep working.  The
page and the JSON answer 503 while the node starts or after it failed; ``/metrics``
answers 200 with ``txtunnels_node_running 0`` then, as scrapers expect.

The port listens on 127.0.0.1 unless told otherwise (see :mod:`tunnels.daemon.status`
for what it shows), binds in ``privilegedStartService`` (a port in use is a
:class:`~tunnels.errors.StartupError` before the reactor runs), keeps no access log,
and sends a ``Content-Security-Policy`` that forbids every script and every request to
anywhere: the page needs neither.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Any

from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ..errors import listen_error
from .history import History, HistorySampler
from .metrics import MetricsResource, registry_for
from .page import render_page
from .status import StatusSource

CSP = b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
"""What the page may load: its inline style and ``data:`` images, nothing else, no script."""


def _snapshot(source: StatusSource) -> tuple[int, dict[str, Any]]:
    status = source()
    if status is None:
        return 503, {"state": "starting"}
    return (200 if status.get("state") == "running" else 503), status


class JSONResource(Resource):
    """The status snapshot as JSON (with the throughput history)."""

    isLeaf = True

    def __init__(self, source: StatusSource, history: History) -> None:
        super().__init__()
        self.source = source
        self.history = history

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 (Twisted API)
        """Render the JSON document."""
        code, status = _snapshot(self.source)
        if code == 200:
            status = {**status, "history": self.history.as_json()}
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(status, sort_keys=True).encode("utf-8") + b"\n"


class PageResource(Resource):
    """The HTML status page."""

    isLeaf = True

    def __init__(self, source: StatusSource, history: History, clock: Any) -> None:
        super().__init__()
        self.source = source
        self.history = history
        self.clock = clock

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 (Twisted API)
        """Render the page."""
        code, status = _snapshot(self.source)
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Security-Policy", CSP)
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        return render_page(status, self.history, self.clock.seconds()).encode("utf-8")


class StatusRoot(Resource):
    """``/`` (page or JSON by ``Accept``), ``/status.json``, ``/metrics``; anything else is 404."""

    def __init__(self, source: StatusSource, history: History, clock: Any) -> None:
        super().__init__()
        self.page = PageResource(source, history, clock)
        self.json = JSONResource(source, history)
        self.putChild(b"status.json", self.json)
        self.putChild(b"metrics", MetricsResource(registry_for(source)))

    def getChild(self, path: bytes, request: Request) -> Resource:  # noqa: N802 (Twisted API)
        """Route ``/`` by content negotiation."""
        if path == b"":
            accept = request.getHeader(b"accept") or b""
            return self.page if b"text/html" in accept else self.json
        return super().getChild(path, request)


class _QuietSite(Site):
    """A Site without an access log (polling the status must not flood the log)."""

    def log(self, request: Any) -> None:
        """Log nothing."""


def status_site(source: StatusSource, history: History, clock: Any) -> Site:
    """The twisted.web site of the status port."""
    site = _QuietSite(StatusRoot(source, history, clock))
    site.noisy = False
    return site


def _is_loopback(interface: str) -> bool:
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return interface == "localhost"


class StatusService(Service):
    """Serve the status on ``interface:port`` (127.0.0.1 by default) and sample its history.

    ``port`` 0 picks a free port; read it from :attr:`port` after start.  ``label`` names
    the port in error messages (an option name such as ``--status-port``).
    """

    log = Logger()

    def __init__(self, reactor: Any, source: StatusSource, port: int, interface: str = "127.0.0.1",
                 label: str = "status port", history: History | None = None) -> None:
        self.reactor = reactor
        self.source = source
        self.requested_port = port
        self.interface = interface
        self.label = label
        self.history = history or History()
        self.sampler = HistorySampler(reactor, source, self.history)
        self.listening: Any = None

    @property
    def port(self) -> int | None:
        """The TCP port we listen on, once bound."""
        return None if self.listening is None else int(self.listening.getHost().port)

    def privilegedStartService(self) -> None:  # noqa: N802 (Twisted API)
        """Bind the port.

        :raises tunnels.errors.StartupError: the port is in use or the interface not ours.
        """
        super().privilegedStartService()
        self.bind()

    def bind(self) -> None:
        """Listen now (idempotent).

        :raises tunnels.errors.StartupError: the port is in use or the interface not ours.
        """
        if self.listening is not None:
            return
        try:
            self.listening = self.reactor.listenTCP(self.requested_port,
                                                    status_site(self.source, self.history, self.reactor),
                                                    interface=self.interface)
        except CannotListenError as e:
            raise listen_error("TCP", self.interface, self.requested_port, self.label, e) from None
        if not _is_loopback(self.interface):
            self.log.warn("The status endpoint on {interface}:{port} is reachable from other hosts",
                          interface=self.interface, port=self.port)

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Bind (if not yet) and start sampling the history.

        :raises tunnels.errors.StartupError: the port is in use or the interface not ours.
        """
        self.bind()
        super().startService()
        self.sampler.start()

    def stopService(self) -> Any:  # noqa: N802 (Twisted API)
        """Stop sampling and listening."""
        super().stopService()
        self.sampler.stop()
        listening, self.listening = self.listening, None
        return None if listening is None else listening.stopListening()
