# -*- test-case-name: test.test_dht_client -*-
"""The KRPC client: transaction ids, source checks, timeouts, retries, errors."""
from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnels.dht import krpc
from tunnels.dht.client import KRPCClient, QueryTimeout, RemoteError
from tunnels.errors import DHTError

NODE = ("127.0.0.1", 6881)
ID = b"i" * 20


class ClientTests(SynchronousTestCase):
    """One client, a Clock and a list standing in for the socket."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.client = KRPCClient(self.clock, lambda d, a: self.sent.append((d, a)),
                                 timeout=2.0, retries=1, max_pending=4)

    def last_tid(self) -> bytes:
        msg = krpc.decode_message(self.sent[-1][0])
        return msg.tid

    def reply(self, tid: bytes, addr: tuple[str, int] = NODE) -> None:
        self.client.handle_reply(krpc.Response(tid, {b"id": b"r" * 20}, b"r" * 20), addr)

    def test_query_and_reply(self) -> None:
        """The query goes out bencoded; the matching reply fires the Deferred."""
        d = self.client.query(NODE, b"ping", {b"id": ID})
        msg = krpc.decode_message(self.sent[0][0])
        assert isinstance(msg, krpc.Query)
        self.assertEqual((msg.method, msg.sender_id, self.sent[0][1]), (b"ping", ID, NODE))
        self.assertEqual(len(msg.tid), 4)
        self.reply(msg.tid)
        self.assertEqual(self.successResultOf(d).sender_id, b"r" * 20)
        self.assertEqual(len(self.client.pending), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_spoofed_reply_dropped(self) -> None:
        """A reply with the right tid from the wrong address is dropped; the real one counts."""
        d = self.client.query(NODE, b"ping", {b"id": ID})
        tid = self.last_tid()
        self.reply(tid, ("127.0.0.2", 6881))
        self.reply(b"zzzz")
        self.assertNoResult(d)
        self.assertEqual(self.client.stats.dropped["wrong_source"], 1)
        self.assertEqual(self.client.stats.dropped["unsolicited"], 1)
        self.reply(tid)
        self.successResultOf(d)
        self.reply(tid)            # a duplicate is unsolicited now
        self.assertEqual(self.client.stats.dropped["unsolicited"], 2)

    def test_timeout_and_retry(self) -> None:
        """A lost query is resent once with a fresh tid, then fails with QueryTimeout."""
        d = self.client.query(NODE, b"ping", {b"id": ID})
        first = self.last_tid()
        self.clock.advance(2.0)
        self.assertEqual(len(self.sent), 2)
        self.assertNotEqual(self.last_tid(), first)
        self.reply(first)                      # too late: dropped
        self.assertNoResult(d)
        self.clock.advance(2.0)
        self.failureResultOf(d, QueryTimeout)
        self.assertEqual(self.client.stats.timeouts, 2)

    def test_retry_answered(self) -> None:
        """The retry's answer fires the query."""
        d = self.client.query(NODE, b"ping", {b"id": ID})
        self.clock.advance(2.0)
        self.reply(self.last_tid())
        self.successResultOf(d)

    def test_remote_error(self) -> None:
        """A KRPC error reply fails the query with RemoteError carrying the code."""
        d = self.client.query(NODE, b"announce_peer", {b"id": ID})
        self.client.handle_reply(krpc.Error(self.last_tid(), 203, b"bad token"), NODE)
        err = self.failureResultOf(d, RemoteError).value
        self.assertEqual(err.code, 203)
        self.assertIsInstance(err, DHTError)

    def test_send_failure(self) -> None:
        """A socket error fails the query with DHTError and leaves nothing pending."""
        def boom(data: bytes, addr: tuple[str, int]) -> None:
            raise OSError("unreachable")
        client = KRPCClient(self.clock, boom)
        self.failureResultOf(client.query(NODE, b"ping", {b"id": ID}), DHTError)
        self.assertEqual((len(client.pending), client.stats.send_failures), (0, 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pending_bounded(self) -> None:
        """Past max_pending, queries fail at once instead of growing the table."""
        for _ in range(4):
            self.client.query(NODE, b"ping", {b"id": ID})
        self.failureResultOf(self.client.query(NODE, b"ping", {b"id": ID}), DHTError)
        self.assertEqual(len(self.client.pending), 4)

    def test_cancel(self) -> None:
        """Cancelling a query forgets it and its timer."""
        d = self.client.query(NODE, b"ping", {b"id": ID})
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual((len(self.client.pending), self.clock.getDelayedCalls()), (0, []))

    def test_close_fails_pending(self) -> None:
        """close() fails every pending query with DHTError."""
        d = self.client.query(NODE, b"ping", {b"id": ID})
        self.client.close()
        self.failureResultOf(d, DHTError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_read_only_flag(self) -> None:
        """A read-only client marks its queries ro=1 (BEP 43)."""
        client = KRPCClient(self.clock, lambda d, a: self.sent.append((d, a)), read_only=True)
        client.query(NODE, b"ping", {b"id": ID})
        msg = krpc.decode_message(self.sent[-1][0])
        assert isinstance(msg, krpc.Query)
        self.assertTrue(msg.read_only)
