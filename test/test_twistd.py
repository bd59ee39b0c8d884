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


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that were free a moment ago."""
    for _ in range(100):
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


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

    def test_sigterm_tells_socks5_clients(self) -> None:
        """SIGTERM with a SOCKS5 association open and another connection mid-handshake: both clients
        see EOF, the process ends cleanly, and the log has no traceback (that the connections close
        before the node stops, not with the process, is test_socks5_lifecycle.ServiceStopTests)."""
        base = free_ports(3)
        status_port = free_port()
        proc = twistd(["--reactor=asyncio", "-n", "--pidfile=", "--logfile=-", "tunnels", "--testnet",
                       "--host", "127.0.0.1", "--port", "0", "--status-port", str(status_port),
                       "--key-file", os.path.abspath(self.mktemp()), "--socks5-port", str(base)], self.workdir())
        try:
            deadline = time.monotonic() + 20
            while get_status(status_port) is None and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            associated = socket.create_connection(("127.0.0.1", base), timeout=10)
            self.addCleanup(associated.close)
            associated.sendall(b"\x05\x01\x00" + b"\x05\x03\x00\x01" + bytes(6))
            reply = b""
            while len(reply) < 12:
                reply += associated.recv(12 - len(reply))
            self.assertEqual(reply[:5], b"\x05\x00\x05\x00\x00")
            waiting = socket.create_connection(("127.0.0.1", base + 2), timeout=10)
            self.addCleanup(waiting.close)
            waiting.sendall(b"\x05")
            status = get_status(status_port)
            assert status is not None
            self.assertEqual(status["sections"]["socks5"]["gauges"]["associations"], 1)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(associated.recv(100), b"")
            self.assertEqual(waiting.recv(100), b"")
            output, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        log = output.decode("utf-8", "replace")
        self.assertEqual(proc.returncode, -signal.SIGTERM, log)
        self.assertNotIn("Traceback", log)

    def test_identity_survives_restart(self) -> None:
        """A second run with the same key file keeps the key file (and so the identity) unchanged."""
        key_file = os.path.abspath(self.mktemp())
        self.run_node(key_file)
        with open(key_file, "rb") as f:
            first = f.read()
        self.run_node(key_file)
        with open(key_file, "rb") as f:
            self.assertEqual(f.read(), first)

    def test_guards_kept_next_to_the_key_file(self) -> None:
        """The guards in <key>.guards are loaded at start (shown in the status) and still there
        after the process stopped; a corrupt guard file is moved aside, not fatal."""
        key_file = os.path.abspath(self.mktemp()) + ".key"
        guard_file = key_file[:-len(".key")] + ".guards"
        ids = ["%040x" % (i + 1) for i in range(4)]
        with open(guard_file, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "guards": [{"node_id": i, "added_on": time.time() - 100, "confirmed_on": None,
                                                 "unlisted_since": None} for i in ids]}, f)
        status, log = self.run_node(key_file)
        self.assertEqual(status["entry_guards"], [i[:16] for i in ids[:3]])
        self.assertIn("Loaded 4 entry guards", log)
        with open(guard_file, encoding="utf-8") as f:
            self.assertEqual([g["node_id"] for g in json.load(f)["guards"]], ids)
        with open(guard_file, "w", encoding="utf-8") as f:
            f.write("{not json")
        status, log = self.run_node(key_file)
        self.assertEqual(status["entry_guards"], [])
        self.assertIn("Guard file unusable", log)
        with open(guard_file + ".corrupt", encoding="utf-8") as f:
            self.assertEqual(f.read(), "{not json")

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


def twistd_separate(args: list[str], cwd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``twistd ARGS`` to its end; stdout (the log with -n) and stderr apart."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (CHECKOUT, os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-c", TWISTD, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


class HeldPorts:
    """A UDP and a TCP port on 127.0.0.1 held by this process (so a node cannot bind them)."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen()

    @property
    def udp_port(self) -> int:
        """The held UDP port."""
        return int(self.udp.getsockname()[1])

    @property
    def tcp_port(self) -> int:
        """The held TCP port."""
        return int(self.tcp.getsockname()[1])

    def close(self) -> None:
        """Release both."""
        self.udp.close()
        self.tcp.close()


