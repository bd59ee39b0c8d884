# -*- test-case-name: test.test_cli_status -*-
"""``txtunnels status``: a real process reading a running node's status port."""
from __future__ import annotations

import os
import socket
import sys

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase

from tunnels.cli.status import json_url, render, sparkline
from tunnels.runtime import as_future

from .statuscase import StatusNodeCase
from .util import async_test, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def status_command(*args: str) -> tuple[str, str, int]:
    """Run ``python -m tunnels status ARGS`` without blocking the reactor; (stdout, stderr, status)."""
    out, err, code = await as_future(getProcessOutputAndValue(
        sys.executable, ("-m", "tunnels", "status", *args), env={**os.environ, "PYTHONPATH": ROOT}, path=ROOT,
        reactor=reactor))
    return out.decode(), err.decode(), code


class StatusCommandTests(StatusNodeCase):
    """The command against a running node."""

    @async_test
    async def test_once(self) -> None:
        """``--once`` (and any pipe) prints one report with the node's figures, exit 0."""
        await self.start_status_node()
        history = self.status_service.history
        await wait_for(lambda: len(history.samples) >= 3, what="three throughput samples")
        out, err, code = await status_command("--once", f"127.0.0.1:{self.status_service.port}")
        status = await self.get_json()
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith(f"txtunnels {status['version']} at http://127.0.0.1:"
                                            f"{self.status_service.port}/status.json: relay (testnet), node "
                                            f"{status['node_id'][:16]}"), lines[0])
        self.assertIn(f"peers {status['peers']}", lines[1])
        self.assertIn("     sent/s ", out)
        self.assertIn("SOCKS5 front end (UDP ASSOCIATE): associations 0", out)
        self.assertIn("drops by reason:", out)

    @async_test
    async def test_unreachable(self) -> None:
        """Nothing listening: exit 1 with one line saying where and why."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out, err, code = await status_command(f"http://127.0.0.1:{port}/")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"python -m tunnels status: cannot reach http://127.0.0.1:{port}/status.json: "
                              "Connection refused\n")


class RenderingTests(SynchronousTestCase):
    """Pure helpers."""

    def test_json_url(self) -> None:
        """host:port, a bare URL and the JSON URL all lead to /status.json."""
        for given in ("127.0.0.1:8091", "http://127.0.0.1:8091", "http://127.0.0.1:8091/",
                      "http://127.0.0.1:8091/status.json"):
            self.assertEqual(json_url(given), "http://127.0.0.1:8091/status.json")

    def test_sparkline(self) -> None:
        """Scaled to the maximum; flat zeros stay low."""
        self.assertEqual(sparkline([0, 4, 8]), "▁▅█")
        self.assertEqual(sparkline([0, 0]), "▁▁")

    def test_not_running(self) -> None:
        """A failed node is reported with its error."""
        self.assertEqual(render({"state": "failed", "error": "port in use"}, "u"), "txtunnels at u: failed: port in use\n")
