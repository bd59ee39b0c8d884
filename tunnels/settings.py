# -*- test-case-name: test.test_settings -*-
"""TunnelSettings: the seed's policy knobs as a frozen, validated value."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

MAX_HOPS = 5
"""Longest circuit the cell header can carry (see doc/protocol.md)."""

MiB = 1024 * 1024
MAX_UDP_PAYLOAD = 65507
"""Largest UDP payload over IPv4 (65535 - 20 - 8): the largest datagram a circuit carries."""


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


@dataclass(frozen=True, kw_only=True)
class TunnelSettings:
    """Policy for the circuits we build and the circuits we carry for others.

    The first seven fields are the seed's; defaults follow the original tunnel
    community (min 1, max 8 circuits, 100 joined, 600 s lifetime, 20 s idle,
    250 MiB per circuit, no exit).  Instances are immutable: derive variants with
    :func:`dataclasses.replace`.
    """

    min_circuits: int = 1
    """Ready circuits per hop count at which ``tunnels_ready()`` reaches 1.0."""
    max_circuits: int = 8
    """Most circuits kept per hop count."""
    max_joined_circuits: int = 100
    """Most circuits of others we relay or exit for at once."""
    max_time: float = 600.0
    """Seconds after which any circuit is torn down (ours and joined ones)."""
    max_time_inactive: float = 20.0
    """Seconds without a cell after which a circuit is torn down (we ping our own idle
    circuits every quarter of this, so they stay up while wanted)."""
    max_traffic: int = 250 * MiB
    """Bytes (both directions) after which a circuit is torn down."""
    become_exitnode: bool = False
    """Exit UDP data for others to the Internet (has legal ramifications)."""

    max_joined_share: float = 0.25
    """Fraction of ``max_joined_circuits`` one source address may hold."""
    max_joined_prefix_share: float = 0.5
    """Fraction of ``max_joined_circuits`` one source network (/24 IPv4, /48 IPv6) may hold."""
    create_rate: float = 5.0
    """CREATE cells accepted per second from one source address (token bucket); a source
    network (/24, /48) gets twice this rate and burst."""
    create_burst: int = 50
    """Burst size of the per-source CREATE token bucket."""
    create_rate_total: float = 100.0
    """CREATE cells a relay accepts per second from all sources together: the handshakes
    (public-key work, about 0.1 ms each) it is willing to do."""
    create_burst_total: int = 200
    """Burst size of the node-wide CREATE token bucket."""
    build_timeout: float = 10.0
    """Seconds a circuit may take to build before the attempt is abandoned."""
    exit_ports: tuple[int, ...] = ()
    """UDP ports an exit allows; empty means every port from 1024 to 65535."""
    exit_unanswered_packets: int = 32
    """Packets an exit sends to one destination before it must have answered."""
    exit_destinations_per_circuit: int = 64
    """Distinct destinations one exit circuit may use."""
    exit_bandwidth: int = 8 * MiB
    """Bytes per second an exit sends to the Internet (token bucket)."""
    max_datagram_size: int = MAX_UDP_PAYLOAD
    """Largest datagram payload in bytes this node sends or reassembles.  Larger ones are
    split into as many cells as they need; ``tunnel_data`` refuses more with ``ValueError``,
    an exit refuses more from the originator (DATA_REFUSED) and drops larger replies."""

    def __post_init__(self) -> None:
        _check_int("min_circuits", self.min_circuits, 0)
        _check_int("max_circuits", self.max_circuits, 1)
        if self.min_circuits > self.max_circuits:
            raise ValueError(f"need min_circuits <= max_circuits, got {self.min_circuits} > {self.max_circuits}")
        _check_int("max_joined_circuits", self.max_joined_circuits, 0)
        _check_seconds("max_time", self.max_time)
        _check_seconds("max_time_inactive", self.max_time_inactive)
        if self.max_time_inactive > self.max_time:
            raise ValueError(f"need max_time_inactive <= max_time, got {self.max_time_inactive} > {self.max_time}")
        _check_int("max_traffic", self.max_traffic, 1)
        if not isinstance(self.become_exitnode, bool):
            raise TypeError(f"become_exitnode must be a bool, got {type(self.become_exitnode).__name__}")
        for name in ("max_joined_share", "max_joined_prefix_share"):
            share = getattr(self, name)
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {share!r}")
        _check_seconds("create_rate", self.create_rate)
        _check_int("create_burst", self.create_burst, 1)
        _check_seconds("create_rate_total", self.create_rate_total)
        _check_int("create_burst_total", self.create_burst_total, 1)
        _check_seconds("build_timeout", self.build_timeout)
        if not isinstance(self.exit_ports, tuple):
            raise TypeError("exit_ports must be a tuple of ports")
        for port in self.exit_ports:
            _check_int("exit port", port, 1, 65535)
        _check_int("exit_unanswered_packets", self.exit_unanswered_packets, 1)
        _check_int("exit_destinations_per_circuit", self.exit_destinations_per_circuit, 1)
        _check_int("exit_bandwidth", self.exit_bandwidth, 1)
        _check_int("max_datagram_size", self.max_datagram_size, 1, MAX_UDP_PAYLOAD)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        """Names accepted as keyword arguments (used when IPv8 sets them one by one)."""
        return frozenset(f.name for f in fields(cls))
