# -*- test-case-name: test.test_flow -*-
"""Circuit flow control: SENDME windows per circuit and direction (after tor-spec 7.3).

A sender may have at most :data:`SEND_WINDOW` data cells (DATA and E2E) unacknowledged; the
receiving end of the circuit answers every :data:`SENDME_EVERY` data cells with a SENDME.
SENDMEs travel inside authenticated, replay-protected cells, so only the real receiver
can open the window (prop 289's concern); a SENDME that would open it beyond its size
ends the circuit.  Data offered while the window is closed waits in a bounded queue;
beyond that it is dropped at the sender and counted, so a sender faster than the path
loses data where it is visible instead of in relays' socket buffers.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

SEND_WINDOW = 512
SENDME_EVERY = 64
QUEUE_LIMIT = 1024

Message = tuple[int, bytes]


class FlowWindow:
    """Both halves of one end's flow control: what we may send, and when we owe a SENDME."""

    __slots__ = ("window", "queue", "received")

    def __init__(self) -> None:
        self.window = SEND_WINDOW
        self.queue: deque[Message] | None = None
        self.received = 0

    def offer(self, message: Message, send: Callable[[int, bytes], None]) -> bool:
        """Send now if the window allows, else queue; False when the queue is full (dropped)."""
        if self.window > 0 and not self.queue:
            self.window -= 1
            send(*message)
            return True
        if self.queue is None:
            self.queue = deque()
        if len(self.queue) >= QUEUE_LIMIT:
            return False
        self.queue.append(message)
        return True

    def offer_all(self, messages: list[Message], send: Callable[[int, bytes], None]) -> bool:
        """Send or queue every message of ``messages``, or none of them (False: dropped).

        The pieces of one fragmented datagram are offered together and accepted whole or
        not at all: half a datagram queued would only cost cells and be thrown away by
        the receiver's reassembly.  Rewrites of this class must keep that rule.
        """
        queued = len(self.queue) if self.queue else 0
        room = QUEUE_LIMIT - queued + (self.window if not queued else 0)
        if len(messages) > room:
            return False
        for message in messages:
            self.offer(message, send)
        return True

    def on_sendme(self, send: Callable[[int, bytes], None]) -> bool:
        """Open the window; False if the peer acknowledged more than we sent (violation)."""
        self.window += SENDME_EVERY
        if self.window > SEND_WINDOW:
            return False
        queue = self.queue
        while queue and self.window > 0:
            self.window -= 1
            send(*queue.popleft())
        return True

    def on_data(self) -> bool:
        """Count a received data cell; True when a SENDME is due."""
        self.received += 1
        return self.received % SENDME_EVERY == 0


def flow_summary(windows: Iterable[FlowWindow]) -> dict[str, int]:
    """Node-wide figures of the windows given, read at status or scrape time (never per cell).

    Keys: ``windows`` (circuit ends counted), ``blocked`` (windows at 0: the sender waits for a
    SENDME), ``window_cells`` (cells that may still be sent, summed), ``queued`` (messages
    waiting in the queues, summed), ``queue_limit`` (:data:`QUEUE_LIMIT`, per window) and
    ``send_window`` (:data:`SEND_WINDOW`, the most a window opens to).  The one place the
    status page and the metrics read flow control from: a new congestion controller only
    has to keep these keys meaningful.
    """
    count = blocked = window_cells = queued = 0
    for flow in windows:
        count += 1
        window_cells += flow.window
        if flow.window <= 0:
            blocked += 1
        if flow.queue:
            queued += len(flow.queue)
    return {"windows": count, "blocked": blocked, "window_cells": window_cells, "queued": queued,
            "queue_limit": QUEUE_LIMIT, "send_window": SEND_WINDOW}
