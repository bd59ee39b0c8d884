# -*- test-case-name: test.test_dht_provider -*-
"""The ``dht_provider`` interface used by hidden services, and two implementations.

* :class:`IDHTProvider` — ``lookup(key) -> Deferred[list[(host, port)]]`` and
  ``announce(key, port) -> Deferred[None]``.  ``key`` is a 20-byte info hash (the hidden
  service layer derives it from the service id); bad arguments raise ``TypeError`` or
  ``ValueError`` *before any I/O*; every asynchronous failure is a
  :class:`~tunnels.errors.DHTError`.
* :class:`MainlineDHTProvider` — on a :class:`~tunnels.dht.node.DHTNode`; lookups can be
  switched to a :class:`~tunnels.dht.lookup_client.DHTLookupClient` that sends through
  any ``send(data, addr)`` (an anonymous circuit), see :meth:`MainlineDHTProvider.use_sender`.
* :class:`MemoryDHTProvider` — for unit tests: providers built on one
  :class:`MemoryDHTStore` see each other's announces, with no network at all.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from tunnels.dht.client import SendFn
from tunnels.dht.krpc import Address
from tunnels.dht.lookup_client import DHTLookupClient
from tunnels.dht.node import DHTNode, check_info_hash, check_port
from tunnels.errors import DHTError


class IDHTProvider(Interface):
    """Where hidden-service introduction points are announced and found."""

    def lookup(key: bytes) -> Deferred[list[Address]]:
        """Peers announced under the 20-byte ``key`` (possibly none).

        Raises ``TypeError``/``ValueError`` for a bad key before any I/O; the Deferred fails
        with :class:`~tunnels.errors.DHTError`.
        """

    def announce(key: bytes, port: int) -> Deferred[None]:
        """Announce that this host serves ``key`` on UDP ``port`` (1-65535).

        Raises ``TypeError``/``ValueError`` for bad arguments before any I/O; the Deferred
        fails with :class:`~tunnels.errors.DHTError`.
        """


def _as_dht_error(f: Failure, what: str) -> Failure:
    if f.check(DHTError):  # type: ignore[no-untyped-call]
        return f
    err = DHTError(f"{what} failed: {f.getErrorMessage()}")
    return Failure(err)  # type: ignore[no-untyped-call]


@implementer(IDHTProvider)
class MainlineDHTProvider:
    """:class:`IDHTProvider` on the BitTorrent mainline DHT through our own node."""

    def __init__(self, node: DHTNode, *, lookup_client: DHTLookupClient | None = None) -> None:
        self.node = node
        self.lookup_client = lookup_client

    def use_sender(self, send: SendFn, **options: Any) -> DHTLookupClient:
        """From now on, run lookups through ``send(data, addr)`` instead of the node's port.

        Returns the :class:`DHTLookupClient`; the caller must feed every datagram that
        comes back to its ``datagram_received(data, addr)``.  Lookups are seeded from the
        node's routing table (no I/O), so the DHT never sees the node's IP in a lookup.
        ``options`` go to :class:`DHTLookupClient` (``timeout``, ``address_policy`` ...);
        ``address_policy`` defaults to the node's.
        """
        options.setdefault("address_policy", self.node.config.address_policy)
        options.setdefault("k", self.node.config.k)
        client = DHTLookupClient(self.node.reactor, send,
                                 lambda target: self.node.routing.closest(target, 16), **options)
        self.lookup_client = client
        return client

    def lookup(self, key: bytes) -> Deferred[list[Address]]:
        """See :meth:`IDHTProvider.lookup`."""
        check_info_hash(key, "key")
        source = self.lookup_client if self.lookup_client is not None else self.node
        try:
            d = source.get_peers(key)
        except DHTError:
            return fail()
        return d.addErrback(_as_dht_error, "DHT lookup")

    def announce(self, key: bytes, port: int) -> Deferred[None]:
        """See :meth:`IDHTProvider.announce` (always from the node itself: an intro point
        announces its own public address)."""
        check_info_hash(key, "key")
        check_port(port)
        try:
            d = self.node.announce_peer(key, port)
        except DHTError:
            return fail()
        return d.addCallbacks(lambda _: None, _as_dht_error, errbackArgs=("DHT announce",))


class MemoryDHTStore:
    """The shared "DHT" of :class:`MemoryDHTProvider` instances: ``key -> [addresses]``.

    ``fail_next`` makes the next lookup or announce fail with :class:`DHTError`, so tests
    can exercise error paths.
    """

    def __init__(self) -> None:
        self.peers: dict[bytes, list[Address]] = {}
        self.fail_next: int = 0

    def _maybe_fail(self) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise DHTError("simulated DHT failure")


@implementer(IDHTProvider)
class MemoryDHTProvider:
    """:class:`IDHTProvider` on a :class:`MemoryDHTStore`, announcing as ``host``."""

    def __init__(self, store: MemoryDHTStore, host: str = "127.0.0.1") -> None:
        self.store = store
        self.host = host

    def lookup(self, key: bytes) -> Deferred[list[Address]]:
        """See :meth:`IDHTProvider.lookup`."""
        check_info_hash(key, "key")
        try:
            self.store._maybe_fail()
        except DHTError:
            return fail()
        return succeed(list(self.store.peers.get(key, [])))

    def announce(self, key: bytes, port: int) -> Deferred[None]:
        """See :meth:`IDHTProvider.announce`."""
        check_info_hash(key, "key")
        check_port(port)
        try:
            self.store._maybe_fail()
        except DHTError:
            return fail()
        peers = self.store.peers.setdefault(key, [])
        if (self.host, port) not in peers:
            peers.append((self.host, port))
        return succeed(None)
