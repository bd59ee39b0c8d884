# -*- test-case-name: test.test_twistd -*-
"""TunnelService: a tunnel node as a Twisted service (what ``twistd tunnels`` runs).

The UDP socket binds first, in ``privilegedStartService`` (before the reactor runs, as
Twisted's own servers do), so a port in use is a :class:`~tunnels.errors.StartupError`
at once.  Starting then fetches the HTTPS bootstrap lists (if any) and starts the node
with :func:`tunnels.node.start_node` on that socket; stopping destroys our circuits and
the ones we carry, closes exit sockets and the UDP socket, so SIGTERM ends cleanly.
While running, a one-line status goes to the log every ``status_interval`` seconds.
Child services (status endpoint, SOCKS5) start with it; those that need the node wait
for :meth:`TunnelService.when_running`.  A node that fails to start fails those waiters
and the status says so; it does not stop the reactor (``twistd tunnels`` does, in
:mod:`tunnels.daemon.process`).
"""
from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.task import LoopingCall
from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, Logger, globalLogPublisher
from twisted.python.failure import Failure

from .bootstrap import fetch_bootstrap_list
from .guardfile import GuardFileError, load_guards, save_guards
from ..core.guards import EntryGuards
from ..core.transport import TwistedUDPEndpoint
from ..errors import listen_error
from ..node import TunnelNode, start_node
from ..settings import TunnelSettings
from .status import STATUS_LINE, SectionSource, node_status

Address = tuple[str, int]


