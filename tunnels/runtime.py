# -*- test-case-name: test.test_runtime -*-
"""One event loop for Twisted and IPv8.

pyipv8 3.x is asyncio-only, so Twisted must run on asyncio's loop through
:mod:`twisted.internet.asyncioreactor`.  :func:`install_reactor` installs it once,
before anything imports ``twisted.internet.reactor``; :func:`as_deferred` and
:func:`as_future` bridge coroutines and Deferreds in both directions.
"""
from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


class ReactorMismatch(RuntimeError):
    """A reactor other than the asyncio reactor is already installed."""


def install_reactor() -> Any:
    """Install Twisted's asyncio reactor (idempotent) and return the reactor.

    Raises :class:`ReactorMismatch` when another reactor was installed first, since
    IPv8 code would then never run.
    """
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor
        check_reactor(reactor)
        return reactor
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor
    asyncioreactor.install(loop)
    from twisted.internet import reactor
    return reactor


def check_reactor(reactor: Any) -> None:
    """Raise :class:`ReactorMismatch` unless ``reactor`` runs on asyncio."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor
    if not isinstance(reactor, AsyncioSelectorReactor):
        raise ReactorMismatch(
            f"txtunnels needs Twisted's asyncio reactor (IPv8 is asyncio-only), found "
            f"{type(reactor).__name__}: run twistd/trial with --reactor=asyncio or call "
            "tunnels.runtime.install_reactor() before importing twisted.internet.reactor")
    asyncio.set_event_loop(reactor._asyncioEventloop)


def as_deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Run an asyncio coroutine as a Task and return a Deferred for its result."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))


def as_future(d: Deferred[T]) -> asyncio.Future[T]:
    """Wrap a Deferred so asyncio code can await it."""
    return d.asFuture(asyncio.get_event_loop())


MAX_UDP_READ = 65535
"""Bytes one read of a UDP port may return: any datagram, whole (Twisted's default, 8,192, cuts
longer ones silently)."""
UDP_BUFFER = 870400
"""Requested ``SO_RCVBUF``/``SO_SNDBUF`` of our UDP ports, in bytes (IPv8's figure; Linux doubles it
and caps it at ``net.core.rmem_max``/``wmem_max``).  The default (about 208 KiB) holds only about 90
datagrams of 1.4 KB: a sender bursting at a link's speed, such as a BitTorrent seeder at an exit,
overflows it while the reactor is busy, and the kernel drops what we never see."""


def listen_udp(reactor: Any, port: int, protocol: Any, interface: str, buffer: int = UDP_BUFFER) -> Any:
    """``reactor.listenUDP`` reading whole datagrams, with room for bursts (``buffer`` bytes each
    way, :data:`UDP_BUFFER` by default).

    Every UDP port txtunnels opens for traffic goes through here.  Raises what ``listenUDP``
    raises (``CannotListenError``); a kernel that refuses the larger buffers keeps its defaults.
    """
    listening = reactor.listenUDP(port, protocol, interface=interface, maxPacketSize=MAX_UDP_READ)
    sock = getattr(listening, "socket", None)
    if sock is not None:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, buffer)
            except OSError:
                pass
    return listening
