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
  is a classic source of bugs.
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
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import CircuitNotReady

Address = tuple[str, int]
VERSION = 5
NO_AUTH = 0x00
NO_ACCEPTABLE_METHODS = 0xFF
MAX_CONTROL_BUFFER = 1024
"""Bytes a control connection may send before its request is complete."""
HANDSHAKE_TIMEOUT = 30.0
"""Seconds a control connection has to finish negotiation and its request."""
MAX_FLOWS = 256
"""Destinations one association remembers (circuit choice and reply routing)."""


class Command(IntEnum):
    """SOCKS5 request commands."""

    CONNECT = 1
    BIND = 2
    UDP_ASSOCIATE = 3


class AddressType(IntEnum):
    """SOCKS5 address types (ATYP)."""

    IPV4 = 1
    DOMAIN = 3
    IPV6 = 4


class Reply(IntEnum):
    """SOCKS5 reply codes (REP)."""

    SUCCEEDED = 0
    GENERAL_FAILURE = 1
    NOT_ALLOWED = 2
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4
    CONNECTION_REFUSED = 5
    TTL_EXPIRED = 6
    COMMAND_NOT_SUPPORTED = 7
    ADDRESS_TYPE_NOT_SUPPORTED = 8


class Socks5Error(ValueError):
    """Malformed SOCKS5 bytes; ``reply`` is the code to answer with, if any."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed SOCKS5 request (after negotiation)."""

    command: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A parsed RFC 1928 UDP request header and its payload."""

    frag: int
    host: str
    port: int
    payload: bytes


# --- codec (pure) -------------------------------------------------------------------------

def parse_greeting(data: bytes) -> tuple[bytes, int] | None:
    """Parse ``VER NMETHODS METHODS``: return (methods, bytes used), or None if incomplete.

    :raises Socks5Error: wrong version or no methods offered.
    """
    if len(data) < 2:
        return None
    if data[0] != VERSION:
        raise Socks5Error(f"not SOCKS5 (version {data[0]})")
    count = data[1]
    if count == 0:
        raise Socks5Error("no authentication methods offered")
    if len(data) < 2 + count:
        return None
    return bytes(data[2:2 + count]), 2 + count


def parse_address(data: bytes, offset: int) -> tuple[Address, int] | None:
    """Parse ``ATYP DST.ADDR DST.PORT`` at ``offset``: ((host, port), next offset), None if incomplete.

    IPv4/IPv6 addresses come back in canonical text form; domain names as given
    (ASCII, not resolved).

    :raises Socks5Error: unknown ATYP (reply 0x08), an empty or non-ASCII name.
    """
    if len(data) <= offset:
        return None
    kind = data[offset]
    start = offset + 1
    if kind == AddressType.IPV4:
        end = start + 4
        if len(data) < end + 2:
            return None
        host = str(ipaddress.IPv4Address(bytes(data[start:end])))
    elif kind == AddressType.IPV6:
        end = start + 16
        if len(data) < end + 2:
            return None
        host = str(ipaddress.IPv6Address(bytes(data[start:end])))
    elif kind == AddressType.DOMAIN:
        if len(data) <= start:
            return None
        length = data[start]
        if length == 0:
            raise Socks5Error("empty domain name", Reply.GENERAL_FAILURE)
        end = start + 1 + length
        if len(data) < end + 2:
            return None
        raw = bytes(data[start + 1:end])
        if not all(0x21 <= b < 0x7F for b in raw):
            raise Socks5Error("domain name is not printable ASCII", Reply.GENERAL_FAILURE)
        host = raw.decode("ascii")
    else:
        raise Socks5Error(f"unknown address type {kind}", Reply.ADDRESS_TYPE_NOT_SUPPORTED)
    port = int.from_bytes(data[end:end + 2], "big")
    return (host, port), end + 2


def parse_request(data: bytes) -> tuple[Request, int] | None:
    """Parse ``VER CMD RSV ATYP DST.ADDR DST.PORT``: (request, bytes used), or None if incomplete.

    :raises Socks5Error: wrong version, non-zero RSV or a bad address.
    """
    if len(data) < 4:
        return None
    if data[0] != VERSION:
        raise Socks5Error(f"not SOCKS5 (version {data[0]})")
    if data[2] != 0:
        raise Socks5Error("reserved byte is not zero", Reply.GENERAL_FAILURE)
    parsed = parse_address(data, 3)
    if parsed is None:
        return None
    (host, port), used = parsed
    return Request(data[1], host, port), used


def encode_address(host: str, port: int) -> bytes:
    """``ATYP ADDR PORT`` for an IP literal or a domain name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("ascii")
        if not 0 < len(name) < 256:
            raise ValueError(f"domain name of {len(name)} bytes cannot be encoded") from None
        head = bytes((AddressType.DOMAIN, len(name))) + name
    else:
        head = bytes((AddressType.IPV4 if ip.version == 4 else AddressType.IPV6,)) + ip.packed
    return head + port.to_bytes(2, "big")