def leveled_logger(level: LogLevel, namespace: str = "tunnels") -> Logger:
    """A Logger whose events below ``level`` are dropped before any observer sees them."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    return Logger(namespace=namespace, observer=FilteringLogObserver(globalLogPublisher, [predicate]))


class TunnelService(MultiService):
    """Run one tunnel node.

    >>> service = TunnelService(reactor, host="127.0.0.1", port=0, settings=TunnelSettings(),
    ...                         key_bin=new_key_bin(), testnet=True)
    >>> service.startService()
    >>> node = await as_future(service.when_running())
    """

    def __init__(self, reactor: Any, *, host: str, port: int, settings: TunnelSettings, key_bin: bytes,
                 bootstrap: Sequence[Address] = (), bootstrap_urls: Sequence[str] = (), trust_root: Any = None,
                 testnet: bool = False, status_interval: float = 60.0,
                 log_level: LogLevel = LogLevel.info, port_label: str = "the node's UDP port",
                 guard_file: str | None = None) -> None:
        super().__init__()
        self.reactor = reactor
        self.host = host
        self.port = port
        self.settings = settings
        self.key_bin = key_bin
        self.bootstrap = tuple(bootstrap)
        self.bootstrap_urls = tuple(bootstrap_urls)
        self.trust_root = trust_root
        self.testnet = testnet
        self.status_interval = status_interval
        self.guard_file = guard_file
        """Where the entry guards are kept across restarts (None: in memory only)."""
        self.log = leveled_logger(log_level)
        self.port_label = port_label
        self.endpoint: TwistedUDPEndpoint | None = None
        self.node: TunnelNode | None = None
        self.started_at: float | None = None
        self.failure: Failure | None = None
        """Why the node could not start, once it could not."""
        self.sections: dict[str, SectionSource] = {}
        self._starting: Deferred[Any] | None = None
        self._fetches: list[Deferred[Any]] = []
        self._waiters: list[Deferred[TunnelNode]] = []
        self._status_loop: LoopingCall | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def privilegedStartService(self) -> None:  # noqa: N802 (Twisted API)
        """Bind the UDP socket, then let the children bind theirs.

        :raises tunnels.errors.StartupError: the address is in use or not ours.
        """
        self.bind()
        super().privilegedStartService()

    def bind(self) -> None:
        """Bind the node's UDP socket now (idempotent); :attr:`endpoint` then knows its port.

        :raises tunnels.errors.StartupError: the address is in use or not ours.
        """
        if self.endpoint is not None:
            return
        endpoint = TwistedUDPEndpoint(self.reactor, self.host, self.port)
        try:
            endpoint.listen()
        except CannotListenError as e:
            raise listen_error("UDP", self.host, self.port, self.port_label, e) from None
        self.endpoint = endpoint

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Bind (if ``privilegedStartService`` did not), start children, then (asynchronously) the node.

        :raises tunnels.errors.StartupError: a port is in use or not ours.
        """
        self.bind()
        super().startService()
        self.failure = None
        self.started_at = self.reactor.seconds()
        self._starting = self._start()

    def _start(self) -> Deferred[Any]:
        fetches = [fetch_bootstrap_list(self.reactor, url, trust_root=self.trust_root)
                   for url in self.bootstrap_urls]
        self._fetches = fetches
        d: Deferred[Any] = DeferredList(fetches, consumeErrors=True) if fetches else succeed([])
        d.addCallback(self._start_node)
        d.addCallback(self._started)
        d.addErrback(self._start_failed)
        return d

    def _start_node(self, fetched: list[tuple[bool, Any]]) -> Deferred[TunnelNode]:
        self._fetches = []
        peers = list(self.bootstrap)
        for url, (ok, result) in zip(self.bootstrap_urls, fetched, strict=True):
            if ok:
                self.log.info("Bootstrap list {url}: {count} peers", url=url, count=len(result))
                peers.extend(p for p in result if p not in peers)
            else:
                self.log.warn("Bootstrap list unusable: {error}", error=result.getErrorMessage())
        if not peers:
            self.log.warn("No bootstrap peers: this node waits for others to find it")
        if not self.running:
            raise ServiceStopped()
        return start_node(self.reactor, bootstrap=peers, settings=self.settings, testnet=self.testnet,
                          key_bin=self.key_bin, endpoint=self.endpoint,
                          guards=self._load_guards())

    def _load_guards(self) -> EntryGuards | None:
        """The entry guards from :attr:`guard_file`; an unusable file is moved aside (as Tor
        treats a corrupt state file) and new guards are sampled."""
        if self.guard_file is None:
            return None
        try:
            stored = load_guards(self.guard_file)
        except GuardFileError as e:
            aside = self.guard_file + ".corrupt"
            try:
                os.replace(self.guard_file, aside)
            except OSError:
                aside = "(could not move it)"
            self.log.warn("Guard file unusable, moved to {aside}; sampling new guards: {error}", aside=aside,
                          error=str(e))
            stored = []
        else:
            if stored:
                self.log.info("Loaded {count} entry guards from {path}", count=len(stored), path=self.guard_file)
        return EntryGuards(random.SystemRandom(), stored, on_change=self._save_guards)

    def _save_guards(self, guards: EntryGuards) -> None:
        if self.guard_file is None:
            return
        try:
            save_guards(self.guard_file, guards.sampled)
        except OSError as e:
            self.log.warn("Cannot save entry guards to {path}: {error}", path=self.guard_file, error=str(e))

    def _started(self, node: TunnelNode) -> None:
        self.node = node
        host, port = node.address
        self.log.info("txtunnels node listening on {host}:{port} (exit: {exit}, testnet: {testnet}, "
                      "max joined circuits: {joined})", host=host, port=port, exit=self.settings.become_exitnode,
                      testnet=self.testnet, joined=self.settings.max_joined_circuits)
        if self.status_interval > 0:
            self._status_loop = LoopingCall(self.log_status)
            self._status_loop.clock = self.reactor
            self._status_loop.start(self.status_interval, now=True)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(node)

    def _start_failed(self, failure: Failure) -> None:
        if not failure.check(ServiceStopped):
            self.failure = failure
            self.log.failure("txtunnels node failed to start", failure, level=LogLevel.critical)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    def when_running(self) -> Deferred[TunnelNode]:
        """A Deferred that fires with the node once it has started (at once if it has), or fails
        with the reason it could not start."""
        if self.node is not None:
            return succeed(self.node)
        if self.failure is not None:
            return fail(self.failure)
        d: Deferred[TunnelNode] = Deferred()
        self._waiters.append(d)
        return d

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted API)
        """Stop children, then destroy all circuits and close the node's sockets."""
        children = super().stopService() or succeed(None)
        for fetch in self._fetches:
            fetch.cancel()
        if self._status_loop is not None and self._status_loop.running:
            self._status_loop.stop()
        starting = self._starting if self._starting is not None else succeed(None)
        d: Deferred[Any] = DeferredList([children, starting], consumeErrors=True)
        d.addCallback(lambda _: self._stop_node())
        return d

    def _stop_node(self) -> Deferred[None] | None:
        node, self.node = self.node, None
        endpoint, self.endpoint = self.endpoint, None
        if node is None:
            # bound but never started (a sibling failed to bind, or the start failed)
            return None if endpoint is None else Deferred.fromFuture(endpoint.close())
        community = node.community
        self._save_guards(community.guards)
        self.log.info("Stopping: destroying {circuits} circuits and {joined} joined circuits, closing sockets",
                      circuits=len(community.circuits), joined=len(community.joined_circuits))
        d = node.stop()

        def done(_: object) -> None:
            self.log.info("Stopped: circuits destroyed, sockets closed ({up} B up, {down} B down)",
                          up=node.endpoint.bytes_up, down=node.endpoint.bytes_down)
        d.addCallback(done)
        return d

    # --- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any] | None:
        """The node's status (:func:`tunnels.daemon.status.node_status`), None while it starts, or
        ``{"state": "failed", "error": reason}`` when it could not start."""
        if self.node is None:
            return None if self.failure is None else {"state": "failed", "error": self.failure.getErrorMessage()}
        now = self.reactor.seconds()
        status = node_status(self.node, now, started=self.started_at if self.started_at is not None else now)
        status["sections"] = {name: source() for name, source in sorted(self.sections.items())}
        return status

    def add_status_section(self, name: str, source: SectionSource) -> None:
        """Show a front end's own figures in the status, the page and the metrics.

        ``source()`` returns ``{"title": str, "gauges": {name: number}, "counters": {name: number},
        "drops": {reason: count}, "rows": [{column: value}]}`` (every key optional); see
        :mod:`tunnels.daemon.status`.  ``name`` (``[a-z0-9_]+``) prefixes its metrics:
        ``txtunnels_<name>_<gauge>``, ``txtunnels_<name>_<counter>_total`` and
        ``txtunnels_<name>_dropped_total{reason}``.

        :raises ValueError: ``name`` is not ``[a-z0-9_]+`` or is taken.
        """
        if not name or not all(c.islower() or c.isdigit() or c == "_" for c in name):
            raise ValueError(f"a status section name must be [a-z0-9_]+, got {name!r}")
        if name in self.sections:
            raise ValueError(f"status section {name!r} is already registered")
        self.sections[name] = source

    def remove_status_section(self, name: str) -> None:
        """Stop showing the section ``name`` (no error if absent)."""
        self.sections.pop(name, None)

    def log_status(self) -> None:
        """Log the one-line status."""
        status = self.status()
        if status is not None and status["state"] == "running":
            self.log.info(STATUS_LINE, **status)


class ServiceStopped(Exception):
    """The service was stopped before the node started (fails :meth:`TunnelService.when_running`)."""
