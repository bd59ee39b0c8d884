# -*- test-case-name: test.test_dht_health -*-
"""Bootstrap and upkeep of a node's routing table: libtorrent's tick, BEP 5's refresh.

:class:`TableMaintenance` drives a :class:`~tunnels.dht.node.DHTNode` through its public
query methods; it owns no socket.  Every ``maintenance_interval`` seconds (5 s by default,
libtorrent's ``dht_tracker`` refresh timer) one tick:

1. expires stored peers;
2. bootstraps again if the table is empty;
3. every ``self_lookup_interval`` (10 minutes, libtorrent's ``node::tick``) looks up our own
   id, so the buckets near us fill as the network grows (with fewer than ``k`` nodes known
   it is a full bootstrap again, from the configured nodes);
4. pings up to ``max_pings`` questionable nodes (BEP 5: quiet for ``stale_after``, or failed
   their last query): a dead node fails, stops being handed out, and is evicted after
   ``max_failures`` failures;
5. queries the table entry heard from least recently (libtorrent's ``next_refresh``): a
   ``ping`` if its bucket is full, else a ``find_node`` for a random id in its bucket, and
   pings the nodes the answer names that our table has room for (a sparse bucket fills);
6. refreshes buckets unchanged for ``stale_after`` with a lookup into each (BEP 5).

So a table keeps learning after bootstrap, and every entry is queried at least once per
``table size x maintenance_interval`` seconds even in a quiet network.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from tunnels.dht.addresses import never_contact
from tunnels.dht.krpc import Address, NodeInfo, Response, decode_nodes, is_ipv4

if TYPE_CHECKING:
    from tunnels.dht.node import DHTNode


def _ignore(_: object) -> None:
    return None


class TableMaintenance:
    """Bootstrap and the periodic tick of one node (see the module docstring)."""

    log = Logger()

    def __init__(self, node: DHTNode) -> None:
        self._node = node
        self._loop: LoopingCall | None = None
        self._last_self_lookup = -math.inf
        self._bootstrap_waiters: list[Deferred[int]] = []

    def start(self) -> None:
        """Start ticking every ``maintenance_interval`` seconds (first tick after one)."""
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self._node.reactor
        self._loop.start(self._node.config.maintenance_interval, now=False)

    def stop(self) -> None:
        """Stop ticking."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    # -- bootstrap ---------------------------------------------------------------
    def bootstrap(self) -> Deferred[int]:
        """Ping the bootstrap nodes, look up our own id, refresh the buckets; fires with the
        table size.  Concurrent calls share one bootstrap."""
        d: Deferred[int] = Deferred()
        self._bootstrap_waiters.append(d)
        if len(self._bootstrap_waiters) == 1:
            self._last_self_lookup = self._node.reactor.seconds()
            self._do_bootstrap().addBoth(self._bootstrap_done)
        return d

    def _bootstrap_done(self, result: object) -> None:
        waiters, self._bootstrap_waiters = self._bootstrap_waiters, []
        size = len(self._node.routing)
        if isinstance(result, Failure):
            self.log.failure("DHT bootstrap failed", result)
        elif size == 0:
            self.log.warn("DHT bootstrap: no node answered; retrying at maintenance")
        else:
            self.log.info("DHT bootstrap: {size} nodes in the routing table", size=size)
        for d in waiters:
            d.callback(size)

    def _do_bootstrap(self) -> Deferred[int]:
        node = self._node

        def resolve(host: str) -> Deferred[str]:
            if is_ipv4(host):
                return succeed(host)
            return node.reactor.resolve(host)  # type: ignore[no-any-return]

        def ping_one(entry: Address) -> Deferred[NodeInfo | None]:
            def ping(ip: str) -> Deferred[NodeInfo | None]:
                if never_contact(ip, entry[1]):
                    return succeed(None)    # a name that resolves to 0.0.0.0 and the like
                return node.ping((ip, entry[1])).addCallback(
                    lambda node_id: NodeInfo(node_id, ip, entry[1]))
            d: Deferred[NodeInfo | None] = resolve(entry[0]).addCallback(ping)
            return d.addErrback(_ignore)

        def look(results: list[tuple[bool, NodeInfo | None]]) -> Deferred[int]:
            seeds = [n for ok, n in results if ok and n is not None and n.node_id != node.node_id]
            seeds += node.routing.closest(node.node_id, node.config.k * 2)
            if not seeds:
                return succeed(0)
            d = node.lookup(node.node_id, seeds=seeds)
            d.addCallback(lambda _: self.refresh_buckets())
            return d.addCallback(lambda _: len(node.routing))

        return DeferredList([ping_one(b) for b in node.config.bootstrap]).addCallback(look)

    # -- refresh -----------------------------------------------------------------
    def refresh_buckets(self, only_stale: bool = False) -> Deferred[None]:
        """Look up a random id in each bucket up to the deepest non-empty one (at most
        ``max_refresh`` at once), so every part of the id space is known; with
        ``only_stale``, only buckets that did not change for ``stale_after`` seconds."""
        node = self._node
        now = node.reactor.seconds()
        routing = node.routing
        indexes = routing.stale_buckets(now if only_stale else now + node.config.stale_after)
        ds = []
        for index in indexes[:node.config.max_refresh]:
            routing.touch_bucket(index, now)
            ds.append(node.lookup(routing.random_id_in_bucket(index, node.rng)))
        return DeferredList(ds, consumeErrors=True).addCallback(_ignore)

    def tick(self) -> None:
        """One maintenance round (see the module docstring)."""
        node = self._node
        now = node.reactor.seconds()
        node.store.expire(now)
        if not node.listening:
            return
        routing, config = node.routing, node.config
        if len(routing) == 0:
            self.bootstrap()
            return
        if now - self._last_self_lookup >= config.self_lookup_interval:
            if len(routing) < config.k:
                self.bootstrap()
            else:
                self._last_self_lookup = now
                node.lookup(node.node_id).addErrback(_ignore)
        for stale in routing.questionable(now)[:config.max_pings]:
            node.ping(stale.addr, stale.node_id).addErrback(_ignore)
        self._refresh_one(now)
        self.refresh_buckets(only_stale=True)

    def _refresh_one(self, now: float) -> None:
        node = self._node
        routing = node.routing
        entry = routing.next_refresh(now)
        if entry is None:
            return
        peer = entry.node
        index = routing.bucket_index(peer.node_id)
        if routing.is_full(index):
            node.ping(peer.addr, peer.node_id).addErrback(_ignore)
            return
        target = routing.random_id_in_bucket(index, node.rng)
        d = node.query(peer.addr, b"find_node", {b"target": target}, peer.node_id)
        d.addCallbacks(self._learn, _ignore)

    def _learn(self, response: Response) -> None:
        """Ping the nodes ``response`` names that our table has room for."""
        node = self._node
        nodes: Any = response.values.get(b"nodes")
        if not isinstance(nodes, bytes):
            return
        now = node.reactor.seconds()
        for found in decode_nodes(nodes, limit=node.config.k):
            if node.routing.has_room(found.node_id) and node.may_query(found.host, found.port) \
                    and not node.routing.recently_failed(found.addr, now):
                node.ping(found.addr, found.node_id).addErrback(_ignore)
