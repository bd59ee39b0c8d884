# -*- test-case-name: test.test_dht_krpc -*-
"""KRPC codec: BEP 5 vectors, compact info, tolerated deviations, totality."""
from __future__ import annotations

import random

import fastbencode
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tunnels.dht import krpc
from tunnels.dht.krpc import Error, KRPCDecodeError, NodeInfo, Query, Response

# BEP 5's own examples, byte for byte.
PING_QUERY = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
PING_RESPONSE = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
ERROR_201 = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee"
ANNOUNCE_QUERY = (b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e"
                  b"9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe"
                  b"1:q13:announce_peer1:t2:aa1:y1:qe")

NODE_WIRE = (b"abcdefghij0123456789"   # node id
             b"\x7f\x00\x00\x01"       # 127.0.0.1
             b"\x1a\xe1")              # port 6881


class VectorTests(SynchronousTestCase):
    """The examples of BEP 5 decode and encode exactly."""

    def test_ping_query(self) -> None:
        """BEP 5's ping query decodes to a Query and re-encodes to the same bytes."""
        msg = krpc.decode_message(PING_QUERY)
        self.assertEqual(msg, Query(b"aa", b"ping", {b"id": b"abcdefghij0123456789"},
                                    b"abcdefghij0123456789"))
        self.assertEqual(krpc.encode_query(b"aa", b"ping", {b"id": b"abcdefghij0123456789"}),
                         PING_QUERY)

    def test_ping_response(self) -> None:
        """BEP 5's ping response round-trips."""
        msg = krpc.decode_message(PING_RESPONSE)
        self.assertIsInstance(msg, Response)
        assert isinstance(msg, Response)
        self.assertEqual(msg.sender_id, b"mnopqrstuvwxyz123456")
        self.assertEqual(krpc.encode_response(b"aa", {b"id": b"mnopqrstuvwxyz123456"}),
                         PING_RESPONSE)

    def test_error(self) -> None:
        """BEP 5's error example decodes with code 201 and round-trips."""
        self.assertEqual(krpc.decode_message(ERROR_201),
                         Error(b"aa", 201, b"A Generic Error Ocurred"))
        self.assertEqual(krpc.encode_error(b"aa", 201, "A Generic Error Ocurred"), ERROR_201)

    def test_announce_with_implied_port(self) -> None:
        """BEP 5's announce_peer example keeps every argument."""
        msg = krpc.decode_message(ANNOUNCE_QUERY)
        assert isinstance(msg, Query)
        self.assertEqual(msg.method, b"announce_peer")
        self.assertEqual(msg.args[b"implied_port"], 1)
        self.assertEqual(msg.args[b"token"], b"aoeusnth")

    def test_read_only_and_version(self) -> None:
        """``ro=1`` (BEP 43) and ``v`` are read from the top-level dictionary."""
        data = krpc.encode_query(b"t1", b"ping", {b"id": b"a" * 20}, version=b"LT\x02\x11",
                                 read_only=True)
        msg = krpc.decode_message(data)
        assert isinstance(msg, Query)
        self.assertTrue(msg.read_only)
        self.assertEqual(msg.version, b"LT\x02\x11")


