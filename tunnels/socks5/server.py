# -*- test-case-name: test.test_socks5 -*-
"""A SOCKS5 (RFC 1928) UDP front end: applications send datagrams through circuits.

Each :class:`Socks5Server` serves one hop count.  A client opens a TCP control
connection, negotiates "no authentication" and asks for UDP ASSOCIATE; the server
opens a UDP relay port on 127.0.0.1 and returns it.  Datagrams the client sends
there carry the RFC 1928 UDP header naming their destination; they go out with
:meth:`~tunnels.community.TunnelCommunity.tunnel_data` through a ready circuit of
that hop count, the same circuit for the same destination while it lives.
Replies come back wrapped in the same header.  CONNECT and BIND are refused with
reply 0x07 (we carry datagrams only).

Security rules, and why:

- Only the client that made the association may use its UDP port: datagrams must
  come from the control connection's IP (and from the port it announced, or the
  first port it used).  Otherwise any local process could send through, or
  receive the replies of, someone else's association.
- The association and its port end when the control connection closes (RFC 1928).
- Fragmented datagrams (FRAG != 0) are dropped: reassembly buys nothing here and
  is a classic source of bugs.  Whole datagrams of any size go through (circuits
  split and reassemble them); the RFC header costs 10 bytes or more of the 65,507 an
  IPv4 datagram holds, so the largest payload is 65,497 bytes to an IPv4 destination,
  and a larger reply is counted (``dropped_reply_too_large``), never sent cut.
- Domain names (ATYP 3) are passed to ``tunnel_data`` unchanged and resolved by the
  exit (or, for hidden services, never resolved at all): resolving them here would
  leak every name the application uses to the local resolver.
- The packet path never logs; it counts in :attr:`Socks5Server.stats`.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
from collections import Counter, OrderedDict
from typing import Any

from twisted.internet.error import MessageLengthError
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import CircuitNotReady, DatagramTooLarge
from ..runtime import listen_udp
from ..settings import MAX_UDP_PAYLOAD
from .codec import (NO_ACCEPTABLE_METHODS, NO_AUTH, VERSION, Command, Reply, Request, Socks5Error, encode_reply,
                    encode_udp_datagram, parse_greeting, parse_request, parse_udp_datagram)

Address = tuple[str, int]
MAX_CONTROL_BUFFER = 1024
"""Bytes a control connection may send before its request is complete."""
HANDSHAKE_TIMEOUT = 30.0
"""Seconds a control connection has to finish negotiation and its request."""
MAX_FLOWS = 256
"""Destinations one association remembers (circuit choice and reply routing)."""


# --- UDP association ----------------------------------------------------------------------

class UdpAssociation(DatagramProtocol):
    """The UDP relay port of one control connection.

    :ivar client_host: the only IP datagrams are accepted from.
    :ivar client_port: the only source port accepted; pinned by the first datagram
        when the request announced port 0.
    """

    noisy = False

    def __init__(self, server: Socks5Server, client_host: str, client_port: int) -> None:
        self.server = server
        self.client_host = client_host
        self.client_port = client_port or None
        self.salt = os.urandom(16)
        self.flows: OrderedDict[Address, Any] = OrderedDict()
        self.port: Any = None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        """Send one client datagram through a circuit, or drop it (counted)."""
        stats = self.server.stats
        if addr[0] != self.client_host or (self.client_port is not None and addr[1] != self.client_port):
            stats["dropped_foreign_source"] += 1
            return
        try:
            packet = parse_udp_datagram(datagram)
        except Socks5Error:
            stats["dropped_malformed"] += 1
            return
        if packet.frag != 0:
            stats["dropped_fragment"] += 1
            return
        self.client_port = addr[1]
        destination = (packet.host, packet.port)
        circuit = self.circuit_for(destination)
        if circuit is None:
            stats["dropped_no_circuit"] += 1
            return
        try:
            self.server.community.tunnel_data(circuit, destination, "data", packet.payload)
        except CircuitNotReady:
            stats["dropped_no_circuit"] += 1
            self.flows.pop(destination, None)
            return
        except DatagramTooLarge:
            stats["dropped_too_large"] += 1
            return
        except (TypeError, ValueError):
            stats["dropped_bad_destination"] += 1
            return
        stats["sent"] += 1
        self.server.note_flow(self, circuit, destination)

    def circuit_for(self, destination: Address) -> Any:
        """The circuit for ``destination``: the one it used before while ready, else a
        keyed-hash choice among ready circuits (so destinations spread over circuits)."""
        circuits = self.server.community.active_data_circuits(self.server.hops)
        if not circuits:
            return None
        previous = self.flows.get(destination)
        if previous is not None and previous in circuits:
            self.flows.move_to_end(destination)
            return previous
        circuits.sort(key=lambda c: c.circuit_id)
        digest = hashlib.blake2b(f"{destination[0]}|{destination[1]}".encode(), key=self.salt,
                                 digest_size=8).digest()
        chosen = circuits[int.from_bytes(digest, "big") % len(circuits)]
        self.flows[destination] = chosen
        while len(self.flows) > MAX_FLOWS:
            self.flows.popitem(last=False)
        return chosen

    def deliver(self, source: Address, payload: bytes) -> None:
        """Send a reply from ``source`` to the client, wrapped in the RFC header."""
        if self.transport is None or self.client_port is None:
            return
        wrapped = encode_udp_datagram(source[0], source[1], payload)
        if len(wrapped) > MAX_UDP_PAYLOAD:
            # the RFC 1928 header does not fit around a reply this large in one IPv4 datagram
            self.server.stats["dropped_reply_too_large"] += 1
            return
        try:
            self.transport.write(wrapped, (self.client_host, self.client_port))
        except (OSError, ValueError, MessageLengthError):
            self.server.stats["dropped_client_write"] += 1
            return
        self.server.stats["delivered"] += 1

    def close(self) -> None:
        """Close the relay port."""
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()


# --- control connection -------------------------------------------------------------------

class Socks5Protocol(Protocol):
    """The TCP control connection: negotiation, one request, then the association's life."""

    def __init__(self, server: Socks5Server) -> None:
        self.server = server
        self.buffer = b""
        self.negotiated = False
        self.association: UdpAssociation | None = None
        self.timeout: Any = None

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        """Start the handshake timer."""
        self.timeout = self.server.reactor.callLater(HANDSHAKE_TIMEOUT, self._close)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        """Run the handshake; after UDP ASSOCIATE, ignore whatever arrives."""
        if self.association is not None:
            return
        self.buffer += data
        if len(self.buffer) > MAX_CONTROL_BUFFER:
            self._close()
            return
        try:
            if not self.negotiated:
                greeting = parse_greeting(self.buffer)
                if greeting is None:
                    return
                methods, used = greeting
                self.buffer = self.buffer[used:]
                if NO_AUTH not in methods:
                    self.transport.write(bytes((VERSION, NO_ACCEPTABLE_METHODS)))
                    self._close()
                    return
                self.transport.write(bytes((VERSION, NO_AUTH)))
                self.negotiated = True
            parsed = parse_request(self.buffer)
        except Socks5Error as e:
            self.server.stats["malformed_requests"] += 1
            if self.negotiated and e.reply is not None:
                self.transport.write(encode_reply(e.reply))
            self._close()
            return
        if parsed is None:
            return
        request, _ = parsed
        self.buffer = b""
        self._cancel_timeout()
        if request.command != Command.UDP_ASSOCIATE:
            self.server.stats["refused_commands"] += 1
            self.transport.write(encode_reply(Reply.COMMAND_NOT_SUPPORTED))
            self._close()
            return
        self._associate(request)

    def _associate(self, request: Request) -> None:
        peer = self.transport.getPeer()
        association = UdpAssociation(self.server, peer.host, request.port)
        try:
            # whole datagrams (Twisted's default would cut them at 8,192 bytes), room for bursts
            association.port = listen_udp(self.server.reactor, 0, association, self.server.interface)
        except Exception:
            self.transport.write(encode_reply(Reply.GENERAL_FAILURE))
            self._close()
            return
        self.association = association
        self.server.associations.add(association)
        self.server.stats["associations"] += 1
        bound = association.port.getHost()
        self.transport.write(encode_reply(Reply.SUCCEEDED, (bound.host, bound.port)))

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802 (Twisted API)
        """End the association with its control connection."""
        self._cancel_timeout()
        if self.association is not None:
            self.server.end(self.association)
            self.association = None

    def _cancel_timeout(self) -> None:
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        self.timeout = None

    def _close(self) -> None:
        self._cancel_timeout()
        if self.transport is not None:
            self.transport.loseConnection()


