# -*- test-case-name: test.test_exit -*-
"""Exit sockets: the Internet side of one exit circuit, behind the exit policy.

An exit sends only to destinations its :class:`~tunnels.exit.policy.ExitPolicy`
allows (global addresses, allowed ports, never itself), at most a few packets to a
destination that never answered, at most so many destinations per circuit, within
a node-wide bandwidth budget.  Hostnames are resolved here (IPv4 and IPv6), every
resolved address is checked (DNS rebinding) and the checked address is pinned for the
flow.  Only datagrams from a destination this socket contacted travel back: one exit
circuit has an :class:`ExitSocket` per flow (:mod:`tunnels.exit.flows`), and a destination
one flow talks to cannot reach another flow's application by guessing its port.

Every datagram the originator asks for is either sent or refused with a reason: the
reason is returned at once, or, for a name still being resolved, passed to ``refuse``
when the resolution ends (doc/protocol.md lists every reason).  Each circuit has an IPv4
port and, on first use, an IPv6 port; a host that cannot open one refuses IPv6
destinations with a reason.  Both ports read whole datagrams and have room for a
destination's bursts (:func:`~tunnels.runtime.listen_udp`).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError, MessageLengthError
from twisted.internet.interfaces import IResolutionReceiver
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from .addresses import is_ip_literal
from .policy import DestinationGuard, ExitPolicy
from .refusals import (BANDWIDTH_EXHAUSTED, DATAGRAM_TOO_LARGE, NO_IPV6, NO_SOCKET, REFUSED_NAME,
                       RESOLUTION_QUEUE_FULL, SEND_FAILED, TOO_MANY_NAMES)
from ..ratelimit import TokenBucket
from ..runtime import listen_udp
from ..stats import Stats

Address = tuple[str, int]
MAX_PENDING_PER_NAME = 8
MAX_NAMES = 32
MAX_VERDICTS = 256
Waiting = tuple[str, int, bytes]
"""A datagram waiting for its name: ``(host as named, port, payload)``."""



@implementer(IResolutionReceiver)
class _Resolution:
    def __init__(self, done: Callable[[list[str]], None]) -> None:
        self.addresses: list[str] = []
        self.done = done

    def resolutionBegan(self, resolution: Any) -> None:  # noqa: N802 (Twisted API)
        pass

    def addressResolved(self, address: Any) -> None:  # noqa: N802
        self.addresses.append(address.host)

    def resolutionComplete(self) -> None:  # noqa: N802
        self.done(self.addresses)


class _FamilyPort(DatagramProtocol):
    """One UDP port of an exit circuit (IPv4 or IPv6); replies go to the owner."""

    noisy = False

    def __init__(self, owner: ExitSocket) -> None:
        self.owner = owner

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        self.owner.on_reply(datagram, (addr[0], addr[1]))


class ExitSocket:
    """The Internet side of one flow of an exit circuit.

    :param interfaces: ``(IPv4 interface, IPv6 interface)`` to bind (``"0.0.0.0"``/``"::"``
        in production, loopback in a test network).
    :param reply: called with ``(source, payload)`` for each datagram a contacted destination sends.
    :param refuse: called with ``(destination, reason)`` for datagrams refused after a name
        resolution (the destination as the originator named it).
    :param guard: the circuit's :class:`DestinationGuard`, shared by its flows (the per-circuit
        limits hold whatever the number of flows).
    """

    def __init__(self, reactor: Any, interfaces: tuple[str, str], policy: ExitPolicy, guard: DestinationGuard,
                 bandwidth: TokenBucket, stats: Stats, reply: Callable[[Address, bytes], None],
                 refuse: Callable[[Address, str], None]) -> None:
        self.reactor = reactor
        self.interfaces = interfaces
        self.policy = policy
        self.guard = guard
        self.bandwidth = bandwidth
        self.stats = stats
        self.reply = reply
        self.refuse = refuse
        self.ports: dict[int, Any] = {}
        """Listening ports by family (4, 6); a family whose port could not open maps to None."""
        self.closed = False
        self.names: OrderedDict[str, str | None] = OrderedDict()
        self.verdicts: dict[Address, str | None] = {}
        """Policy answers per destination (bounded like the guard: the per-circuit destination cap)."""
        self.pending: dict[str, list[Waiting]] = {}
        self.contacted: set[Address] = set()
        """Destinations this socket sent to (each passed the guard, so at most its destination cap)."""

    @property
    def port(self) -> Any:
        """The IPv4 port, once open."""
        return self.ports.get(4)

    def send(self, destination: Address, payload: bytes) -> str | None:
        """Send ``payload`` to ``destination`` or return why not (the originator is told).

        A name being resolved returns None; its datagrams are sent or refused (through
        ``refuse``) when the resolution ends.
        """
        host, port = destination
        if destination in self.verdicts or is_ip_literal(host):
            return self._send_ip(host, port, payload)
        name = host.lower().rstrip(".")
        if name in self.names:
            ip = self.names[name]
            return REFUSED_NAME if ip is None else self._send_ip(ip, port, payload)
        waiting = self.pending.get(name)
        if waiting is None:
            if len(self.pending) + len(self.names) >= MAX_NAMES:
                return TOO_MANY_NAMES
            waiting = self.pending[name] = []
            self.reactor.nameResolver.resolveHostName(
                _Resolution(lambda addresses: self._resolved(name, addresses)), name, 0,
                [IPv4Address, IPv6Address])
        if len(waiting) >= MAX_PENDING_PER_NAME:
            return RESOLUTION_QUEUE_FULL
        waiting.append((host, port, payload))
        return None

    def _resolved(self, name: str, addresses: list[str]) -> None:
        waiting = self.pending.pop(name, [])
        if self.closed:
            return
        # IPv4 first: every host has it, and the first address that passes is pinned
        ordered = sorted(set(addresses), key=lambda ip: (":" in ip, addresses.index(ip)))
        chosen: str | None = None
        reason: str | None = None
        for port in {port for _, port, _ in waiting} or {1024}:
            chosen, reason = self.policy.check_resolved(ordered, port)
            if reason is not None:
                self.stats.note("exit_refused_resolution")
                break
        self.names[name] = chosen
        if len(self.names) > MAX_NAMES:
            self.names.popitem(last=False)
        for host, port, payload in waiting:
            refusal = reason if chosen is None else self._send_ip(chosen, port, payload)
            if refusal is not None:
                self.refuse((host, port), refusal)

    def _send_ip(self, ip: str, port: int, payload: bytes) -> str | None:
        destination = (ip, port)
        verdict = self.verdicts.get(destination, "")
        if verdict == "":
            verdict = self.policy.check(ip, port)
            if len(self.verdicts) < MAX_VERDICTS:
                self.verdicts[destination] = verdict
        reason = verdict or self.guard.may_send(destination)
        if reason is not None:
            return reason
        if not self.bandwidth.take(self.reactor.seconds(), len(payload)):
            self.stats.drop("exit_bandwidth")
            return BANDWIDTH_EXHAUSTED
        family = 6 if ":" in ip else 4
        transport = self._port_for(family)
        if transport is None and family == 6:
            self.stats.drop("exit_no_ipv6")
            return NO_IPV6
        if transport is None:
            self.stats.drop("exit_no_ipv4")
            return NO_SOCKET
        try:
            transport.write(payload, destination)
        except MessageLengthError:
            self.stats.drop("exit_too_large")
            return DATAGRAM_TOO_LARGE
        except (OSError, ValueError):
            # OSError: unreachable, buffers full; ValueError: Twisted's InvalidAddressError
            self.stats.drop("exit_send_error")
            return SEND_FAILED
        self.contacted.add(destination)
        self.stats.note("exit_packets_out")
        return None

    def _port_for(self, family: int) -> Any:
        """The port of ``family``, opened on first use; None if the host cannot open one."""
        if family in self.ports:
            return self.ports[family]
        interface = self.interfaces[0 if family == 4 else 1]
        try:
            port = listen_udp(self.reactor, 0, _FamilyPort(self), interface)
        except CannotListenError:
            self.stats.note(f"exit_no_ipv{family}_socket")
            port = None
        self.ports[family] = port
        return port

    def on_reply(self, datagram: bytes, source: Address) -> None:
        """Pass back replies from destinations we contacted; drop everything else."""
        if self.closed:
            return
        if source not in self.contacted or not self.guard.note_reply(source):
            self.stats.drop("exit_unsolicited")
            return
        self.stats.note("exit_packets_in")
        self.reply(source, datagram)

    def close(self) -> None:
        """Release the sockets."""
        self.closed = True
        ports, self.ports = self.ports, {}
        self.pending.clear()
        for port in ports.values():
            if port is not None:
                port.stopListening()

