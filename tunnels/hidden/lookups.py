# -*- test-case-name: test.test_hidden -*-
"""Looking a service up in the DHT: when, and through which circuit.

A member looks its service up when it registers, again each time one of its intro points is
confirmed (the intro point confirms only once its DHT announcement ended), and then every
``lookup_interval`` seconds.  The lookup after a confirmation is what makes a swarm meet in one
round: of any two members, the one confirmed later finds the other's intro points, so every
pair is introduced without waiting for a timer.  Lookups never overlap; one asked for while
another runs starts when it ends.

A member that cannot be found (a seeker of a self-certifying service without its key) has no
intro point to wait for: when its lookup finds no intro point at all, the service is not
there yet, and it looks again after :data:`EMPTY_RETRY` seconds, doubling up to
``lookup_interval``.  That is the only wait, and only for a service that does not exist yet.

With a provider that supports it (``use_sender``, the mainline DHT), lookups go through a
circuit of our own to an exit, so the DHT never sees our address; queries wait while that
circuit is being built.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail

from ..community import TunnelCommunity
from ..core.circuits import Circuit, CircuitState
from ..errors import TunnelError
from .state import Address, Registration

if TYPE_CHECKING:  # the mixin runs inside HiddenTunnelCommunity, a TunnelCommunity
    _Base = TunnelCommunity
else:
    _Base = object


DHT_QUEUE_LIMIT = 32
"""DHT queries kept while the circuit that carries them is being built (a lookup sends about 3
at once, then more as answers come in)."""
EMPTY_RETRY = 0.25
"""Seconds before an unfindable member looks again after finding no intro point (doubling)."""


class LookupMixin(_Base):
    """DHT lookups of :class:`~tunnels.hidden.community.HiddenTunnelCommunity`."""

    def _request_lookup(self, registration: Registration) -> None:
        """Look ``registration``'s service up now, or right after the lookup that is running."""
        if registration.looking_up:
            registration.look_again = True
            return
        registration.looking_up = True
        registration.last_lookup = self.reactor.seconds()
        self.stats.note("dht_lookups")

        def done(result: Any) -> None:
            registration.looking_up = False
            if registration.look_again and self.registrations.get(registration.service.dht_key) is registration:
                registration.look_again = False
                self._request_lookup(registration)
        def found(addresses: list[Address]) -> None:
            if addresses:
                registration.empty_lookups = 0
            elif not registration.findable:
                self._look_again_later(registration)
            self._found(registration, addresses)

        def failed(failure: Any) -> None:
            self.stats.note("dht_lookup_failed")
            if not registration.findable:
                self._look_again_later(registration)
        d = self._dht_lookup(registration.service.dht_key)
        d.addCallbacks(found, failed)
        d.addBoth(done)

    def _look_again_later(self, registration: Registration) -> None:
        delay = min(self.lookup_interval, EMPTY_RETRY * 2 ** registration.empty_lookups)
        registration.empty_lookups += 1
        if registration.retry_call is not None and registration.retry_call.active():
            return

        def again() -> None:
            registration.retry_call = None
            if self.registrations.get(registration.service.dht_key) is registration:
                self._request_lookup(registration)
        registration.retry_call = self.reactor.callLater(delay, again)

    def _dht_lookup(self, key: bytes) -> Deferred[list[Address]]:
        if self._dht_client is not None:
            try:
                self._lookup_circuit()
            except TunnelError as error:
                return fail(error)
        return self.dht_provider.lookup(key)

    def _lookup_circuit(self) -> Circuit:
        """Our circuit for DHT queries (to an exit), started if there is none; raises
        :class:`~tunnels.errors.TunnelError` if none can be built."""
        circuit = self._dht_circuit
        if circuit is None or circuit.state is CircuitState.CLOSED:
            hops = min((r.hops for r in self.registrations.values()), default=1)
            circuit = self._dht_circuit = self.start_circuit(hops, purpose="dht")
            circuit.data_sink = self._dht_reply
            circuit.on_ready.append(self._dht_circuit_settled)
        return circuit

    def _dht_send(self, data: bytes, address: Address) -> None:
        """Send a DHT query through our own circuit: the DHT never sees our address.

        While that circuit is being built the query waits (at most :data:`DHT_QUEUE_LIMIT`):
        a lookup may start before the circuit is ready, and dropping its queries would stall
        it for a whole query timeout.
        """
        try:
            circuit = self._lookup_circuit()
        except TunnelError:
            self._dht_circuit = None
            self.stats.drop("dht_query_without_circuit")
            return
        if self._dht_client is None:
            self.stats.drop("dht_query_without_circuit")
        elif circuit.ready:
            self._dht_query(circuit, data, address)
        elif len(self._dht_waiting) >= DHT_QUEUE_LIMIT:
            self.stats.drop("dht_query_queue_full")
        else:
            self._dht_waiting.append((data, address))

    def _dht_circuit_settled(self, circuit: Circuit, error: Exception | None) -> None:
        """The DHT circuit is ready (send what waited) or closed while building (drop it, counted)."""
        waiting, self._dht_waiting = self._dht_waiting, []
        for data, address in waiting:
            if error is None and self._dht_client is not None:
                self._dht_query(circuit, data, address)
            else:
                self.stats.drop("dht_query_without_circuit")

    def _dht_query(self, circuit: Circuit, data: bytes, address: Address) -> None:
        try:
            TunnelCommunity.tunnel_data(self, circuit, address, "data", data)  # to the DHT node, via the exit
        except (TunnelError, ValueError):
            self.stats.drop("dht_query_unsendable")

    def _dht_reply(self, source: Address, payload: bytes) -> None:
        if self._dht_client is not None:
            self._dht_client.datagram_received(payload, source)
