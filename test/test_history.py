# -*- test-case-name: test.test_history -*-
"""Tests for :mod:`tunnels.daemon.history`: bounded samples and rates, on a Clock."""
from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnels.daemon.history import History, HistorySampler


def status(up: int, down: int = 0, relayed: int = 0, state: str = "running") -> dict[str, Any]:
    """The part of a status snapshot the history reads."""
    return {"state": state, "bytes_up": up, "bytes_down": down, "drops": 0,
            "cells": {"relay_forward": relayed, "relay_backward": 0, "origin_forward": 0, "origin_backward": 0}}


class HistoryTests(SynchronousTestCase):
    """Samples every ``interval`` seconds, at most ``span`` seconds of them, rates per second."""

    def test_rates_and_bound(self) -> None:
        """With 5 s samples over 20 s: 5 samples kept, rates of 1000 B/s, the oldest dropped first."""
        clock = Clock()
        current = {"status": status(0)}
        history = History(interval=5.0, span=20.0)
        sampler = HistorySampler(clock, lambda: current["status"], history)
        sampler.start()
        for step in range(1, 10):
            current["status"] = status(5000 * step, down=2500 * step, relayed=50 * step)
            clock.advance(5.0)
        self.assertEqual(len(history.samples), 5)
        self.assertEqual([s[0] for s in history.samples], [25.0, 30.0, 35.0, 40.0, 45.0])
        self.assertEqual(history.rates("bytes_up"), [(30.0, 1000.0), (35.0, 1000.0), (40.0, 1000.0), (45.0, 1000.0)])
        self.assertEqual(history.latest_rate("bytes_down"), 500.0)
        self.assertEqual(history.latest_rate("cells_relayed"), 10.0)
        sampler.stop()
        clock.advance(5.0)
        self.assertEqual(len(history.samples), 5)
        self.assertEqual(history.as_json()["rates"]["bytes_up"][-1], [45.0, 1000.0])

    def test_not_running_and_restart(self) -> None:
        """No samples while the node is not running; a counter that went back restarts the history."""
        clock = Clock()
        current: dict[str, Any] = {"status": None}
        history = History(interval=1.0, span=10.0)
        sampler = HistorySampler(clock, lambda: current["status"], history)
        sampler.start()
        clock.advance(1.0)
        current["status"] = {"state": "failed", "error": "x"}
        clock.advance(1.0)
        self.assertEqual(len(history.samples), 0)
        self.assertIsNone(history.latest_rate("bytes_up"))
        current["status"] = status(100)
        clock.advance(1.0)
        current["status"] = status(300)
        clock.advance(1.0)
        self.assertEqual(history.latest_rate("bytes_up"), 200.0)
        current["status"] = status(10)          # a new node behind the same service
        clock.advance(1.0)
        self.assertEqual(len(history.samples), 1)

    def test_bad_parameters(self) -> None:
        """interval must be positive and no longer than span."""
        for interval, span in ((0.0, 10.0), (5.0, 1.0), (-1.0, 10.0)):
            with self.assertRaises(ValueError):
                History(interval=interval, span=span)
