# -*- test-case-name: test.test_exitpolicy -*-
"""Exit policy: which ``(ip, port)`` an exit may send UDP to, and how much.

An exit that sends datagrams wherever a client asks can be turned against third
parties (reflection and amplification), against its own host and LAN (internal
probing), and into a DNS-rebinding target (THREATS T7, table 3.5).  This module
holds the pure decisions; the exit's socket code asks them before every send.
"""
from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from tunnels.exit.addresses import is_forbidden_ip

__all__ = ["DEFAULT_DENY_PORTS", "DestinationGuard", "ExitPolicy"]

#: Ports at or above 1024 refused by default, with the attack that justifies each.
#: Ports below 1024 (DNS 53, NTP 123, SNMP 161, chargen 19, ...) are already
#: refused by the 1024 floor unless listed in ``allow_ports``.  Each entry is a
#: UDP service with a large reflection amplification factor or a LAN-only
#: discovery protocol that has no business being reached through an anonymous exit.
DEFAULT_DENY_PORTS: Final[dict[int, str]] = {
    1434: "MS-SQL browser amplification",
    1900: "SSDP amplification",
    3283: "Apple Remote Desktop amplification",
    3389: "RDP-over-UDP amplification",
    3702: "WS-Discovery amplification",
    5351: "NAT-PMP gateway port mapping",
    5353: "mDNS amplification",
    5355: "LLMNR LAN name resolution",
    5683: "CoAP amplification",
    10001: "Ubiquiti discovery amplification",
    10074: "Mitel TP-240 amplification (CVE-2022-26143)",
    11211: "memcached amplification",
    32414: "Plex GDM discovery amplification",
    33848: "Jenkins discovery amplification",
    37810: "Dahua DHDiscover amplification",
    47808: "BACnet amplification / building control",
}

#: Without an allow-list, ports below this are refused: they are the classic
#: amplification vectors (DNS, NTP, SNMP, chargen, QOTD, CLDAP, SSDP-like) and
#: system services.
_PORT_FLOOR: Final = 1024

#: Reasons that stay refused even in test-network mode: sending to them reaches
#: "this host" (unspecified) or every host on a LAN (multicast, broadcast).
_ALWAYS_REFUSED: Final = frozenset({"unspecified", "multicast", "broadcast"})


