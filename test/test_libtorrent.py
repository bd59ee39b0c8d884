"""An unmodified libtorrent 2.1.1 downloads a torrent through circuits (the issue's user story).

A seeder on 127.0.0.1; a downloader whose only way to peers is our SOCKS5 front end (TCP off,
uTP on); 8 MiB through 1- and 3-hop circuits of a local network.  The file's hash must match,
and the seeder must only ever see peers at our exits' sockets.
"""
from __future__ import annotations

import tempfile

from twisted.internet import reactor

from tunnels.socks5 import Socks5Server
from tunnels.testnet import torrents
from test.netcase import NetworkTestCase
from test.util import async_test, wait_for

SIZE = 8 * 1024 * 1024
DOWNLOAD_TIMEOUT = 60.0
"""Seconds a download may take on a loaded machine (about 3-5 s on a quiet one)."""


class LibtorrentTests(NetworkTestCase):
    timeout = 180

    @async_test
    async def test_download_through_1_and_3_hops(self) -> None:
        """The file arrives whole (same SHA-256) through 1 and 3 hops; every peer the seeder saw
        was one of our exit sockets; the SOCKS5 front end carried the datagrams both ways."""
        seed_dir = tempfile.mkdtemp(dir=".")
        info, digest = torrents.make_torrent(seed_dir, SIZE)
        seeder, seeding, seed_port = torrents.start_seeder(seed_dir, info)
        sessions = [seeder]   # deleting a session can block in its shutdown: keep them to the end
        for hops in (1, 3):
            server = Socks5Server(reactor, self.client, hops)
            server.start()
            self.addCleanup(server.stop)
            listening = reactor.listenTCP(0, server, interface="127.0.0.1")
            self.addCleanup(listening.stopListening)
            await wait_for(lambda h=hops: self.client.tunnels_ready(h) >= 1.0, 20, what=f"{hops}-hop circuits")
            download_dir = tempfile.mkdtemp(dir=".")
            session, handle = torrents.start_downloader(download_dir, info, ("127.0.0.1", listening.getHost().port))
            sessions.append(session)
            handle.connect_peer(("127.0.0.1", seed_port))
            exit_ports: set[int] = set()
            peer_ports: set[int] = set()

            def note_exit_ports() -> bool:
                exit_ports.update(port.getHost().port for node in self.net.exits
                                  for jc in node.community.joined_circuits if jc.exit is not None
                                  for flow in jc.exit.sockets.values()
                                  for port in flow.ports.values() if port is not None)
                peer_ports.update(peer.ip[1] for peer in seeding.get_peer_info())
                return handle.status().is_seeding
            await wait_for(note_exit_ports, DOWNLOAD_TIMEOUT, interval=0.05, what=f"the download via {hops} hops")
            self.assertEqual(torrents.file_digest(download_dir), digest)
            self.assertTrue(peer_ports)
            self.assertLessEqual(peer_ports, exit_ports, f"{hops} hops: the seeder saw a peer not at an exit")
            self.assertGreater(server.stats["sent"], 0)
            self.assertGreater(server.stats["delivered"], SIZE // 1500)
            session.pause()
        seeder.pause()
