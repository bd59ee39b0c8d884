# -*- test-case-name: test.test_reassembly -*-
"""Reassembly of fragmented datagrams, bounded in memory and time (DESIGN.md property 12).

A receiving end (an exit for forward data, an originator for replies, a hidden-service
member for end-to-end data) keeps one :class:`Reassembly` per circuit or session; all of a
node's share one :class:`ReassemblyBuffer`, which holds the bounds:

- memory: at most :data:`CIRCUIT_LIMIT` bytes per circuit and :data:`NODE_LIMIT` per node.
  Beyond either, the *oldest* partial datagram goes first.  Honest datagrams complete within
  a round trip, so the oldest partials are the abandoned ones; a circuit that floods pieces
  it never completes evicts its own partials first, then the node's oldest;
- time: a partial datagram older than the timeout (:data:`TIMEOUT` seconds) is dropped;
- shape: a datagram is at most ``max_message`` bytes, a circuit has at most
  :data:`MAX_PARTIALS` partial datagrams.

Every datagram or piece thrown away is counted under a ``fragment_*`` or ``reassembly_*``
reason.  A lost piece loses its datagram only; a duplicated piece is dropped (the datagram is
delivered once); a piece whose ``count`` disagrees with its datagram's drops that datagram
(never spliced from two).  Pieces may arrive in any order.

Pure state: no I/O and no clock.  The owner calls :meth:`ReassemblyBuffer.sweep` with the time
at an interval (the community's tick); new partials are stamped with the time of the last
sweep, so the per-cell path never reads a clock.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import DecodeError
from ..wire.fragments import Piece, decode_piece

NODE_LIMIT = 16 * 1024 * 1024
"""Bytes of partial datagrams one node holds at most."""
CIRCUIT_LIMIT = 256 * 1024
"""Bytes of partial datagrams one circuit (or session) holds at most: about four of the largest."""
MAX_PARTIALS = 32
"""Partial datagrams one circuit holds at most."""
TIMEOUT = 5.0
"""Seconds a partial datagram may wait for its missing pieces.  An honest datagram's pieces
leave the sender back to back (flow control queues them whole), so they arrive within a
round trip or two; UDP applications retransmit long before this."""
PARTIAL_COST = 64
"""Bytes charged per partial datagram, plus 8 per piece slot, beyond its chunks."""


class _Partial:
    """A datagram whose pieces are arriving."""

    __slots__ = ("owner", "datagram_id", "count", "chunks", "have", "cost", "size", "stamp")

    def __init__(self, owner: Reassembly, datagram_id: int, count: int, stamp: float) -> None:
        self.owner = owner
        self.datagram_id = datagram_id
        self.count = count
        self.chunks: list[bytes | None] = [None] * count
        self.have = 0
        self.cost = PARTIAL_COST + 8 * count
        self.size = 0
        self.stamp = stamp


class ReassemblyBuffer:
    """The node-wide bounds of reassembly, shared by every :class:`Reassembly` of a node.

    :param max_message: largest reassembled message in bytes (a datagram and its address).
    :param drop: called with a reason for every piece or datagram thrown away.
    """

    def __init__(self, max_message: int, drop: Callable[[str], None], *, limit: int = NODE_LIMIT,
                 circuit_limit: int = CIRCUIT_LIMIT, timeout: float = TIMEOUT, now: float = 0.0) -> None:
        if circuit_limit > limit:
            raise ValueError(f"circuit_limit {circuit_limit} exceeds limit {limit}")
        self.max_message = max_message
        self.drop = drop
        self.limit = limit
        self.circuit_limit = circuit_limit
        self.timeout = timeout
        self.now = now
        self.used = 0
        """Bytes charged for every partial datagram of the node (0 when nothing is pending)."""
        self.order: dict[_Partial, None] = {}
        """Every partial datagram of the node, oldest first."""

    def sweep(self, now: float) -> None:
        """Note the time and drop partial datagrams older than the timeout."""
        self.now = now
        cutoff = now - self.timeout
        expired = []
        for partial in self.order:
            if partial.stamp > cutoff:
                break
            expired.append(partial)
        for partial in expired:
            partial.owner.forget(partial)
            self.drop("reassembly_timeout")

    def reassembly(self) -> Reassembly:
        """A new, empty reassembly for one circuit end or session."""
        return Reassembly(self)

    def add(self, holder: Any, piece: Piece) -> bytes | None:
        """Add ``piece`` to ``holder``'s reassembly (its ``reassembly`` attribute, created on the
        first piece); returns the whole message when this piece completes it."""
        reassembly = holder.reassembly
        if reassembly is None:
            reassembly = holder.reassembly = Reassembly(self)
        return reassembly.add(piece)

    def add_encoded(self, holder: Any, data: bytes) -> bytes | None:
        """As :meth:`add` for an encoded piece; a malformed one is counted (``malformed_fragment``)."""
        try:
            piece = decode_piece(data)
        except DecodeError:
            self.drop("malformed_fragment")
            return None
        return self.add(holder, piece)


class Reassembly:
    """Partial datagrams of one receiving end (one circuit end or one end-to-end session)."""

    __slots__ = ("buffer", "partials", "used")

    def __init__(self, buffer: ReassemblyBuffer) -> None:
        self.buffer = buffer
        self.partials: dict[int, _Partial] = {}
        self.used = 0
        """Bytes charged for this end's partial datagrams."""

    def add(self, piece: Piece) -> bytes | None:
        """Take one piece; returns the whole message when this piece completes it, else None."""
        buffer = self.buffer
        if piece.count == 1:
            if len(piece.chunk) > buffer.max_message:
                buffer.drop("fragment_too_large")
                return None
            return piece.chunk
        partial = self.partials.get(piece.datagram_id)
        if partial is None:
            if len(self.partials) >= MAX_PARTIALS:
                self.forget(next(iter(self.partials.values())))
                buffer.drop("reassembly_circuit_full")
            partial = _Partial(self, piece.datagram_id, piece.count, buffer.now)
            self.partials[piece.datagram_id] = partial
            buffer.order[partial] = None
            self._charge(partial.cost)
        elif partial.count != piece.count:
            self.forget(partial)
            buffer.drop("fragment_mismatch")
            return None
        if partial.chunks[piece.index] is not None:
            buffer.drop("fragment_duplicate")
            return None
        partial.chunks[piece.index] = piece.chunk
        partial.have += 1
        partial.size += len(piece.chunk)
        self._charge(len(piece.chunk))
        if partial.size > buffer.max_message:
            self.forget(partial)
            buffer.drop("fragment_too_large")
            return None
        if partial.have == partial.count:
            self.forget(partial)
            return b"".join(partial.chunks)  # type: ignore[arg-type]  # every slot is filled
        self._enforce_limits()
        return None

    def _charge(self, amount: int) -> None:
        self.used += amount
        self.buffer.used += amount

    def _enforce_limits(self) -> None:
        buffer = self.buffer
        while self.used > buffer.circuit_limit and self.partials:
            self.forget(next(iter(self.partials.values())))
            buffer.drop("reassembly_circuit_full")
        while buffer.used > buffer.limit and buffer.order:
            oldest = next(iter(buffer.order))
            oldest.owner.forget(oldest)
            buffer.drop("reassembly_node_full")

    def forget(self, partial: _Partial) -> None:
        """Release a partial datagram of this end and its memory (the caller counts why)."""
        del self.partials[partial.datagram_id]
        del self.buffer.order[partial]
        released = partial.cost + partial.size
        self.used -= released
        self.buffer.used -= released

    def clear(self) -> None:
        """Release every partial datagram (the circuit or session ended); counted as dropped."""
        for partial in list(self.partials.values()):
            self.forget(partial)
            self.buffer.drop("reassembly_closed")
