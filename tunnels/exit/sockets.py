# -*- test-case-name: test.test_exit -*-
"""Exit sockets: one Twisted UDP port per exit circuit, behind the exit policy.

An exit sends only to destinations its :class:`~tunnels.exit.policy.ExitPolicy`
allows (global addresses, allowed ports, never itself), at most a few packets to a
destination that never answered, at most so many destinations per circuit, within
a node-wide bandwidth budget.  Hostnames are resolved here, every resolved address
is checked (DNS rebinding) and the checked address is pinned for the flow.  Only
datagrams from a destination this circuit contacted travel back.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IResolutionReceiver
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from .addresses import is_ip_literal
from .policy import DestinationGuard, ExitPolicy
from ..ratelimit import TokenBucket
from ..stats import Stats

Address = tuple[str, int]
MAX_PENDING_PER_NAME = 8
MAX_NAMES = 32
MAX_VERDICTS = 256


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


class ExitSocket(DatagramProtocol):
    """The Internet side of one exit circuit."""

    def __init__(self, reactor: Any, interface: str, policy: ExitPolicy, guard: DestinationGuard,
                 bandwidth: TokenBucket, stats: Stats, reply: Callable[[Address, bytes], None]) -> None:
        self.reactor = reactor
        self.interface = interface
        self.policy = policy
        self.guard = guard
        self.bandwidth = bandwidth
        self.stats = stats
        self.reply = reply
        self.port: Any = None
        self.names: OrderedDict[str, str | None] = OrderedDict()
        self.verdicts: dict[Address, str | None] = {}
        """Policy answers per destination (bounded like the guard: the per-circuit destination cap)."""
        self.pending: dict[str, list[tuple[int, bytes]]] = {}

    def send(self, destination: Address, payload: bytes) -> str | None:
        """Send ``payload`` to ``destination`` or return why not (the originator is told)."""
        host, port = destination
        if destination in self.verdicts or is_ip_literal(host):
            return self._send_ip(host, port, payload)
        name = host.lower().rstrip(".")
        if name in self.names:
            ip = self.names[name]
            return "name refused by exit policy" if ip is None else self._send_ip(ip, port, payload)
        waiting = self.pending.get(name)
        if waiting is None:
            if len(self.pending) + len(self.names) >= MAX_NAMES:
                return "too many names"
            waiting = self.pending[name] = []
            self.reactor.nameResolver.resolveHostName(
                _Resolution(lambda addresses: self._resolved(name, addresses)), name, 0, [IPv4Address])
        if len(waiting) >= MAX_PENDING_PER_NAME:
            return "resolution queue full"
        waiting.append((port, payload))
        return None

    def _resolved(self, name: str, addresses: list[str]) -> None:
        waiting = self.pending.pop(name, [])
        if self.port is None and waiting is None:
            return
        ports = {port for port, _ in waiting} or {0}
        chosen: str | None = None
        for port in ports:
            ip, reason = self.policy.check_resolved(addresses, port if port else 1024)
            if reason is not None:
                self.stats.note("exit_refused_resolution")
                chosen = None
                break
            chosen = ip
        self.names[name] = chosen
        if len(self.names) > MAX_NAMES:
            self.names.popitem(last=False)
        for port, payload in waiting:
            if chosen is not None:
                self._send_ip(chosen, port, payload)

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
            return "exit bandwidth exhausted"
        if self.port is None:
            self.port = self.reactor.listenUDP(0, self, interface=self.interface)
        try:
            self.transport.write(payload, destination)
        except OSError:
            self.stats.drop("exit_send_error")
            return "send failed"
        self.stats.note("exit_packets_out")
        return None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        """Pass back replies from destinations we contacted; drop everything else."""
        source = (addr[0], addr[1])
        if not self.guard.note_reply(source):
            self.stats.drop("exit_unsolicited")
            return
        self.stats.note("exit_packets_in")
        self.reply(source, datagram)

    def close(self) -> None:
        """Release the socket."""
        port, self.port = self.port, None
        self.pending.clear()
        if port is not None:
            port.stopListening()