class Socks5Server(Factory):
    """SOCKS5 UDP front end for circuits of ``hops`` hops of ``community``.

    >>> server = Socks5Server(reactor, node.community, hops=1)
    >>> server.start()                      # asks the community for 1-hop circuits
    >>> port = reactor.listenTCP(1080, server, interface="127.0.0.1")
    """

    log = Logger()
    noisy = False

    def __init__(self, reactor: Any, community: Any, hops: int, interface: str = "127.0.0.1") -> None:
        """``community`` may be None until the node runs: :meth:`start` then takes it, and
        control connections made before are closed at once."""
        self.reactor = reactor
        self.community = community
        self.hops = hops
        self.interface = interface
        self.associations: set[UdpAssociation] = set()
        self.routes: OrderedDict[tuple[Any, Address], UdpAssociation] = OrderedDict()
        self.stats: Counter[str] = Counter()
        self.started = False

    def buildProtocol(self, addr: Any) -> Socks5Protocol | None:  # noqa: N802 (Twisted API)
        """A control connection (refused, by closing it, until the server has started)."""
        if not self.started:
            self.stats["refused_not_started"] += 1
            return None
        return Socks5Protocol(self)

    def start(self, community: Any = None) -> None:
        """Receive replies and keep a pool of circuits of our hop count (of ``community``, if given)."""
        if community is not None:
            self.community = community
        if self.community is None:
            raise ValueError("Socks5Server.start needs a community")
        if not self.started:
            self.started = True
            self.community.add_data_handler(self.on_data)
            self.community.build_tunnels(self.hops)

    def stop(self) -> None:
        """Stop receiving replies and end every association."""
        if self.started:
            self.started = False
            self.community.remove_data_handler(self.on_data)
        for association in list(self.associations):
            self.end(association)

    def end(self, association: UdpAssociation) -> None:
        """Close ``association`` and forget its reply routes."""
        association.close()
        self.associations.discard(association)
        for key in [k for k, v in self.routes.items() if v is association]:
            del self.routes[key]

    def note_flow(self, association: UdpAssociation, circuit: Any, destination: Address) -> None:
        """Route replies from ``destination`` on ``circuit`` to ``association``.  Names are
        resolved by the exit, so replies to a name flow come from an IP: the port matches."""
        keys = [(circuit, destination)]
        if not _is_ip(destination[0]):
            keys.append((circuit, ("", destination[1])))
        for key in keys:
            self.routes[key] = association
            self.routes.move_to_end(key)
        while len(self.routes) > MAX_FLOWS * max(1, len(self.associations)) * 2:
            self.routes.popitem(last=False)

    def on_data(self, circuit: Any, source: Address, payload: bytes) -> None:
        """A community data handler: pass a reply to the association that talks to ``source``."""
        if circuit.goal_hops != self.hops:
            return
        association = self.routes.get((circuit, source)) or self.routes.get((circuit, ("", source[1])))
        if association is None or association not in self.associations:
            self.stats["dropped_unrouted_reply"] += 1
            return
        association.deliver(source, payload)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

