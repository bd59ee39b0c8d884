"""Cell framing and relay message codecs: round trips, annotated vectors, totality."""
from __future__ import annotations

import contextlib
import random

from twisted.trial.unittest import SynchronousTestCase

from tunnels.errors import DecodeError
from tunnels.wire import relay as msg
from tunnels.wire.cells import CELL_MARK, CELL_SIZE, CellType, Create, Created, frame, new_circuit_id, \
    parse_link_header

DATA_TO_IPV4 = (b"\x00\x07"           # flow id 7
                b"\x04"               # address kind: IPv4
                b"\xc0\x00\x02\x01"   # 192.0.2.1
                b"\x00\x35"           # port 53
                b"query")             # payload
REFUSAL_OF_IPV6 = (b"\x00\x07"        # flow id 7
                   b"\x06"            # address kind: IPv6
                   b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01"   # 2001:db8::1
                   b"\x10\x92"        # port 4242
                   b"too many flows")  # reason, ASCII


class FramingTests(SynchronousTestCase):
    def test_every_cell_has_one_size(self) -> None:
        """Cells of every type are exactly CELL_SIZE bytes, padded with random bytes."""
        for kind in CellType:
            cell = frame(kind, 7, b"x")
            self.assertEqual(len(cell), CELL_SIZE)
            self.assertEqual(parse_link_header(cell), (kind, 7))
        self.assertNotEqual(frame(CellType.DESTROY, 1, b"")[6:], frame(CellType.DESTROY, 1, b"")[6:])

    def test_bad_frames_refused(self) -> None:
        """Wrong sizes, a foreign first byte and circuit id 0 raise DecodeError."""
        good = frame(CellType.RELAY, 9, b"")
        for bad in (b"", good[:-1], good + b"\x00", b"\x00" + good[1:], good[:2] + bytes(4) + good[6:]):
            with self.assertRaises(DecodeError):
                parse_link_header(bad)

    def test_circuit_ids_nonzero_and_random(self) -> None:
        """Circuit ids come from the CSPRNG and are never 0."""
        ids = {new_circuit_id() for _ in range(1000)}
        self.assertNotIn(0, ids)
        self.assertGreater(len(ids), 990)

    def test_create_created_round_trip(self) -> None:
        """CREATE and CREATED decode what they encode; truncations raise DecodeError."""
        create = Create(b"i" * 20, b"o" * 32, b"x" * 32, b"t" * 16)
        self.assertEqual(Create.decode(create.encode() + b"pad"), create)
        created = Created(b"y" * 32, b"a" * 32)
        self.assertEqual(Created.decode(created.encode()), created)
        with self.assertRaises(DecodeError):
            Create.decode(create.encode()[:-1])
        with self.assertRaises(DecodeError):
            Created.decode(b"short")

    def test_mark_is_not_an_ipv8_prefix(self) -> None:
        """IPv8 packets start with 0x00, so the transport can tell cells apart by one byte."""
        self.assertNotEqual(CELL_MARK, 0)


class MessageTests(SynchronousTestCase):
    def test_data_vector(self) -> None:
        """DATA to 192.0.2.1:53 encodes to the annotated bytes and back."""
        self.assertEqual(msg.encode_data(("192.0.2.1", 53), b"query", 7), DATA_TO_IPV4)
        self.assertEqual(msg.decode_data(DATA_TO_IPV4), (7, ("192.0.2.1", 53), b"query"))
        self.assertEqual(msg.encode_data(("192.0.2.1", 53), b"query")[:2], b"\x00\x00")   # flow 0: tunnel_data's

    def test_refusal_and_flow_end_vectors(self) -> None:
        """DATA_REFUSED and FLOW_END encode to the annotated bytes and back; FLOW_END never names
        flow 0, and flow ids outside 2 bytes are refused before any I/O."""
        self.assertEqual(msg.encode_refusal(7, ("2001:db8::1", 4242), "too many flows"), REFUSAL_OF_IPV6)
        self.assertEqual(msg.decode_refusal(REFUSAL_OF_IPV6), (7, ("2001:db8::1", 4242), "too many flows"))
        self.assertEqual(len(msg.encode_refusal(1, ("192.0.2.1", 53), "x" * 500)), 2 + 7 + msg.MAX_REASON)
        self.assertEqual(msg.decode_flow_end(b"\xff\xff"), 65535)
        for bad in (b"", b"\x00", b"\x00\x00", b"\x00\x01\x00"):
            with self.assertRaises(DecodeError):
                msg.decode_flow_end(bad)
        for flow in (-1, 65536):
            with self.assertRaises(ValueError):
                msg.flow_header(flow)

    def test_addresses_round_trip(self) -> None:
        """IPv4, IPv6 and hostnames survive encoding."""
        for address in (("1.2.3.4", 1), ("2001:db8::1", 65535), ("example.org", 4242)):
            self.assertEqual(msg.decode_address(msg.encode_address(*address))[0], address)

    def test_message_round_trip_and_padding(self) -> None:
        """A message fills the body; the data comes back exactly."""
        body = msg.encode_message(msg.RelayCommand.DATA, b"abc")
        self.assertEqual(len(body), msg.BODY_SIZE)
        self.assertEqual(msg.decode_message(body), (msg.RelayCommand.DATA, b"abc"))
        with self.assertRaises(ValueError):
            msg.encode_message(msg.RelayCommand.DATA, bytes(msg.MAX_MESSAGE_DATA + 1))

    def test_extend_round_trip(self) -> None:
        """EXTEND decodes what it encodes and refuses trailing bytes."""
        extend = msg.Extend(("127.0.0.1", 9000), b"n" * 20, b"k" * 32, b"x" * 32)
        self.assertEqual(msg.Extend.decode(extend.encode()), extend)
        with self.assertRaises(DecodeError):
            msg.Extend.decode(extend.encode() + b"!")

    def test_decoders_are_total(self) -> None:
        """Random bytes decode or raise DecodeError, never anything else."""
        rng = random.Random(0)
        for _ in range(20000):
            data = rng.randbytes(rng.randrange(0, 80))
            for decode in (msg.decode_data, msg.decode_refusal, msg.decode_flow_end, msg.Extend.decode, msg.decode_message, Create.decode, Created.decode,
                           parse_link_header):
                with contextlib.suppress(DecodeError):
                    decode(data)
