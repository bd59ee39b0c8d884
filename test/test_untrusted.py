"""Strangers' datagrams at a node's IPv8 port (DESIGN.md property 15): delivered or counted,
never an exception into the reactor, never a traceback, at most a few log lines a minute."""
from __future__ import annotations

import logging
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tunnels.core.origin import OriginRole
from tunnels.core.reassembly import ReassemblyBuffer
from tunnels.core.routing import LinkTable
from tunnels.ratelimit import LogBudget
from tunnels.settings import TunnelSettings
from tunnels.stats import Stats
from tunnels.wire.cells import CELL_MARK, CELL_SIZE, CellType, frame
from test.netcase import NetworkTestCase
from test.util import async_test, wait_for


class LogCapture:
    """Records Twisted log events at ``warn`` or above and stdlib log records at WARNING or above
    (IPv8 logs through the standard library), for the life of a test."""

    def __init__(self, case: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.records: list[logging.LogRecord] = []
        outer = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                outer.records.append(record)

        handler = _Handler(logging.WARNING)
        root = logging.getLogger()
        root.addHandler(handler)
        case.addCleanup(root.removeHandler, handler)
        globalLogPublisher.addObserver(self.observe)
        case.addCleanup(globalLogPublisher.removeObserver, self.observe)

    def observe(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if level is not None and level >= LogLevel.warn:
            self.events.append(event)

    @property
    def tracebacks(self) -> list[Any]:
        """Events and records that carry a traceback."""
        return ([e for e in self.events if "log_failure" in e or "failure" in e]
                + [r for r in self.records if r.exc_info or "Traceback" in r.getMessage()])


class LogBudgetTests(SynchronousTestCase):

    def test_burst_then_rate(self) -> None:
        """Five lines at once, then one every 12 seconds; the rest are counted as suppressed."""
        budget = LogBudget(0.0)
        self.assertEqual([budget.allow(0.0) for _ in range(7)], [True] * 5 + [False] * 2)
        self.assertEqual((budget.allow(11.0), budget.allow(12.5), budget.allow(13.0)), (False, True, False))
        self.assertEqual(budget.suppressed, 4)


class _Sink(DatagramProtocol):
    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        pass


class StrangerDatagramTests(NetworkTestCase):
    relays = 2
    exits = 1

    @async_test
    async def test_each_kind_is_counted_and_nothing_raises(self) -> None:
        """The IPv8 prefix alone (IndexError inside IPv8), prefix + one byte, an unknown and a deprecated
        message id, a malformed introduction, one too short to answer, a cell whose mark was flipped,
        a short cell, a cell of an unknown type: each counted under its reason; nothing reaches the
        reactor's error log; at most the budget's lines, none with a traceback; the node still builds
        and uses a circuit."""
        logs = LogCapture(self)
        target = self.net.relays[0]
        community = target.community
        prefix = community.get_prefix()
        cell = frame(CellType.RELAY, 77, b"")
        flipped = bytes((cell[0] ^ 0x01,)) + cell[1:]
        cases = {
            "ipv8_short": [prefix],
            "ipv8_unknown_message": [prefix + b"\x01", prefix + b"\x00garbage"],
            "ipv8_deprecated_message": [prefix + b"\xff"],
            "ipv8_malformed": [prefix + bytes((246,)) + b"\x00" * 300, prefix + bytes((245,))] * 10,
            "introduction_request_short": [prefix + bytes((246,)) + b"\x00" * 40],  # refused unparsed (property 14)
            "not_ours": [flipped, b"\x01" + bytes(30), b"hello", prefix[:10], b""],
            "bad_length": [cell[:100], cell + b"x"],
            "unknown_cell_type": [bytes((CELL_MARK, 99)) + cell[2:]],
        }
        before = dict(community.stats.drops)
        stranger = reactor.listenUDP(0, _Sink(), interface="127.0.0.1")
        self.addCleanup(stranger.stopListening)
        total = 0
        for datagrams in cases.values():
            for datagram in datagrams:
                stranger.write(datagram, target.address)
                total += 1

        def counted() -> dict[str, int]:
            return {reason: community.stats.drops[reason] - before.get(reason, 0) for reason in cases}
        expected = {reason: len(datagrams) for reason, datagrams in cases.items()}
        await wait_for(lambda: counted() == expected, 10, what=f"every datagram counted ({counted()})")
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(logs.tracebacks, [])
        self.assertLessEqual(len(logs.events) + len(logs.records), 5)
        self.assertGreater(community.ipv8_dispatch.budget.suppressed, 0)
        self.assertEqual(len(cell), CELL_SIZE)
        circuit = await self.build(2)
        self.assertEqual(await self.echo_round_trip(circuit, b"still serving"), [b"still serving"])


class HandlerBudgetTests(SynchronousTestCase):

    def test_failing_application_handler_logs_within_the_budget(self) -> None:
        """An application handler that fails on every datagram a peer sends: every failure counted,
        five tracebacks at once, then one per 12 seconds (Clock), never an exception upwards."""
        clock, stats = Clock(), Stats()
        origin = OriginRole(settings=TunnelSettings(), clock=clock, send=lambda a, d: None, table=LinkTable(limit=8),
                            stats=stats, on_closed=lambda c: None, reassembly=ReassemblyBuffer(100, stats.drop))

        def broken(*args: Any) -> None:
            raise RuntimeError("application bug")
        for _ in range(20):
            origin.call_handler(broken, "circuit", ("192.0.2.1", 1), b"x")
        clock.advance(12.5)
        origin.call_handler(broken, "circuit", ("192.0.2.1", 1), b"x")
        self.assertEqual((stats.drops["handler_failed"], len(self.flushLoggedErrors(RuntimeError))), (21, 6))
