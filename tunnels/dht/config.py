# -*- test-case-name: test.test_dht_node -*-
"""Settings of a DHT node (frozen and validated; derive variants with ``dataclasses.replace``)."""
from __future__ import annotations

from dataclasses import dataclass

from tunnels.dht.addresses import POLICIES, AddressPolicy, never_contact
from tunnels.dht.krpc import ID_LENGTH, Address, is_ipv4

PUBLIC_ROUTERS: tuple[Address, ...] = (
    ("router.bittorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("router.utorrent.com", 6881),
    ("dht.libtorrent.org", 25401),
)
"""The well-known public bootstrap routers: the production default.  Tests, demos and
local networks must pass their own ``bootstrap`` (and ``address_policy="loopback"``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DHTConfig:
    """How a :class:`~tunnels.dht.node.DHTNode` behaves.  Times are in seconds."""

    bootstrap: tuple[Address, ...] = PUBLIC_ROUTERS
    node_id: bytes | None = None
    """Our 160-bit id; random (from :mod:`secrets`) when ``None``.  Persist it across restarts."""
    address_policy: AddressPolicy = "global"
    read_only: bool = False
    """BEP 43: set ``ro=1`` on queries and answer none (for nodes that cannot be reached)."""
    enforce_node_id: bool = False
    """BEP 42: admit to the routing table only nodes whose id matches their public IP."""
    k: int = 8
    alpha: int = 3
    query_timeout: float = 2.0
    retries: int = 1
    max_pending: int = 512
    max_lookup_queries: int = 128
    stale_after: float = 900.0
    """A node quiet this long is questionable; a bucket unchanged this long is refreshed."""
    max_failures: int = 2
    """Queries in a row a node may leave unanswered before it is evicted."""
    failed_ttl: float = 900.0
    """How long our lookups skip an address that left a query unanswered, unless it is
    heard from (other nodes, libtorrent's among them, may list a dead node for minutes)."""
    maintenance_interval: float = 5.0
    """The maintenance tick (libtorrent's): each one queries the table entry heard from
    least recently, pings questionable nodes and refreshes stale buckets."""
    self_lookup_interval: float = 600.0
    """How often we look up our own id (libtorrent: 10 minutes), so the buckets near us
    fill as the network grows; with fewer than ``k`` nodes known, it is a new bootstrap."""
    soft_timeout: float = 1.0
    """A lookup stops waiting for a node after this long (libtorrent's short timeout); a
    later reply still counts until ``query_timeout``."""
    max_refresh: int = 8
    """Bucket-refresh lookups started at once (at bootstrap and per maintenance round)."""
    max_pings: int = 8
    """Questionable nodes pinged per maintenance tick."""
    token_rotate_interval: float = 300.0
    peer_ttl: float = 1800.0
    max_keys: int = 1000
    max_peers_per_key: int = 100
    max_peers_total: int = 20000
    max_values: int = 50
    query_rate: float = 10.0
    """Queries answered per second per source prefix (/24, /48; token bucket) ..."""
    query_burst: float = 40.0
    """... with this burst."""
    upload_rate: float = 20_000.0
    """Bytes per second of replies and errors, all sources together (token bucket) ..."""
    upload_burst: float = 40_000.0
    """... with this burst."""
    max_rate_sources: int = 4096
    max_verifying: int = 32
    """Unknown nodes that queried us and are being pinged before entering the table."""
    verify_rate: float = 1.0
    """Such verification pings per second, all sources together ..."""
    verify_burst: float = 8.0
    """... with this burst."""
    version: bytes | None = b"TX\x00\x01"
    """The ``v`` field (client id and version), ``None`` to send none."""

    def __post_init__(self) -> None:
        if self.node_id is not None and (not isinstance(self.node_id, bytes)
                                         or len(self.node_id) != ID_LENGTH):
            raise ValueError("node_id must be 20 bytes")
        if self.address_policy not in POLICIES:
            raise ValueError(f"unknown address_policy {self.address_policy!r}")
        if self.k < 1 or self.alpha < 1 or self.retries < 0 or self.max_failures < 1:
            raise ValueError("k, alpha and max_failures must be >= 1, retries >= 0")
        for name in ("query_timeout", "stale_after", "failed_ttl", "maintenance_interval",
                     "self_lookup_interval", "soft_timeout", "token_rotate_interval",
                     "peer_ttl", "query_rate", "query_burst", "upload_rate", "upload_burst",
                     "verify_rate", "verify_burst"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for host, port in self.bootstrap:
            if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536 \
                    or (is_ipv4(host) and never_contact(host, port)):
                raise ValueError(f"bad bootstrap address {(host, port)!r}")
