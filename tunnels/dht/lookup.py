# -*- test-case-name: test.test_dht_lookup -*-
"""Iterative Kademlia lookups of BEP 5 (``find_node`` and ``get_peers``).

A lookup keeps a bounded shortlist of candidates sorted by XOR distance to the target,
keeps up to ``alpha`` queries in flight to the nearest unqueried candidates, and ends when
the ``k`` nearest candidates that have not failed have all answered (or nothing is left to
ask, or ``max_queries`` were sent).  It only needs a ``query(node, method, args)``
function, so the node (with routing-table bookkeeping) and the socket-less
:class:`~tunnels.dht.lookup_client.DHTLookupClient` share it.

Dead nodes do not hold a lookup up for long: with a ``clock``, a query unanswered after
``soft_timeout`` seconds stops counting (its slot goes to the next candidate, and the lookup
may end without it), as libtorrent's short timeout does; a reply that still comes in before
the end counts as usual.

Replies are untrusted: compact node lists are capped, nodes whose address ``accept_node``
refuses are never queried (the node passes its never-query list, address policy, own
address and recently failed addresses), ``values`` entries that are not 6-byte compact
peers or that ``accept_peer`` refuses are skipped, and the peer set is bounded.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from tunnels.dht.krpc import Address, NodeInfo, Response, decode_nodes, decode_peer, distance

QueryFn = Callable[[NodeInfo, bytes, dict[bytes, Any]], "Deferred[Response]"]
"""Sends one query to a node; the lookup adds nothing but ``method`` and ``args``."""
AddressFn = Callable[[str, int], bool]
"""``accept(host, port)``: may this address be queried (or returned as a peer)?"""

MAX_SHORTLIST = 64
MAX_PEERS = 500


@dataclass
class LookupResult:
    """What a lookup found: the ``k`` nearest nodes that answered (with the ``token`` each
    gave, for ``get_peers``), the peers from ``values``, and how many queries it sent."""

    target: bytes
    closest: list[NodeInfo] = field(default_factory=list)
    tokens: dict[bytes, bytes] = field(default_factory=dict)
    peers: list[Address] = field(default_factory=list)
    queried: int = 0
    answered: int = 0
    slow: int = 0
    """Queries the lookup stopped waiting for (soft timeout or failure)."""


class IterativeLookup:
    """One iterative lookup; call :meth:`run` once."""

    def __init__(self, query: QueryFn, target: bytes, method: bytes, args: dict[bytes, Any],
                 seeds: Sequence[NodeInfo], *, k: int = 8, alpha: int = 3, max_queries: int = 128,
                 accept_node: AddressFn = lambda host, port: True,
                 accept_peer: AddressFn = lambda host, port: True,
                 exclude_id: bytes | None = None, clock: IReactorTime | None = None,
                 soft_timeout: float = 1.0) -> None:
        if method not in (b"find_node", b"get_peers"):
            raise ValueError("lookups run find_node or get_peers")
        self._query = query
        self._clock = clock
        self._soft_timeout = soft_timeout
        self._timers: dict[bytes, IDelayedCall] = {}
        self.target = target
        self._method = method
        self._args = args
        self._k = k
        self._alpha = alpha
        self._max_queries = max_queries
        self._accept = accept_node
        self._accept_peer = accept_peer
        self._exclude = exclude_id
        self._candidates: dict[bytes, NodeInfo] = {}
        self._state: dict[bytes, str] = {}        # queried / slow / answered / failed
        self._seen_addrs: set[Address] = set()
        self._inflight = 0
        self._peers: dict[Address, None] = {}
        self.result = LookupResult(target)
        self._done: Deferred[LookupResult] | None = None
        self._pumping = False
        self._again = False
        for node in seeds:
            self._offer(node)

    def run(self) -> Deferred[LookupResult]:
        """Start; fires with the :class:`LookupResult` (never fails: an empty result means
        nobody answered)."""
        self._done = Deferred()
        self._pump()
        return self._done

    def _key(self, node_id: bytes) -> int:
        return distance(node_id, self.target)

    def _offer(self, node: NodeInfo) -> None:
        if (node.node_id in self._candidates or node.addr in self._seen_addrs
                or node.node_id == self._exclude or not self._accept(node.host, node.port)):
            return
        self._candidates[node.node_id] = node
        self._seen_addrs.add(node.addr)
        if len(self._candidates) > MAX_SHORTLIST:
            # forget the farthest candidate that is not in flight or answered
            for node_id in sorted(self._candidates, key=self._key, reverse=True):
                if self._state.get(node_id) in (None, "failed"):
                    gone = self._candidates.pop(node_id)
                    self._state.pop(node_id, None)
                    self._seen_addrs.discard(gone.addr)
                    break

    def _nearest_live(self) -> list[bytes]:
        live = [n for n in self._candidates if self._state.get(n) not in ("failed", "slow")]
        live.sort(key=self._key)
        return live[:self._k]

    def _pump(self) -> None:
        """Send queries while there is room; finish when nothing is in flight.  Not
        re-entrant: a reply that arrives synchronously only asks for another round."""
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        try:
            self._again = True
            while self._again:
                self._again = False
                if self._done is None or self._done.called:
                    return
                for node_id in self._nearest_live():
                    if self._inflight >= self._alpha or self.result.queried >= self._max_queries:
                        break
                    if node_id not in self._state:
                        self._send(self._candidates[node_id])
                        self._again = True
                        break
                if not self._again and self._inflight == 0:
                    self._finish()
        finally:
            self._pumping = False

    def _send(self, node: NodeInfo) -> None:
        self._state[node.node_id] = "queried"
        self._inflight += 1
        self.result.queried += 1
        if self._clock is not None:
            self._timers[node.node_id] = self._clock.callLater(
                self._soft_timeout, self._slow, node.node_id)
        d = self._query(node, self._method, self._args)
        d.addCallbacks(self._answered, self._failed, callbackArgs=(node,), errbackArgs=(node,))

    def _slow(self, node_id: bytes) -> None:
        """Soft timeout: free the slot and stop waiting for ``node_id``."""
        del self._timers[node_id]
        if self._state.get(node_id) == "queried":
            self._state[node_id] = "slow"
            self._inflight -= 1
            self.result.slow += 1
            self._pump()

    def _settle(self, node_id: bytes) -> bool:
        """A reply or failure for ``node_id`` arrived; whether the lookup still wants it."""
        timer = self._timers.pop(node_id, None)
        if timer is not None:
            timer.cancel()
        if self._done is None or self._done.called:
            return False
        if self._state.get(node_id) == "slow":
            self.result.slow -= 1
        else:
            self._inflight -= 1
        return True

    def _answered(self, response: Response, node: NodeInfo) -> None:
        if not self._settle(node.node_id):
            return
        if response.sender_id != node.node_id:
            # the node answered under another id (it restarted, or we seeded it from a
            # bootstrap address with a placeholder id): re-key the candidate
            self._candidates.pop(node.node_id, None)
            self._state.pop(node.node_id, None)
            node = NodeInfo(response.sender_id, node.host, node.port)
            if response.sender_id in self._state or response.sender_id == self._exclude:
                self._pump()
                return
            self._candidates[node.node_id] = node
        self._state[node.node_id] = "answered"
        self.result.answered += 1
        values = response.values
        nodes = values.get(b"nodes")
        if isinstance(nodes, bytes):
            for found in decode_nodes(nodes):
                self._offer(found)
        token = values.get(b"token")
        if isinstance(token, bytes) and len(token) <= 64:
            self.result.tokens[node.node_id] = token
        peers = values.get(b"values")
        if isinstance(peers, list):
            for item in peers[:MAX_PEERS]:
                if isinstance(item, bytes) and len(self._peers) < MAX_PEERS:
                    peer = decode_peer(item)
                    if peer is not None and self._accept_peer(*peer):
                        self._peers[peer] = None
        self._pump()

    def _failed(self, failure: Any, node: NodeInfo) -> None:
        if not self._settle(node.node_id):
            return
        self._state[node.node_id] = "failed"
        self.result.slow += 1
        self._pump()

    def _finish(self) -> None:
        assert self._done is not None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        answered = [n for n in self._candidates if self._state.get(n) == "answered"]
        answered.sort(key=self._key)
        self.result.closest = [self._candidates[n] for n in answered[:self._k]]
        self.result.tokens = {n.node_id: self.result.tokens[n.node_id]
                              for n in self.result.closest if n.node_id in self.result.tokens}
        self.result.peers = list(self._peers)
        self._done.callback(self.result)
