# -*- test-case-name: test.test_socks5 -*-
"""A SOCKS5 (RFC 1928) UDP front end: applications send datagrams through circuits.

Each :class:`Socks5Server` serves one hop count.  A client opens a TCP control
connection (:mod:`.control`), negotiates (optionally with RFC 1929 credentials, which
isolate it on circuits of its own: :mod:`.isolation`) and asks for UDP ASSOCIATE; the
server opens a UDP relay port on 127.0.0.1 and returns it.  Datagrams the client sends
there carry the RFC 1928 UDP header naming their destination; they go out on the
association's own flow of a ready circuit (:mod:`.association`), the same circuit for
the same destination while it lives.  Replies come back wrapped in the same header, to
that association only.  CONNECT and BIND are refused with reply 0x07 (we carry datagrams only).

Security rules, and why:

- Only the client that made the association may use its UDP port: datagrams must
  come from the control connection's IP (and from the port it announced, or the
  first port it used).  Otherwise any local process could send through, or
  receive the replies of, someone else's association.
- Replies reach the association whose flow they came back on, nobody else (not
  another association, not the node's data handlers); a reply after the association
  ended is dropped.  Never a guess between two associations.
- The association and its state end when the control connection closes (RFC 1928);
  :meth:`Socks5Server.stop` closes every control connection (clients see EOF and know to
  associate again), every relay port, every flow and every timer.
- Bounded: :attr:`max_associations` in all, :attr:`max_per_client` per client IP and
  :data:`MAX_ISOLATION_GROUPS` credential groups, refused beyond with reply 0x02
  ("connection not allowed by ruleset": a rule of this server, not a failure);
  :data:`MAX_HANDSHAKES` control connections still negotiating, closed beyond.
- Fragmented datagrams (FRAG != 0) are dropped: reassembly buys nothing here and
  is a classic source of bugs.  Whole datagrams of any size go through (circuits
  split and reassemble them); the RFC header costs 10 bytes or more of the 65,507 an
  IPv4 datagram holds, so the largest payload is 65,497 bytes to an IPv4 destination,
  and a larger reply is counted (``dropped_reply_too_large``), never sent cut.
- Domain names (ATYP 3) are passed on unchanged and resolved by the exit (or, for
  hidden services, never resolved at all): resolving them here would leak every name the
  application uses to the local resolver.
- The packet path never logs; it counts in each association's ``stats``.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..runtime import listen_udp
from .association import UdpAssociation
from .codec import Reply
from .control import Socks5Protocol
from .isolation import IsolationGroup, SharedPool

Address = tuple[str, int]
MAX_ASSOCIATIONS = 64
"""Associations one server holds at once (default of :attr:`Socks5Server.max_associations`)."""
MAX_PER_CLIENT = 32
"""Associations of one client IP (default of :attr:`Socks5Server.max_per_client`).  Every local
program is 127.0.0.1, so on loopback the total binds first; this matters on a LAN interface."""
MAX_ISOLATION_GROUPS = 16
"""Distinct credentials (circuits of their own each) one server serves at once."""
MAX_HANDSHAKES = 32
"""Control connections still negotiating; more are closed at once (``refused_busy``)."""


class Socks5Server(Factory):
    """SOCKS5 UDP front end for circuits of ``hops`` hops of ``community``.

    >>> server = Socks5Server(reactor, node.community, hops=1)
    >>> server.start()                      # asks the community for 1-hop circuits
    >>> port = reactor.listenTCP(1080, server, interface="127.0.0.1")
    >>> await server.stop()                  # every client sees EOF

    :ivar show_destinations: list each association's destinations in :meth:`association_rows`
        (a debug mode: they are what the users talk to).
    """

    log = Logger()
    noisy = False

    def __init__(self, reactor: Any, community: Any, hops: int, interface: str = "127.0.0.1", *,
                 max_associations: int = MAX_ASSOCIATIONS, max_per_client: int = MAX_PER_CLIENT,
                 show_destinations: bool = False) -> None:
        """``community`` may be None until the node runs: :meth:`start` then takes it, and
        control connections made before are closed at once.

        :raises ValueError: a bound below 1.
        """
        if max_associations < 1 or max_per_client < 1:
            raise ValueError("max_associations and max_per_client must be >= 1")
        self.reactor = reactor
        self.community = community
        self.hops = hops
        self.interface = interface
        self.max_associations = max_associations
        self.max_per_client = max_per_client
        self.show_destinations = show_destinations
        self.connections: set[Socks5Protocol] = set()
        self.associations: set[UdpAssociation] = set()
        self.groups: dict[bytes, IsolationGroup] = {}
        self.shared: SharedPool | None = None
        self.counters: Counter[str] = Counter()
        """Server-wide events (``associations``, refusals of connections and requests)."""
        self.retired: Counter[str] = Counter()
        """Counts of associations that ended."""
        self.retired_refusals: Counter[str] = Counter()
        self.secret = os.urandom(32)
        self.opened = 0
        self.started = False

    # --- connections ----------------------------------------------------------------------

    def buildProtocol(self, addr: Any) -> Socks5Protocol | None:  # noqa: N802 (Twisted API)
        """A control connection; refused (closed at once) before :meth:`start` or beyond
        :data:`MAX_HANDSHAKES` connections still negotiating."""
        if not self.started:
            self.counters["refused_not_started"] += 1
            return None
        if len(self.connections) - len(self.associations) >= MAX_HANDSHAKES:
            self.counters["refused_busy"] += 1
            return None
        protocol = Socks5Protocol(self)
        self.connections.add(protocol)
        return protocol

    def isolation_key(self, credentials: bytes) -> bytes:
        """The isolation group of RFC 1929 ``credentials`` (a keyed hash: they are not kept)."""
        return hashlib.blake2b(credentials, key=self.secret, digest_size=16).digest()

    def associate(self, control: Socks5Protocol, announced_port: int) -> tuple[UdpAssociation | None, Reply]:
        """Open the association of ``control`` (its UDP relay port), or say which reply refuses it.
        The control connection replies once the association's circuits are ready."""
        host = control.transport.getPeer().host
        if len(self.associations) >= self.max_associations or \
                sum(1 for a in self.associations if a.client_host == host) >= self.max_per_client:
            self.counters["refused_associations"] += 1
            return None, Reply.NOT_ALLOWED
        key = control.isolation
        group = self.groups.get(key) if key is not None else None
        if key is not None and group is None and len(self.groups) >= MAX_ISOLATION_GROUPS:
            self.counters["refused_isolation_groups"] += 1
            return None, Reply.NOT_ALLOWED
        if key is not None and group is None:
            size = max(1, self.community.settings.min_circuits)
            group = self.groups[key] = IsolationGroup(self.community, self.hops, size, self.reactor, key)
        source = group or self.shared
        assert source is not None
        self.opened += 1
        association = UdpAssociation(self.community, self.opened, host, announced_port, source,
                                     self.reactor.seconds())
        if group is not None:
            group.members += 1
        try:
            # whole datagrams (Twisted's default would cut them at 8,192 bytes), room for bursts
            association.port = listen_udp(self.reactor, 0, association, self.interface)
        except Exception:
            self.counters["refused_no_port"] += 1
            self._leave_group(association)
            return None, Reply.GENERAL_FAILURE
        self.associations.add(association)
        self.counters["associations"] += 1
        return association, Reply.SUCCEEDED

    def connection_lost(self, control: Socks5Protocol) -> None:
        """A control connection closed: its association ends."""
        self.connections.discard(control)
        if control.association is not None:
            self.end(control.association)

    def end(self, association: UdpAssociation) -> Any:
        """End ``association``: flows, claims, relay port; its counts are kept in the totals.
        Returns the relay port's ``stopListening`` Deferred (or None)."""
        if association not in self.associations:
            return None
        self.associations.discard(association)
        stopped = association.end()
        self.retired.update(association.stats)
        self.retired_refusals.update(association.refusals)
        self._leave_group(association)
        return stopped

    def _leave_group(self, association: UdpAssociation) -> None:
        """``association`` leaves its isolation group, which closes when no member is left."""
        group = association.circuits
        if isinstance(group, IsolationGroup):
            group.members -= 1
            if group.members <= 0:
                self.groups.pop(group.key, None)
                group.close()

    # --- life -----------------------------------------------------------------------------

    def start(self, community: Any = None) -> None:
        """Serve, and keep a pool of circuits of our hop count (of ``community``, if given)."""
        if community is not None:
            self.community = community
        if self.community is None:
            raise ValueError("Socks5Server.start needs a community")
        if not self.started:
            self.started = True
            self.shared = SharedPool(self.community, self.hops)
            self.community.build_tunnels(self.hops)

    def stop(self) -> Deferred[Any]:
        """Stop serving: every control connection is closed (clients see EOF), every association
        ends (flows, relay ports), isolation groups close their circuits, no timer of ours stays.

        The Deferred fires once every connection is gone and every port closed."""
        self.started = False
        waits: list[Deferred[Any]] = []
        for control in list(self.connections):
            waits.append(control.lost)
            control.close()
        for association in list(self.associations):
            stopped = self.end(association)
            if stopped is not None:
                waits.append(stopped)
        for group in self.groups.values():
            group.close()
        self.groups.clear()
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    # --- status ---------------------------------------------------------------------------

    @property
    def stats(self) -> Counter[str]:
        """Every count: the server's, and its associations' (ended ones included)."""
        total = self.counters + self.retired
        for association in self.associations:
            total.update(association.stats)
        return total

    @property
    def refusals(self) -> Counter[str]:
        """Datagrams the exits refused, by kind, for every association (ended ones included)."""
        total = Counter(self.retired_refusals)
        for association in self.associations:
            total.update(association.refusals)
        return total

    def association_rows(self, now: float) -> list[dict[str, Any]]:
        """One flat row per association: counts only (destinations in the debug mode)."""
        rows = []
        for a in sorted(self.associations, key=lambda a: a.number):
            drops = sum(n for k, n in a.stats.items() if k.startswith("dropped_"))
            row: dict[str, Any] = {
                "hops": self.hops, "association": a.number, "isolated": "yes" if a.circuits.isolated else "no",
                "age": round(now - a.opened, 1), "flows": a.open_flows, "destinations": len(a.routes),
                "hidden_peers": len(a.peers), "sent": a.stats["sent"], "delivered": a.stats["delivered"],
                "dropped": drops, "refused": sum(a.refusals.values()),
                "refused_by": ", ".join(f"{kind} {n}" for kind, n in sorted(a.refusals.items())) or "-"}
            if self.show_destinations:
                row["destination_list"] = ", ".join(f"{h}:{p}" for h, p in list(a.routes)[-16:]) or "-"
            rows.append(row)
        return rows
