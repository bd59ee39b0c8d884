# -*- test-case-name: test.test_dht_provider -*-
"""BitTorrent mainline DHT (BEP 5): a node, a circuit-capable lookup client, and the
``dht_provider`` interface used by hidden services.  See ``doc/dht.md``."""
from __future__ import annotations

from tunnels.dht.config import PUBLIC_ROUTERS, DHTConfig
from tunnels.dht.krpc import Address, NodeInfo
from tunnels.dht.lookup_client import DHTLookupClient
from tunnels.dht.node import DHTNode
from tunnels.dht.provider import (
    IDHTProvider, MainlineDHTProvider, MemoryDHTProvider, MemoryDHTStore)

__all__ = [
    "Address", "DHTConfig", "DHTLookupClient", "DHTNode", "IDHTProvider", "MainlineDHTProvider",
    "MemoryDHTProvider", "MemoryDHTStore", "NodeInfo", "PUBLIC_ROUTERS",
]
