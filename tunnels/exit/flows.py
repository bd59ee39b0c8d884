# -*- test-case-name: test.test_flows -*-
"""The flows of one exit circuit: a UDP socket pair per flow, as Tor's exits open a connection per stream.

DATA names its flow (doc/protocol.md 4.3).  Each flow gets its own :class:`~tunnels.exit.sockets.ExitSocket`
on first use, so a destination answers the socket, and so the application, that wrote to it:
two applications sending to one destination through one circuit never see each other's
replies.  The circuit's limits (destinations, unanswered packets) are one
:class:`~tunnels.exit.policy.DestinationGuard` shared by its flows.

Bounds: :data:`~tunnels.wire.relay.MAX_FLOWS_PER_CIRCUIT` flows per circuit besides flow 0, and
:data:`MAX_EXIT_FLOWS` in all at one exit (a flow holds one or two sockets); beyond either the
datagram is refused with a reason.  FLOW_END closes a flow's sockets; its id is remembered
(the last :data:`ENDED_MEMORY` ids), so a datagram of the flow that a lossy path reordered
behind FLOW_END is dropped (counted ``exit_flow_ended``) instead of opening the flow again.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ..stats import Stats
from ..wire.relay import DEFAULT_FLOW, MAX_FLOWS_PER_CIRCUIT
from .policy import DestinationGuard
from .refusals import NO_SOCKET, TOO_MANY_FLOWS
from .sockets import ExitSocket

Address = tuple[str, int]
MAX_EXIT_FLOWS = 1024
"""Flows (each one or two UDP sockets) an exit keeps open across all its circuits.  With IPv6
in use that is up to 2,048 descriptors: raise ``LimitNOFILE`` above it (doc/operations.md)."""
ENDED_MEMORY = 64
"""Ended flow ids an exit circuit remembers."""


class FlowBudget:
    """The node-wide count of open exit flows, against :data:`MAX_EXIT_FLOWS`."""

    def __init__(self, limit: int = MAX_EXIT_FLOWS) -> None:
        self.limit = limit
        self.used = 0

    def take(self) -> bool:
        """Count one more open flow, if the limit allows."""
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self, count: int = 1) -> None:
        """``count`` flows closed."""
        self.used -= count


class ExitFlows:
    """The Internet side of one exit circuit: its flows' sockets.

    :param open_socket: makes the :class:`ExitSocket` of a flow id (its replies and late
        refusals carry that id back).
    """

    def __init__(self, open_socket: Callable[[int], ExitSocket], guard: DestinationGuard, budget: FlowBudget,
                 stats: Stats) -> None:
        self.open_socket = open_socket
        self.guard = guard
        self.budget = budget
        self.stats = stats
        self.sockets: dict[int, ExitSocket] = {}
        self.ended: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        """Open flows (flow 0 included once used)."""
        return len(self.sockets)

    def send(self, flow: int, destination: Address, payload: bytes) -> str | None:
        """Send ``payload`` on ``flow`` or return why not (see :meth:`ExitSocket.send`).

        A datagram of an ended flow is dropped and counted, and None returned: the originator
        ended it, so nobody waits for a refusal.
        """
        exit_socket = self.sockets.get(flow)
        if exit_socket is None:
            if flow in self.ended:
                self.stats.drop("exit_flow_ended")
                return None
            if flow != DEFAULT_FLOW and len(self.sockets) - (DEFAULT_FLOW in self.sockets) >= MAX_FLOWS_PER_CIRCUIT:
                return TOO_MANY_FLOWS
            if not self.budget.take():
                self.stats.drop("exit_flows_exhausted")
                return NO_SOCKET
            exit_socket = self.sockets[flow] = self.open_socket(flow)
            self.stats.note("exit_flows_opened")
        return exit_socket.send(destination, payload)

    def end(self, flow: int) -> None:
        """FLOW_END: close ``flow``'s sockets and remember that it ended."""
        exit_socket = self.sockets.pop(flow, None)
        self.ended[flow] = None
        if len(self.ended) > ENDED_MEMORY:
            self.ended.popitem(last=False)
        if exit_socket is not None:
            exit_socket.close()
            self.budget.release()

    def close(self) -> None:
        """The circuit ended: close every flow's sockets."""
        sockets, self.sockets = self.sockets, {}
        for exit_socket in sockets.values():
            exit_socket.close()
        self.budget.release(len(sockets))
