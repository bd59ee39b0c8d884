# -*- test-case-name: test.test_relay_messages -*-
"""Relay messages: what the last hop of a circuit and the originator say to each other.

A relay message is the plaintext body of an onion cell (:data:`BODY_SIZE` bytes)::

    command (1) | length (2) | data (length) | zero padding

Destinations and sources are encoded as ``kind (1) | address | port (2)`` with kind
4 (IPv4, 4 bytes), 6 (IPv6, 16 bytes) or 3 (hostname: length byte + 1..253 bytes of
printable ASCII without spaces).
DATA and DATA_REFUSED start with a 2-byte *flow id* (doc/protocol.md 4.3): the exit gives
every flow of a circuit its own UDP socket, as Tor's exits give every stream its own
connection, so the replies of one application never reach another.  Flow 0 is the flow of
``tunnel_data``; the originator numbers the others from 1 and never reuses an id on a circuit.
Decoding is total: it returns a value or raises :class:`DecodeError`, and it accepts only what
:func:`encode_address` produces, so a decoded address can always be sent back (an exit's
refusal names it).
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from ..errors import DecodeError
from .cells import BODY_SIZE, ID_SIZE, KEY_SIZE, TOKEN_SIZE
from .fragments import PIECE_HEADER, pieces_needed, split

MESSAGE_HEADER = 3
MAX_MESSAGE_DATA = BODY_SIZE - MESSAGE_HEADER
"""Bytes of data one relay message (one cell) carries."""
MAX_HOSTNAME = 253
"""Longest hostname on the wire (RFC 1035's limit for a name in text form)."""
_HOSTNAME_BYTES = bytes(range(0x21, 0x7F))
"""Bytes a hostname may hold: printable ASCII, no space (no NUL, which would end a C string)."""
DATA_CHUNK = MAX_MESSAGE_DATA - PIECE_HEADER
"""Bytes of a DATA message one DATA_FRAGMENT cell carries (:mod:`tunnels.wire.fragments`)."""
MAX_ADDRESS = 1 + 1 + MAX_HOSTNAME + 2
"""Longest encoded address: a 253-byte hostname."""
FLOW_ID_SIZE = 2
"""Bytes of a flow id in front of DATA and DATA_REFUSED (and the whole of FLOW_END)."""
DEFAULT_FLOW = 0
"""The flow of ``tunnel_data``: open from the start, never ended."""
MAX_FLOW_ID = 2 ** (8 * FLOW_ID_SIZE) - 1
"""The last flow id; a circuit that used every id opens no more flows."""
MAX_FLOWS_PER_CIRCUIT = 16
"""Flows an exit keeps open per circuit besides flow 0 (each costs a UDP socket or two);
the originator opens no more, and an exit refuses more ("too many flows")."""
DEFAULT_FLOW_HEADER = bytes(FLOW_ID_SIZE)
MAX_DATA_HEADER = FLOW_ID_SIZE + MAX_ADDRESS
"""Longest DATA header: a flow id and a 253-byte hostname."""


class RelayCommand(IntEnum):
    """Relay message commands; direction rules are enforced by the receiver."""

    EXTEND = 1          # originator -> last hop
    EXTENDED = 2        # last hop -> originator
    EXTEND_FAILED = 3   # last hop -> originator
    DATA = 4            # both ways: to an exit destination / from one
    DATA_REFUSED = 5    # exit -> originator: the exit policy refused a destination
    PING = 6            # originator -> last hop (keep-alive)
    PONG = 7            # last hop -> originator
    ESTABLISH_INTRO = 8          # member -> intro point
    INTRO_ESTABLISHED = 9        # intro point -> member
    INTRODUCE1 = 10              # seeker -> its last hop
    INTRODUCE_ACK = 11           # seeker's last hop -> seeker
    INTRODUCE2 = 12              # intro point -> member
    INTRO_REPLY = 13             # member -> intro point
    ESTABLISH_RENDEZVOUS = 14    # member -> rendezvous point
    RENDEZVOUS_ESTABLISHED = 15  # rendezvous point -> member
    JOIN = 16                    # seeker -> rendezvous point
    JOINED = 17                  # rendezvous point -> both
    E2E = 18                     # both ways: end-to-end sealed data through a rendezvous point
    SENDME = 19                  # both ways: the receiver consumed SENDME_EVERY data cells
    DATA_FRAGMENT = 20           # both ways: one piece of a DATA message too large for one cell
    FLOW_END = 21                # originator -> exit: close this flow's sockets (RELAY_END's role)


FORWARD_COMMANDS = frozenset({RelayCommand.EXTEND, RelayCommand.DATA, RelayCommand.DATA_FRAGMENT,
                              RelayCommand.PING, RelayCommand.SENDME, RelayCommand.FLOW_END,
                              RelayCommand.ESTABLISH_INTRO, RelayCommand.INTRODUCE1, RelayCommand.INTRO_REPLY,
                              RelayCommand.ESTABLISH_RENDEZVOUS, RelayCommand.JOIN, RelayCommand.E2E})
BACKWARD_COMMANDS = frozenset({RelayCommand.EXTENDED, RelayCommand.EXTEND_FAILED, RelayCommand.DATA,
                               RelayCommand.DATA_FRAGMENT,
                               RelayCommand.DATA_REFUSED, RelayCommand.PONG, RelayCommand.INTRO_ESTABLISHED,
                               RelayCommand.INTRODUCE_ACK, RelayCommand.INTRODUCE2,
                               RelayCommand.RENDEZVOUS_ESTABLISHED, RelayCommand.JOINED, RelayCommand.E2E,
                               RelayCommand.SENDME})
WINDOWED = frozenset({RelayCommand.DATA, RelayCommand.DATA_FRAGMENT, RelayCommand.E2E})
"""Commands that count against a circuit's flow-control window (see :mod:`tunnels.core.flow`)."""
HIDDEN_FORWARD = frozenset({RelayCommand.ESTABLISH_INTRO, RelayCommand.INTRODUCE1, RelayCommand.INTRO_REPLY,
                            RelayCommand.ESTABLISH_RENDEZVOUS, RelayCommand.JOIN, RelayCommand.E2E})


def encode_message(command: RelayCommand, data: bytes) -> bytes:
    """Pack a relay message into a full body (zero padded)."""
    if len(data) > MAX_MESSAGE_DATA:
        raise ValueError(f"relay message data of {len(data)} bytes exceeds {MAX_MESSAGE_DATA}")
    head = bytes((command,)) + len(data).to_bytes(2, "big")
    return head + data + bytes(BODY_SIZE - MESSAGE_HEADER - len(data))


def decode_message(body: bytes) -> tuple[int, bytes]:
    """Unpack ``(command, data)``; the command may be unknown (the caller drops it)."""
    if len(body) < MESSAGE_HEADER:
        raise DecodeError("truncated relay message")
    length = int.from_bytes(body[1:3], "big")
    if length > len(body) - MESSAGE_HEADER:
        raise DecodeError("relay message length exceeds the body")
    return body[0], bytes(body[MESSAGE_HEADER:MESSAGE_HEADER + length])


def data_cells(message_length: int) -> int:
    """Cells a DATA message of ``message_length`` bytes (address and payload) takes: whole in one
    DATA cell if it fits, else DATA_FRAGMENT pieces of :data:`DATA_CHUNK` bytes."""
    return 1 if message_length <= MAX_MESSAGE_DATA else pieces_needed(message_length, DATA_CHUNK)


def fragment_messages(message: bytes, datagram_id: int) -> list[tuple[int, bytes]]:
    """The DATA_FRAGMENT relay messages carrying a DATA message (``address | payload``) too large
    for one cell, as pieces of datagram ``datagram_id`` (doc/protocol.md 4.1)."""
    return [(RelayCommand.DATA_FRAGMENT, piece) for piece in split(message, datagram_id, DATA_CHUNK)]


def encode_address(host: str, port: int) -> bytes:
    """Encode a destination; ``host`` is an IP literal or an ASCII hostname.

    ``inet_pton`` is strict (no ``127.1`` shorthands) and fast: exits encode a source per reply.
    """
    try:
        return b"\x04" + socket.inet_pton(socket.AF_INET, host) + port.to_bytes(2, "big")
    except OSError:
        pass
    try:
        return b"\x06" + socket.inet_pton(socket.AF_INET6, host) + port.to_bytes(2, "big")
    except OSError:
        pass
    name = host.encode("ascii")
    if not 0 < len(name) <= MAX_HOSTNAME or name.translate(None, _HOSTNAME_BYTES):
        raise ValueError(f"bad hostname {host!r}: 1..{MAX_HOSTNAME} printable ASCII characters, no spaces")
    return b"\x03" + bytes((len(name),)) + name + port.to_bytes(2, "big")


def decode_address(data: bytes, offset: int = 0) -> tuple[tuple[str, int], int]:
    """Decode an address at ``offset``; returns ``((host, port), next offset)``."""
    if len(data) <= offset:
        raise DecodeError("missing address")
    kind = data[offset]
    if kind == 4:
        end = offset + 1 + 4
        host = socket.inet_ntop(socket.AF_INET, data[offset + 1:end]) if len(data) >= end else ""
    elif kind == 6:
        end = offset + 1 + 16
        host = socket.inet_ntop(socket.AF_INET6, data[offset + 1:end]) if len(data) >= end else ""
    elif kind == 3:
        if len(data) <= offset + 1:
            raise DecodeError("truncated hostname")
        end = offset + 2 + data[offset + 1]
        name = data[offset + 2:end]
        if len(name) > MAX_HOSTNAME or name.translate(None, _HOSTNAME_BYTES):
            raise DecodeError("hostname is not 1..253 printable ASCII characters")
        host = name.decode("ascii") if len(data) >= end else ""
    else:
        raise DecodeError(f"unknown address kind {kind}")
    if len(data) < end + 2 or not host:
        raise DecodeError("truncated address")
    port = int.from_bytes(data[end:end + 2], "big")
    if port == 0:
        raise DecodeError("port 0")
    return (host, port), end + 2


class DataMessage(NamedTuple):
    """A decoded DATA message: the flow, the destination (forward) or source (backward), the payload."""

    flow: int
    address: tuple[str, int]
    payload: bytes


def flow_header(flow: int) -> bytes:
    """The 2 bytes naming ``flow`` in front of DATA and DATA_REFUSED.

    :raises ValueError: ``flow`` is outside 0 to :data:`MAX_FLOW_ID`.
    """
    if not 0 <= flow <= MAX_FLOW_ID:
        raise ValueError(f"flow id {flow} out of range")
    return flow.to_bytes(FLOW_ID_SIZE, "big")


def encode_data(address: tuple[str, int], payload: bytes, flow: int = DEFAULT_FLOW) -> bytes:
    """DATA: ``flow id (2) | address | payload``; the address is the destination (forward)
    or the source (backward)."""
    return flow_header(flow) + encode_address(*address) + payload


def decode_data(data: bytes) -> DataMessage:
    """Inverse of :func:`encode_data`."""
    if len(data) < FLOW_ID_SIZE:
        raise DecodeError("truncated flow id")
    address, offset = decode_address(data, FLOW_ID_SIZE)
    return DataMessage(int.from_bytes(data[:FLOW_ID_SIZE], "big"), address, data[offset:])


MAX_REASON = 200
"""Bytes of a DATA_REFUSED reason (ASCII) at most."""


def encode_refusal(flow: int, destination: tuple[str, int], reason: str) -> bytes:
    """DATA_REFUSED: ``flow id (2) | destination | reason`` (ASCII, cut at :data:`MAX_REASON`)."""
    return flow_header(flow) + encode_address(*destination) + reason.encode("ascii", "replace")[:MAX_REASON]


def decode_refusal(data: bytes) -> tuple[int, tuple[str, int], str]:
    """Inverse of :func:`encode_refusal`: ``(flow, destination, reason)``."""
    if len(data) < FLOW_ID_SIZE:
        raise DecodeError("truncated flow id")
    destination, offset = decode_address(data, FLOW_ID_SIZE)
    return int.from_bytes(data[:FLOW_ID_SIZE], "big"), destination, data[offset:].decode("ascii", "replace")


def decode_flow_end(data: bytes) -> int:
    """FLOW_END's data is one flow id, never :data:`DEFAULT_FLOW` (which never ends)."""
    if len(data) != FLOW_ID_SIZE:
        raise DecodeError("FLOW_END has the wrong length")
    flow = int.from_bytes(data, "big")
    if flow == DEFAULT_FLOW:
        raise DecodeError("FLOW_END for flow 0")
    return flow


@dataclass(frozen=True, slots=True)
class Extend:
    """Ask the last hop to extend the circuit to ``address`` (an IPv8 peer it knows)."""

    address: tuple[str, int]
    node_id: bytes
    onion_key: bytes
    client_key: bytes

    def encode(self) -> bytes:
        return encode_address(*self.address) + self.node_id + self.onion_key + self.client_key

    @classmethod
    def decode(cls, data: bytes) -> Extend:
        address, offset = decode_address(data)
        end = offset + ID_SIZE + 2 * KEY_SIZE
        if len(data) != end:
            raise DecodeError("EXTEND has the wrong length")
        a, b = offset + ID_SIZE, offset + ID_SIZE + KEY_SIZE
        return cls(address, data[offset:a], data[a:b], data[b:end])


__all__ = ["BODY_SIZE", "MAX_MESSAGE_DATA", "RelayCommand", "Extend", "TOKEN_SIZE"]