def encode_reply(code: Reply, address: Address = ("0.0.0.0", 0)) -> bytes:
    """A reply to a request: ``VER REP RSV BND.ADDR BND.PORT``."""
    return bytes((VERSION, code, 0)) + encode_address(*address)


def parse_udp_datagram(data: bytes) -> UdpDatagram:
    """Parse ``RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA`` (RFC 1928 section 7).

    :raises Socks5Error: truncated, non-zero RSV or a bad address.
    """
    if len(data) < 4:
        raise Socks5Error("truncated UDP header")
    if data[0] != 0 or data[1] != 0:
        raise Socks5Error("reserved bytes are not zero")
    parsed = parse_address(data, 3)
    if parsed is None:
        raise Socks5Error("truncated UDP header")
    (host, port), used = parsed
    return UdpDatagram(data[2], host, port, bytes(data[used:]))


def encode_udp_datagram(host: str, port: int, payload: bytes) -> bytes:
    """Wrap ``payload`` from ``(host, port)`` in the RFC 1928 UDP header (FRAG 0)."""
    return b"\x00\x00\x00" + encode_address(host, port) + payload


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
        try:
            self.transport.write(encode_udp_datagram(source[0], source[1], payload),
                                 (self.client_host, self.client_port))
        except (OSError, ValueError):
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
            # A full-size buffer: Twisted's default (8192) would silently truncate larger datagrams.
            association.port = self.server.reactor.listenUDP(0, association, interface=self.server.interface,
                                                             maxPacketSize=65536)
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
        self.reactor = reactor
        self.community = community
        self.hops = hops
        self.interface = interface
        self.associations: set[UdpAssociation] = set()
        self.routes: OrderedDict[tuple[Any, Address], UdpAssociation] = OrderedDict()
        self.stats: Counter[str] = Counter()
        self.started = False

    def buildProtocol(self, addr: Any) -> Socks5Protocol:  # noqa: N802 (Twisted API)
        """A control connection."""
        return Socks5Protocol(self)

    def start(self) -> None:
        """Receive replies and keep a pool of circuits of our hop count."""
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


class Socks5Service(Service):
    """SOCKS5 servers for hop counts ``hops`` on ``base_port``, ``base_port + 1``, ...

    Starts once ``tunnel`` (a :class:`~tunnels.service.TunnelService`) has a node.
    ``base_port`` 0 gives each a free port; see :attr:`ports` (hops -> TCP port).
    """

    log = Logger()

    def __init__(self, reactor: Any, tunnel: Any, base_port: int, hops: tuple[int, ...] = (1, 2, 3),
                 interface: str = "127.0.0.1") -> None:
        self.reactor = reactor
        self.tunnel = tunnel
        self.base_port = base_port
        self.hops = hops
        self.interface = interface
        self.servers: dict[int, Socks5Server] = {}
        self.listening: dict[int, Any] = {}
        self.ready: Deferred[Any] | None = None

    @property
    def ports(self) -> dict[int, int]:
        """TCP port of each hop count's server, once listening."""
        return {hops: int(port.getHost().port) for hops, port in self.listening.items()}

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Listen once the node runs."""
        super().startService()
        self.ready = self.tunnel.when_running()
        # The tunnel service reports its own start failure; ours (a busy port) is logged here.
        self.ready.addCallbacks(self._listen, lambda failure: None)
        self.ready.addErrback(lambda failure: self.log.failure("SOCKS5 could not start", failure))

    def _listen(self, node: Any) -> None:
        if not self.running:
            return
        for index, hops in enumerate(self.hops):
            server = Socks5Server(self.reactor, node.community, hops, self.interface)
            port = self.reactor.listenTCP(self.base_port + index if self.base_port else 0, server,
                                          interface=self.interface)
            server.start()
            self.servers[hops] = server
            self.listening[hops] = port
            self.log.info("SOCKS5 (UDP ASSOCIATE) for {hops}-hop circuits on {host}:{port}",
                          hops=hops, host=self.interface, port=port.getHost().port)

    def stopService(self) -> Deferred[Any]:  # noqa: N802 (Twisted API)
        """Stop listening and end every association."""
        super().stopService()
        stops = [port.stopListening() for port in self.listening.values()]
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        self.listening.clear()
        return DeferredList([d for d in stops if d is not None]) if stops else succeed(None)