class StartupFailureTests(SynchronousTestCase):
    """Every way ``twistd tunnels`` can fail to start: one line on stderr and a non-zero status."""

    def setUp(self) -> None:
        self.ports = HeldPorts()
        self.addCleanup(self.ports.close)
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.key = os.path.join(self.dir, "node.key")

    def node(self, *args: str, daemon: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``twistd --reactor=asyncio [-n] tunnels --testnet ARGS`` to its end."""
        twistd_args = ["--reactor=asyncio", "--pidfile", os.path.join(self.dir, "node.pid")]
        twistd_args += ["--logfile", os.path.join(self.dir, "node.log")] if daemon else ["-n"]
        return twistd_separate([*twistd_args, "tunnels", "--testnet", "--host", "127.0.0.1", "--key-file", self.key,
                                *args], self.dir)

    def assert_one_line(self, result: subprocess.CompletedProcess[str], status: int, line: str) -> None:
        """Exit ``status``, and stderr is exactly ``line``; no traceback anywhere."""
        self.assertEqual((result.returncode, result.stderr), (status, line + "\n"), result.stdout[-3000:])
        self.assertNotIn("Traceback", result.stdout)

    def test_udp_port_in_use(self) -> None:
        """The node's UDP port taken: status 1, one line, the pid file removed, no traceback in the log."""
        port = self.ports.udp_port
        result = self.node("--port", str(port))
        self.assert_one_line(result, 1, f"txtunnels: cannot listen on UDP 127.0.0.1:{port} (--port): "
                                        "address already in use")
        self.assertIn(f"txtunnels cannot start: cannot listen on UDP 127.0.0.1:{port}", result.stdout)
        self.assertIn("Server Shut Down.", result.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "node.pid")))

    def test_status_port_in_use(self) -> None:
        """The status port taken: status 1 and one line; the node's UDP socket is closed again."""
        port = self.ports.tcp_port
        result = self.node("--port", "0", "--status-port", str(port))
        self.assert_one_line(result, 1, f"txtunnels: cannot listen on TCP 127.0.0.1:{port} (--status-port): "
                                        "address already in use")
        self.assertIn("(UDP Port", result.stdout)        # the node's socket, bound first, was closed

    def test_socks5_port_in_use(self) -> None:
        """A SOCKS5 port taken: status 1 and one line naming the hop count."""
        port = self.ports.tcp_port
        result = self.node("--port", "0", "--socks5-port", str(port))
        self.assert_one_line(result, 1, f"txtunnels: cannot listen on TCP 127.0.0.1:{port} (--socks5-port, "
                                        "1-hop circuits): address already in use")

    def test_daemonized_udp_port_in_use(self) -> None:
        """Daemonized (no -n), twistd's parent reports the reason and exits 1 (Twisted's status pipe)."""
        port = self.ports.udp_port
        result = self.node("--port", str(port), daemon=True)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(f"cannot listen on UDP 127.0.0.1:{port} (--port): address already in use", result.stderr)

    def test_bad_option_values(self) -> None:
        """Bad values: status 2 and one line naming the option and what is accepted (no usage dump)."""
        cases = [
            (["--log-level", "verbose"], "--log-level must be one of debug, info, warn, error, critical; "
                                         "got 'verbose'"),
            (["--port", "70000"], "--port must be between 0 and 65535, got 70000"),
            (["--status-port", "http"], "--status-port must be a number, got 'http'"),
            (["--exit-ports", "53"], "--exit-ports and --exit-bandwidth only apply with --exit"),
            (["--frobnicate"], "option --frobnicate not recognized"),
        ]
        for args, message in cases:
            result = self.node(*args)
            self.assert_one_line(result, 2, f"twistd tunnels: {message} (see: twistd tunnels --help)")
            self.assertEqual(result.stdout, "", args)

    def test_version(self) -> None:
        """``twistd tunnels --version`` prints txtunnels' version on stdout and exits 0."""
        from tunnels.version import VERSION
        result = self.node("--version")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertTrue(result.stdout.startswith(f"txtunnels {VERSION} (Twisted "), result.stdout)

    def test_failure_after_start(self) -> None:
        """A node whose start fails after the reactor runs still exits 1 with one line (the atexit path)."""
        tac = os.path.join(self.dir, "broken.tac")
        with open(tac, "w") as f:
            f.write(BROKEN_NODE_TAC)
        result = twistd_separate(["--reactor=asyncio", "-n", "--pidfile=", "-y", tac], self.dir)
        self.assertEqual((result.returncode, result.stderr),
                         (1, "txtunnels: the node failed to start: RuntimeError: a bug while starting "
                             "(traceback in the log)\n"), result.stdout[-3000:])
        self.assertIn("Server Shut Down.", result.stdout)


BROKEN_NODE_TAC = """
from twisted.application import service
from twisted.internet import reactor
from twisted.internet.defer import fail

from tunnels.daemon import service as node_service
from tunnels.daemon.process import ExitStatus, NodeRoot
from tunnels.node import new_key_bin
from tunnels.settings import TunnelSettings

node_service.start_node = lambda *args, **kwargs: fail(RuntimeError("a bug while starting"))
node = node_service.TunnelService(reactor, host="127.0.0.1", port=0, settings=TunnelSettings(), key_bin=new_key_bin(),
                                  testnet=True, status_interval=0)
status = ExitStatus()
status.arm()
application = service.Application("broken")
NodeRoot(reactor, node, status).setServiceParent(application)
"""
"""A .tac whose node fails to start once the reactor runs (as a bug in IPv8 start-up would)."""
