# -*- test-case-name: test.test_untrusted -*-
"""IPv8 packets from strangers, contained (DESIGN.md property 15).

IPv8 3.2.1's ``Community.on_packet`` indexes ``data[22]`` unguarded, so a datagram that is
only the 22-byte community prefix raises ``IndexError`` into the reactor; it logs a full
traceback, formatted on the spot, for any handler that fails on a malformed payload, and a
warning for every unknown or deprecated message id.  Any stranger can thus flood a node's
log or its reactor's error log.  :func:`dispatch_packet` replaces it for our overlay: every
datagram ends in a handler or a counted drop (``ipv8_*``), and a failing handler costs one
line without traceback, within a :class:`~tunnels.ratelimit.LogBudget`.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from ..ratelimit import LogBudget
from ..stats import Stats

PREFIX_LENGTH = 22
"""IPv8's community prefix: ``0x00 | version (1) | community id (20)``."""


class IPv8Dispatch:
    """The contained replacement of ``Community.on_packet`` for one community.

    :param community: an IPv8 ``Community`` (its ``decode_map``, ``network`` and prefix).
    :param seconds: the clock for the log budget (``reactor.seconds``).
    """

    log = Logger()

    def __init__(self, community: Any, stats: Stats, seconds: Callable[[], float]) -> None:
        self.community = community
        self.prefix = community.get_prefix()
        self.stats = stats
        self.seconds = seconds
        self.budget = LogBudget(seconds())

    def on_packet(self, packet: tuple[Any, bytes]) -> None:
        """Hand one IPv8 datagram to its message handler, or count why not.  Never raises."""
        source, data = packet
        if len(data) <= PREFIX_LENGTH:
            self.stats.drop("ipv8_short")
            return
        if data[:PREFIX_LENGTH] != self.prefix:
            self.stats.drop("ipv8_other_prefix")
            return
        community = self.community
        peer = community.network.get_verified_by_address(source)
        if peer is not None:
            peer.last_response = time.time()  # IPv8's liveness clock is the wall clock
        handler = community.decode_map[data[PREFIX_LENGTH]]
        if handler is None:
            self.stats.drop("ipv8_unknown_message")
            return
        try:
            result = handler(source, data)
        except Exception as error:
            self._failed(error)
            return
        if asyncio.iscoroutine(result):
            future = asyncio.ensure_future(result)
            future.add_done_callback(self._settled)
            community.register_anonymous_task("on_packet", future, ignore=(Exception,))

    def _settled(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._failed(future.exception())  # type: ignore[arg-type]

    def _failed(self, error: BaseException) -> None:
        """A handler refused a payload: counted, and one line (no traceback) within the budget."""
        self.stats.drop("ipv8_malformed")
        if self.budget.allow(self.seconds()):
            self.log.warn("IPv8 message dropped: {error!r} ({suppressed} lines suppressed so far)",
                          error=error, suppressed=self.budget.suppressed)
