# -*- test-case-name: test.test_socks5 -*-
"""The TCP control connection (RFC 1928): method, optional RFC 1929 credentials, one request,
then the association's life, which ends with the connection (either side closing it).

Negotiation: a client that offers username/password (0x02) gets it, even if it also offers
"no authentication", as Tor does: that is how an application asks for circuits of its own
(the credentials are an isolation label, never checked, logged or shown; see
:mod:`tunnels.socks5.isolation`).  Otherwise "no authentication" (0x00); otherwise 0xFF and
the connection closes.  Negotiation and request must finish within
:data:`HANDSHAKE_TIMEOUT` seconds and :data:`MAX_CONTROL_BUFFER` bytes.  An isolated
association's reply waits until its circuits are ready, within the same timeout; past it the
reply is 0x03 (network unreachable: no circuit could be built) and the connection closes.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from .codec import (NO_ACCEPTABLE_METHODS, NO_AUTH, USERNAME_PASSWORD, VERSION, Command, Reply, Socks5Error,
                    encode_reply, encode_userpass_reply, parse_greeting, parse_request, parse_userpass)

if TYPE_CHECKING:
    from .association import UdpAssociation
    from .server import Socks5Server

MAX_CONTROL_BUFFER = 1024
"""Bytes a control connection may send before its request is complete."""
HANDSHAKE_TIMEOUT = 30.0
"""Seconds a control connection has to finish negotiation and its request."""


class Phase(enum.Enum):
    """Where a control connection is."""

    GREETING = enum.auto()
    CREDENTIALS = enum.auto()
    REQUEST = enum.auto()
    PENDING = enum.auto()
    """UDP ASSOCIATE accepted, the reply waits for the association's circuits."""
    ASSOCIATED = enum.auto()
    CLOSED = enum.auto()


class Socks5Protocol(Protocol):
    """One control connection.

    :ivar isolation: a keyed hash of the RFC 1929 username and password (the credentials
        themselves are not kept), or None without them.
    :ivar lost: fires when the connection is gone (whoever closed it).
    """

    def __init__(self, server: Socks5Server) -> None:
        self.server = server
        self.buffer = b""
        self.phase = Phase.GREETING
        self.isolation: bytes | None = None
        self.association: UdpAssociation | None = None
        self.timeout: Any = None
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        """Start the handshake timer."""
        self.timeout = self.server.reactor.callLater(HANDSHAKE_TIMEOUT, self._timed_out)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        """Run the handshake; after UDP ASSOCIATE, ignore whatever arrives."""
        if self.phase in (Phase.PENDING, Phase.ASSOCIATED, Phase.CLOSED):
            return
        self.buffer += data
        if len(self.buffer) > MAX_CONTROL_BUFFER:
            self.close()
            return
        try:
            self._negotiate()
        except Socks5Error as e:
            self.server.counters["malformed_requests"] += 1
            if self.phase is Phase.REQUEST and e.reply is not None:
                self.transport.write(encode_reply(e.reply))
            self.close()

    def _negotiate(self) -> None:
        if self.phase is Phase.GREETING:
            greeting = parse_greeting(self.buffer)
            if greeting is None:
                return
            methods, used = greeting
            self.buffer = self.buffer[used:]
            if USERNAME_PASSWORD in methods:
                self.transport.write(bytes((VERSION, USERNAME_PASSWORD)))
                self.phase = Phase.CREDENTIALS
            elif NO_AUTH in methods:
                self.transport.write(bytes((VERSION, NO_AUTH)))
                self.phase = Phase.REQUEST
            else:
                self.transport.write(bytes((VERSION, NO_ACCEPTABLE_METHODS)))
                self.close()
                return
        if self.phase is Phase.CREDENTIALS:
            parsed = parse_userpass(self.buffer)
            if parsed is None:
                return
            _, used = parsed
            self.isolation = self.server.isolation_key(self.buffer[:used])
            self.buffer = self.buffer[used:]
            self.transport.write(encode_userpass_reply(True))
            self.phase = Phase.REQUEST
        request = parse_request(self.buffer)
        if request is None:
            return
        self.buffer = b""
        if request[0].command != Command.UDP_ASSOCIATE:
            self.server.counters["refused_commands"] += 1
            self.transport.write(encode_reply(Reply.COMMAND_NOT_SUPPORTED))
            self.close()
            return
        association, reply = self.server.associate(self, request[0].port)
        if association is None:
            self.transport.write(encode_reply(reply))
            self.close()
            return
        self.association = association
        self.phase = Phase.PENDING
        association.circuits.when_ready(self._ready)

    def _ready(self) -> None:
        """The association has circuits: tell the client its relay port."""
        if self.phase is not Phase.PENDING or self.association is None or self.association.port is None:
            return
        self._cancel_timeout()
        self.phase = Phase.ASSOCIATED
        bound = self.association.port.getHost()
        self.transport.write(encode_reply(Reply.SUCCEEDED, (bound.host, bound.port)))

    def _timed_out(self) -> None:
        self.timeout = None
        if self.phase is Phase.PENDING:
            self.server.counters["refused_no_circuit"] += 1
            self.transport.write(encode_reply(Reply.NETWORK_UNREACHABLE))
        self.close()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802 (Twisted API)
        """End the association with its control connection."""
        self._cancel_timeout()
        self.phase = Phase.CLOSED
        self.server.connection_lost(self)
        self.lost.callback(None)

    def close(self) -> None:
        """Close the connection (the client sees EOF); the association ends in :meth:`connectionLost`."""
        self._cancel_timeout()
        if self.transport is not None:
            self.transport.loseConnection()

    def _cancel_timeout(self) -> None:
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        self.timeout = None
