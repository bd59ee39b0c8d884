# -*- test-case-name: test.test_libtorrent -*-
"""An unmodified BitTorrent client on 127.0.0.1: a libtorrent seeder and a downloader whose
only way to its peers is a SOCKS5 UDP front end (uTP through circuits).

The downloader is set up the way Tribler-like applications set libtorrent up for anonymity:
SOCKS5 proxy for peer connections and names, TCP off, uTP on.  Everything is private to the
machine: listen on 127.0.0.1, no DHT, LSD, UPnP or NAT-PMP, no trackers.  libtorrent is a
test extra (``pip install '.[test]'``), imported on first use.

libtorrent runs its own threads beside the reactor; :func:`wait_until_seeding` polls the
handle from the event loop (an asyncio coroutine, see doc/user-guide.md).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

PIECE_SIZE = 256 * 1024
"""Bytes per piece of the torrents made here."""


def _lt() -> Any:
    try:
        import libtorrent
    except ImportError as error:  # pragma: no cover - the test extra is missing
        raise ImportError("libtorrent is needed for BitTorrent swarms: pip install 'txtunnels[test]'") from error
    return libtorrent


def private_settings() -> dict[str, Any]:
    """Settings that keep a libtorrent session on 127.0.0.1 and away from the Internet."""
    lt = _lt()
    return {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False, "dht_bootstrap_nodes": "",
        "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False, "enable_ip_notifier": False,
        "alert_mask": lt.alert.category_t.error_notification,
        "allow_multiple_connections_per_ip": True,
    }


def make_torrent(directory: str, size: int, name: str = "payload.bin") -> tuple[Any, str]:
    """Write ``size`` random bytes to ``directory/name`` and make a torrent of it.

    Returns ``(torrent_info, sha256 hex digest of the file)``.
    """
    lt = _lt()
    data = os.urandom(size)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)
    storage = lt.file_storage()
    storage.add_file(name, size)
    torrent = lt.create_torrent(storage, PIECE_SIZE)
    lt.set_piece_hashes(torrent, directory)
    return lt.torrent_info(torrent.generate()), hashlib.sha256(data).hexdigest()


def start_seeder(directory: str, info: Any) -> tuple[Any, Any, int]:
    """A session seeding ``info`` from ``directory`` (uTP and TCP); ``(session, handle, port)``."""
    lt = _lt()
    session = lt.session(dict(private_settings(), enable_incoming_utp=True, enable_outgoing_utp=True))
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = directory
    params.flags |= lt.torrent_flags.seed_mode
    return session, session.add_torrent(params), session.listen_port()


def start_downloader(directory: str, info: Any, proxy: tuple[str, int] | None) -> tuple[Any, Any]:
    """A session downloading ``info`` into ``directory``; ``(session, handle)``.

    With ``proxy`` (the SOCKS5 front end's TCP address) every peer connection goes through it,
    over uTP only (TCP off, as Tribler-like applications configure it); without, directly.
    """
    lt = _lt()
    settings = dict(private_settings(), enable_incoming_utp=True, enable_outgoing_utp=True)
    if proxy is not None:
        settings.update(enable_outgoing_tcp=False, enable_incoming_tcp=False,
                        proxy_type=lt.proxy_type_t.socks5, proxy_hostname=proxy[0], proxy_port=proxy[1],
                        proxy_peer_connections=True, proxy_hostnames=True)
    session = lt.session(settings)
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = directory
    return session, session.add_torrent(params)


async def wait_until_seeding(handle: Any, timeout: float) -> float:
    """Wait (polling every 50 ms) until ``handle`` has the whole torrent; returns the seconds it
    took.  Raises ``TimeoutError`` with the progress reached after ``timeout`` seconds."""
    start = time.monotonic()
    while True:
        status = handle.status()
        if status.is_seeding:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"download at {status.progress:.1%} after {timeout}s "
                               f"({status.num_peers} peers, {status.download_rate} B/s)")
        await asyncio.sleep(0.05)


def file_digest(directory: str, name: str = "payload.bin") -> str:
    """SHA-256 hex digest of a downloaded file."""
    with open(os.path.join(directory, name), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
