# -*- test-case-name: test.test_history -*-
"""Throughput over the last minutes: a bounded ring of counter samples, and rates from it.

:class:`History` keeps at most ``span / interval + 1`` samples of the node's cumulative
counters (bytes up and down, cells relayed, cells of our own circuits, drops), taken by
a ``LoopingCall`` every ``interval`` seconds on the reactor's clock.  Rates are computed
between neighbouring samples, so the page and ``txtunnels status`` plot bytes (or cells)
per second with no work on the packet path.  Memory is fixed: about 120 samples of 5
numbers with the defaults.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.task import LoopingCall

SERIES = ("bytes_up", "bytes_down", "cells_relayed", "cells_own", "drops")
"""The counters sampled, in sample order (after the time)."""
INTERVAL = 5.0
"""Seconds between samples."""
SPAN = 600.0
"""Seconds of history kept."""


def counters_of(status: dict[str, Any]) -> tuple[float, ...]:
    """The sampled counters of a :func:`~tunnels.daemon.status.node_status` snapshot, in :data:`SERIES` order."""
    cells = status["cells"]
    return (status["bytes_up"], status["bytes_down"], cells["relay_forward"] + cells["relay_backward"],
            cells["origin_forward"] + cells["origin_backward"], status["drops"])


class History:
    """Samples ``(time, *counters)``; the oldest fall out beyond ``span`` seconds.

    :raises ValueError: ``interval`` or ``span`` is not positive, or ``span < interval``.
    """

    def __init__(self, interval: float = INTERVAL, span: float = SPAN) -> None:
        if interval <= 0 or span < interval:
            raise ValueError(f"need 0 < interval <= span, got interval={interval}, span={span}")
        self.interval = interval
        self.span = span
        self.samples: deque[tuple[float, ...]] = deque(maxlen=int(span / interval) + 1)

    def add(self, now: float, counters: tuple[float, ...]) -> None:
        """Record the counters at ``now`` (seconds); a restarted counter (lower than before) restarts the history."""
        if self.samples and any(new < old for new, old in zip(counters, self.samples[-1][1:])):
            self.samples.clear()
        self.samples.append((now, *counters))

    def rates(self, series: str) -> list[tuple[float, float]]:
        """``(time, per second)`` of ``series`` between neighbouring samples, oldest first."""
        column = 1 + SERIES.index(series)
        points = list(self.samples)
        return [(b[0], (b[column] - a[column]) / (b[0] - a[0]))
                for a, b in zip(points, points[1:]) if b[0] > a[0]]

    def latest_rate(self, series: str) -> float | None:
        """The most recent rate of ``series``, or None with fewer than two samples."""
        rates = self.rates(series)
        return rates[-1][1] if rates else None

    def as_json(self) -> dict[str, Any]:
        """``{"interval": s, "series": [...], "rates": {series: [[t, per second], ...]}}``."""
        return {"interval": self.interval, "span": self.span, "series": list(SERIES),
                "rates": {name: [[round(t, 3), round(r, 3)] for t, r in self.rates(name)] for name in SERIES}}


class HistorySampler:
    """Feeds a :class:`History` from ``source()`` (a status snapshot or None) every ``interval`` seconds."""

    def __init__(self, clock: Any, source: Callable[[], dict[str, Any] | None], history: History) -> None:
        self.clock = clock
        self.source = source
        self.history = history
        self.loop = LoopingCall(self.sample)
        self.loop.clock = clock

    def start(self) -> None:
        """Sample now and every ``history.interval`` seconds."""
        self.loop.start(self.history.interval, now=True)

    def stop(self) -> None:
        """Stop sampling (idempotent)."""
        if self.loop.running:
            self.loop.stop()

    def sample(self) -> None:
        """Take one sample (nothing while the node is not running)."""
        status = self.source()
        if status is not None and status.get("state") == "running":
            self.history.add(self.clock.seconds(), counters_of(status))
