"""A real client: an unmodified libtorrent downloads a torrent through 1, 2 and 3 hops.

A libtorrent seeder on 127.0.0.1 and a downloader whose only way to peers is the implementation's
SOCKS5 UDP front end on its client node (TCP off, uTP on, as Tribler-like applications set it):
ours (``tunnels.socks5``) or, for pyipv8, the Rust endpoint's own SOCKS5 server (Tribler's stack).
Figures: MB/s of the download (torrent size / time from connecting to the seeder to having every
piece) and its share of a direct download (same sessions' settings, no proxy) on the same machine;
the same download through our SOCKS5 front end with no circuits behind it
(``bench/impls/socks5_direct_node.py``), the ceiling libtorrent's proxied uTP leaves for any tunnel;
and the cells one datagram of 1,200 / 1,400 / 1,472 bytes costs on every link.

The libtorrent sessions run in the benchmark's own process (its threads, beside the node processes).
"""
import statistics
import tempfile
import time

from bench.harness import log
from bench.impls.base import Unsupported
from tunnels.testnet import torrents

MiB = 1024 * 1024
CONFIG = {"quick": {"lt_size": 8 * MiB, "lt_timeout": 120.0}, "full": {"lt_size": 32 * MiB, "lt_timeout": 300.0}}
DATAGRAM_SIZES = (1200, 1400, 1472)


def download(info, seed_port, proxy, timeout, keep):
    """One download of ``info`` from the seeder, through ``proxy`` or directly; seconds taken."""
    directory = tempfile.mkdtemp(prefix="txtunnels-bench-lt-")
    session, handle = torrents.start_downloader(directory, info, proxy)
    keep.append(session)   # deleting a session may block in its shutdown: keep it, paused
    try:
        start = time.monotonic()
        handle.connect_peer(("127.0.0.1", seed_port))
        while not handle.status().is_seeding:
            if time.monotonic() - start > timeout:
                raise RuntimeError("download at %.1f%% after %.0f s" % (handle.status().progress * 100, timeout))
            time.sleep(0.02)
        return time.monotonic() - start
    finally:
        session.pause()


def run(ctx):
    adapters, res, cfg = ctx.adapters, ctx.res, ctx.cfg
    for size in DATAGRAM_SIZES:
        for name, a in adapters.items():
            try:
                res.add("cells per datagram, %d B" % size, "cells", "lower", name, a.cells_per_datagram(size))
            except Unsupported:
                continue
    users = {name: a for name, a in adapters.items() if "libtorrent" in a.scenarios}
    if not users:
        return
    seed_dir = tempfile.mkdtemp(prefix="txtunnels-bench-seed-")
    info, digest = torrents.make_torrent(seed_dir, cfg["lt_size"])
    seeder, _, seed_port = torrents.start_seeder(seed_dir, info)
    keep = [seeder]
    mb = cfg["lt_size"] / 1e6
    direct = []
    for run in range(cfg["runs"]):
        log("libtorrent direct (run %d)", run + 1)
        direct.append(mb / download(info, seed_port, None, cfg["lt_timeout"], keep))
    direct_mbps = statistics.median(direct)
    relay = ctx.cluster.start("socks5-direct", "bench.impls.socks5_direct_node")
    floor = []
    try:
        for run in range(cfg["runs"]):
            log("libtorrent through a SOCKS5 relay without circuits (run %d)", run + 1)
            floor.append(mb / download(info, seed_port, relay.addr, cfg["lt_timeout"], keep))
    finally:
        ctx.cluster.remove(relay)
    for name in users:
        for value in direct:
            res.add("libtorrent direct (no tunnel)", "MB/s", "higher", name, value)
        for value in floor:
            res.add("libtorrent via SOCKS5, no circuits", "MB/s", "higher", name, value)
    for hops in (1, 2, 3):
        label = "%d hop%s" % (hops, "s" if hops > 1 else "")
        for run in range(cfg["runs"]):
            for name, a in users.items():
                log("libtorrent %s: %s (run %d)", name, label, run + 1)
                proxy = a.socks5_proxy(hops)
                try:
                    mbps = mb / download(info, seed_port, proxy, cfg["lt_timeout"], keep)
                except RuntimeError as error:
                    log("libtorrent %s, %s: %s", name, label, error)
                    continue
                res.add("libtorrent download, " + label, "MB/s", "higher", name, mbps)
                res.add("libtorrent download, %s, share of direct" % label, "%", "higher", name,
                        100 * mbps / direct_mbps)
    seeder.pause()
