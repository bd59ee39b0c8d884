# -*- test-case-name: test.test_hidden -*-
"""HiddenTunnelCommunity: the seed's hidden services (``register_service``), made secure.

Every member of a service is both findable and finding.  A member keeps introduction
points at the end of circuits one hop longer than asked; intro points announce
themselves in the DHT under a domain-separated hash of the service id.  Members look
the key up when they register, when an intro point of theirs is confirmed, and at an
interval (through one of their own circuits when the provider supports it), introduce
themselves through a circuit, agree an end-to-end key with each member the intro point
forwards them to (ntor to that member's key, certified by the service key for
self-certifying ids), and meet at a rendezvous point the member chose.  Each step starts
when the one before ends.  ``callback(peer)`` then gets an address for ``tunnel_data``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from ..community import TunnelCommunity, TunnelCommunitySettings, _check_hops
from ..core.circuits import Circuit
from ..crypto.service_keys import ServiceKey, parse_service_id
from ..errors import CircuitNotReady, TunnelError
from ..settings import MAX_HOPS
from ..wire.relay import RelayCommand
from .introduction import IntroductionMixin
from .lookups import LookupMixin
from .rendezvous import RendezvousMixin
from .seeking import SeekingMixin
from .sessions import RENDEZVOUS_ATTEMPTS, RETIRE_AFTER, SessionMixin
from .state import Address, PeerCallback, PendingIntroduction, Registration, Session

INTRODUCE_TIMEOUT = 10.0
"""Seconds an introduction, or a session that is not yet joined, may take."""


class NoDHTProvider(TunnelError):
    """A service was registered but no ``dht_provider`` is set."""


class HiddenTunnelCommunitySettings(TunnelCommunitySettings):
    """Adds the lookup interval (seconds between DHT lookups per service)."""

    lookup_interval: float = 30.0


class HiddenTunnelCommunity(IntroductionMixin, RendezvousMixin, SeekingMixin, SessionMixin, LookupMixin,
                            TunnelCommunity):
    """The sending side: data circuits plus hidden services (``register_service``)."""

    settings_class = HiddenTunnelCommunitySettings
    log = Logger()

    def __init__(self, settings: HiddenTunnelCommunitySettings) -> None:
        super().__init__(settings)
        self.lookup_interval = float(settings.lookup_interval)
        self.registrations: dict[bytes, Registration] = {}
        self.pending: dict[bytes, PendingIntroduction] = {}
        self.sessions_by_peer: dict[Address, Session] = {}
        self.sessions_by_circuit: dict[Circuit, Session] = {}
        self.retiring: dict[Session, float] = {}
        """Sessions that lost to a twin, and since when (closed :data:`RETIRE_AFTER` seconds later)."""
        self.lost_handlers: list[Callable[[Any, Address], None]] = []
        self._dht_client: Any = None
        self._dht_circuit: Circuit | None = None
        self._dht_waiting: list[tuple[bytes, Address]] = []
        """Queries waiting for ``_dht_circuit`` to become ready (at most
        :data:`~tunnels.hidden.lookups.DHT_QUEUE_LIMIT`)."""
        handlers = self.origin.message_handlers
        handlers[RelayCommand.INTRO_ESTABLISHED] = self._on_intro_established
        handlers[RelayCommand.INTRODUCE2] = self._on_introduce2
        handlers[RelayCommand.INTRODUCE_ACK] = self._on_introduce_ack
        handlers[RelayCommand.RENDEZVOUS_ESTABLISHED] = self._on_rendezvous_established
        handlers[RelayCommand.JOINED] = self._on_joined
        handlers[RelayCommand.E2E] = self._on_e2e

    # --- the seed API ---------------------------------------------------------------------

    def register_service(self, service_id: str | bytes | ServiceKey, hops: int, callback: PeerCallback) -> None:
        """Join the service: become findable (open ids, or with the :class:`ServiceKey`) and find
        the other members; ``callback(peer)`` is called for each newly connected member, and
        ``tunnel_data(any_ready_circuit, peer, "data", payload)`` reaches that member."""
        service, key = parse_service_id(service_id)
        _check_hops(hops, MAX_HOPS - 1)
        if not callable(callback):
            raise TypeError("callback must be callable")
        if self.dht_provider is None:
            raise NoDHTProvider("register_service needs a dht_provider (set community.dht_provider first)")
        if service.dht_key in self.registrations:
            raise ValueError("service already registered; unregister_service it first")
        registration = self.registrations[service.dht_key] = Registration(service_id, service, key, hops, callback)
        self.build_tunnels(hops)
        self._prepare_seeking(registration)
        if self._dht_client is None and hasattr(self.dht_provider, "use_sender"):
            self._dht_client = self.dht_provider.use_sender(self._dht_send)
        self.reactor.callLater(0, self.maintain_services)

    def unregister_service(self, service_id: str | bytes | ServiceKey) -> None:
        """Leave the service: intro points and connections to its members are torn down."""
        service, _ = parse_service_id(service_id)
        registration = self.registrations.pop(service.dht_key, None)
        if registration is None:
            raise ValueError("service is not registered")
        if registration.retry_call is not None and registration.retry_call.active():
            registration.retry_call.cancel()
        for request_id in [r for r, p in self.pending.items() if p.registration is registration]:
            del self.pending[request_id]
        for circuit in [*registration.intro_circuits, *registration.stems.values()]:
            self.origin.close(circuit, "unregistered")
        for session in list(registration.sessions):
            self._drop_session(session)
            if session.circuit is not None:
                self.origin.close(session.circuit, "unregistered")
        for session in [s for s in self.retiring if s.registration is registration]:
            del self.retiring[session]
            if session.circuit is not None:
                self.origin.close(session.circuit, "unregistered")

    def add_peer_lost_handler(self, handler: Callable[[Any, Address], None]) -> None:
        """Call ``handler(service_id, peer)`` when a connected member is lost."""
        self.lost_handlers.append(handler)

    def claim_peer(self, peer: Address, sink: Callable[[Address, bytes], None]) -> bool:
        """Give ``peer``'s data to ``sink(peer, payload)`` alone, not to the data handlers, while its
        session lives (a front end whose applications must not see each other's data); True if
        ``sink`` holds the claim, False if another sink does (compared with ``==``).

        :raises CircuitNotReady: no session with ``peer``.
        """
        session = self.sessions_by_peer.get(peer) if isinstance(peer, tuple) else None
        if session is None:
            raise CircuitNotReady("no connection to this hidden-service peer")
        if session.sink is not None and session.sink != sink:
            return False
        session.sink = sink
        return True

    def release_peer(self, peer: Address, sink: Callable[[Address, bytes], None]) -> None:
        """Undo :meth:`claim_peer` (if ``sink`` holds the claim); the data handlers get the peer's data again."""
        session = self.sessions_by_peer.get(peer) if isinstance(peer, tuple) else None
        if session is not None and session.sink == sink:
            session.sink = None

    def tunnel_data(self, circuit: Circuit, destination: Address, message_type: str, payload: str | bytes) -> None:
        """As :meth:`TunnelCommunity.tunnel_data`; to a hidden-service peer the data goes end to
        end through that peer's rendezvous circuit (whichever ready circuit is passed)."""
        session = self.sessions_by_peer.get(destination) if isinstance(destination, tuple) else None
        if session is None:
            super().tunnel_data(circuit, destination, message_type, payload)
            return
        if message_type != "data":
            raise ValueError(f"unknown message type {message_type!r}; only 'data' is defined")
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"payload must be str or bytes, got {type(payload).__name__}")
        self.check_size(data)
        if not session.established or session.circuit is None or not session.circuit.ready:
            raise CircuitNotReady("the connection to this peer is not established")
        sealed = session.e2e.seal_datagram(bytes(data), session.next_datagram_id())
        self.origin.send_all(session.circuit, [(RelayCommand.E2E, message) for message in sealed])

    # --- maintenance ----------------------------------------------------------------------

    def _retry_introduction(self, pending: PendingIntroduction) -> None:
        registration = pending.registration
        if pending.attempt < RENDEZVOUS_ATTEMPTS and \
                self.registrations.get(registration.service.dht_key) is registration:
            self._introduce(registration, pending.intro, pending.attempt + 1)

    def tick(self) -> None:
        super().tick()
        if self.registrations:
            self.maintain_services()

    def maintain_services(self) -> None:
        """Keep intro points up, look services up at an interval, expire introductions and
        rendezvous that take longer than :data:`INTRODUCE_TIMEOUT`."""
        now = self.reactor.seconds()
        for request_id, pending in list(self.pending.items()):
            if now - pending.started > INTRODUCE_TIMEOUT:
                del self.pending[request_id]
                if not pending.replies:
                    # Nobody answered: the intro point, or a relay on the way, is gone; try again
                    # (another circuit, if ours died).
                    self.stats.note("introduce_timeout")
                    self._retry_introduction(pending)
        for session in list(self.sessions_by_peer.values()):
            if not session.established and now - session.started > INTRODUCE_TIMEOUT:
                self.stats.note("session_join_timeout")
                circuit = session.circuit
                self._give_up(session)
                if circuit is not None:
                    self.origin.close(circuit, "join_timeout")
        self._end_retired(now - RETIRE_AFTER)
        for registration in list(self.registrations.values()):
            self._close_idle_stems(registration, now, INTRODUCE_TIMEOUT)
            if registration.findable:
                self._maintain_intro_points(registration)
            if now - registration.last_lookup >= self.lookup_interval:
                self._request_lookup(registration)

    async def unload(self) -> None:
        """Leave every service, then unload as a :class:`TunnelCommunity`."""
        for registration in list(self.registrations.values()):
            self.unregister_service(registration.original_id)
        client, self._dht_client = self._dht_client, None
        if client is not None:
            # Cancelling a lookup's queries lets it start new ones: close until none is pending.
            for _ in range(256):
                client.close()
                if not len(client.client.pending):
                    break
        await super().unload()


