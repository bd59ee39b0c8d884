# -*- test-case-name: test.test_community -*-
"""TunnelCommunity: the IPv8 overlay that builds, relays and exits onion circuits.

The seed API (``build_tunnels``, ``active_data_circuits``, ``tunnels_ready``,
``tunnel_data``) lives here; the roles live in :mod:`tunnels.core.origin` (our circuits)
and :mod:`tunnels.core.relay` (circuits of others).  Cells never pass through IPv8's
message decoding: the transport hands them to :meth:`TunnelCommunity.on_cell`.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from ipv8.community import Community, CommunitySettings
from ipv8.peer import Peer
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .exit.addresses import is_forbidden_ip
from .core.circuits import Circuit, JoinedCircuit
from .errors import CircuitBuildFailed, CircuitNotReady, DatagramTooLarge, NoExitAvailable
from .exit.flows import ExitFlows, FlowBudget
from .exit.sockets import ExitSocket
from .exit.policy import DestinationGuard, ExitPolicy
from .core.hs_relay import HiddenRelay
from .core.ipv8_dispatch import IPv8Dispatch
from .core.destinations import DestinationCache, payload_bytes
from .core.flows import Flow, FlowDataHandler, FlowRefusalHandler
from .core.origin import DataHandler, OriginRole, PathHop
from .core.guards import EntryGuards, Vanguards, first_hops
from .core.pathsel import Candidate, PeerFlag, select_path
from .core.peer_flags import PeerFlagsMixin
from .core.peering import PeeringMixin
from .core.reassembly import ReassemblyBuffer
from .ratelimit import LogBudget, TokenBucket, source_id
from .core.relay import RelayRole
from .core.routing import LinkTable, Role
from .settings import MAX_HOPS, MAX_UDP_PAYLOAD, TunnelSettings
from .stats import Stats
from .core.transport import TwistedUDPEndpoint
from .wire.cells import CELL_SIZE, CellType, TOKEN_SIZE
from .wire.relay import DEFAULT_FLOW_HEADER, MAX_DATA_HEADER, RelayCommand

Address = tuple[str, int]
MAX_BUILDING = 4
"""Circuits of one hop count we build at the same time."""


class TunnelCommunitySettings(CommunitySettings):
    """IPv8 overlay settings.  ``tunnel`` holds the :class:`TunnelSettings`; IPv8 configs
    may instead set the seed's fields one by one (``{"min_circuits": 2, ...}``)."""

    tunnel: TunnelSettings | None = None
    testnet: bool = False
    """Loopback-friendly local mode: extends and exits may reach non-global addresses."""
    reactor: Any = None
    """The Twisted reactor (the global asyncio reactor when not given)."""
    bootstrap: tuple[Address, ...] = ()
    """Peers to introduce ourselves to (they are walked to, not treated as servers)."""
    tick_interval: float = 0.5
    """Seconds between maintenance rounds (pool, keep-alives, limits)."""
    dht_provider: Any = None
    """A :class:`~tunnels.dht.provider.IDHTProvider`; with one we serve as an introduction point."""
    guards: EntryGuards | None = None
    """Our entry guards (the daemon keeps them next to the key file); fresh ones if not given."""


