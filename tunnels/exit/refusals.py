# -*- test-case-name: test.test_exit -*-
"""Why an exit did not send a datagram: the fixed reasons of a DATA_REFUSED message.

An exit answers every datagram it does not send with DATA_REFUSED ``flow | destination | reason``
(ASCII, at most 200 bytes), so the originator's refusal handlers learn why.  The reasons
below are fixed texts; the exit policy adds reasons that name the port or the address
class (:mod:`tunnels.exit.policy`, :mod:`tunnels.exit.addresses`).  doc/protocol.md section 4.2
lists them all.
"""
from __future__ import annotations

from typing import Final

NOT_AN_EXIT: Final = "not an exit"
"""The last hop does not exit data (``become_exitnode`` is off)."""
DATAGRAM_TOO_LARGE: Final = "datagram too large"
"""Above the exit's ``max_datagram_size``, or more than its socket can send."""
REFUSED_NAME: Final = "name refused by exit policy"
"""A later datagram to a name whose resolution the policy refused (the first ones got the
resolver's reason)."""
TOO_MANY_NAMES: Final = "too many names"
"""The circuit already resolved or waits for 32 names."""
RESOLUTION_QUEUE_FULL: Final = "resolution queue full"
"""8 datagrams already wait for this name's resolution."""
BANDWIDTH_EXHAUSTED: Final = "exit bandwidth exhausted"
"""The node-wide ``exit_bandwidth`` token bucket is empty."""
NO_IPV6: Final = "no IPv6 at this exit"
"""The exit's host could not open an IPv6 socket."""
SEND_FAILED: Final = "send failed"
"""The kernel refused the datagram (unreachable, buffers full)."""
TOO_MANY_FLOWS: Final = "too many flows"
"""The circuit already has :data:`~tunnels.wire.relay.MAX_FLOWS_PER_CIRCUIT` flows open besides flow 0."""
NO_SOCKET: Final = "no socket at this exit"
"""The exit has as many flows open as it allows in all (:data:`~tunnels.exit.flows.MAX_EXIT_FLOWS`),
or its host would not open another UDP socket."""
