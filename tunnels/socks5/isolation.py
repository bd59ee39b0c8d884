# -*- test-case-name: test.test_socks5_isolation -*-
"""Which circuits an association may use: the shared pool, or circuits of its isolation group.

Associations that gave no credentials share the node's pool of data circuits of the
server's hop count; each has flows of its own on them (:mod:`tunnels.core.flows`), so
replies never cross between applications.  Associations that authenticated with RFC 1929
username/password are isolated by those credentials, as Tor's ``IsolateSOCKSAuth`` does:
all associations with the same username and password share the circuits of their
:class:`IsolationGroup`, which no other association uses (doc/user-guide.md section 4).

A group builds its circuits when its first association comes (the UDP ASSOCIATE reply waits
until one is ready, so the application's first datagrams are not lost), replaces them as
they close while it has associations, backs off after failed builds (no timer: the next
datagram or association asks again), and closes them when its last association ends.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..core.circuits import Circuit, CircuitState
from ..errors import TunnelError

ISOLATED = "isolated"
"""The purpose of an isolation group's circuits (outside the pool, so nothing else uses them)."""
SHORT_LIFE = 10.0
"""Seconds; a group's circuit that closes younger than this counts as a failed build."""
MAX_BACKOFF = 30.0
"""Seconds a group waits at most before building again after failures."""


class CircuitSource(Protocol):
    """What an association asks for circuits."""

    isolated: bool

    def ready(self) -> list[Circuit]:
        """Ready circuits the association may use."""

    def want(self) -> None:
        """No circuit was ready: get some (or not, while backing off)."""

    def when_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the association may be told its relay port."""


class SharedPool:
    """The node's pool of data circuits of ``hops`` hops (kept by the community)."""

    isolated = False

    def __init__(self, community: Any, hops: int) -> None:
        self.community = community
        self.hops = hops

    def ready(self) -> list[Circuit]:
        """The pool's ready data circuits."""
        return list(self.community.active_data_circuits(self.hops))

    def want(self) -> None:
        """The community keeps the pool filled (``build_tunnels``); nothing to do here."""

    def when_ready(self, callback: Callable[[], None]) -> None:
        """At once: the pool is built from the server's start on, long before most clients come
        (until it is ready, datagrams are dropped and counted as ``no_circuit``)."""
        callback()


class IsolationGroup:
    """Circuits of their own for the associations that gave the same credentials.

    :param size: circuits the group keeps (the node's ``min_circuits``, at least 1).
    :param clock: ``seconds()`` for the backoff.
    :param key: the group's isolation key (a keyed hash of the credentials).
    """

    isolated = True

    def __init__(self, community: Any, hops: int, size: int, clock: Any, key: bytes) -> None:
        self.key = key
        self.community = community
        self.hops = hops
        self.size = size
        self.clock = clock
        self.circuits: list[Circuit] = []
        self.members = 0
        """Associations in the group."""
        self.failures = 0
        self.retry_at = 0.0
        self.closed = False
        self.waiters: list[Callable[[], None]] = []
        """Associations waiting for the group's first ready circuit (see :meth:`when_ready`)."""

    def ready(self) -> list[Circuit]:
        """The group's ready circuits."""
        return [c for c in self.circuits if c.ready]

    def want(self) -> None:
        """Start building until the group has :attr:`size` circuits, unless backing off."""
        if self.closed:
            return
        self.circuits = [c for c in self.circuits if c.state is not CircuitState.CLOSED]
        while len(self.circuits) < self.size and self.clock.seconds() >= self.retry_at:
            try:
                circuit = self.community.start_circuit(self.hops, purpose=ISOLATED)
            except TunnelError:
                self._failed()
                return
            self.circuits.append(circuit)
            circuit.on_ready.append(self._settled)
            circuit.on_closed.append(self._closed)

    def when_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the group has a ready circuit (at once if it has one).  The
        association's handshake timer bounds the wait."""
        if self.ready():
            callback()
        else:
            self.waiters.append(callback)
            self.want()

    def close(self) -> None:
        """The last association ended (or the server stopped): close the group's circuits."""
        self.closed = True
        self.waiters.clear()
        circuits, self.circuits = self.circuits, []
        for circuit in circuits:
            if circuit.state is not CircuitState.CLOSED:
                self.community.remove_circuit(circuit)

    def _settled(self, circuit: Circuit, error: Exception | None) -> None:
        if error is not None:
            self._failed()
            return
        self.failures = 0
        waiters, self.waiters = self.waiters, []
        for callback in waiters:
            callback()

    def _closed(self, circuit: Circuit) -> None:
        if self.closed or circuit.close_reason == "shutdown":
            return
        if circuit.hops and len(circuit.hops) == circuit.goal_hops and \
                self.clock.seconds() - circuit.created < SHORT_LIFE:
            self._failed()
        self.want()

    def _failed(self) -> None:
        self.failures += 1
        self.retry_at = self.clock.seconds() + min(MAX_BACKOFF, 0.5 * 2 ** self.failures)