def _canonical(ip: str) -> str:
    """Canonical text of ``ip``, with IPv4-mapped IPv6 reduced to plain IPv4.

    Canonicalising stops ``::ffff:198.51.100.7`` or a zero-padded IPv6 spelling
    from slipping past the "own address" comparison.
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _check_port_type(port: object) -> str | None:
    """Reason for a port that is not an ``int`` in 1..65535, or ``None``."""
    if isinstance(port, bool) or not isinstance(port, int):
        return "invalid port"
    if port == 0:
        # Port 0 means "any" to many stacks and is a classic probe/reflection trick.
        return "port 0"
    if not 1 <= port <= 65535:
        return "port out of range"
    return None


@dataclass(frozen=True, slots=True)
class ExitPolicy:
    """Immutable UDP exit policy; :meth:`check` returns ``None`` or a reason.

    :ivar allow_ports: when non-empty, only these ports are allowed (they may be
        below 1024); when empty, every port in 1024..65535 is allowed.
    :ivar deny_ports: always refused, even if listed in ``allow_ports``.
    :ivar allow_non_global: test-network mode only (like Tor's
        ``ExtendAllowPrivateAddresses``): allow loopback/private destinations.
    :ivar own_addresses: the exit's own IPs, never a destination (reaching the
        exit's own services through itself bypasses host firewalls).
    """

    allow_ports: tuple[int, ...] = ()
    deny_ports: tuple[int, ...] = tuple(sorted(DEFAULT_DENY_PORTS))
    allow_non_global: bool = False
    own_addresses: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        """Validate the fields and canonicalise ``own_addresses``."""
        for name in ("allow_ports", "deny_ports"):
            ports = getattr(self, name)
            if not isinstance(ports, tuple):
                raise TypeError(f"{name} must be a tuple of ints")
            for port in ports:
                if _check_port_type(port) is not None:
                    raise ValueError(f"{name} entries must be ints in 1..65535, got {port!r}")
        if not isinstance(self.allow_non_global, bool):
            raise TypeError("allow_non_global must be a bool")
        if not isinstance(self.own_addresses, frozenset):
            raise TypeError("own_addresses must be a frozenset of IP strings")
        own = frozenset(_canonical(ip) for ip in self.own_addresses)
        object.__setattr__(self, "own_addresses", own)

    def check_port(self, port: object) -> str | None:
        """Return why UDP ``port`` is refused, or ``None``.

        Deny wins over allow, so an operator's allow-list cannot accidentally
        re-open a known amplification vector.
        """
        bad = _check_port_type(port)
        if bad is not None:
            return bad
        assert isinstance(port, int)
        if port in self.deny_ports:
            what = DEFAULT_DENY_PORTS.get(port)
            return f"port {port} denied" + (f" ({what})" if what else "")
        if self.allow_ports:
            if port not in self.allow_ports:
                return f"port {port} not in allow-list"
        elif port < _PORT_FLOOR:
            return f"port {port} below {_PORT_FLOOR}"
        return None

    def check(self, ip: str, port: int) -> str | None:
        """Return why sending to ``(ip, port)`` is refused, or ``None`` if allowed.

        ``ip`` and ``port`` come from the network, so malformed values give a
        reason rather than an exception.
        """
        bad_port = self.check_port(port)
        if bad_port is not None:
            return bad_port
        if not isinstance(ip, str):
            return "not an IP address"
        try:
            reason = is_forbidden_ip(ip)
            canonical = _canonical(ip)
        except ValueError:
            return "not an IP address"
        if canonical in self.own_addresses:
            return "exit's own address"
        if reason is not None and (not self.allow_non_global or reason in _ALWAYS_REFUSED):
            return reason
        return None

    def check_resolved(self, addresses: list[str], port: int) -> tuple[str | None, str | None]:
        """Check a resolver answer; return ``(ip, None)`` or ``(None, reason)``.

        Every address must pass :meth:`check`: a DNS-rebinding attacker answers
        with a public *and* a private address, hoping the exit checks one and
        sends to the other.  The returned IP is pinned by the caller for the
        whole flow, so a later re-resolution cannot swap it.
        """
        if not addresses:
            return None, "name resolved to no addresses"
        for ip in addresses:
            reason = self.check(ip, port)
            if reason is not None:
                return None, f"resolved address {ip!r} refused: {reason}"
        return _canonical(addresses[0]), None


class DestinationGuard:
    """Per exit-circuit anti-amplification state.

    A client can make an exit send at most ``max_unanswered`` packets to a
    destination that never replied (reflection of spoof-free but unwanted
    traffic at a victim, as in Tribler#679's "3 packets without a reply"), and
    can use at most ``max_destinations`` distinct destinations per circuit
    (scanning, fan-out amplification).  Memory is bounded by ``max_destinations``.
    """

    def __init__(self, max_unanswered: int, max_destinations: int) -> None:
        """Create an empty guard.

        :raises ValueError: a limit is below 1.
        """
        if max_unanswered < 1 or max_destinations < 1:
            raise ValueError("max_unanswered and max_destinations must be >= 1")
        self._max_unanswered = max_unanswered
        self._max_destinations = max_destinations
        #: destination -> packets sent without a reply, or ``None`` once answered.
        self._sent: OrderedDict[tuple[str, int], int | None] = OrderedDict()

    def __len__(self) -> int:
        """Number of destinations tracked (never above ``max_destinations``)."""
        return len(self._sent)

    def may_send(self, dest: tuple[str, int]) -> str | None:
        """Count one packet to ``dest``; return ``None`` to send or a reason to drop."""
        if dest not in self._sent:
            if len(self._sent) >= self._max_destinations:
                return "too many destinations"
            self._sent[dest] = 0
        unanswered = self._sent[dest]
        if unanswered is None:
            return None
        if unanswered >= self._max_unanswered:
            return "destination never answered"
        self._sent[dest] = unanswered + 1
        return None

    def note_reply(self, dest: tuple[str, int]) -> bool:
        """Record a reply from ``dest``; return whether ``dest`` was contacted.

        Replies from destinations we never sent to are not tracked (connected-UDP
        semantics: the caller drops them), so a flood of spoofed replies cannot
        grow the table or pre-authorise destinations.
        """
        if dest not in self._sent:
            return False
        self._sent[dest] = None
        return True


_REFUSAL_KINDS: Final = {
    "not an exit": "not_exit",
    "invalid port": "bad_port",
    "port 0": "bad_port",
    "port out of range": "bad_port",
    "not an IP address": "bad_address",
    "exit's own address": "own_address",
    "name refused by exit policy": "resolution",
    "name resolved to no addresses": "resolution",
    "too many names": "resolver_busy",
    "resolution queue full": "resolver_busy",
    "too many destinations": "too_many_destinations",
    "destination never answered": "unanswered",
    "exit bandwidth exhausted": "bandwidth",
    "send failed": "send_failed",
    "datagram too large": "too_large",
    "no IPv6 at this exit": "no_ipv6",
    "too many flows": "too_many_flows",
    "no socket at this exit": "no_socket",
}


def refusal_kind(reason: str) -> str:
    """The counter name of an exit refusal: one of a fixed set (see :data:`tunnels.reasons.REFUSALS`).

    The reasons sent to the originator are sentences that may carry a port or an address;
    a counter name must not (bounded label values, and no destination in any metric).
    Address classes from :func:`~tunnels.exit.addresses.is_forbidden_ip` (loopback,
    private, reserved, ...) are all ``non_global_address``.
    """
    kind = _REFUSAL_KINDS.get(reason)
    if kind is not None:
        return kind
    if reason.startswith("port "):
        return "port_denied" if " denied" in reason else "port_not_allowed"
    if reason.startswith("resolved address "):
        return "resolution"
    return "non_global_address"
