# -*- test-case-name: test.test_community -*-
"""The originator role: build our circuits hop by hop, send through them, receive from them."""
from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.logger import Logger

from .circuits import Circuit, CircuitState, Hop
from .flows import Flow, FlowDataHandler, FlowRefusalHandler, forget_all, forget_flow, new_flow
from ..crypto import ntor
from ..crypto.onion import HopKeys, IntegrityError, ReplayError, unwrap_backward, wrap_forward
from ..errors import CircuitBuildFailed, DecodeError, HandshakeError
from .reassembly import ReassemblyBuffer
from ..ratelimit import LogBudget
from .routing import LinkTable, Role
from ..settings import TunnelSettings
from ..stats import Stats
from ..wire import relay as msg
from ..wire.cells import TOKEN_SIZE, CellType, Create, Created, frame, relay_prefix
from ..wire.relay import RelayCommand

Address = tuple[str, int]
DataHandler = Callable[[Circuit, Address, bytes], None]
UNRESPONSIVE_PENALTY = 60.0
"""Seconds we avoid a relay that left a circuit build unanswered."""


class PathHop:
    """A relay chosen for a path: where it is and the keys that identify it."""

    __slots__ = ("address", "node_id", "onion_key")

    def __init__(self, address: Address, node_id: bytes, onion_key: bytes) -> None:
        self.address = address
        self.node_id = node_id
        self.onion_key = onion_key


