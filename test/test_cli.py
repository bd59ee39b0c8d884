"""The README's first command: ``python -m tunnels demo`` as a real process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DemoTests(TestCase):
    timeout = 180

    def test_demo_succeeds_and_reports(self) -> None:
        """The demo builds 1-3 hop circuits, echoes data, connects two hidden-service members, exits 0."""
        result = subprocess.run([sys.executable, "-m", "tunnels", "demo", "--json"], cwd=ROOT, capture_output=True,
                                text=True, timeout=150, env={**os.environ, "PYTHONPATH": ROOT})
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        summary = json.loads(result.stdout)
        self.assertTrue(summary["ok"])
        self.assertEqual([c["hops"] for c in summary["circuits"]], [1, 2, 3])
        self.assertTrue(all(c["echo_ok"] for c in summary["circuits"]))
        self.assertTrue(summary["hidden_service"]["ok"])

    def test_bad_arguments(self) -> None:
        """Too few relays is a usage error (exit 2), before any network is started."""
        result = subprocess.run([sys.executable, "-m", "tunnels", "demo", "--relays", "1"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
        self.assertEqual(result.returncode, 2)
        self.assertIn("at least 2 relays", result.stderr)