class TunnelCommunity(PeerFlagsMixin, PeeringMixin, Community):
    """Relay and exit role: helps the network; also builds and uses circuits."""

    community_id = hashlib.sha1(b"txtunnels onion routing, protocol 2").digest()
    """Protocol 2: backward layers bind the slot a relay drops; discovery requests are padded."""
    settings_class = TunnelCommunitySettings
    log = Logger()

    def __init__(self, settings: TunnelCommunitySettings) -> None:
        super().__init__(settings)
        self.settings = _resolve_settings(settings)
        self.testnet = bool(settings.testnet)
        self.reactor = settings.reactor or _global_reactor()
        self.bootstrap_addresses = tuple((str(h), int(p)) for h, p in settings.bootstrap)
        self.stats = Stats()
        self.rng = random.SystemRandom()
        self.udp = _find_udp_endpoint(self.endpoint)
        self.udp.cell_handler = self.on_cell
        self.udp.stats = self.stats
        self.log_budget = LogBudget(self.reactor.seconds())
        """Lines a stranger's datagrams may make us log (DESIGN.md property 15)."""
        self.ipv8_dispatch = IPv8Dispatch(self, self.stats, self.reactor.seconds)
        self.reassembly = ReassemblyBuffer(MAX_UDP_PAYLOAD + MAX_DATA_HEADER, self.stats.drop, now=self.reactor.seconds())
        """Bounds of reassembly for every circuit and session of this node (doc/protocol.md 4.1)."""
        if self.udp.host not in ("0.0.0.0", "::") and self.udp.is_open():
            self.my_estimated_lan = (self.udp.host, self.udp.port)
            self.my_estimated_wan = (self.udp.host, self.udp.port)
        self.table = LinkTable(limit=4 * (self.settings.max_joined_circuits + 64 * self.settings.max_circuits))
        self.peer_flags: dict[bytes, PeerFlag] = {}
        identity = X25519PrivateKey.from_private_bytes(self.my_peer.key.key_to_bin()[10:42])
        self.relay = RelayRole(identity=identity, node_id=self.my_peer.mid, settings=self.settings,
                               clock=self.reactor, send=self.udp.send, table=self.table, stats=self.stats,
                               find_peer=self._find_peer, extend_allowed=self._extend_allowed,
                               open_exit=self._open_exit if self.settings.become_exitnode else None,
                               reassembly=self.reassembly, source_key=partial(source_id, per_port=self.testnet))
        self.origin = OriginRole(settings=self.settings, clock=self.reactor, send=self.udp.send,
                                 table=self.table, stats=self.stats, on_closed=self._circuit_closed,
                                 reassembly=self.reassembly)
        self.exit_bandwidth = TokenBucket(self.settings.exit_bandwidth, self.settings.exit_bandwidth,
                                          self.reactor.seconds())
        self.exit_flow_budget = FlowBudget()
        self.dht_provider = settings.dht_provider
        self.hidden_relay = HiddenRelay(self.relay, lambda: self.udp.port, lambda: self.dht_provider)
        self.relay.hidden = self.hidden_relay
        self.guards = settings.guards if settings.guards is not None else EntryGuards(self.rng)
        self.vanguards = Vanguards(self.rng)
        self.pool_hops: set[int] = set()
        self.destinations = DestinationCache()
        self._ticker = LoopingCall(self.tick)
        self._ticker.clock = self.reactor
        self._ticker.start(settings.tick_interval, now=False)
        for address in self.bootstrap_addresses:
            self.walk_to(address)

    # --- the seed API ---------------------------------------------------------------------

    def build_tunnels(self, hops: int) -> None:
        """Keep a pool of between ``min_circuits`` and ``max_circuits`` ready data circuits
        of ``hops`` hops, rebuilding as circuits die or expire."""
        _check_hops(hops, MAX_HOPS - 1)
        self.pool_hops.add(hops)
        self.maintain_pools()

    def active_data_circuits(self, hops: int | None = None) -> list[Circuit]:
        """Ready data circuits (of ``hops`` hops if given), oldest first: ``[0]`` works."""
        return [c for c in self.origin.circuits.values()
                if c.ready and c.purpose == "data" and (hops is None or c.goal_hops == hops)]

    def tunnels_ready(self, hops: int | None = None) -> float:
        """Ready circuits divided by ``min_circuits``, capped at 1.0 (1.0 means ready).

        Without ``hops``: the least ready of the pools asked for with ``build_tunnels``
        (1.0 when none was asked for and min_circuits is 0).
        """
        wanted = [hops] if hops is not None else sorted(self.pool_hops)
        if not wanted:
            return 1.0 if self.settings.min_circuits == 0 else 0.0
        if self.settings.min_circuits == 0:
            return 1.0
        return min(min(1.0, len(self.active_data_circuits(h)) / self.settings.min_circuits) for h in wanted)

    def tunnel_data(self, circuit: Circuit, destination: Address, message_type: str, payload: str | bytes) -> None:
        """Send ``payload`` through ``circuit`` and its exit to ``destination`` (host, port).

        ``message_type`` must be ``"data"``; a ``str`` payload is sent as UTF-8, of at most
        ``max_datagram_size`` bytes (65,507 by default); one that does not fit in a cell
        travels in as many cells as it needs (doc/protocol.md 4.1).  The host may be an IP
        literal or a name the exit resolves; ``""`` means the unspecified address, as in
        socket calls (exits refuse it).  Raises :class:`CircuitNotReady`, ``TypeError``,
        :class:`~tunnels.errors.DatagramTooLarge` or ``ValueError`` before any I/O.
        Like a UDP socket it never blocks: beyond the circuit's flow-control window and
        queue (:mod:`tunnels.core.flow`) a datagram is dropped whole and counted
        (``flow_queue_full``).
        """
        if message_type != "data":
            raise ValueError(f"unknown message type {message_type!r}; only 'data' is defined")
        self._send(circuit, DEFAULT_FLOW_HEADER, destination, payload)

    def open_flow(self, circuit: Circuit, on_data: FlowDataHandler, on_refused: FlowRefusalHandler | None = None) -> Flow:
        """Open a flow of our own on ``circuit``: the exit sends its datagrams (:meth:`flow_data`)
        from a UDP socket of that flow alone, and the replies to that socket reach
        ``on_data(source, payload)`` only, never the data handlers or another flow; its refusals
        reach ``on_refused(destination, reason)``.  Like a Tor stream (doc/protocol.md 4.3).

        :raises CircuitNotReady: the circuit is not ours or not ready.
        :raises ~tunnels.errors.FlowLimitReached: the circuit has as many flows as an exit keeps.
        """
        if not isinstance(circuit, Circuit) or self.origin.circuits.get(circuit.circuit_id) is not circuit:
            raise CircuitNotReady("not one of this community's circuits")
        return self.origin.open_flow(circuit, on_data, on_refused)

    def flow_data(self, flow: Flow, destination: Address, payload: str | bytes) -> None:
        """Send ``payload`` on ``flow`` to ``destination``; as :meth:`tunnel_data` otherwise.

        :raises CircuitNotReady: the flow ended or its circuit closed.
        """
        self._send(flow.circuit, flow.header, destination, payload, flow)

    def close_flow(self, flow: Flow) -> None:
        """End ``flow``: the exit closes its sockets; late replies are dropped (idempotent)."""
        self.origin.close_flow(flow)

    def _send(self, circuit: Circuit, header: bytes, destination: Address, payload: str | bytes,
              flow: Flow | None = None) -> None:
        data = payload_bytes(payload)
        self.check_size(data)
        prefix = self.destinations.prefix(destination)
        if not isinstance(circuit, Circuit) or self.origin.circuits.get(circuit.circuit_id) is not circuit:
            raise CircuitNotReady("not one of this community's circuits")
        if flow is not None and not flow.open:
            raise CircuitNotReady(f"{flow!r} has ended")
        if not circuit.ready:
            raise CircuitNotReady(f"{circuit!r} is not ready")
        self.origin.send_datagram(circuit, b"".join((header, prefix, data)))

    def check_size(self, data: bytes) -> None:
        """Raise :class:`DatagramTooLarge` if ``data`` exceeds ``max_datagram_size``."""
        if len(data) > self.settings.max_datagram_size:
            raise DatagramTooLarge(f"datagram of {len(data)} bytes exceeds max_datagram_size "
                                   f"({self.settings.max_datagram_size} bytes)")

    # --- receiving and events -------------------------------------------------------------

    def add_data_handler(self, handler: DataHandler) -> None:
        """Call ``handler(circuit, (host, port), payload)`` for data destinations send back."""
        self.origin.data_handlers.append(handler)

    def remove_data_handler(self, handler: DataHandler) -> None:
        """Stop calling ``handler``."""
        self.origin.data_handlers.remove(handler)

    def add_refusal_handler(self, handler: Any) -> None:
        """Call ``handler(circuit, (host, port), reason)`` when an exit refuses a destination."""
        self.origin.refusal_handlers.append(handler)

    # --- circuits -------------------------------------------------------------------------

    def start_circuit(self, hops: int, exit_data: bool = True, *, last_hop: Candidate | None = None,
                      exclude: frozenset[bytes] = frozenset(), purpose: str | None = None,
                      penultimate: Candidate | None = None) -> Circuit:
        """Start building a circuit of ``hops`` hops chosen from our own view and return it.

        ``exit_data`` asks for an exit as last hop; ``last_hop`` fixes the last hop instead, and
        ``penultimate`` the hop before it; ``exclude`` keeps node ids off the path.  The first and
        second hops come from our entry guards and vanguards (:func:`~tunnels.core.guards.first_hops`;
        :func:`~tunnels.core.pathsel.select_path` says when they do not apply).  Raises
        :class:`NoExitAvailable` or :class:`CircuitBuildFailed` when our view of the network is
        too small.
        """
        _check_hops(hops, MAX_HOPS)
        candidates = self.candidates()
        guards, layer2 = first_hops(self.guards, self.vanguards, candidates, hops, purpose, self.reactor.seconds())
        path = select_path(candidates, hops, exit_data, self.rng, exclude, last_hop, guards, layer2, penultimate)
        if path is None:
            if exit_data and last_hop is None and not any(PeerFlag.EXIT in c.flags for c in candidates):
                raise NoExitAvailable("no known peer offers to exit data")
            if guards is not None and not guards:
                raise CircuitBuildFailed("no usable entry guard")
            raise CircuitBuildFailed(f"not enough relays known for {hops} hops")
        circuit = self.origin.build([PathHop(c.address, c.node_id, c.onion_key) for c in path],
                                    purpose or ("data" if exit_data and last_hop is None else "relay"))
        if guards is not None and any(g.node_id == path[0].node_id for g in guards):
            self.guards.watch(circuit, path[0].node_id, self.reactor.seconds)
        return circuit

    def when_ready(self, circuit: Circuit) -> Deferred[Circuit]:
        """A Deferred that fires with ``circuit`` once ready, or fails if it closes first."""
        done: Deferred[Circuit] = Deferred()
        if circuit.ready:
            done.callback(circuit)
            return done

        def settle(built: Circuit, error: Exception | None) -> None:
            if error is None:
                done.callback(built)
            else:
                done.errback(error)
        circuit.on_ready.append(settle)
        return done

    def create_circuit(self, hops: int, exit_data: bool = True, *, last_hop: Candidate | None = None,
                       exclude: frozenset[bytes] = frozenset(), purpose: str | None = None,
                       penultimate: Candidate | None = None) -> Deferred[Circuit]:
        """Build one circuit now (see :meth:`start_circuit`); the Deferred fires when it is ready."""
        try:
            circuit = self.start_circuit(hops, exit_data, last_hop=last_hop, exclude=exclude, purpose=purpose,
                                         penultimate=penultimate)
        except (CircuitBuildFailed, NoExitAvailable) as error:
            return fail(error)
        return self.when_ready(circuit)

    def remove_circuit(self, circuit: Circuit) -> None:
        """Destroy one of our circuits."""
        self.origin.close(circuit, "removed")

    @property
    def circuits(self) -> list[Circuit]:
        """All our circuits, building or ready."""
        return list(self.origin.circuits.values())

    @property
    def joined_circuits(self) -> list[JoinedCircuit]:
        """Circuits of others we carry."""
        return list(self.relay.joined)

    def candidates(self) -> list[Candidate]:
        """Peers we could use as hops, from our own IPv8 view (minus recently unresponsive ones)."""
        result = []
        now = self.reactor.seconds()
        avoid = self.origin.unresponsive
        for peer in self.get_peers():
            if avoid.get(peer.mid, 0.0) > now:
                continue
            flags = self.peer_flags.get(peer.mid)
            onion_key = _onion_key(peer)
            if flags and onion_key is not None:
                result.append(Candidate((peer.address[0], peer.address[1]), peer.mid, onion_key, flags))
        return result

    def maintain_pools(self) -> None:
        """Start builds so every requested pool heads for ``max_circuits`` ready circuits."""
        for hops in sorted(self.pool_hops):
            mine = [c for c in self.origin.circuits.values() if c.purpose == "data" and c.goal_hops == hops]
            building = sum(1 for c in mine if not c.ready)
            missing = self.settings.max_circuits - len(mine)
            for _ in range(max(0, min(missing, MAX_BUILDING - building))):
                d = self.create_circuit(hops)
                d.addErrback(lambda failure: None)

    # --- maintenance ----------------------------------------------------------------------

    def tick(self) -> None:
        """One maintenance round: limits, keep-alives, guards, pools, bootstrap."""
        self.relay.sweep()
        self.guards.usable(self.candidates(), self.reactor.seconds())
        self.hidden_relay.sweep()
        self.reassembly.sweep(self.reactor.seconds())
        for circuit in self.origin.sweep():
            self.origin.send_message(circuit, RelayCommand.PING, self.rng.randbytes(8))
        self.maintain_pools()
        if self.bootstrap_addresses and len(self.get_peers()) < len(self.bootstrap_addresses):
            self.walk_to(self.rng.choice(self.bootstrap_addresses))

    def _circuit_closed(self, circuit: Circuit) -> None:
        if self.pool_hops and self._ticker.running:
            self.reactor.callLater(0, self.maintain_pools)

    # --- cells ----------------------------------------------------------------------------

    def on_cell(self, source: Address, cell: bytes) -> None:
        """Fast path: dispatch one cell by (neighbour, circuit id).  Never raises."""
        try:
            if len(cell) != CELL_SIZE:
                self.stats.drop("bad_length")
                return
            circuit_id = int.from_bytes(cell[2:6], "big")
            entry = self.table.entries.get((source, circuit_id))
            kind = cell[1]
            if kind == CellType.RELAY:
                if entry is None:
                    self.stats.drop("unknown_circuit")
                    return
                role, circuit = entry
                if role is Role.FROM_PREV:
                    self.relay.forward(circuit, cell)
                elif role is Role.OWN:
                    self.origin.on_relay(circuit, cell)
                elif circuit.extending:
                    self.stats.drop("relay_before_created")
                else:
                    self.relay.backward(circuit, cell)
            elif kind == CellType.CREATE:
                if circuit_id == 0:
                    self.stats.drop("circuit_id_zero")
                    return
                self.relay.on_create(source, circuit_id, cell[6:])
            elif kind == CellType.CREATED:
                if entry is None:
                    self.stats.drop("unexpected_created")
                elif entry[0] is Role.OWN:
                    self.origin.on_created(entry[1], cell[6:])
                elif entry[0] is Role.FROM_NEXT:
                    self.relay.on_created(entry[1], cell[6:])
                else:
                    self.stats.drop("unexpected_created")
            elif kind == CellType.INTRODUCE:
                self.hidden_relay.on_link_introduce(source, cell[6:])
            elif kind == CellType.INTRODUCE_ACK:
                self.hidden_relay.on_link_introduce_ack(source, cell[6:])
            elif kind == CellType.DESTROY:
                if entry is None:
                    self.stats.drop("unknown_circuit")
                    return
                token = cell[6:6 + TOKEN_SIZE]
                if entry[0] is Role.OWN:
                    self.origin.on_destroy(entry[1], token)
                else:
                    self.relay.on_destroy(entry[1], entry[0], token)
            else:
                self.stats.drop("unknown_cell_type")
        except Exception:
            self.stats.drop("internal_error")
            if self.log_budget.allow(self.reactor.seconds()):
                self.log.failure("bug: a cell from {source} raised", source=source)

    def on_packet(self, packet: Any, warn_unknown: bool = True) -> None:
        """IPv8 packets of our overlay, dispatched without IPv8's unguarded indexing and
        log floods (:mod:`tunnels.core.ipv8_dispatch`).  Never raises."""
        self.ipv8_dispatch.on_packet(packet)

    def on_deprecated_message(self, source_address: Any, data: bytes) -> None:
        """IPv8 logs a warning per deprecated message; a stranger's are only counted."""
        self.stats.drop("ipv8_deprecated_message")

    # --- helpers for the roles ------------------------------------------------------------

    def _find_peer(self, address: Address) -> tuple[bytes, bytes] | None:
        peer = self.network.get_verified_by_address(address)
        if peer is None:
            return None
        onion_key = _onion_key(peer)
        return None if onion_key is None else (peer.mid, onion_key)

    def _extend_allowed(self, address: Address) -> str | None:
        """Why we must not extend (or forward an introduction) to ``address``, or None.

        The reasons are a fixed set (they name counters: ``extend_refused_<reason>``)."""
        if address[1] == 0:
            return "port_0"
        if self.testnet:
            return None
        try:
            forbidden = is_forbidden_ip(address[0])
        except (ValueError, TypeError):
            return "bad_address"
        return None if forbidden is None else "non_global_address"

    def _open_exit(self, circuit: JoinedCircuit) -> ExitFlows:
        policy = ExitPolicy(allow_ports=self.settings.exit_ports, allow_non_global=self.testnet,
                            own_addresses=frozenset() if self.testnet else frozenset({self.udp.host}) - {"0.0.0.0"})
        guard = DestinationGuard(self.settings.exit_unanswered_packets, self.settings.exit_destinations_per_circuit)
        interfaces = (self.udp.host, "::1") if self.testnet else ("0.0.0.0", "::")

        def open_socket(flow: int) -> ExitSocket:
            return ExitSocket(self.reactor, interfaces, policy, guard, self.exit_bandwidth, self.stats,
                              lambda source, payload: self.relay.exit_reply(circuit, flow, source, payload),
                              lambda destination, reason: self.relay.refuse(circuit, flow, destination, reason))
        return ExitFlows(open_socket, guard, self.exit_flow_budget, self.stats)

    # --- shutdown -------------------------------------------------------------------------

    async def unload(self) -> None:
        """Destroy our and joined circuits, close exit sockets, stop timers."""
        if self._ticker.running:
            self._ticker.stop()
        self.pool_hops.clear()
        for circuit in list(self.origin.circuits.values()):
            self.origin.close(circuit, "shutdown")
        self.relay.close_all()
        self.udp.cell_handler = None
        await super().unload()


