# -*- test-case-name: test.test_community -*-
"""What the seed API and flows accept as a destination and a payload, checked before any I/O."""
from __future__ import annotations

from ..errors import CircuitNotReady
from ..exit.addresses import parse_destination
from ..wire.relay import encode_address

Address = tuple[str, int]
HIDDEN_SUFFIX = ".hidden"
"""Names of hidden-service peers; reserved, never sent to an exit."""
CACHE_SIZE = 1024
"""Encoded destinations remembered (the cache starts over when full)."""


def is_hidden_name(host: object) -> bool:
    """Whether ``host`` names a hidden-service peer, in any case and with or without the root dot
    (names are case-insensitive: ``PEER.HIDDEN.`` must not reach an exit's resolver either)."""
    return isinstance(host, str) and host.lower().rstrip(".").endswith(HIDDEN_SUFFIX)


class DestinationCache:
    """Validated, encoded destinations (``kind | address | port``), remembered for the next datagrams."""

    def __init__(self) -> None:
        self.encoded: dict[Address, bytes] = {}

    def prefix(self, destination: Address) -> bytes:
        """The encoded address of ``destination``.

        ``""`` means the unspecified address, as in socket calls (exits refuse it).

        :raises TypeError: not a ``(host, port)`` tuple.
        :raises ValueError: a malformed host or port.
        :raises CircuitNotReady: a ``.hidden`` name (such names never go to exits).
        """
        if not isinstance(destination, tuple) or len(destination) != 2:
            raise TypeError("destination must be a (host, port) tuple")
        # only exact ints hit the cache: True == 1 must still be refused as a port
        prefix = self.encoded.get(destination) if type(destination[1]) is int else None
        return self._encode(destination) if prefix is None else prefix

    def _encode(self, destination: Address) -> bytes:
        host, port = destination
        if is_hidden_name(host):
            raise CircuitNotReady(f"no live connection to hidden-service peer {host}; such names never go to exits")
        if host == "" and isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
            target = ("0.0.0.0", port)
        else:
            target = parse_destination(host, port)
        prefix = encode_address(*target)
        if len(self.encoded) >= CACHE_SIZE:
            self.encoded.clear()
        self.encoded[destination] = prefix
        return prefix


def payload_bytes(payload: object) -> bytes:
    """A ``str`` payload as UTF-8, a bytes-like one as bytes.

    :raises TypeError: anything else.
    """
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"payload must be str or bytes, got {type(payload).__name__}")
