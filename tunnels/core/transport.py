# -*- test-case-name: test.test_transport -*-
"""The IPv8 endpoint on a Twisted UDP port, with the cell fast path.

Cells (first byte :data:`~tunnels.wire.cells.CELL_MARK`) go straight to the
registered cell handler; datagrams with the prefix of a community we run go to
IPv8's listeners; every other datagram is counted (``not_ours``), never silently
lost.  Nothing a datagram holds can raise into the reactor: a listener that fails
is counted (``listener_failed``) and logged within a :class:`LogBudget`.  The port
reads whole datagrams (Twisted's default would cut them at 8,192 bytes).
An endpoint bound to a loopback address never sends to any other address (local
test networks stay on the machine even when IPv8 learns other addresses).
"""
from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from ipv8.messaging.interfaces.dispatcher.endpoint import DispatcherEndpoint
from ipv8.messaging.interfaces.endpoint import Endpoint, EndpointClosedException
from ipv8.messaging.interfaces.udp.endpoint import UDPv4Address
from twisted.internet.error import MessageLengthError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from ..ratelimit import LogBudget
from ..runtime import listen_udp
from ..stats import Stats
from ..wire.cells import CELL_MARK

Address = tuple[str, int]
RECEIVE_BUFFER = 4 * 1024 * 1024
"""Bytes of socket buffer the node's port asks for each way (other ports ask for
:data:`~tunnels.runtime.UDP_BUFFER`).  Linux doubles the value for its own accounting and caps
it at ``net.core.rmem_max``; a 1232-byte cell takes about 2.3 KB of it, so 4 MiB holds about
3,600 cells: some 70 ms of what a relay reads under a flood (doc/benchmarks.md, "Floods").  It
absorbs bursts while the loop is busy; no buffer absorbs a sustained flood, and a larger one
would only queue longer."""


class _Protocol(DatagramProtocol):
    def __init__(self, endpoint: TwistedUDPEndpoint) -> None:
        self.endpoint = endpoint

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        self.endpoint.datagram_received(datagram, addr)


class TwistedUDPEndpoint(Endpoint):
    """An IPv8 :class:`Endpoint` on ``reactor.listenUDP`` that also carries cells."""

    log = Logger()

    def __init__(self, reactor: Any, host: str = "0.0.0.0", port: int = 0) -> None:
        super().__init__()
        self.reactor = reactor
        self.host = host
        self.port = port
        self._port: Any = None
        self._write: Callable[[bytes, Address], Any] | None = None
        self.cell_handler: Callable[[Address, bytes], None] | None = None
        self.bytes_up = 0
        self.bytes_down = 0
        self.send_errors = 0
        self.refused_off_loopback = 0
        self.loopback_only = _is_loopback(host)
        self.receive_buffer = 0
        """Bytes of receive buffer the kernel granted (0 until bound)."""
        self.stats = Stats()
        """Where datagrams that reach no handler are counted (the community shares its own)."""
        self.log_budget = LogBudget(reactor.seconds())

    def datagram_received(self, datagram: bytes, addr: Address) -> None:
        """Route one datagram: cells to the fast path, our communities' packets to IPv8,
        anything else counted.  Never raises."""
        self.bytes_down += len(datagram)
        if datagram and datagram[0] == CELL_MARK:
            handler = self.cell_handler
            if handler is not None:
                handler(addr, datagram)
            else:
                self.stats.drop("cell_without_handler")
            return
        if datagram[:self.prefixlen] not in self._prefix_map and not self._listeners:
            self.stats.drop("not_ours")
            return
        try:
            self.notify_listeners((UDPv4Address(addr[0], addr[1]), datagram))
        except Exception as error:
            self.stats.drop("listener_failed")
            if self.log_budget.allow(self.reactor.seconds()):
                self.log.warn("an IPv8 listener failed on a datagram: {error!r}", error=error)

    def send(self, socket_address: Address, packet: bytes) -> None:
        """Send a datagram; failures (closed, full buffers, bad address) are counted, not raised."""
        write = self._write
        if write is None:
            self.send_errors += 1
            return
        if self.loopback_only and not _is_loopback(socket_address[0]):
            self.refused_off_loopback += 1
            return
        try:
            write(packet, socket_address)
        except (OSError, MessageLengthError, ValueError) as exc:
            self.send_errors += 1
            self.log.debug("send to {addr} failed: {exc}", addr=socket_address, exc=exc)
            return
        self.bytes_up += len(packet)

    def assert_open(self) -> None:
        if self._port is None:
            raise EndpointClosedException(self)

    def is_open(self) -> bool:
        return self._port is not None

    def get_address(self) -> Address:
        return UDPv4Address(self.host, self.port)

    async def open(self) -> bool:
        """Listen on ``(host, port)`` (idempotent); the bound port is then :attr:`port`."""
        self.listen()
        return True

    def listen(self) -> None:
        """Bind now (idempotent), as ``open`` does; for services that bind before the reactor runs.

        :raises twisted.internet.error.CannotListenError: the address is in use or not ours.
        """
        if self._port is not None:
            return
        self._port = listen_udp(self.reactor, self.port, _Protocol(self), self.host, buffer=RECEIVE_BUFFER)
        self.port = self._port.getHost().port
        self._write = self._port.write
        sock = getattr(self._port, "socket", None)
        if sock is not None:
            self.receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            if self.receive_buffer < RECEIVE_BUFFER:
                self.log.info("UDP receive buffer is {size} bytes (asked for {asked}); raise net.core.rmem_max "
                              "to absorb bursts", size=self.receive_buffer, asked=RECEIVE_BUFFER)

    def close(self) -> asyncio.Future[Any]:
        """Stop listening; returns an awaitable as IPv8 expects."""
        port, self._port, self._write = self._port, None, None
        loop = asyncio.get_event_loop()
        if port is None:
            future: asyncio.Future[Any] = loop.create_future()
            future.set_result(None)
            return future
        return port.stopListening().asFuture(loop)  # type: ignore[no-any-return]

    def reset_byte_counters(self) -> None:
        self.bytes_up = 0
        self.bytes_down = 0


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (a socket bound there never leaves the machine)."""
    return host.startswith("127.") or host == "::1"


def dispatcher_for(endpoint: TwistedUDPEndpoint) -> DispatcherEndpoint:
    """Wrap our endpoint in IPv8's dispatcher surface (communities read ``interfaces``)."""
    dispatcher = DispatcherEndpoint([])
    dispatcher.interfaces = {"UDPIPv4": endpoint}
    dispatcher.interface_order = ["UDPIPv4"]
    dispatcher._preferred_interface = endpoint
    return dispatcher
