# -*- test-case-name: test.test_examples -*-
"""Every program in doc/examples, and the README's example, runs to completion on 127.0.0.1."""
from __future__ import annotations

import os
import re
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


README = os.path.join(CHECKOUT, "README.md")
BROKEN_NETWORK = """
import runpy, sys
from tunnels.testnet.network import LocalNetwork

async def no_network(self, *args, **kwargs):
    raise RuntimeError("no network today")

LocalNetwork.start = no_network
runpy.run_path(sys.argv[1], run_name="__main__")
"""
"""Runs a program with ``LocalNetwork.start`` raising, as a failing ``main()`` would."""


def readme_example(directory: str) -> str:
    """Write the README's Python example to ``directory``; return its path."""
    with open(README, encoding="utf-8") as f:
        [code] = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    path = os.path.join(directory, "readme_example.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(code)
    return path


def run_example(name: str) -> tuple[int, str]:
    """Run one example as its own process; return (exit code, output)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (CHECKOUT, os.environ.get("PYTHONPATH")) if p))
    # a deprecated call in an example (readBody without abortConnection, as reported) fails it
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning:__main__", os.path.join(EXAMPLES, name)],
                          env=env, cwd=CHECKOUT,
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

    def test_readme_example(self) -> None:
        """The README's example runs as written: progress while the network forms, the echo, exit 0."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        env = dict(os.environ, PYTHONPATH=CHECKOUT)
        proc = subprocess.run([sys.executable, readme_example(directory)], env=env, cwd=directory,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("7/7 nodes up (1 client started)", proc.stdout)
        self.assertIn("peer discovery: all 7 nodes know each other", proc.stdout)
        self.assertIn("reply from the echo server: b'hello'", proc.stdout)

    def test_readme_example_failure_exits(self) -> None:
        """When the README example's main() raises, the program ends with status 1 and the error
        (before the fix it hung: the reactor was never stopped)."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        env = dict(os.environ, PYTHONPATH=CHECKOUT)
        proc = subprocess.run([sys.executable, "-c", BROKEN_NETWORK, readme_example(directory)], env=env,
                              cwd=directory, capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("RuntimeError: no network today", proc.stderr)

    def check(self, name: str) -> None:
        """Run ``name`` and check exit code 0 and its expected line."""
        code, output = run_example(name)
        self.assertEqual(code, 0, output)
        self.assertIn(EXPECTED[name], output)
