# -*- test-case-name: test.test_flows -*-
"""Flows: several applications' datagrams on one of our circuits, kept apart (doc/protocol.md 4.3).

A :class:`Flow` is one application's share of a circuit, like a Tor stream: its DATA
messages carry its flow id, the exit sends them from a UDP socket of that flow alone, and
the replies to that socket come back with the same id to the flow's ``on_data`` and to
nobody else.  Flow 0 (:data:`~tunnels.wire.relay.DEFAULT_FLOW`) is ``tunnel_data``'s and
reaches the data handlers.  Ids are numbered from 1 per circuit and never reused, so a
reply still in flight for an ended flow can never reach the flow opened after it: it is
dropped and counted (``flow_closed``).

Plain state, no I/O: :class:`~tunnels.core.origin.OriginRole` sends FLOW_END.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import CircuitNotReady, FlowLimitReached
from ..wire.relay import MAX_FLOW_ID, MAX_FLOWS_PER_CIRCUIT, flow_header

if TYPE_CHECKING:
    from .circuits import Circuit

Address = tuple[str, int]
FlowDataHandler = Callable[[Address, bytes], None]
"""``on_data(source, payload)``: a reply on the flow."""
FlowRefusalHandler = Callable[[Address, str], None]
"""``on_refused(destination, reason)``: the exit did not send a datagram of the flow (DATA_REFUSED)."""


class Flow:
    """One application's flow on one of our circuits (open until :meth:`~tunnels.community.TunnelCommunity.close_flow`
    or the circuit closes).

    :ivar circuit: the circuit it belongs to.
    :ivar flow_id: 1 to :data:`~tunnels.wire.relay.MAX_FLOW_ID`, unique on the circuit for its whole life.
    :ivar header: the 2 bytes in front of its DATA messages.
    :ivar open: False once ended, or once its circuit closed.
    """

    __slots__ = ("circuit", "flow_id", "header", "on_data", "on_refused", "open")

    def __init__(self, circuit: Circuit, flow_id: int, on_data: FlowDataHandler,
                 on_refused: FlowRefusalHandler | None) -> None:
        self.circuit = circuit
        self.flow_id = flow_id
        self.header = flow_header(flow_id)
        self.on_data = on_data
        self.on_refused = on_refused
        self.open = True

    def __repr__(self) -> str:
        return f"<Flow {self.flow_id} on {self.circuit!r}{'' if self.open else ' ended'}>"


def new_flow(circuit: Circuit, on_data: FlowDataHandler, on_refused: FlowRefusalHandler | None) -> Flow:
    """Open the next flow of ``circuit`` (registered in ``circuit.flows``).

    :raises CircuitNotReady: the circuit is not ready.
    :raises FlowLimitReached: :data:`~tunnels.wire.relay.MAX_FLOWS_PER_CIRCUIT` flows are open, or
        the circuit used every flow id.
    """
    if not circuit.ready:
        raise CircuitNotReady(f"{circuit!r} is not ready")
    if len(circuit.flows) >= MAX_FLOWS_PER_CIRCUIT:
        raise FlowLimitReached(f"{circuit!r} has {MAX_FLOWS_PER_CIRCUIT} open flows")
    if circuit.last_flow_id >= MAX_FLOW_ID:
        raise FlowLimitReached(f"{circuit!r} used every flow id")
    circuit.last_flow_id += 1
    flow = Flow(circuit, circuit.last_flow_id, on_data, on_refused)
    circuit.flows[flow.flow_id] = flow
    return flow


def forget_flow(flow: Flow) -> bool:
    """Mark ``flow`` ended and remove it from its circuit; True if it was open."""
    was_open = flow.open
    flow.open = False
    if flow.circuit.flows.get(flow.flow_id) is flow:
        del flow.circuit.flows[flow.flow_id]
    return was_open


def forget_all(circuit: Circuit) -> None:
    """The circuit closed: every flow on it is ended."""
    for flow in circuit.flows.values():
        flow.open = False
    circuit.flows.clear()
