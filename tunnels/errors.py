"""Errors of txtunnels: local misuse raises ``ValueError``/``TypeError``; the rest derive
from :class:`TunnelError`, whose ``blames_peer`` says whether a remote peer misbehaved."""
from __future__ import annotations

from typing import ClassVar


class TunnelError(Exception):
    """Base class of txtunnels' own errors."""

    blames_peer: ClassVar[bool] = False


class ProtocolViolation(TunnelError):
    """Bytes from a peer broke the protocol (the datagram is dropped and counted)."""

    blames_peer = True


class DecodeError(ProtocolViolation):
    """A message could not be decoded (truncated, oversized, unknown fields)."""


class HandshakeError(ProtocolViolation):
    """A circuit handshake failed (bad key, bad AUTH, low-order point)."""


class CircuitNotReady(TunnelError):
    """The circuit is not (or no longer) ready to carry data."""


class FlowLimitReached(TunnelError):
    """A circuit carries as many flows as an exit keeps open (or used every flow id): use another."""


class NoExitAvailable(TunnelError):
    """No known peer offers to exit data, so no data circuit can be built."""


class CircuitBuildFailed(TunnelError):
    """A circuit could not be built (timeout, refusal or lost hop)."""


class DHTError(TunnelError):
    """A DHT lookup or announce failed."""


class StartupError(TunnelError):
    """A service cannot start (a port in use, an address not ours): the message is one line
    that says what and why, e.g. ``cannot listen on UDP 127.0.0.1:8090 (--port): address already
    in use``.  ``twistd tunnels`` prints it and exits with status 1."""


def listen_error(protocol: str, host: str, port: int, label: str, error: BaseException) -> StartupError:
    """The :class:`StartupError` for a failed ``listenUDP``/``listenTCP`` (``CannotListenError``).

    ``label`` names what the port is for, in the user's terms (an option name such as
    ``--status-port``, or a role).
    """
    cause = getattr(error, "socketError", None) or error
    reason = getattr(cause, "strerror", None) or str(cause)
    return StartupError(f"cannot listen on {protocol} {host}:{port} ({label}): {reason[:1].lower()}{reason[1:]}")


class DatagramTooLarge(ValueError):
    """A payload exceeds ``max_datagram_size`` (raised by ``tunnel_data`` before any I/O)."""
