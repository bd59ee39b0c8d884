# -*- test-case-name: test.test_dht_node -*-
"""A BEP 5 mainline DHT node on a Twisted UDP port.

:class:`DHTNode` ties the sans-I/O parts together: the KRPC codec
(:mod:`~tunnels.dht.krpc`), the pending-query table (:mod:`~tunnels.dht.client`), the
routing table, tokens, peer store and query handler, and the iterative lookups.
:class:`DHTProtocol` is only the adapter from a UDP port to
:meth:`DHTNode.datagram_received`.

Usage (all addresses local, as in tests)::

    node = DHTNode(reactor, DHTConfig(bootstrap=(("127.0.0.1", 6881),),
                                      address_policy="loopback"))
    await as_future(node.start(port=0, interface="127.0.0.1"))
    await as_future(node.announce_peer(info_hash, 7000))
    peers = await as_future(node.get_peers(info_hash))
"""
from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from tunnels.dht.addresses import TargetFilter, address_filter, source_key
from tunnels.dht.bep42 import id_matches_ip
from tunnels.dht.client import KRPCClient, QueryTimeout
from tunnels.dht.config import DHTConfig
from tunnels.dht.handlers import AMPLIFICATION_FACTOR, QueryHandler
from tunnels.dht.krpc import (
    ID_LENGTH, Address, ErrorCode, KRPCDecodeError, NodeInfo, Query, Response, decode_message)
from tunnels.dht.lookup import IterativeLookup, LookupResult
from tunnels.dht.maintenance import TableMaintenance
from tunnels.dht.routing import RoutingTable
from tunnels.dht.stats import DHTStats
from tunnels.dht.storage import PeerStore
from tunnels.dht.tokens import TokenManager
from tunnels.errors import DHTError
from tunnels.ratelimit import KeyedTokenBuckets, TokenBucket


class DHTProtocol(DatagramProtocol):
    """Hands every datagram to its node; nothing else."""

    def __init__(self, node: DHTNode) -> None:
        self._node = node

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802 (Twisted name)
        """Forward ``data`` from ``addr`` to the node."""
        self._node.datagram_received(data, (addr[0], addr[1]))


def check_info_hash(value: object, name: str = "info_hash") -> bytes:
    """Return ``value`` if it is a 20-byte id; ``TypeError``/``ValueError`` otherwise."""
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) != ID_LENGTH:
        raise ValueError(f"{name} must be {ID_LENGTH} bytes, got {len(value)}")
    return value


