# -*- test-case-name: test.test_twistd -*-
"""Real ``twistd tunnels`` processes: start, answer the status endpoint, stop on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
"""``python -m twisted.scripts.twistd`` does nothing on Twisted 26 (no ``__main__`` guard)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def twistd(args: list[str], cwd: str) -> subprocess.Popen[bytes]:
    """Start ``twistd -n ... tunnels <args>`` with the checkout on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (CHECKOUT, os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen([sys.executable, "-c", TWISTD, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def get_status(port: int) -> dict[str, Any] | None:
    """The JSON status, or None if the endpoint does not answer 200 yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except (OSError, urllib.error.URLError):
        return None


class TwistdTests(SynchronousTestCase):
    """twistd runs the plugin end to end."""

    def workdir(self) -> str:
        """A fresh directory to run twistd in."""
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        return path

    def run_node(self, key_file: str) -> tuple[dict[str, Any], str]:
        """Run a node until its status answers, SIGTERM it; return (status, log)."""
        status_port = free_port()
        proc = twistd(["--reactor=asyncio", "-n", "--pidfile=", "--logfile=-", "tunnels", "--testnet",
                       "--host", "127.0.0.1", "--port", "0", "--status-port", str(status_port),
                       "--status-interval", "1", "--key-file", key_file, "--socks5-port", "0"], self.workdir())
        try:
            deadline = time.monotonic() + 20
            status = None
            while status is None and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
                status = get_status(status_port)
            self.assertIsNotNone(status, "the status endpoint never answered")
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        log = output.decode("utf-8", "replace")
        # After a clean shutdown twistd re-raises the signal that stopped it, so the exit
        # status says "terminated by SIGTERM" (which systemd counts as success); a crash
        # or a hang would give 1 or a kill.
        self.assertEqual(proc.returncode, -signal.SIGTERM, log)
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        assert status is not None
        return status, log

    def test_start_status_sigterm(self) -> None:
        """twistd tunnels serves its status, logs status lines and stops cleanly on SIGTERM."""
        key_file = os.path.abspath(self.mktemp())
        status, log = self.run_node(key_file)
        self.assertEqual(status["state"], "running")
        self.assertEqual(status["address"][0], "127.0.0.1")
        self.assertIn("status: 0 circuits", log)
        self.assertIn("SOCKS5 (UDP ASSOCIATE) for 3-hop circuits on 127.0.0.1", log)
        self.assertIn("Stopping: destroying", log)
        self.assertIn("Stopped: circuits destroyed, sockets closed", log)
        self.assertIn("Server Shut Down", log)
        self.assertEqual(stat.S_IMODE(os.stat(key_file).st_mode), 0o600)

    def test_identity_survives_restart(self) -> None:
        """A second run with the same key file keeps the key file (and so the identity) unchanged."""
        key_file = os.path.abspath(self.mktemp())
        self.run_node(key_file)
        with open(key_file, "rb") as f:
            first = f.read()
        self.run_node(key_file)
        with open(key_file, "rb") as f:
            self.assertEqual(f.read(), first)

    def test_refuses_default_reactor(self) -> None:
        """Without --reactor=asyncio twistd exits non-zero with a one-line explanation."""
        proc = twistd(["-n", "--pidfile=", "tunnels", "--key-file", os.path.abspath(self.mktemp())], CHECKOUT)
        output, _ = proc.communicate(timeout=30)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"txtunnels needs Twisted's asyncio reactor", output)
        self.assertIn(b"--reactor=asyncio", output)

    def test_corrupt_key_file(self) -> None:
        """A corrupt key file stops startup with a clear message instead of a new identity."""
        key_file = os.path.abspath(self.mktemp())
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"garbage")
        os.close(fd)
        proc = twistd(["--reactor=asyncio", "-n", "--pidfile=", "tunnels", "--key-file", key_file], CHECKOUT)
        output, _ = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(b"txtunnels: ", output)
        self.assertIn(b"corrupt", output)
        with open(key_file, "rb") as f:
            self.assertEqual(f.read(), b"garbage")