class CompactTests(SynchronousTestCase):
    """Compact node info (26 bytes) and compact peer info (6 bytes)."""

    def test_node_vector(self) -> None:
        """One node encodes to id + IP + big-endian port."""
        node = NodeInfo(b"abcdefghij0123456789", "127.0.0.1", 6881)
        self.assertEqual(krpc.encode_nodes([node]), NODE_WIRE)
        self.assertEqual(krpc.decode_nodes(NODE_WIRE), [node])

    def test_partial_and_port_zero_ignored(self) -> None:
        """A trailing partial entry is ignored; entries with port 0 are skipped."""
        zero = b"z" * 20 + b"\x7f\x00\x00\x02\x00\x00"
        self.assertEqual(krpc.decode_nodes(NODE_WIRE + zero + NODE_WIRE[:10]),
                         [NodeInfo(b"abcdefghij0123456789", "127.0.0.1", 6881)])

    def test_node_limit(self) -> None:
        """At most ``limit`` nodes are read from a huge string."""
        self.assertEqual(len(krpc.decode_nodes(NODE_WIRE * 1000, limit=16)), 16)

    def test_peer(self) -> None:
        """Compact peer info round-trips; other lengths decode to None."""
        self.assertEqual(krpc.encode_peer("10.1.2.3", 443), b"\x0a\x01\x02\x03\x01\xbb")
        self.assertEqual(krpc.decode_peer(b"\x0a\x01\x02\x03\x01\xbb"), ("10.1.2.3", 443))
        self.assertIsNone(krpc.decode_peer(b"\x0a\x01\x02\x03\x01"))
        self.assertIsNone(krpc.decode_peer(b"\x00" * 18))

    def test_distance(self) -> None:
        """The XOR metric is symmetric and zero only for equal ids."""
        a, b = b"\x00" * 19 + b"\x01", b"\x80" + b"\x00" * 19
        self.assertEqual(krpc.distance(a, b), (1 << 159) | 1)
        self.assertEqual(krpc.distance(a, b), krpc.distance(b, a))
        self.assertEqual(krpc.distance(a, a), 0)


