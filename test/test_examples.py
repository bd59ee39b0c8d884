# -*- test-case-name: test.test_examples -*-
"""Every program in doc/examples runs to completion (exit code 0) on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(CHECKOUT, "doc", "examples")
EXPECTED = {
    "embed_client.py": "2 hop(s): hello over 2 hops",
    "socks5_udp.py": "echo: hello through SOCKS5",
    "relay_service.py": "relay status: {'state': 'running'",
    "hidden_service.py": "bob got 'my message to this peer', alice got 'hello back'",
}


def run_example(name: str) -> tuple[int, str]:
    """Run one example as its own process; return (exit code, output)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (CHECKOUT, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], env=env, cwd=CHECKOUT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


class ExamplesTests(SynchronousTestCase):
    """The documented examples still work against the current API."""

    def test_all_listed(self) -> None:
        """Every example file has an expected output line here (so none goes untested)."""
        found = {name for name in os.listdir(EXAMPLES) if name.endswith(".py")}
        self.assertEqual(found, set(EXPECTED))

    def test_embed_client(self) -> None:
        """embed_client.py gets echoes through 1- and 2-hop circuits."""
        self.check("embed_client.py")

    def test_socks5_udp(self) -> None:
        """socks5_udp.py gets an echo through the SOCKS5 UDP front end."""
        self.check("socks5_udp.py")

    def test_relay_service(self) -> None:
        """relay_service.py runs TunnelServices and reads the JSON status."""
        self.check("relay_service.py")

    def test_hidden_service(self) -> None:
        """hidden_service.py: two members meet through a local mainline DHT and exchange messages."""
        self.check("hidden_service.py")

    def check(self, name: str) -> None:
        """Run ``name`` and check exit code 0 and its expected line."""
        code, output = run_example(name)
        self.assertEqual(code, 0, output)
        self.assertIn(EXPECTED[name], output)