def check_port(value: object) -> int:
    """Return ``value`` if it is a UDP port 1-65535; ``TypeError``/``ValueError`` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"port must be an int, not {type(value).__name__}")
    if not 0 < value < 65536:
        raise ValueError(f"port must be 1-65535, got {value}")
    return value


class DHTNode:
    """A full BEP 5 node: answers queries, keeps a routing table, runs lookups.

    What a stranger can make it send is bounded (DESIGN.md property 14): replies and errors
    pass a token bucket per source prefix (``query_rate``/``query_burst``, see
    :func:`~tunnels.dht.addresses.source_key`) and one for all sources in bytes
    (``upload_rate``/``upload_burst``), and none is longer than
    ``AMPLIFICATION_FACTOR`` (3) times the datagram it answers.  The only other datagram a
    query can trigger is one verification ping to an unknown querier, at most
    ``verify_rate`` a second in all.
    """

    log = Logger()

    def __init__(self, reactor: Any, config: DHTConfig | None = None, *,
                 rng: random.Random | None = None) -> None:
        self._reactor = reactor
        self.config = config = config or DHTConfig()
        self.node_id: bytes = config.node_id or secrets.token_bytes(ID_LENGTH)
        self.rng = rng or random.Random(secrets.randbits(64))
        now = reactor.seconds()
        self.stats = DHTStats()
        self.targets = TargetFilter(config.address_policy)
        self.accept_peer = address_filter(config.address_policy)
        self.routing = RoutingTable(self.node_id, now, k=config.k, stale_after=config.stale_after,
                                    max_failures=config.max_failures,
                                    failed_ttl=config.failed_ttl)
        self.tokens = TokenManager(now, rotate_interval=config.token_rotate_interval)
        self.store = PeerStore(ttl=config.peer_ttl, max_keys=config.max_keys,
                               max_peers_per_key=config.max_peers_per_key,
                               max_peers_total=config.max_peers_total, rng=self.rng)
        self.handler = QueryHandler(self.node_id, self.routing, self.tokens, self.store,
                                    version=config.version, max_values=config.max_values)
        self.limiter = KeyedTokenBuckets(config.query_rate, config.query_burst,
                                         config.max_rate_sources)
        self.upload = TokenBucket(config.upload_rate, config.upload_burst, now)
        self._verify_budget = TokenBucket(config.verify_rate, config.verify_burst, now)
        self.client = KRPCClient(reactor, self._write, stats=self.stats,
                                 timeout=config.query_timeout, retries=config.retries,
                                 max_pending=config.max_pending, version=config.version,
                                 read_only=config.read_only, may_send=self.targets.sendable)
        self.maintenance = TableMaintenance(self)
        self._port: IListeningPort | None = None
        self._verifying: set[Address] = set()

    # -- lifecycle -----------------------------------------------------------
    @property
    def reactor(self) -> Any:
        """The reactor this node runs on."""
        return self._reactor

    @property
    def listening(self) -> bool:
        """Whether the UDP port is open."""
        return self._port is not None

    @property
    def address(self) -> Address:
        """The ``(host, port)`` we listen on; ``DHTError`` if not listening."""
        if self._port is None:
            raise DHTError("DHT node is not listening")
        a = self._port.getHost()
        return (a.host, a.port)  # type: ignore[attr-defined]

    @property
    def node_info(self) -> NodeInfo:
        """Our own id and address."""
        host, port = self.address
        return NodeInfo(self.node_id, host, port)

    def listen(self, port: int = 0, interface: str = "") -> IListeningPort:
        """Bind the UDP port (``interface`` ``""`` means all; tests pass ``"127.0.0.1"``)."""
        if self._port is not None:
            raise DHTError("DHT node is already listening")
        # read whole datagrams (Twisted would cut at 8192 bytes), then drop oversized ones
        self._port = self._reactor.listenUDP(port, DHTProtocol(self), interface=interface,
                                             maxPacketSize=65535)
        self.targets.set_own(interface, self.address[1])
        return self._port

    def start(self, port: int = 0, interface: str = "") -> Deferred[int]:
        """Listen, start periodic maintenance, and bootstrap.

        Fires with the routing table size after the first bootstrap (which may be 0 if no
        bootstrap node answered: maintenance keeps trying).
        """
        self.listen(port, interface)
        self.maintenance.start()
        return self.bootstrap()

    def stop(self) -> Deferred[None]:
        """Stop maintenance, fail pending queries and close the port."""
        self.maintenance.stop()
        port, self._port = self._port, None
        self.client.close()
        if port is None:
            return succeed(None)
        d = port.stopListening()
        return d if isinstance(d, Deferred) else succeed(None)

    # -- packet path ---------------------------------------------------------
    def _write(self, data: bytes, addr: Address) -> None:
        if self._port is None:
            raise DHTError("DHT node is not listening")
        self._port.write(data, addr)  # type: ignore[attr-defined]  # an IUDPTransport

    def _answer(self, data: bytes, addr: Address, now: float) -> bool:
        """Send a reply or error if the upload budget has room; never raises."""
        if not self.upload.take(now, len(data)):
            self.stats.drop("upload_limited")
            return False
        try:
            self._write(data, addr)
        except Exception:  # unreachable or invalid address: count, never raise
            self.stats.send_failures += 1
            return False
        self.stats.sent += 1
        return True

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """Handle one datagram: answer a query, or feed a reply to the pending table.

        Never raises; anything that is not valid KRPC is dropped and counted in
        :attr:`stats` (``dropped[reason]``).
        """
        self.stats.received += 1
        now = self._reactor.seconds()
        try:
            msg = decode_message(data)
        except KRPCDecodeError as e:
            self.stats.drop(e.reason)
            if e.is_query and e.tid is not None and not self.config.read_only \
                    and self.limiter.take(source_key(*addr), now):
                error = self.handler.error(e.tid, ErrorCode.PROTOCOL, "invalid query",
                                           AMPLIFICATION_FACTOR * len(data))
                if error is not None and self._answer(error, addr, now):
                    self.stats.errors_sent += 1
            return
        if not isinstance(msg, Query):
            self.client.handle_reply(msg, addr)
            return
        self.stats.queries_received += 1
        if self.config.read_only:
            self.stats.drop("read_only")
            return
        if not self.limiter.take(source_key(*addr), now):
            self.stats.drop("rate_limited")
            return
        reply = self.handler.handle(msg, addr, now, len(data))
        if reply is None:
            self.stats.drop("unanswerable")
        else:
            self._answer(reply, addr, now)
        if not msg.read_only and self.admit(msg.sender_id, addr) \
                and self.routing.note_query(msg.sender_id, addr, now):
            self._verify(addr, now)

    def may_query(self, host: str, port: int) -> bool:
        """Whether a learned address may be queried: the address policy, never our own
        address nor one on the never-query list (:mod:`tunnels.dht.addresses`)."""
        return self.targets(host, port)

    def admit(self, node_id: bytes, addr: Address) -> bool:
        """May a node with ``node_id`` at ``addr`` enter the routing table?  It must be
        a :meth:`may_query` address, and with ``enforce_node_id`` its id must follow BEP 42."""
        if not self.targets(*addr):
            return False
        if self.config.enforce_node_id and not id_matches_ip(node_id, addr[0]):
            self.stats.drop("bep42_id")
            return False
        return True

    def _verify(self, addr: Address, now: float) -> None:
        """Ping an unknown node that queried us; its answer puts it in the table."""
        if addr in self._verifying or len(self._verifying) >= self.config.max_verifying:
            return
        if not self._verify_budget.take(now):
            self.stats.drop("verify_limited")
            return
        self._verifying.add(addr)
        d = self.ping(addr)
        d.addErrback(lambda _: None)
        d.addBoth(lambda _: self._verifying.discard(addr))

    # -- queries with routing-table bookkeeping --------------------------------
    def query(self, addr: Address, method: bytes, args: dict[bytes, Any],
              node_id: bytes | None = None) -> Deferred[Response]:
        """Send one query (``id`` is added) and update the routing table with the outcome.

        Fails with :class:`DHTError` without sending if ``addr`` is our own or on the
        never-query list.
        """
        full = dict(args)
        full[b"id"] = self.node_id
        d = self.client.query(addr, method, full)

        def answered(resp: Response) -> Response:
            if self.admit(resp.sender_id, addr):
                pings = self.routing.note_response(NodeInfo(resp.sender_id, addr[0], addr[1]),
                                                   self._reactor.seconds())
                for node in pings[:2]:
                    self.ping(node.addr, node.node_id).addErrback(lambda _: None)
            return resp

        def failed(f: Failure) -> Failure:
            if f.check(QueryTimeout):  # type: ignore[no-untyped-call]
                self.routing.note_failure(node_id, addr, self._reactor.seconds())
            return f

        return d.addCallbacks(answered, failed)

    def _query_node(self, node: NodeInfo, method: bytes, args: dict[bytes, Any]
                    ) -> Deferred[Response]:
        return self.query(node.addr, method, args, node.node_id)

    def _lookup_target(self, host: str, port: int) -> bool:
        return self.targets(host, port) and not self.routing.recently_failed(
            (host, port), self._reactor.seconds())

    def ping(self, addr: Address, node_id: bytes | None = None) -> Deferred[bytes]:
        """Ping ``addr`` (believed to be ``node_id``); fires with the id it answers with."""
        return self.query(addr, b"ping", {}, node_id).addCallback(lambda r: r.sender_id)

    def lookup(self, target: bytes, method: bytes = b"find_node",
               seeds: Sequence[NodeInfo] | None = None) -> Deferred[LookupResult]:
        """Run one iterative lookup for ``target`` from the routing table (or ``seeds``).

        It never queries our own address, an address outside the policy or on the
        never-query list, nor one that failed to answer within ``failed_ttl`` seconds.
        """
        args = {b"target": target} if method == b"find_node" else {b"info_hash": target}
        start = list(seeds) if seeds is not None else self.routing.closest(
            target, self.config.k * 2)
        return IterativeLookup(self._query_node, target, method, args, start, k=self.config.k,
                               alpha=self.config.alpha,
                               max_queries=self.config.max_lookup_queries,
                               accept_node=self._lookup_target, accept_peer=self.accept_peer,
                               exclude_id=self.node_id, clock=self._reactor,
                               soft_timeout=self.config.soft_timeout).run()

    def find_node(self, target: bytes) -> Deferred[list[NodeInfo]]:
        """The ``k`` nodes nearest ``target`` that answered an iterative ``find_node``."""
        check_info_hash(target, "target")
        return self.lookup(target).addCallback(lambda r: r.closest)

    def get_peers(self, info_hash: bytes) -> Deferred[list[Address]]:
        """Peers announced for ``info_hash`` anywhere in the DHT (iterative ``get_peers``).

        Our own store is included, so a node finds what was announced to itself.
        """
        check_info_hash(info_hash)
        own = self.store.get(info_hash, self._reactor.seconds())

        def merge(result: LookupResult) -> list[Address]:
            if not result.answered and not own:
                raise DHTError(f"DHT lookup failed: none of {result.queried} nodes answered")
            peers = dict.fromkeys(own)
            peers.update(dict.fromkeys(result.peers))
            return list(peers)
        return self.lookup(info_hash, b"get_peers").addCallback(merge)

    def announce_peer(self, info_hash: bytes, port: int | None = None, *,
                      implied_port: bool = False) -> Deferred[int]:
        """Announce that we serve ``info_hash`` on ``port`` (or our DHT port with
        ``implied_port``) to the ``k`` nearest nodes; fires with how many accepted.

        Fails with :class:`DHTError` if no node accepted.
        """
        check_info_hash(info_hash)
        if port is None and not implied_port:
            raise ValueError("give a port or implied_port=True")
        if port is not None:
            check_port(port)

        def announce(result: LookupResult) -> Deferred[int]:
            targets = [n for n in result.closest if n.node_id in result.tokens]
            if not targets:
                raise DHTError("announce failed: no DHT node answered get_peers")
            args: dict[bytes, Any] = {b"info_hash": info_hash,
                                      b"port": port if port is not None else self.address[1]}
            if implied_port:
                args[b"implied_port"] = 1
            ds = [self._query_node(n, b"announce_peer",
                                   {**args, b"token": result.tokens[n.node_id]})
                  for n in targets]

            def count(results: list[tuple[bool, Any]]) -> int:
                accepted = sum(1 for ok, _ in results if ok)
                if not accepted:
                    raise DHTError(f"announce failed: all {len(results)} nodes refused")
                return accepted
            return DeferredList(ds, consumeErrors=True).addCallback(count)
        return self.lookup(info_hash, b"get_peers").addCallback(announce)

    # -- bootstrap and maintenance (tunnels.dht.maintenance) ----------------------
    def bootstrap(self) -> Deferred[int]:
        """See :meth:`TableMaintenance.bootstrap`."""
        return self.maintenance.bootstrap()

    def refresh_buckets(self, only_stale: bool = False) -> Deferred[None]:
        """See :meth:`TableMaintenance.refresh_buckets`."""
        return self.maintenance.refresh_buckets(only_stale)

    def maintain(self) -> None:
        """Run one maintenance tick now (see :mod:`tunnels.dht.maintenance`)."""
        self.maintenance.tick()
