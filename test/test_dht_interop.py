# -*- test-case-name: test.test_dht_interop -*-
"""Interoperability with libtorrent's DHT (the most widely deployed BEP 5 implementation).

A private libtorrent session runs in this process on 127.0.0.1 only: no bootstrap
routers, LSD/UPnP/NAT-PMP off, TCP/uTP peers off, per-IP limits lifted (every node here
shares 127.0.0.1).  Waits are bounded and failures say what libtorrent last logged.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import libtorrent as lt
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from test.util import async_test
from tunnels.dht.client import RemoteError
from tunnels.dht.krpc import decode_nodes, decode_peer
from tunnels.dht.node import DHTNode
from tunnels.dht.testing import start_local_network, stop_all
from tunnels.runtime import as_future

SAFE_SETTINGS: dict[str, Any] = {
    "listen_interfaces": "127.0.0.1:0",
    "outgoing_interfaces": "127.0.0.1",
    "enable_dht": True,
    "dht_bootstrap_nodes": "",            # the default is a public router
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_ip_notifier": False,
    "enable_incoming_tcp": False,
    "enable_outgoing_tcp": False,
    "enable_incoming_utp": False,
    "enable_outgoing_utp": False,
    "dht_restrict_routing_ips": False,    # all our nodes share 127.0.0.1
    "dht_restrict_search_ips": False,
    "dht_block_ratelimit": 100_000,       # default 5/s per IP would block 127.0.0.1
    "dht_upload_rate_limit": 10_000_000,
    "alert_mask": lt.alert.category_t.dht_notification
    | lt.alert.category_t.dht_operation_notification,
}


class LibtorrentDHT:
    """A libtorrent session used only for its DHT, with alert polling."""

    def __init__(self) -> None:
        self.session = lt.session(SAFE_SETTINGS)
        self.port: int = self.session.listen_port()
        self.addr = ("127.0.0.1", self.port)
        self.log: list[str] = []
        self.alerts: list[Any] = []

    def poll(self) -> None:
        for alert in self.session.pop_alerts():
            self.alerts.append(alert)
            self.log.append(alert.message())
            del self.log[:-20]

    async def wait_alert(self, kind: type, what: str, timeout: float = 10.0,
                         match: Any = lambda a: True) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            for alert in self.alerts:
                if isinstance(alert, kind) and match(alert):
                    self.alerts.remove(alert)
                    return alert
            await asyncio.sleep(0.05)
        raise AssertionError(f"libtorrent: no {kind.__name__} for {what} within {timeout}s; "
                             f"last alerts: {self.log[-8:]}")

    def close(self) -> None:
        del self.session


class LibtorrentInteropTests(TestCase):
    """Our node against libtorrent 2.1 on 127.0.0.1, both directions."""

    async def setup(self, count: int = 6) -> tuple[list[DHTNode], LibtorrentDHT]:
        nodes: list[DHTNode] = await as_future(start_local_network(reactor, count))
        self.addCleanup(lambda: stop_all(nodes))
        lt_dht = LibtorrentDHT()
        self.addCleanup(lt_dht.close)
        self.assertGreater(lt_dht.port, 0, "libtorrent did not listen on 127.0.0.1")
        return nodes, lt_dht

    async def introduce(self, nodes: list[DHTNode], lt_dht: LibtorrentDHT) -> bytes:
        """Make libtorrent and our nodes know each other; returns libtorrent's node id."""
        lt_id: bytes = await as_future(nodes[0].ping(lt_dht.addr))
        for node in nodes:
            lt_dht.session.add_dht_node(node.address)
            await as_future(node.ping(lt_dht.addr))
        return lt_id

    @async_test
    async def test_queries_against_libtorrent(self) -> None:
        """ping, find_node, get_peers and announce_peer from our node are answered by
        libtorrent as BEP 5 says; a wrong token is refused with error 203."""
        nodes, lt_dht = await self.setup()
        lt_id = await self.introduce(nodes, lt_dht)
        self.assertEqual(len(lt_id), 20)
        node = nodes[0]
        # find_node: compact node info of our own nodes comes back
        deadline = time.monotonic() + 10
        while True:
            resp = await as_future(node.query(lt_dht.addr, b"find_node",
                                              {b"target": nodes[3].node_id}))
            found = {n.node_id for n in decode_nodes(resp.values.get(b"nodes", b""))}
            if nodes[3].node_id in found or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        self.assertIn(nodes[3].node_id, found, "libtorrent's find_node never listed our node")
        self.assertEqual(resp.sender_id, lt_id)
        # get_peers gives a token; announce_peer with it is accepted
        info_hash = hashlib.sha1(b"interop announce to libtorrent").digest()
        resp = await as_future(node.query(lt_dht.addr, b"get_peers", {b"info_hash": info_hash}))
        token = resp.values[b"token"]
        self.assertNotIn(b"values", resp.values)
        await as_future(node.query(lt_dht.addr, b"announce_peer",
                                   {b"info_hash": info_hash, b"port": 6001, b"token": token}))
        with self.assertRaises(RemoteError) as cm:
            await as_future(node.query(lt_dht.addr, b"announce_peer",
                                       {b"info_hash": info_hash, b"port": 6002,
                                        b"token": b"wrong"}))
        self.assertEqual(cm.exception.code, 203)
        # another of our nodes now gets the stored peer from libtorrent as compact values
        resp = await as_future(nodes[4].query(lt_dht.addr, b"get_peers",
                                              {b"info_hash": info_hash}))
        self.assertEqual(resp.values.get(b"values"), [b"\x7f\x00\x00\x01\x17\x71"])  # :6001
        # implied_port: libtorrent stores our DHT port
        await as_future(node.query(lt_dht.addr, b"announce_peer",
                                   {b"info_hash": info_hash, b"port": 1, b"implied_port": 1,
                                    b"token": token}))
        resp = await as_future(nodes[4].query(lt_dht.addr, b"get_peers",
                                              {b"info_hash": info_hash}))
        peers = {decode_peer(v) for v in resp.values.get(b"values", [])}
        self.assertIn(node.address, peers)

    @async_test
    async def test_libtorrent_finds_our_announce(self) -> None:
        """A peer announced by our node is found by libtorrent's own get_peers lookup, and
        libtorrent's routing table holds our nodes."""
        nodes, lt_dht = await self.setup()
        lt_id = await self.introduce(nodes, lt_dht)
        info_hash = hashlib.sha1(b"interop: ours, found by libtorrent").digest()
        accepted = await as_future(nodes[2].announce_peer(info_hash, 6100))
        self.assertGreaterEqual(accepted, 3)
        lt_dht.session.dht_get_peers(lt.sha1_hash(info_hash))
        alert = await lt_dht.wait_alert(
            lt.dht_get_peers_reply_alert, "our announced peer",
            match=lambda a: ("127.0.0.1", 6100) in [tuple(p) for p in a.peers()])
        self.assertIn(("127.0.0.1", 6100), [tuple(p) for p in alert.peers()])
        lt_dht.session.dht_live_nodes(lt.sha1_hash(lt_id))
        live = await lt_dht.wait_alert(lt.dht_live_nodes_alert, "its routing table")
        known = {n["nid"].to_bytes() for n in live.nodes}
        ours = {n.node_id for n in nodes}
        self.assertGreaterEqual(len(known & ours), 3,
                                "libtorrent's routing table does not hold our nodes")

    @async_test
    async def test_we_find_libtorrent_announce(self) -> None:
        """A peer announced by libtorrent (dht_announce) is found by our get_peers, and our
        routing tables accept libtorrent as a node."""
        nodes, lt_dht = await self.setup()
        lt_id = await self.introduce(nodes, lt_dht)
        self.assertIn(lt_id, nodes[0].routing)
        info_hash = hashlib.sha1(b"interop: libtorrent's, found by us").digest()
        lt_dht.session.dht_announce(lt.sha1_hash(info_hash), 6200, 0)
        deadline = time.monotonic() + 10
        peers: list[tuple[str, int]] = []
        while ("127.0.0.1", 6200) not in peers and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            lt_dht.poll()
            peers = await as_future(nodes[5].get_peers(info_hash))
        self.assertIn(("127.0.0.1", 6200), peers,
                      f"libtorrent's announce never reached our nodes; log: {lt_dht.log[-8:]}")
        self.assertEqual(sum(n.stats.total_dropped for n in nodes), 0,
                         "our nodes dropped some of libtorrent's datagrams")
