# -*- test-case-name: test.test_dht_network -*-
"""A local DHT of N nodes on 127.0.0.1, for tests, the demo and local test networks.

Every node binds 127.0.0.1 only, bootstraps only from nodes of the same network, and uses
``address_policy="loopback"``, so nothing a packet says can make it contact another host.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks

from tunnels.dht.config import DHTConfig
from tunnels.dht.node import DHTNode

LOCAL_CONFIG = DHTConfig(
    bootstrap=(),
    address_policy="loopback",
    query_timeout=0.5,
    soft_timeout=0.25,
    retries=1,
    query_rate=100_000.0,      # lookups in tests query one node many times a second
    query_burst=100_000.0,
    upload_rate=10_000_000.0,
    upload_burst=10_000_000.0,
    verify_rate=1000.0,
    verify_burst=1000.0,
    maintenance_interval=1.0,
    self_lookup_interval=10.0,
    stale_after=60.0,
)
"""Settings for nodes of a local network: loopback only, short timeouts, limits lifted,
maintenance sped up (a tick a second, a self-lookup every 10 s, questionable after 60 s)."""


@inlineCallbacks
def start_local_network(reactor: Any, count: int, config: DHTConfig = LOCAL_CONFIG,
                        **overrides: Any) -> Any:
    """Start ``count`` nodes on 127.0.0.1 and let them learn each other.

    Node 0 starts alone; the others bootstrap from node 0 and the previous node, a few at a
    time; finally every node looks up its own id and refreshes its buckets once more, so early
    nodes learn late ones.
    Fires with the list of nodes.
    """
    base = dataclasses.replace(config, **overrides) if overrides else config
    first = DHTNode(reactor, dataclasses.replace(base, bootstrap=()))
    yield first.start(0, "127.0.0.1")
    nodes = [first]
    batch = 5
    for start in range(1, count, batch):
        new = []
        for _ in range(start, min(count, start + batch)):
            seeds = (first.address, nodes[-1].address)
            new.append(DHTNode(reactor, dataclasses.replace(base, bootstrap=seeds)))
        yield DeferredList([n.start(0, "127.0.0.1") for n in new])
        nodes.extend(new)
    yield DeferredList([n.find_node(n.node_id) for n in nodes], consumeErrors=True)
    yield DeferredList([n.refresh_buckets() for n in nodes], consumeErrors=True)
    return nodes


def stop_all(nodes: list[DHTNode]) -> Deferred[Any]:
    """Stop every node."""
    return DeferredList([n.stop() for n in nodes], consumeErrors=True)
