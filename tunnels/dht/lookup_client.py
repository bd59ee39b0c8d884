# -*- test-case-name: test.test_dht_lookup_client -*-
"""A socket-less, read-only DHT lookup client, for lookups through an anonymous circuit.

A hidden-service seeker must never let its own IP touch the DHT.  :class:`DHTLookupClient`
runs the same KRPC client and iterative lookup code as :class:`~tunnels.dht.node.DHTNode`,
but writes every datagram through a ``send(data, addr)`` callable supplied by the caller
(later: a circuit to an exit that sends it as UDP) and is fed the replies through
:meth:`DHTLookupClient.datagram_received`.  It owns no port, answers no queries, and
marks its queries read-only (BEP 43 ``ro=1``) so no DHT node puts the exit in its routing
table.

Unlinkability: every lookup uses a fresh random node id and fresh transaction ids, and no
``v`` (client version) field is sent unless asked for, so DHT nodes cannot tell that two
lookups came from the same client, nor which software made them.

Seeds: a lookup starts from ``seeds`` (addresses or :class:`~tunnels.dht.krpc.NodeInfo`,
or a callable ``seeds(target)`` returning them, e.g. the closest nodes of a local
:class:`DHTNode`'s routing table, which costs no I/O) plus up to ``cache_size`` nodes
that answered earlier lookups.

Example, with a plain UDP port standing in for the circuit::

    client = DHTLookupClient(reactor, port.write, seeds=[("127.0.0.1", 6881)],
                             address_policy="loopback")
    protocol.datagramReceived = client.datagram_received   # replies go back in
    peers = await as_future(client.get_peers(info_hash))
"""
from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredList

from tunnels.dht.addresses import AddressPolicy, address_filter, never_contact
from tunnels.dht.client import KRPCClient, SendFn
from tunnels.dht.krpc import (
    ID_LENGTH, Address, KRPCDecodeError, NodeInfo, Query, Response, decode_message)
from tunnels.dht.lookup import IterativeLookup, LookupResult
from tunnels.dht.node import check_info_hash, check_port
from tunnels.dht.stats import DHTStats
from tunnels.errors import DHTError

Seed = NodeInfo | Address
Seeds = Sequence[Seed] | Callable[[bytes], Sequence[Seed]]


def _placeholder(addr: Address) -> NodeInfo:
    """A seed known only by address gets a stable stand-in id until it answers."""
    digest = hashlib.sha1(f"seed:{addr[0]}:{addr[1]}".encode()).digest()
    return NodeInfo(digest, addr[0], addr[1])


class DHTLookupClient:
    """Iterative ``get_peers``/``find_node`` (and token-based ``announce_peer``) through an
    external sender."""

    def __init__(self, reactor: Any, send: SendFn, seeds: Seeds, *, k: int = 8, alpha: int = 3,
                 timeout: float = 5.0, retries: int = 1, max_pending: int = 256,
                 max_queries: int = 128, cache_size: int = 64, soft_timeout: float = 2.0,
                 address_policy: AddressPolicy = "global", version: bytes | None = None) -> None:
        self._reactor = reactor
        self._soft_timeout = soft_timeout
        self._seeds = seeds
        self._k = k
        self._alpha = alpha
        self._max_queries = max_queries
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, NodeInfo] = OrderedDict()
        self.accept_address = address_filter(address_policy)
        self.stats = DHTStats()
        self.client = KRPCClient(reactor, send, stats=self.stats, timeout=timeout,
                                 retries=retries, max_pending=max_pending, version=version,
                                 read_only=True,
                                 may_send=lambda host, port: not never_contact(host, port))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Feed one datagram that came back (through the circuit) from ``addr``.

        Never raises; anything but a reply to a live query of ours is dropped and counted.
        """
        self.stats.received += 1
        try:
            msg = decode_message(data)
        except KRPCDecodeError as e:
            self.stats.drop(e.reason)
            return
        if isinstance(msg, Query):
            self.stats.drop("query_to_client")
            return
        self.client.handle_reply(msg, (addr[0], addr[1]))

    def _seed_nodes(self, target: bytes) -> list[NodeInfo]:
        raw = self._seeds(target) if callable(self._seeds) else self._seeds
        nodes = [s if isinstance(s, NodeInfo) else _placeholder((s[0], s[1])) for s in raw]
        return nodes + list(self._cache.values())

    def lookup(self, target: bytes, method: bytes = b"get_peers") -> Deferred[LookupResult]:
        """One iterative lookup under a fresh node id; fails with :class:`DHTError` if no
        seed is known or no node answered."""
        check_info_hash(target, "target")
        seeds = self._seed_nodes(target)
        if not seeds:
            return _fail(DHTError("no DHT nodes to start a lookup from"))
        own_id = secrets.token_bytes(ID_LENGTH)
        args = {b"target": target} if method == b"find_node" else {b"info_hash": target}

        def query(node: NodeInfo, m: bytes, a: dict[bytes, Any]) -> Deferred[Response]:
            return self.client.query(node.addr, m, {**a, b"id": own_id})

        def done(result: LookupResult) -> LookupResult:
            if not result.answered:
                raise DHTError(f"DHT lookup failed: none of {result.queried} nodes answered")
            for node in result.closest:
                self._cache.pop(node.node_id, None)
                self._cache[node.node_id] = node
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return result
        return IterativeLookup(query, target, method, args, seeds, k=self._k, alpha=self._alpha,
                               max_queries=self._max_queries, accept_node=self.accept_address,
                               accept_peer=self.accept_address, clock=self._reactor,
                               soft_timeout=self._soft_timeout).run().addCallback(done)

    def get_peers(self, info_hash: bytes) -> Deferred[list[Address]]:
        """Peers announced for ``info_hash``."""
        return self.lookup(info_hash, b"get_peers").addCallback(lambda r: r.peers)

    def find_node(self, target: bytes) -> Deferred[list[NodeInfo]]:
        """The ``k`` nodes nearest ``target`` that answered."""
        return self.lookup(target, b"find_node").addCallback(lambda r: r.closest)

    def announce_peer(self, info_hash: bytes, port: int) -> Deferred[int]:
        """Announce ``port`` at the sender's *exit* address (tokens are tied to the IP the
        nodes see); fires with how many nodes accepted, :class:`DHTError` if none."""
        check_port(port)

        def announce(result: LookupResult) -> Deferred[int]:
            targets = [n for n in result.closest if n.node_id in result.tokens]
            if not targets:
                raise DHTError("announce failed: no node gave a token")
            own_id = secrets.token_bytes(ID_LENGTH)
            ds = [self.client.query(n.addr, b"announce_peer",
                                    {b"id": own_id, b"info_hash": info_hash, b"port": port,
                                     b"token": result.tokens[n.node_id]}) for n in targets]

            def count(results: list[tuple[bool, Any]]) -> int:
                accepted = sum(1 for ok, _ in results if ok)
                if not accepted:
                    raise DHTError("announce failed: every node refused")
                return accepted
            return DeferredList(ds, consumeErrors=True).addCallback(count)
        return self.lookup(info_hash, b"get_peers").addCallback(announce)

    def close(self) -> None:
        """Cancel every pending query (their lookups then finish with what they have)."""
        self.client.close()


def _fail(err: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(err)
    return d
