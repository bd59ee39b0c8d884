# -*- test-case-name: test.test_dht_client -*-
"""The client half of KRPC: send queries, match replies, time out, retry.

:class:`KRPCClient` owns no socket.  It writes through a ``send(data, addr)`` callable
and is fed reply datagrams through :meth:`KRPCClient.handle_reply`, so the same code runs
on the node's own UDP port and, for anonymous lookups, through a circuit (see
:mod:`tunnels.dht.lookup_client`).

Pending queries live in one bounded table keyed by a random transaction id from
:mod:`secrets`; a reply counts only if it carries a live transaction id *and* comes from
the address the query went to, so a spoofed reply from elsewhere is dropped (and the
genuine one still accepted).

It is also the last gate before the wire: a ``may_send(host, port)`` predicate refuses,
with :class:`DHTError` and before any I/O, every query to an address on the node's
never-query list (see :mod:`tunnels.dht.addresses`), whichever code path chose it.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from tunnels.dht.krpc import Address, Error, Response, encode_query
from tunnels.dht.stats import DHTStats
from tunnels.errors import DHTError

SendFn = Callable[[bytes, Address], None]
"""Writes one datagram to an address; may raise ``OSError`` and friends."""

TID_LENGTH = 4


class QueryTimeout(DHTError):
    """A KRPC query got no reply in time (after all retries)."""


class RemoteError(DHTError):
    """The remote node answered a query with a KRPC error ``[code, message]``."""

    blames_peer = True

    def __init__(self, code: int, message: bytes) -> None:
        super().__init__(f"KRPC error {code}: {message.decode('utf-8', 'replace')}")
        self.code = code
        self.message = message


class PendingQueries:
    """Queries waiting for a reply, keyed by transaction id (bounded)."""

    def __init__(self, reactor: IReactorTime, max_pending: int) -> None:
        self._reactor = reactor
        self.max_pending = max_pending
        self._live: dict[bytes, tuple[Address, Deferred[Response | Error], IDelayedCall]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def new_tid(self) -> bytes:
        """A fresh, unused, unguessable transaction id."""
        while True:
            tid = secrets.token_bytes(TID_LENGTH)
            if tid not in self._live:
                return tid

    def add(self, tid: bytes, addr: Address, timeout: float) -> Deferred[Response | Error]:
        """Wait for the reply to ``tid`` from ``addr``; fails with :class:`QueryTimeout`."""
        if len(self._live) >= self.max_pending:
            raise DHTError(f"too many pending queries ({self.max_pending})")
        d: Deferred[Response | Error] = Deferred(lambda _: self._forget(tid))
        call = self._reactor.callLater(timeout, self._expire, tid)
        self._live[tid] = (addr, d, call)
        return d

    def resolve(self, msg: Response | Error, addr: Address) -> str | None:
        """Fire the query ``msg`` answers; returns a drop reason if it answers none."""
        entry = self._live.get(msg.tid)
        if entry is None:
            return "unsolicited"
        if entry[0] != addr:
            return "wrong_source"
        del self._live[msg.tid]
        entry[2].cancel()
        entry[1].callback(msg)
        return None

    def cancel_all(self) -> None:
        """Cancel every pending query (on shutdown)."""
        for tid in list(self._live):
            entry = self._live.get(tid)
            if entry is not None:
                entry[1].cancel()

    def _forget(self, tid: bytes) -> None:
        entry = self._live.pop(tid, None)
        if entry is not None and entry[2].active():
            entry[2].cancel()

    def _expire(self, tid: bytes) -> None:
        entry = self._live.pop(tid, None)
        if entry is not None:
            entry[1].errback(QueryTimeout(f"no reply from {entry[0][0]}:{entry[0][1]}"))


class KRPCClient:
    """Sends KRPC queries through ``send`` and matches the replies it is fed."""

    def __init__(self, reactor: IReactorTime, send: SendFn, *, stats: DHTStats | None = None,
                 timeout: float = 2.0, retries: int = 1, max_pending: int = 512,
                 version: bytes | None = None, read_only: bool = False,
                 may_send: Callable[[str, int], bool] = lambda host, port: True) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be positive and retries >= 0")
        self._reactor = reactor
        self._send = send
        self._may_send = may_send
        self.stats = stats if stats is not None else DHTStats()
        self.timeout = timeout
        self.retries = retries
        self.version = version
        self.read_only = read_only
        self.pending = PendingQueries(reactor, max_pending)

    def query(self, addr: Address, method: bytes, args: dict[bytes, Any], *,
              retries: int | None = None) -> Deferred[Response]:
        """Send query ``method`` with ``args`` (which must hold ``id``) to ``addr``.

        Fires with the :class:`Response`; fails with :class:`QueryTimeout` after
        ``retries`` resends (each with a new transaction id), :class:`RemoteError` for a
        KRPC error reply, or :class:`DHTError` if the datagram could not be sent or
        ``may_send`` refuses ``addr`` (counted as ``stats.dropped["refused_target"]``).
        """
        if not self._may_send(addr[0], addr[1]):
            self.stats.drop("refused_target")
            refused: Deferred[Response] = Deferred()
            refused.errback(DHTError(f"refusing to query {addr[0]}:{addr[1]}"))
            return refused
        left = self.retries if retries is None else retries
        attempt_d: Deferred[Response | Error] | None = None
        cancelled = False

        def cancel(_: Deferred[Response]) -> None:
            nonlocal cancelled
            cancelled = True
            if attempt_d is not None:
                attempt_d.cancel()
        result: Deferred[Response] = Deferred(cancel)

        def attempt() -> None:
            nonlocal attempt_d
            try:
                attempt_d = self._send_once(addr, method, args)
            except DHTError as e:
                result.errback(e)
                return
            attempt_d.addCallbacks(done, failed)

        def done(msg: Response | Error) -> None:
            if isinstance(msg, Error):
                self.stats.errors_received += 1
                result.errback(RemoteError(msg.code, msg.message))
            else:
                self.stats.responses_received += 1
                result.callback(msg)

        def failed(f: Any) -> None:
            nonlocal left
            if f.check(CancelledError):
                if not cancelled and not result.called:   # closed under us
                    result.errback(DHTError("query cancelled: the DHT client closed"))
                return
            if f.check(QueryTimeout):
                self.stats.timeouts += 1
                if left > 0:
                    left -= 1
                    attempt()
                    return
            result.errback(f)

        attempt()
        return result

    def _send_once(self, addr: Address, method: bytes, args: dict[bytes, Any]
                   ) -> Deferred[Response | Error]:
        tid = self.pending.new_tid()
        data = encode_query(tid, method, args, version=self.version, read_only=self.read_only)
        d = self.pending.add(tid, addr, self.timeout)
        try:
            self._send(data, addr)
        except Exception as e:  # OSError, InvalidAddressError, MessageLengthError ...
            self.stats.send_failures += 1
            d.addErrback(lambda _: None)
            d.cancel()
            raise DHTError(f"cannot send to {addr!r}: {e}") from e
        self.stats.sent += 1
        self.stats.queries_sent += 1
        return d

    def handle_reply(self, msg: Response | Error, addr: Address) -> None:
        """Feed a decoded reply; unmatched or misdirected replies are dropped and counted."""
        reason = self.pending.resolve(msg, addr)
        if reason is not None:
            self.stats.drop(reason)

    def close(self) -> None:
        """Cancel all pending queries."""
        self.pending.cancel_all()
