# -*- test-case-name: test.test_dht_addresses -*-
"""Which addresses a DHT node may ever query or keep, and how sources are grouped for rate
limits (pure functions; no I/O).

Three layers, from hardest to softest:

1. :func:`never_contact`: addresses no node ever queries or stores, whatever the policy:
   ``0.0.0.0/8`` (this network, RFC 1122 3.2.1.3), ``240.0.0.0/4`` (reserved, RFC 1112 4, with
   the limited broadcast ``255.255.255.255``), ``224.0.0.0/4`` (multicast), port 0, and anything
   that is not an IPv4 address (compact node info of BEP 5 is IPv4 only).
2. The *address policy* (:func:`address_filter`): ``"global"`` (public unicast only, the
   production default), ``"loopback"`` (127.0.0.0/8 only: tests and local networks) or ``"any"``.
3. :class:`TargetFilter`: the policy plus our own listening address, so a hostile ``nodes``
   list naming us under a foreign id cannot make us query ourselves.

:func:`source_key` groups query sources for rate limits: the /24 of an IPv4 source, the /48
of an IPv6 one (DESIGN.md property 14), and ``(host, port)`` for loopback sources, which are
processes of this machine (a local network puts every node on 127.0.0.1; packets with a
127/8 source never arrive from outside, the kernel drops them as martians).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable
from typing import Literal

AddressPolicy = Literal["any", "global", "loopback"]
POLICIES: tuple[AddressPolicy, ...] = ("any", "global", "loopback")

_NEVER = (ipaddress.IPv4Network("0.0.0.0/8"), ipaddress.IPv4Network("224.0.0.0/4"),
          ipaddress.IPv4Network("240.0.0.0/4"))
_WILDCARD = ("", "0.0.0.0")


def _ipv4(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


def never_contact(host: str, port: int) -> bool:
    """True for addresses no DHT node may query or keep, whatever its policy: port 0,
    non-IPv4 hosts, ``0.0.0.0/8``, ``224.0.0.0/4`` (multicast) and ``240.0.0.0/4``
    (reserved, broadcast included)."""
    if not 0 < port < 65536:
        return True
    ip = _ipv4(host)
    return ip is None or any(ip in net for net in _NEVER)


def address_filter(policy: AddressPolicy) -> Callable[[str, int], bool]:
    """The predicate ``accept(host, port)`` for learned node and peer addresses: never a
    :func:`never_contact` address, and then ``"global"`` (public unicast only),
    ``"loopback"`` (127.0.0.0/8 only) or ``"any"`` (everything else).

    :raises ValueError: unknown policy.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown address_policy {policy!r}")

    def accept(host: str, port: int) -> bool:
        if never_contact(host, port):
            return False
        ip = ipaddress.IPv4Address(host)
        if policy == "loopback":
            return ip.is_loopback
        if policy == "global":
            return ip.is_global
        return True
    return accept


class TargetFilter:
    """``accept(host, port)`` for query targets and routing-table entries: the address
    policy, minus our own address once :meth:`set_own` told it.

    A node bound to all interfaces (``""``/``0.0.0.0``) counts every loopback address with
    its port as its own; its public address is not known to it (see doc/dht.md).
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = address_filter(policy)
        self._own_host: str | None = None
        self._own_port = 0

    def set_own(self, host: str, port: int) -> None:
        """Record the address we listen on (``host`` may be the wildcard)."""
        self._own_host = "0.0.0.0" if host in _WILDCARD else host
        self._own_port = port

    def is_own(self, host: str, port: int) -> bool:
        """Whether ``(host, port)`` reaches our own socket."""
        if port != self._own_port or self._own_host is None:
            return False
        if host == self._own_host:
            return True
        if self._own_host != "0.0.0.0":
            return False
        ip = _ipv4(host)
        return ip is not None and ip.is_loopback

    def __call__(self, host: str, port: int) -> bool:
        return self._policy(host, port) and not self.is_own(host, port)

    def sendable(self, host: str, port: int) -> bool:
        """Whether any query may go to ``(host, port)``: the never-query list and our own
        address, whatever the policy (configured bootstrap nodes are exempt from the
        policy, as libtorrent's router nodes are from its IP filter)."""
        return not never_contact(host, port) and not self.is_own(host, port)


def source_key(host: str, port: int) -> Hashable:
    """The rate-limit group of a query source: its /24 (IPv4) or /48 (IPv6) network, or
    ``(host, port)`` for a loopback source."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.is_loopback:
        return (host, port)
    if ip.version == 4:
        return (4, int(ip) >> 8)
    return (6, int(ip) >> 80)
