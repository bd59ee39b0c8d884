# -*- test-case-name: test.test_relay -*-
"""The relay role: carry circuits of others, extend them on request, exit their data.

Sans-I/O apart from the injected ``send`` callable and the exit sockets it is
handed; every rule here is exercised by unit tests and once over real UDP.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from .circuits import JoinedCircuit, KeyCache
from ..crypto import ntor
from ..crypto.onion import HEADER_SIZE, IntegrityError, ReplayError, add_backward, originate_backward, \
    peel_forward
from ..crypto.replay import DuplicateFilter
from ..errors import DecodeError, HandshakeError
from ..exit.policy import refusal_kind
from ..exit.refusals import DATAGRAM_TOO_LARGE, NOT_AN_EXIT
from ..ratelimit import AnswerBudget, KeyedTokenBuckets, SourceShares, TokenBucket, source_prefix
from .reassembly import ReassemblyBuffer
from .routing import LinkTable, Role
from ..wire import relay as msg
from ..wire.cells import TOKEN_SIZE, CellType, Create, Created, frame, relay_prefix
from ..wire.relay import RelayCommand

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from ..settings import TunnelSettings
    from ..stats import Stats

Address = tuple[str, int]

REFUSAL_RATE = 5.0
"""DESTROY answers per second to one source network (/24, /48) for refused CREATEs."""
REFUSAL_BURST = 20.0
REFUSAL_RATE_TOTAL = 100.0
"""DESTROY answers per second for refused CREATEs, all sources together."""
REFUSAL_BURST_TOTAL = 200.0


class RelayRole:
    """Circuits we carry for others: CREATE, forwarding both ways, EXTEND, exit, teardown."""

    log = Logger()

    def __init__(self, *, identity: X25519PrivateKey, node_id: bytes, settings: TunnelSettings,
                 clock: Any, send: Callable[[Address, bytes], None], table: LinkTable, stats: Stats,
                 find_peer: Callable[[Address], tuple[bytes, bytes] | None],
                 extend_allowed: Callable[[Address], str | None],
                 open_exit: Callable[[JoinedCircuit], Any] | None, reassembly: ReassemblyBuffer,
                 source_key: Callable[[Address], str] = lambda address: address[0]) -> None:
        self.identity = identity
        self.source_key = source_key
        """Who a neighbour is for admission and answer budgets (:func:`tunnels.ratelimit.source_id`)."""
        self.reassembly = reassembly
        self.node_id = node_id
        self.onion_key = identity.public_key().public_bytes_raw()
        self.settings = settings
        self.clock = clock
        self.send = send
        self.table = table
        self.stats = stats
        self.find_peer = find_peer
        self.extend_allowed = extend_allowed
        self.open_exit = open_exit
        self.joined: set[JoinedCircuit] = set()
        self.key_cache = KeyCache()
        self.hidden: Any = None
        """The :class:`~tunnels.core.hs_relay.HiddenRelay` duties, set by the community."""
        self.create_buckets = KeyedTokenBuckets(settings.create_rate, settings.create_burst, max_keys=4096)
        self.create_prefix_buckets = KeyedTokenBuckets(2 * settings.create_rate, 2 * settings.create_burst,
                                                       max_keys=4096)
        self.create_total = TokenBucket(settings.create_rate_total, settings.create_burst_total, clock.seconds())
        self.shares = SourceShares(max(1, settings.max_joined_circuits), settings.max_joined_share,
                                   settings.max_joined_prefix_share)
        self.refusals = AnswerBudget(REFUSAL_RATE, REFUSAL_BURST, REFUSAL_RATE_TOTAL, REFUSAL_BURST_TOTAL)

    # --- CREATE -------------------------------------------------------------------------

    def on_create(self, source: Address, circuit_id: int, payload: bytes) -> None:
        """Join a circuit (or refuse it); never overwrites a bound id.

        Everything that can be refused without public-key work is refused first, cheapest
        first: a bound id, a malformed CREATE, a CREATE for another relay, no capacity, the
        CREATE token buckets (per source IP, per source network, node-wide), the table
        bound and the per-IP and per-network shares.  Only then does the ntor handshake
        run.  A refusal is answered with a DESTROY only within :attr:`refusals` (the
        source may be spoofed: an unbudgeted answer would make us a reflector).
        """
        if self.table.get(source, circuit_id) is not None:
            self.stats.drop("duplicate_create")
            return
        try:
            create = Create.decode(payload)
        except DecodeError:
            self.stats.drop("malformed_create")
            return
        host = self.source_key(source)
        now = self.clock.seconds()
        refusal = None
        if self.settings.max_joined_circuits == 0:
            refusal = "not_a_relay"
        elif create.node_id != self.node_id or create.onion_key != self.onion_key:
            refusal = "wrong_relay"
        elif not self.create_buckets.take(host, now):
            refusal = "create_rate"
        elif not self.create_prefix_buckets.take(source_prefix(host), now):
            refusal = "create_rate_prefix"
        elif not self.create_total.take(now):
            refusal = "create_rate_total"
        elif self.table.full():
            refusal = "table_full"
        else:
            refusal = self.shares.try_acquire(host)
        if refusal is not None:
            self.stats.note(f"create_refused_{refusal.replace(' ', '_')}")
            self.refuse_create(source, circuit_id, create.token, now)
            return
        try:
            server_key, auth, material = ntor.server(self.identity, self.node_id, create.node_id,
                                                     create.onion_key, create.client_key)
        except HandshakeError:
            self.shares.release(host)
            self.stats.note("create_refused_handshake")
            self.refuse_create(source, circuit_id, create.token, now)
            return
        circuit = JoinedCircuit(source, circuit_id, create.token, material, now)
        circuit.source_key = host
        self.table.add(source, circuit_id, Role.FROM_PREV, circuit)
        self.joined.add(circuit)
        self.stats.note("circuits_joined")
        self.send(source, frame(CellType.CREATED, circuit_id, Created(server_key, auth).encode()))

    def refuse_create(self, source: Address, circuit_id: int, token: bytes, now: float) -> None:
        """Answer a refused CREATE with a DESTROY (one cell for one cell), within the budget."""
        if self.refusals.allow(self.source_key(source), now):
            self.send(source, frame(CellType.DESTROY, circuit_id, token))
        else:
            self.stats.drop("destroy_withheld")

    # --- cells on joined circuits -------------------------------------------------------

    def forward(self, circuit: JoinedCircuit, cell: bytes) -> None:
        """A forward cell from the previous hop: peel our layer, pass it on or act on it."""
        try:
            seq, payload = peel_forward(self.key_cache.keys(circuit), circuit.fwd_window, cell[6:])
        except ReplayError:
            self.stats.drop("replay")
            return
        except IntegrityError:
            self.stats.drop("integrity")
            self.destroy(circuit, "integrity")
            return
        circuit.fwd_window.mark(seq)
        circuit.cells_forward += 1
        if circuit.next_address is not None and not circuit.extending:
            self.send(circuit.next_address, circuit.next_prefix + payload)
        else:
            self.at_end(circuit, payload[HEADER_SIZE:])

    def backward(self, circuit: JoinedCircuit, cell: bytes) -> None:
        """A backward cell from the next hop: add our layer and pass it towards the originator.

        We cannot authenticate it (the keys of later hops are not ours), but an exact copy of
        a cell we already passed on is dropped here, before it costs any further bandwidth
        (:class:`~tunnels.crypto.replay.DuplicateFilter`; doc/protocol.md section 3).
        """
        seen = circuit.bwd_seen
        if seen is None:
            seen = circuit.bwd_seen = DuplicateFilter()
        if seen.seen(cell[6:14]):
            self.stats.drop("backward_duplicate")
            return
        circuit.cells_backward += 1
        self.send(circuit.prev_address, circuit.prev_prefix +
                  add_backward(self.key_cache.keys(circuit), circuit.next_bwd_seq(), cell[6:]))

    def reply(self, circuit: JoinedCircuit, command: RelayCommand, data: bytes) -> None:
        """Send a relay message to the originator (we are the last hop)."""
        circuit.cells_backward += 1
        body = msg.encode_message(command, data)
        self.send(circuit.prev_address, circuit.prev_prefix +
                  originate_backward(self.key_cache.keys(circuit), circuit.next_bwd_seq(), body))

    def reply_data(self, circuit: JoinedCircuit, command: RelayCommand, data: bytes) -> None:
        """Send data (DATA or E2E) to the originator within the circuit's flow-control window."""
        if not circuit.flow.offer((command, data), partial(self.reply, circuit)):
            self.stats.drop("flow_queue_full")

    def reply_datagram(self, circuit: JoinedCircuit, message: bytes) -> None:
        """Send a DATA message (``source | payload``) of any size to the originator: whole in
        one cell when it fits, else as DATA_FRAGMENT pieces offered to flow control together."""
        if len(message) <= msg.MAX_MESSAGE_DATA:
            self.reply_data(circuit, RelayCommand.DATA, message)
        elif not circuit.flow.offer_all(msg.fragment_messages(message, circuit.next_datagram_id()),
                                        partial(self.reply, circuit)):
            self.stats.drop("flow_queue_full")

    def at_end(self, circuit: JoinedCircuit, body: bytes) -> None:
        """Act on a relay message addressed to us as the circuit's last hop."""
        try:
            command, data = msg.decode_message(body)
        except DecodeError:
            self.stats.drop("malformed_message")
            return
        if command in msg.WINDOWED and circuit.flow.on_data():
            self.reply(circuit, RelayCommand.SENDME, b"")
        if command == RelayCommand.DATA:
            self.exit_data(circuit, data)
        elif command == RelayCommand.DATA_FRAGMENT:
            self.exit_fragment(circuit, data)
        elif command == RelayCommand.FLOW_END:
            self.end_flow(circuit, data)
        elif command == RelayCommand.PING:
            self.reply(circuit, RelayCommand.PONG, data[:8])
        elif command == RelayCommand.EXTEND:
            self.extend(circuit, data)
        elif command == RelayCommand.SENDME:
            if not circuit.flow.on_sendme(partial(self.reply, circuit)):
                self.stats.drop("unexpected_sendme")
                self.destroy(circuit, "protocol")
        elif command in msg.HIDDEN_FORWARD and self.hidden is not None:
            self.hidden.on_message(circuit, command, data)
        elif command in msg.BACKWARD_COMMANDS:
            self.stats.drop("wrong_direction")
            self.destroy(circuit, "protocol")
        else:
            self.stats.drop("unknown_command")

    # --- EXTEND -------------------------------------------------------------------------

    def extend(self, circuit: JoinedCircuit, data: bytes) -> None:
        """Extend the circuit to a verified IPv8 peer chosen by the originator."""
        if circuit.next_address is not None or circuit.extending:
            self.stats.note("extend_refused_again")
            self.destroy(circuit, "protocol")
            return
        try:
            request = msg.Extend.decode(data)
        except DecodeError:
            self.stats.note("extend_refused_malformed")
            self.reply(circuit, RelayCommand.EXTEND_FAILED, b"")
            return
        target = request.address
        reason = self.extend_allowed(target)
        known = self.find_peer(target)
        if reason is None and known is None:
            reason = "unknown_peer"
        elif reason is None and known is not None and (known[0] != request.node_id or known[1] != request.onion_key):
            reason = "identity_mismatch"
        elif reason is None and target == circuit.prev_address:
            reason = "previous_hop"
        if reason is not None:
            self.stats.note(f"extend_refused_{reason}")
            self.reply(circuit, RelayCommand.EXTEND_FAILED, b"")
            return
        next_id = self.table.new_id(target)
        token = secrets.token_bytes(TOKEN_SIZE)
        circuit.next_address, circuit.next_id, circuit.next_token = target, next_id, token
        circuit.next_prefix = relay_prefix(next_id)
        circuit.extending = True
        self.table.add(target, next_id, Role.FROM_NEXT, circuit)
        self.send(target, frame(CellType.CREATE, next_id,
                                Create(request.node_id, request.onion_key, request.client_key, token).encode()))

    def on_created(self, circuit: JoinedCircuit, payload: bytes) -> None:
        """The next hop answered our CREATE: tell the originator (EXTENDED)."""
        if not circuit.extending:
            self.stats.drop("unexpected_created")
            return
        circuit.extending = False
        self.stats.note("circuits_extended")
        self.reply(circuit, RelayCommand.EXTENDED, payload[:Created.SIZE])

    # --- exit ---------------------------------------------------------------------------

    def exit_data(self, circuit: JoinedCircuit, data: bytes) -> None:
        """Send data to the Internet for the originator, on its flow's socket, if we are an
        exit and policy allows; else tell the originator why (DATA_REFUSED)."""
        try:
            flow, destination, payload = msg.decode_data(data)
        except DecodeError:
            self.stats.drop("malformed_data")
            return
        if self.open_exit is None:
            self.stats.note("exit_refused_not_exit")
            self.refuse(circuit, flow, destination, NOT_AN_EXIT)
            return
        if len(payload) > self.settings.max_datagram_size:
            self.stats.note("exit_refused_too_large")
            self.refuse(circuit, flow, destination, DATAGRAM_TOO_LARGE)
            return
        if circuit.exit is None:
            circuit.exit = self.open_exit(circuit)
        refusal = circuit.exit.send(flow, destination, payload)
        if refusal is not None:
            self.stats.note(f"exit_refused_{refusal_kind(refusal)}")
            self.refuse(circuit, flow, destination, refusal)

    def exit_fragment(self, circuit: JoinedCircuit, data: bytes) -> None:
        """One piece of a datagram for the Internet: exit it once all its pieces are here."""
        whole = self.reassembly.add_encoded(circuit, data)
        if whole is not None:
            self.exit_data(circuit, whole)

    def end_flow(self, circuit: JoinedCircuit, data: bytes) -> None:
        """FLOW_END: the originator's application is gone; close that flow's sockets."""
        try:
            flow = msg.decode_flow_end(data)
        except DecodeError:
            self.stats.drop("malformed_flow_end")
            return
        if circuit.exit is not None:
            circuit.exit.end(flow)

    def refuse(self, circuit: JoinedCircuit, flow: int, destination: Address, reason: str) -> None:
        """Tell the originator why its datagram on ``flow`` to ``destination`` did not leave (DATA_REFUSED)."""
        if circuit not in self.joined:
            return
        self.reply(circuit, RelayCommand.DATA_REFUSED, msg.encode_refusal(flow, destination, reason))

    def exit_reply(self, circuit: JoinedCircuit, flow: int, source: Address, payload: bytes) -> None:
        """A destination answered ``flow``'s exit socket: send it to the originator on that flow."""
        if circuit not in self.joined:
            return
        if len(payload) > self.settings.max_datagram_size:
            self.stats.drop("exit_reply_too_large")
            return
        self.reply_datagram(circuit, msg.encode_data(source, payload, flow))

    # --- teardown and limits ------------------------------------------------------------

    def on_destroy(self, circuit: JoinedCircuit, role: Role, token: bytes) -> bool:
        """DESTROY from a neighbour: valid only with that link's token.  Returns acceptance."""
        expected = circuit.prev_token if role is Role.FROM_PREV else circuit.next_token
        if token != expected:
            self.stats.drop("destroy_bad_token")
            return False
        self.destroy(circuit, "destroyed", skip=circuit.prev_address if role is Role.FROM_PREV else None,
                     skip_next=role is Role.FROM_NEXT)
        return True

    def destroy(self, circuit: JoinedCircuit, reason: str, skip: Address | None = None,
                skip_next: bool = False) -> None:
        """Tear down a joined circuit and tell both neighbours (no reason is sent)."""
        if circuit not in self.joined:
            return
        self.joined.discard(circuit)
        self.stats.retire_cells("relay", circuit.cells_forward, circuit.cells_backward)
        circuit.hop_keys = None
        if self.hidden is not None:
            self.hidden.forget(circuit)
        self.shares.release(circuit.source_key)
        self.table.remove(circuit.prev_address, circuit.prev_id)
        self.table.remove(circuit.next_address, circuit.next_id)
        if skip != circuit.prev_address:
            self.send(circuit.prev_address, frame(CellType.DESTROY, circuit.prev_id, circuit.prev_token))
        if circuit.next_address is not None and not skip_next:
            self.send(circuit.next_address, frame(CellType.DESTROY, circuit.next_id, circuit.next_token))
        if circuit.exit is not None:
            circuit.exit.close()
            circuit.exit = None
        if circuit.reassembly is not None:
            circuit.reassembly.clear()
        self.stats.note(f"joined_closed_{reason}")

    def sweep(self) -> None:
        """Enforce max_time, max_time_inactive and max_traffic on what we carry."""
        now = self.clock.seconds()
        for circuit in list(self.joined):
            reason = circuit.sweep(now, self.settings)
            if reason is not None:
                self.destroy(circuit, reason)

    def close_all(self) -> None:
        """Destroy every joined circuit (unload)."""
        for circuit in list(self.joined):
            self.destroy(circuit, "shutdown")