def _resolve_settings(settings: TunnelCommunitySettings) -> TunnelSettings:
    base = settings.tunnel if settings.tunnel is not None else TunnelSettings()
    if not isinstance(base, TunnelSettings):
        raise TypeError("settings.tunnel must be a TunnelSettings")
    loose = {name: getattr(settings, name) for name in TunnelSettings.field_names() if hasattr(settings, name)}
    return replace(base, **loose) if loose else base


def _find_udp_endpoint(endpoint: Any) -> TwistedUDPEndpoint:
    if isinstance(endpoint, TwistedUDPEndpoint):
        return endpoint
    for interface in getattr(endpoint, "interfaces", {}).values():
        if isinstance(interface, TwistedUDPEndpoint):
            return interface
    raise TypeError("TunnelCommunity needs a tunnels.core.transport.TwistedUDPEndpoint "
                    "(start nodes with tunnels.node.start_node or pass endpoint_override)")


def _onion_key(peer: Peer) -> bytes | None:
    try:
        key = peer.public_key.get_crypt_pk()
    except (ValueError, AttributeError):
        return None
    return key if isinstance(key, bytes) and len(key) == 32 else None


def _check_hops(hops: object, most: int) -> None:
    if isinstance(hops, bool) or not isinstance(hops, int):
        raise TypeError(f"hops must be an int, got {type(hops).__name__}")
    if not 1 <= hops <= most:
        raise ValueError(f"hops must be between 1 and {most}, got {hops}")


def _global_reactor() -> Any:
    from twisted.internet import reactor
    return reactor
