# -*- test-case-name: test.test_systemd -*-
"""doc/systemd/txtunnels.service: ``systemd-analyze verify`` accepts it, and its command line is ours."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tunnels.daemon.tap import Options

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(CHECKOUT, "doc", "systemd", "txtunnels.service")
TWISTD = "/opt/txtunnels/bin/twistd"
"""Where the unit expects twistd (a virtualenv); the tests put an existing executable there."""


def unit_text() -> str:
    """The unit file as shipped."""
    with open(UNIT, encoding="utf-8") as f:
        return f.read()


def exec_start(text: str) -> list[str]:
    """The ExecStart command line, continuation lines joined, split as systemd does."""
    lines = text.replace("\\\n", " ").splitlines()
    [line] = [line for line in lines if line.startswith("ExecStart=")]
    return shlex.split(line[len("ExecStart="):])


class SystemdUnitTests(SynchronousTestCase):
    """The unit is valid for systemd, hardened, and runs ``twistd tunnels`` with valid options."""

    def verify(self, text: str) -> subprocess.CompletedProcess[str]:
        """``systemd-analyze verify`` a copy of ``text`` (twistd's path pointed at this Python)."""
        analyze = shutil.which("systemd-analyze")
        self.assertIsNotNone(analyze, "systemd-analyze is missing: apt-get install systemd (.ci/run does)")
        assert analyze is not None
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "txtunnels.service")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(TWISTD, os.path.realpath(sys.executable)))
        return subprocess.run([analyze, "verify", "--man=no", path], capture_output=True, text=True, timeout=60)

    def test_verify(self) -> None:
        """systemd-analyze verify passes with nothing to say (an unknown key would only warn)."""
        result = self.verify(unit_text())
        self.assertEqual((result.returncode, result.stderr, result.stdout), (0, "", ""))

    def test_verify_catches_a_typo(self) -> None:
        """The check bites: a misspelt hardening option is reported."""
        result = self.verify(unit_text().replace("ProtectSystem=strict", "ProtectSystm=strict"))
        self.assertIn("Unknown key 'ProtectSystm'", result.stderr)

    def test_hardening(self) -> None:
        """The options the issue asks for are there."""
        text = unit_text()
        for line in ("DynamicUser=yes", "StateDirectory=txtunnels", "ProtectSystem=strict", "NoNewPrivileges=yes",
                     "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "RestartPreventExitStatus=2"):
            self.assertIn(line, text)

    def test_command_line_is_valid(self) -> None:
        """ExecStart runs twistd -n on the asyncio reactor, with tunnels options our parser accepts,
        and the key file in the state directory."""
        argv = exec_start(unit_text())
        self.assertEqual(argv[:5], [TWISTD, "--reactor=asyncio", "-n", "--pidfile=", "--logfile=-"])
        self.assertEqual(argv[5], "tunnels")
        options = Options()
        options.parseOptions([arg.replace("%S", "/var/lib") for arg in argv[6:]])
        self.assertEqual(options["key-file"], "/var/lib/txtunnels/txtunnels.key")
        self.assertEqual((options["port"], options["status-port"], options["status-interface"]),
                         (8090, 8091, "127.0.0.1"))