class OriginRole:
    """Our own circuits."""

    log = Logger()

    def __init__(self, *, settings: TunnelSettings, clock: Any, send: Callable[[Address, bytes], None],
                 table: LinkTable, stats: Stats, on_closed: Callable[[Circuit], None],
                 reassembly: ReassemblyBuffer) -> None:
        self.settings = settings
        self.reassembly = reassembly
        self.clock = clock
        self.send = send
        self.table = table
        self.stats = stats
        self.on_closed = on_closed
        self.circuits: dict[int, Circuit] = {}
        self.data_handlers: list[DataHandler] = []
        self.refusal_handlers: list[Callable[[Circuit, Address, str], None]] = []
        self.unresponsive: dict[bytes, float] = {}
        """Node ids that left a build unanswered, and until when we avoid them."""
        self.log_budget = LogBudget(clock.seconds())
        """Lines a remote peer can make us log through failing application handlers."""
        self.message_handlers: dict[int, Callable[[Circuit, bytes], None]] = {}
        """Handlers for further backward commands (hidden services register theirs)."""

    # --- building -----------------------------------------------------------------------

    def build(self, path: list[PathHop], purpose: str = "data") -> Circuit:
        """Start building a circuit along ``path`` (chosen by us, never by a relay)."""
        first = path[0].address
        circuit_id = self.table.new_id(first)
        circuit = Circuit(circuit_id, len(path), path, self.clock.seconds(), secrets.token_bytes(TOKEN_SIZE),
                          purpose)
        self.table.add(first, circuit_id, Role.OWN, circuit)
        self.circuits[circuit_id] = circuit
        hop = path[0]
        circuit.pending = ntor.client1(hop.node_id, hop.onion_key)
        self.stats.note("circuits_started")
        self.send(first, frame(CellType.CREATE, circuit_id,
                               Create(hop.node_id, hop.onion_key, circuit.pending.client_key,
                                      circuit.token).encode()))
        return circuit

    def lengthen(self, circuit: Circuit, hop: PathHop) -> None:
        """Add ``hop`` after the last one of our circuit, ready or still being built (a hidden
        service's half to a rendezvous point, built ahead up to the hop before it); the circuit
        is ready again, and its ``on_ready`` callbacks called, once ``hop`` answered."""
        if circuit.state is CircuitState.CLOSED:
            raise CircuitBuildFailed("cannot lengthen a closed circuit")
        circuit.path.append(hop)
        circuit.goal_hops += 1
        if circuit.state is CircuitState.READY:
            circuit.state = CircuitState.EXTENDING
            circuit.build_started = self.clock.seconds()
            circuit.pending = ntor.client1(hop.node_id, hop.onion_key)
            extend = msg.Extend(hop.address, hop.node_id, hop.onion_key, circuit.pending.client_key)
            self.send_message(circuit, RelayCommand.EXTEND, extend.encode())

    def on_created(self, circuit: Circuit, payload: bytes) -> None:
        """CREATED from the first hop."""
        if circuit.state is not CircuitState.EXTENDING or circuit.hops or circuit.pending is None:
            self.stats.drop("unexpected_created")
            return
        self._add_hop(circuit, Created.decode(payload))

    def _add_hop(self, circuit: Circuit, created: Created) -> None:
        state, circuit.pending = circuit.pending, None
        assert state is not None
        try:
            material = ntor.client2(state, created.server_key, created.auth)
        except HandshakeError:
            self.stats.note("handshake_auth_fail")
            self.close(circuit, "handshake")
            return
        hop = circuit.path[len(circuit.hops)]
        circuit.hops.append(Hop(hop.address, hop.node_id, hop.onion_key, HopKeys(material)))
        if len(circuit.hops) == circuit.goal_hops:
            circuit.state = CircuitState.READY
            circuit.last_received = self.clock.seconds()
            self.stats.note("circuits_ready")
            callbacks, circuit.on_ready = circuit.on_ready, []
            for callback in callbacks:
                callback(circuit, None)
            return
        target = circuit.path[len(circuit.hops)]
        circuit.pending = ntor.client1(target.node_id, target.onion_key)
        extend = msg.Extend(target.address, target.node_id, target.onion_key, circuit.pending.client_key)
        self.send_message(circuit, RelayCommand.EXTEND, extend.encode())

    # --- sending ------------------------------------------------------------------------

    def send_message(self, circuit: Circuit, command: RelayCommand, data: bytes) -> None:
        """Send a relay message to the circuit's current last hop."""
        seqs = circuit.next_seqs()
        if circuit.counters_exhausted():
            self.close(circuit, "counter_exhausted")
            return
        payload = wrap_forward([hop.keys for hop in circuit.hops], seqs, msg.encode_message(command, data))
        circuit.cells_sent += 1
        circuit.last_sent = self.clock.seconds()
        self.send(circuit.first_hop, relay_prefix(circuit.circuit_id) + payload)

    def send_data(self, circuit: Circuit, command: RelayCommand, data: bytes) -> bool:
        """Send data (DATA or E2E) within the flow-control window; False if dropped (queue full)."""
        if circuit.flow.offer((command, data), partial(self.send_message, circuit)):
            return True
        self.stats.drop("flow_queue_full")
        return False

    def send_all(self, circuit: Circuit, messages: list[tuple[int, bytes]]) -> bool:
        """Send the cells of one datagram within the flow-control window, all or none
        (False: dropped and counted, the queue had no room for every piece)."""
        if circuit.flow.offer_all(messages, partial(self.send_message, circuit)):
            return True
        self.stats.drop("flow_queue_full")
        return False

    def send_datagram(self, circuit: Circuit, message: bytes) -> bool:
        """Send a DATA message (``destination | payload``) of any size: whole in one cell when
        it fits, else as DATA_FRAGMENT pieces (doc/protocol.md 4.1).  False if dropped."""
        if len(message) <= msg.MAX_MESSAGE_DATA:
            return self.send_data(circuit, RelayCommand.DATA, message)
        return self.send_all(circuit, msg.fragment_messages(message, circuit.next_datagram_id()))

    # --- receiving ----------------------------------------------------------------------

    def on_relay(self, circuit: Circuit, cell: bytes) -> None:
        """A backward cell from our first hop."""
        if not circuit.hops:
            self.stats.drop("relay_before_created")
            return
        try:
            seqs, body = unwrap_backward([hop.keys for hop in circuit.hops],
                                         [hop.bwd_window for hop in circuit.hops], cell[6:])
        except ReplayError:
            self.stats.drop("replay")
            return
        except IntegrityError:
            self.stats.drop("integrity")
            self.close(circuit, "integrity")
            return
        for hop, seq in zip(circuit.hops, seqs):
            hop.bwd_window.mark(seq)
        circuit.cells_received += 1
        circuit.last_received = self.clock.seconds()
        try:
            command, data = msg.decode_message(body)
        except DecodeError:
            self.stats.drop("malformed_message")
            return
        if command in msg.WINDOWED and circuit.ready and circuit.flow.on_data():
            self.send_message(circuit, RelayCommand.SENDME, b"")
        self._dispatch(circuit, command, data)

    def _dispatch(self, circuit: Circuit, command: int, data: bytes) -> None:
        extra = self.message_handlers.get(command)
        if extra is not None and circuit.ready:
            extra(circuit, data)
        elif command == RelayCommand.DATA and circuit.ready:
            self._on_data(circuit, data)
        elif command == RelayCommand.DATA_FRAGMENT and circuit.ready:
            whole = self.reassembly.add_encoded(circuit, data)
            if whole is not None:
                self._on_data(circuit, whole)
        elif command == RelayCommand.PONG:
            pass
        elif command == RelayCommand.SENDME and circuit.ready:
            if not circuit.flow.on_sendme(partial(self.send_message, circuit)):
                self.stats.drop("unexpected_sendme")
                self.close(circuit, "protocol")
        elif command == RelayCommand.EXTENDED and circuit.pending is not None and circuit.hops:
            try:
                self._add_hop(circuit, Created.decode(data))
            except DecodeError:
                self.close(circuit, "malformed_extended")
        elif command == RelayCommand.EXTEND_FAILED and circuit.state is CircuitState.EXTENDING:
            self.stats.note("extend_failed")
            self.close(circuit, "extend_failed")
        elif command == RelayCommand.DATA_REFUSED:
            self._on_refused(circuit, data)
        elif command in msg.FORWARD_COMMANDS:
            self.stats.drop("wrong_direction")
            self.close(circuit, "protocol")
        else:
            self.stats.drop("unexpected_command")

    def _on_data(self, circuit: Circuit, data: bytes) -> None:
        """A whole DATA message from the exit: to its flow's owner, else (flow 0) to the
        circuit's sink or the data handlers.  A reply for an ended flow reaches nobody."""
        try:
            flow_id, source, payload = msg.decode_data(data)
        except DecodeError:
            self.stats.drop("malformed_data")
            return
        if flow_id != msg.DEFAULT_FLOW:
            flow = circuit.flows.get(flow_id)
            if flow is None:
                self.stats.drop("flow_closed")
                return
            self.call_handler(flow.on_data, source, payload)
            return
        if circuit.data_sink is not None:
            circuit.data_sink(source, payload)
            return
        self.stats.note("data_received")
        for handler in list(self.data_handlers):
            self.call_handler(handler, circuit, source, payload)

    def _on_refused(self, circuit: Circuit, data: bytes) -> None:
        """DATA_REFUSED: to the flow's owner, else (flow 0) to the refusal handlers."""
        try:
            flow_id, destination, reason = msg.decode_refusal(data)
        except DecodeError:
            self.stats.drop("malformed_refusal")
            return
        self.stats.note("data_refused")
        if flow_id != msg.DEFAULT_FLOW:
            flow = circuit.flows.get(flow_id)
            if flow is None:
                self.stats.drop("flow_closed")
            elif flow.on_refused is not None:
                self.call_handler(flow.on_refused, destination, reason)
            return
        for handler in list(self.refusal_handlers):
            self.call_handler(handler, circuit, destination, reason)

    # --- flows ----------------------------------------------------------------------------

    def open_flow(self, circuit: Circuit, on_data: FlowDataHandler, on_refused: FlowRefusalHandler | None) -> Flow:
        """Open the next flow of ``circuit`` (see :func:`tunnels.core.flows.new_flow` for errors)."""
        flow = new_flow(circuit, on_data, on_refused)
        self.stats.note("flows_opened")
        return flow

    def close_flow(self, flow: Flow) -> None:
        """End ``flow`` and tell the exit (FLOW_END) to close its sockets; idempotent."""
        if forget_flow(flow) and flow.circuit.ready:
            self.send_message(flow.circuit, RelayCommand.FLOW_END, flow.header)

    # --- teardown -----------------------------------------------------------------------

    def close(self, circuit: Circuit, reason: str, notify: bool = True) -> None:
        """Tear down our circuit; ``notify`` sends DESTROY to the first hop."""
        if circuit.state is CircuitState.CLOSED:
            return
        circuit.state = CircuitState.CLOSED
        circuit.close_reason = reason
        self.stats.retire_cells("origin", circuit.cells_sent, circuit.cells_received)
        if reason == "build_timeout" and len(circuit.hops) < len(circuit.path):
            silent = circuit.path[len(circuit.hops)].node_id
            self.unresponsive[silent] = self.clock.seconds() + UNRESPONSIVE_PENALTY
            if len(self.unresponsive) > 1024:
                self.unresponsive.pop(next(iter(self.unresponsive)))
        self.circuits.pop(circuit.circuit_id, None)
        self.table.remove(circuit.first_hop, circuit.circuit_id)
        if circuit.reassembly is not None:
            circuit.reassembly.clear()
        forget_all(circuit)
        if notify:
            self.send(circuit.first_hop, frame(CellType.DESTROY, circuit.circuit_id, circuit.token))
        self.stats.note(f"circuits_closed_{reason}")
        callbacks, circuit.on_ready = circuit.on_ready, []
        for callback in callbacks:
            callback(circuit, CircuitBuildFailed(f"circuit closed while building: {reason}"))
        for callback in circuit.on_closed:
            callback(circuit)
        self.on_closed(circuit)

    def on_destroy(self, circuit: Circuit, token: bytes) -> bool:
        """DESTROY from our first hop (valid only with the circuit's token)."""
        if token != circuit.token:
            self.stats.drop("destroy_bad_token")
            return False
        self.close(circuit, "destroyed_by_relay" if circuit.hops else "refused", notify=False)
        return True

    def sweep(self) -> list[Circuit]:
        """Close circuits past their limits; returns the circuits that need a keep-alive."""
        now = self.clock.seconds()
        idle = []
        for circuit in list(self.circuits.values()):
            reason = circuit.expiry(now, self.settings)
            if reason is not None:
                self.close(circuit, reason)
            elif circuit.ready and now - circuit.last_sent >= self.settings.max_time_inactive / 4:
                idle.append(circuit)
        return idle

    def call_handler(self, handler: Callable[..., None], *args: Any) -> None:
        """Run an application callback; its exceptions never reach the cell path.

        A remote peer can make an application's handler fail on every datagram it sends, so the
        traceback is logged within :attr:`log_budget` and the rest counted (``handler_failed``).
        """
        try:
            handler(*args)
        except Exception:
            self.stats.drop("handler_failed")
            if self.log_budget.allow(self.clock.seconds()):
                self.log.failure("application handler {handler!r} raised", handler=handler)