class DeviationTests(SynchronousTestCase):
    """What other implementations send is tolerated; what is not KRPC is refused with a reason."""

    def reason(self, data: bytes) -> str:
        with self.assertRaises(KRPCDecodeError) as cm:
            krpc.decode_message(data)
        return cm.exception.reason

    def test_unknown_fields_tolerated(self) -> None:
        """Unknown keys (libtorrent's ``ip`` and ``p``, BEP 44 fields) are ignored."""
        data = fastbencode.bencode({b"ip": b"\x7f\x00\x00\x01\x00\x01", b"p": 1,
                                    b"r": {b"id": b"b" * 20, b"zzz": [1, 2]},
                                    b"t": b"xyzw", b"v": 12, b"y": b"r"})
        msg = krpc.decode_message(bytes(data))
        assert isinstance(msg, Response)
        self.assertIsNone(msg.version)      # a non-bytes v is ignored, not fatal

    def test_error_without_message(self) -> None:
        """An error list with only a code, or a non-string message, still decodes."""
        msg = krpc.decode_message(b"d1:eli202ee1:t1:x1:y1:ee")
        self.assertEqual(msg, Error(b"x", 202, b""))
        msg = krpc.decode_message(b"d1:eli203ei5ee1:t1:x1:y1:ee")
        self.assertEqual(msg, Error(b"x", 203, b""))

    def test_refusals(self) -> None:
        """Each kind of garbage is refused with its own counter name."""
        self.assertEqual(self.reason(b""), "not_dict")
        self.assertEqual(self.reason(b"le"), "not_dict")
        self.assertEqual(self.reason(b"d1:t2:aa"), "bad_bencode")               # truncated
        self.assertEqual(self.reason(b"d1:t2:aa1:t2:bb1:y1:qe"), "bad_bencode")  # duplicate key
        self.assertEqual(self.reason(b"d1:t2:aa1:y1:qejunk"), "bad_bencode")
        self.assertEqual(self.reason(b"d1:y1:qe"), "bad_tid")
        self.assertEqual(self.reason(b"d1:ti5e1:y1:qe"), "bad_tid")
        self.assertEqual(self.reason(b"d1:t2:aa1:y1:xe"), "bad_type")
        self.assertEqual(self.reason(b"d1:t2:aa1:y1:qe"), "bad_query")
        self.assertEqual(self.reason(b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe"), "bad_id")
        self.assertEqual(self.reason(b"d1:rle1:t2:aa1:y1:re"), "bad_response")
        self.assertEqual(self.reason(b"d1:el3:abce1:t2:aa1:y1:ee"), "bad_error")
        self.assertEqual(self.reason(b"d" + b"1:x" * 5000 + b"e"), "oversized")

    def test_bad_query_keeps_tid(self) -> None:
        """A query with a bad id still yields its tid, so it can get error 203."""
        with self.assertRaises(KRPCDecodeError) as cm:
            krpc.decode_message(b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe")
        self.assertEqual((cm.exception.tid, cm.exception.is_query), (b"aa", True))

    def test_deep_nesting(self) -> None:
        """Deeply nested lists inside a valid message neither crash nor recurse."""
        deep = b"l" * 3000 + b"e" * 3000
        data = b"d1:ad2:id20:" + b"a" * 20 + b"1:x" + deep + b"e1:q4:ping1:t2:aa1:y1:qe"
        msg = krpc.decode_message(data)
        self.assertIsInstance(msg, Query)
        with self.assertRaises(KRPCDecodeError):
            krpc.decode_message(b"d1:a" + b"l" * 4000 + b"e" * 3999)


class TotalityTests(SynchronousTestCase):
    """decode_message raises KRPCDecodeError or returns a message, nothing else."""

    def test_random_bytes(self) -> None:
        """20 000 seeded random datagrams, half of them starting like a dictionary."""
        rng = random.Random(5)
        for i in range(20_000):
            data = rng.randbytes(rng.randrange(80))
            if i % 2:
                data = b"d" + data
            try:
                krpc.decode_message(data)
            except KRPCDecodeError:
                pass

    def test_mutated_valid_messages(self) -> None:
        """Valid messages with random bytes flipped, cut or inserted."""
        rng = random.Random(7)
        bases = [PING_QUERY, PING_RESPONSE, ERROR_201, ANNOUNCE_QUERY]
        for _ in range(20_000):
            data = bytearray(rng.choice(bases))
            op = rng.randrange(3)
            pos = rng.randrange(len(data))
            if op == 0:
                data[pos] = rng.randrange(256)
            elif op == 1:
                del data[pos:]
            else:
                data[pos:pos] = rng.randbytes(rng.randrange(1, 5))
            try:
                krpc.decode_message(bytes(data))
            except KRPCDecodeError:
                pass

    @settings(max_examples=400, deadline=None)
    @given(st.recursive(st.none() | st.binary(max_size=30) | st.integers(),
                        lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.binary(max_size=4), inner, max_size=4),
                        max_leaves=20))
    def test_any_bencoded_value(self, value: object) -> None:
        """Any bencodable structure decodes to a message or a KRPCDecodeError."""
        try:
            data = bytes(fastbencode.bencode(value))
        except Exception:
            return       # None is not bencodable: nothing to test
        try:
            msg = krpc.decode_message(data)
        except KRPCDecodeError:
            return
        self.assertIsInstance(msg, (Query, Response, Error))

    @settings(max_examples=300, deadline=None)
    @given(st.fixed_dictionaries({
        b"t": st.binary(min_size=1, max_size=16),
        b"y": st.sampled_from([b"q", b"r", b"e"]),
        b"q": st.sampled_from([b"ping", b"find_node", b"get_peers", b"announce_peer", b"x"]),
        b"a": st.dictionaries(st.sampled_from([b"id", b"target", b"info_hash", b"port",
                                               b"token", b"implied_port"]),
                              st.binary(max_size=24) | st.integers(-5, 70000), max_size=6),
        b"r": st.dictionaries(st.sampled_from([b"id", b"nodes", b"values", b"token"]),
                              st.binary(max_size=60) | st.lists(st.binary(max_size=8)),
                              max_size=4),
        b"e": st.lists(st.integers(0, 300) | st.binary(max_size=5), max_size=3),
    }))
    def test_krpc_shaped(self, value: dict[bytes, object]) -> None:
        """KRPC-shaped dictionaries with wrong types decode or refuse, never crash."""
        try:
            msg = krpc.decode_message(bytes(fastbencode.bencode(value)))
        except KRPCDecodeError:
            return
        self.assertEqual(msg.tid, value[b"t"])
