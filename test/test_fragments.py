"""The fragment format (doc/protocol.md 4.1): vectors, totality, and cells per datagram."""
from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tunnels.errors import DecodeError
from tunnels.hidden import e2e
from tunnels.wire import fragments as frag
from tunnels.wire import relay as msg
from tunnels.wire.cells import BODY_SIZE

PIECE_WIRE = (b"\x01\x02\x03\x04"   # datagram id 0x01020304
              b"\x01"               # index 1
              b"\x03"               # count 3
              b"chunk")             # the chunk


class PieceFormatTests(SynchronousTestCase):

    def test_vector(self) -> None:
        """A piece decodes field by field as the layout says."""
        self.assertEqual(frag.decode_piece(PIECE_WIRE), frag.Piece(0x01020304, 1, 3, b"chunk"))

    def test_split_vector(self) -> None:
        """Ten bytes in chunks of four: three pieces, the last one short, one id."""
        self.assertEqual(frag.split(b"0123456789", 7, 4),
                         [b"\x00\x00\x00\x07\x00\x03" b"0123", b"\x00\x00\x00\x07\x01\x03" b"4567",
                          b"\x00\x00\x00\x07\x02\x03" b"89"])

    def test_refuses_impossible_headers(self) -> None:
        """Short headers, a count of 0 and an index beyond the count are decode errors."""
        for bad in (b"", b"\x00" * 5, b"\x00\x00\x00\x01\x00\x00", b"\x00\x00\x00\x01\x03\x03x"):
            with self.assertRaises(DecodeError):
                frag.decode_piece(bad)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=3000), st.integers(0, 2 ** 32 - 1), st.integers(1, 1100))
    def test_split_then_join_is_identity(self, message: bytes, datagram_id: int, chunk: int) -> None:
        """Every piece decodes; chunks in index order give the message back; pieces_needed is exact."""
        if frag.pieces_needed(len(message), chunk) > frag.MAX_PIECES:
            with self.assertRaises(ValueError):
                frag.split(message, datagram_id, chunk)
            return
        pieces = [frag.decode_piece(p) for p in frag.split(message, datagram_id, chunk)]
        self.assertEqual(len(pieces), frag.pieces_needed(len(message), chunk))
        self.assertEqual({(p.datagram_id, p.count) for p in pieces}, {(datagram_id, len(pieces))})
        self.assertEqual([p.index for p in pieces], list(range(len(pieces))))
        self.assertEqual(b"".join(p.chunk for p in pieces), message)

    def test_decode_is_total(self) -> None:
        """Random bytes decode to a piece or raise DecodeError, nothing else."""
        rng = random.Random(10)
        for _ in range(5000):
            data = rng.randbytes(rng.randrange(16))
            try:
                piece = frag.decode_piece(data)
            except DecodeError:
                continue
            self.assertLess(piece.index, piece.count)

    def test_pad_round_trip_and_fixed_size(self) -> None:
        """Padded pieces all have the asked size and unpad to the piece; bad lengths are refused."""
        for piece in (b"", b"x", bytes(100)):
            padded = frag.pad(piece, 120)
            self.assertEqual((len(padded), frag.unpad(padded)), (120, piece))
        with self.assertRaises(ValueError):
            frag.pad(bytes(119), 120)
        with self.assertRaises(DecodeError):
            frag.unpad(b"\x00\x05abc")


class CellsPerDatagramTests(SynchronousTestCase):
    """The overhead table of doc/protocol.md 4.1 (IPv4 destination, 7 address bytes)."""

    def test_geometry(self) -> None:
        """A DATA cell carries 1063 message bytes, a fragment 1057, an E2E cell 1031 payload bytes."""
        self.assertEqual((BODY_SIZE, msg.MAX_MESSAGE_DATA, msg.DATA_CHUNK, e2e.CHUNK), (1066, 1063, 1057, 1031))

    def test_cells_per_datagram(self) -> None:
        """1,400 bytes cost 2 cells; the table's figures hold for the exit path and between members."""
        header = len(msg.encode_data(("192.0.2.1", 4242), b""))          # flow id and address: 9 bytes
        expected = {1: (1, 1), 1054: (1, 2), 1055: (2, 2), 1200: (2, 2), 1400: (2, 2), 1472: (2, 2),
                    4096: (4, 4), 8192: (8, 8), 65507: (62, 64)}
        got = {size: (msg.data_cells(header + size), frag.pieces_needed(size, e2e.CHUNK)) for size in expected}
        self.assertEqual(got, expected)

    def test_largest_datagram_fits_the_piece_count(self) -> None:
        """The largest datagram with the longest address needs fewer than MAX_PIECES pieces either way."""
        self.assertLess(msg.data_cells(65507 + msg.MAX_DATA_HEADER), frag.MAX_PIECES)
        self.assertLess(frag.pieces_needed(65507, e2e.CHUNK), frag.MAX_PIECES)
