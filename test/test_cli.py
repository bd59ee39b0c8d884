# -*- test-case-name: test.test_cli -*-
"""The command line as a user runs it: ``python -m tunnels`` and ``txtunnels``, as real processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tunnels.cli import program_name
from tunnels.reasons import explain
from tunnels.version import VERSION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT}


def run_module(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m tunnels ARGS`` from the checkout."""
    return subprocess.run([sys.executable, "-m", "tunnels", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def run_console_script(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``txtunnels`` console script, as setuptools writes it (argv[0] ends in ``txtunnels``)."""
    code = "import sys; from tunnels.cli import main; sys.argv[0] = '/usr/bin/txtunnels'; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=ENV)


class DemoTests(TestCase):
    """``python -m tunnels demo``, the README's first command."""

    timeout = 180

    def test_demo_succeeds_and_reports(self) -> None:
        """The demo builds 1-3 hop circuits, echoes data, connects two hidden-service members, exits 0,
        and loses no datagram of its own: every drop it reports is explained."""
        result = run_module("demo", "--json", timeout=150)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        summary = json.loads(result.stdout)
        self.assertTrue(summary["ok"])
        self.assertEqual([c["hops"] for c in summary["circuits"]], [1, 2, 3])
        self.assertTrue(all(c["echo_ok"] for c in summary["circuits"]))
        self.assertTrue(summary["hidden_service"]["ok"])
        # The reported "dropped datagrams: 6" were the members' first DHT queries, sent before
        # their circuit was built: they now wait for it.
        self.assertNotIn("dht_query_without_circuit", summary["drops_by_reason"])
        self.assertEqual(summary["drops"], sum(summary["drops_by_reason"].values()))
        for reason in summary["drops_by_reason"]:
            self.assertNotEqual(explain(reason), "", reason)

    def test_demo_text_shows_progress_and_explains_drops(self) -> None:
        """In text mode the demo shows progress while the network starts and names its drops."""
        result = run_module("demo", "--relays", "2", "--exits", "1", timeout=150)
        self.assertEqual(result.returncode, 0, result.stdout[-2000:] + result.stderr[-2000:])
        self.assertIn("mainline DHT: 6 BEP 5 nodes up", result.stdout)
        self.assertIn("6/6 nodes up (3 clients started)", result.stdout)
        self.assertIn("  dropped datagrams: ", result.stdout)
        for line in result.stdout.splitlines():
            if line.startswith("    ") and " x " in line and ": " in line:       # "    2 x reason: why"
                self.assertNotIn("no explanation recorded", line)
        self.assertTrue(result.stdout.rstrip().endswith("RESULT: success"), result.stdout[-500:])

    def test_bad_arguments(self) -> None:
        """Bad values: exit 2 with one line naming the subcommand, the option and what is accepted."""
        cases = [
            (("demo", "--relays", "1"), "python -m tunnels demo: argument --relays: must be at least 2 "
                                        "(3-hop circuits need two relays besides the exit), got 1"),
            (("demo", "--exits", "0"), "python -m tunnels demo: argument --exits: must be at least 1"),
            (("demo", "--relays", "many"), "python -m tunnels demo: argument --relays: must be a whole number"),
            (("status", "--interval", "0"), "python -m tunnels status: argument --interval: must be more than 0"),
            ((), "python -m tunnels: the following arguments are required: COMMAND"),
            (("frobnicate",), "python -m tunnels: argument COMMAND: invalid choice: 'frobnicate'"),
        ]
        for args, expected in cases:
            result = run_module(*args)
            self.assertEqual(result.returncode, 2, (args, result.stderr))
            self.assertEqual(result.stdout, "", args)
            self.assertEqual(result.stderr.count("\n"), 1, (args, result.stderr))
            self.assertTrue(result.stderr.startswith(expected), (args, result.stderr))


class NamesAndVersionTests(SynchronousTestCase):
    """Usage lines name the program as typed; ``--version`` works for both names."""

    def test_version_module(self) -> None:
        """``python -m tunnels --version`` prints the version and exits 0."""
        result = run_module("--version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith(f"txtunnels {VERSION} (Twisted "), result.stdout)

    def test_console_script_name(self) -> None:
        """``txtunnels --help`` says ``usage: txtunnels``, and its errors name ``txtunnels``."""
        result = run_console_script("--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith("usage: txtunnels "), result.stdout)
        result = run_console_script("demo", "--relays", "0")
        self.assertEqual(result.returncode, 2)
        self.assertTrue(result.stderr.startswith("txtunnels demo: argument --relays"), result.stderr)
        result = run_console_script("--version")
        self.assertEqual((result.returncode, result.stdout.split(" ")[:2]), (0, ["txtunnels", VERSION]))

    def test_program_name(self) -> None:
        """argv[0] decides the name: the script's base name, or ``python -m tunnels`` for the module."""
        for argv0, expected in (("/usr/local/bin/txtunnels", "txtunnels"), ("/x/tunnels/__main__.py",
                                                                            "python -m tunnels")):
            self.patch(sys, "argv", [argv0])
            self.assertEqual(program_name(), expected)
