# -*- test-case-name: test.test_dht_node -*-
"""Settings of a DHT node (frozen and validated; derive variants with ``dataclasses.replace``)."""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tunnels.dht.krpc import ID_LENGTH, Address

PUBLIC_ROUTERS: tuple[Address, ...] = (
    ("router.bittorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("router.utorrent.com", 6881),
    ("dht.libtorrent.org", 25401),
)
"""The well-known public bootstrap routers: the production default.  Tests, demos and
local networks must pass their own ``bootstrap`` (and ``address_policy="loopback"``)."""

AddressPolicy = Literal["any", "global", "loopback"]
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def address_filter(policy: AddressPolicy) -> Callable[[str], bool]:
    """The predicate deciding which learned node and peer addresses are ever contacted or
    returned: ``"global"`` (public unicast only, the default: a reply cannot make us probe
    private networks), ``"loopback"`` (127.0.0.0/8 only: tests and local networks, so
    nothing can lead them off the machine) or ``"any"``."""
    def accept(host: str) -> bool:
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            return False
        if policy == "loopback":
            return ip.is_loopback
        if policy == "global":
            return ip.is_global and not ip.is_multicast
        return not (ip.is_unspecified or ip.is_multicast or ip == _BROADCAST)
    return accept


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
    maintenance_interval: float = 60.0
    max_refresh: int = 8
    """Bucket-refresh lookups started at once (at bootstrap and per maintenance round)."""
    token_rotate_interval: float = 300.0
    peer_ttl: float = 1800.0
    max_keys: int = 1000
    max_peers_per_key: int = 100
    max_peers_total: int = 20000
    max_values: int = 50
    query_rate: float = 10.0
    """Incoming queries allowed per second per source IP (token bucket) ..."""
    query_burst: float = 40.0
    """... with this burst."""
    max_rate_sources: int = 4096
    max_verifying: int = 32
    """Unknown nodes that queried us and are being pinged before entering the table."""
    version: bytes | None = b"TX\x00\x01"
    """The ``v`` field (client id and version), ``None`` to send none."""

    def __post_init__(self) -> None:
        if self.node_id is not None and (not isinstance(self.node_id, bytes)
                                         or len(self.node_id) != ID_LENGTH):
            raise ValueError("node_id must be 20 bytes")
        if self.address_policy not in ("any", "global", "loopback"):
            raise ValueError(f"unknown address_policy {self.address_policy!r}")
        if self.k < 1 or self.alpha < 1 or self.retries < 0 or self.max_failures < 1:
            raise ValueError("k, alpha and max_failures must be >= 1, retries >= 0")
        for name in ("query_timeout", "stale_after", "maintenance_interval",
                     "token_rotate_interval", "peer_ttl", "query_rate", "query_burst"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for host, port in self.bootstrap:
            if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"bad bootstrap address {(host, port)!r}")
