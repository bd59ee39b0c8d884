# -*- test-case-name: test.test_tap -*-
"""``twistd tunnels``: command-line options and the service tree they make.

:class:`Options` only turns strings into checked values; a bad value ends twistd at once
with one line on stderr that says what is wrong and what is accepted, and exit status
:data:`USAGE_STATUS` (twistd's own handler would print the whole usage to stdout instead).
:func:`makeService` is the only place that imports the global reactor, which must be
Twisted's asyncio reactor (``twistd --reactor=asyncio -n tunnels ...``); it wraps the node
in :class:`~tunnels.daemon.process.NodeRoot`, so a node that cannot start also ends with
one line and a non-zero status (see :mod:`tunnels.daemon.process`).
"""
from __future__ import annotations

import ipaddress
import sys
from typing import Any

from twisted.application.service import IService
from twisted.logger import LogLevel
from twisted.python import usage

from .bootstrap import Address, check_url, parse_address
from .guardfile import guard_path
from ..settings import TunnelSettings
from ..version import version_line

MAX_LISTED_EXIT_PORTS = 4096
"""Most ports ``--exit-ports`` may list (leave it empty for "every port from 1024")."""
SOCKS5_HOPS = (1, 2, 3)
"""Hop counts served by ``--socks5-port``: base port + 0, + 1, + 2."""
USAGE_STATUS = 2
"""Exit status for bad options (as argparse and most Unix tools use); 1 means "could not start"."""
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
SETTING_OPTIONS = {"exit_bandwidth": "--exit-bandwidth", "max_joined_circuits": "--max-joined-circuits",
                   "exit_ports": "--exit-ports"}
"""TunnelSettings fields set from options, by the option's name (for error messages)."""


def parse_port(text: str, what: str, low: int = 0, high: int = 65535) -> int:
    """An int port between ``low`` and ``high``; ``ValueError`` naming ``what`` otherwise."""
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not low <= port <= high:
        raise ValueError(f"{what} must be between {low} and {high}, got {port}")
    return port


def parse_port_list(text: str) -> tuple[int, ...]:
    """``"53,123,4000-4010"`` -> sorted unique ports; ``ValueError`` on a bad entry."""
    ports: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        low_text, sep, high_text = item.partition("-")
        low = parse_port(low_text, "exit port", 1)
        high = parse_port(high_text, "exit port", 1) if sep else low
        if high < low:
            raise ValueError(f"empty port range {item!r}")
        ports.update(range(low, high + 1))
        if len(ports) > MAX_LISTED_EXIT_PORTS:
            raise ValueError(f"--exit-ports lists more than {MAX_LISTED_EXIT_PORTS} ports; leave it out to "
                             "allow every port from 1024 to 65535")
    if not ports:
        raise ValueError("--exit-ports lists no ports")
    return tuple(sorted(ports))


class Options(usage.Options):
    """Options of ``twistd tunnels``."""

    synopsis = "[options]"
    longdesc = ("Run a txtunnels onion-routing node: a relay by default, an exit with --exit. "
                "Needs Twisted's asyncio reactor: twistd --reactor=asyncio -n tunnels ...")

    optFlags = [
        ["exit", None, "Exit UDP data to the Internet for others (read the exit notes in doc/user-guide.md)."],
        ["testnet", None, "Local test network: allow loopback/private addresses for hops and exits."],
        ["socks5-debug", None, "Show each SOCKS5 association's destinations in the status (debugging only: "
                               "they are what your applications talk to)."],
    ]
    optParameters = [
        ["host", None, "0.0.0.0", "IPv4 address the cell/IPv8 UDP socket binds to."],
        ["port", None, "8090", "UDP port for cells and IPv8 (0: any free port)."],
        ["exit-ports", None, None, "With --exit: UDP ports to allow, e.g. 53,123,4000-4010 "
                                   "(default: every port from 1024 to 65535)."],
        ["exit-bandwidth", None, None, "With --exit: bytes per second sent to the Internet (default 8 MiB)."],
        ["bootstrap-ca", None, None, "PEM file of the CA(s) to trust for --bootstrap-url "
                                     "(default: the system's trusted roots)."],
        ["status-port", None, None, "TCP port of the status page, JSON (/status.json) and Prometheus metrics "
                                    "(/metrics) (default: none)."],
        ["status-interface", None, "127.0.0.1", "IP address the status port listens on."],
        ["status-interval", None, "60", "Seconds between status lines in the log (0: none)."],
        ["key-file", None, "./txtunnels.key", "Identity key file, created with mode 0600 if missing."],
        ["guard-file", None, None, "Entry-guard file, kept across restarts (default: the key file's name "
                                   "with .guards, e.g. ./txtunnels.guards)."],
        ["max-joined-circuits", None, str(TunnelSettings().max_joined_circuits),
         "Most circuits of others to relay at once (0: relay none)."],
        ["socks5-port", None, None, "Base TCP port of the SOCKS5 UDP front ends on 127.0.0.1: one per hop count, "
                                    "base for 1 hop, base+1 for 2, base+2 for 3 (default: none)."],
        ["log-level", None, "info", "Least level of txtunnels messages logged: debug, info, warn, error, critical."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["bootstrap"] = []
        self["bootstrap-url"] = []

    def parseOptions(self, options: list[str] | None = None) -> None:  # noqa: N802 (Twisted API)
        """Parse; a usage error ends the process with one line on stderr and :data:`USAGE_STATUS`."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            sys.stderr.write(f"twistd tunnels: {e} (see: twistd tunnels --help)\n")
            raise SystemExit(USAGE_STATUS) from None

    def opt_version(self) -> None:
        """Print the txtunnels version (and Twisted's, pyipv8's, Python's) and exit."""
        print(version_line())
        raise SystemExit(0)

    def opt_bootstrap(self, value: str) -> None:
        """A peer to introduce ourselves to, as host:port ([v6]:port); repeatable."""
        try:
            self["bootstrap"].append(parse_address(value))
        except ValueError as e:
            raise usage.UsageError(f"--bootstrap: {e}") from None

    def opt_bootstrap_url(self, value: str) -> None:
        """An https:// URL of a list of host:port lines (the certificate and host name are verified);
        repeatable."""
        try:
            self["bootstrap-url"].append(check_url(value))
        except ValueError as e:
            raise usage.UsageError(f"--bootstrap-url: {e}") from None


    def postOptions(self) -> None:  # noqa: N802 (Twisted API)
        """Coerce and validate; every problem becomes a ``UsageError``."""
        try:
            self._coerce()
        except (ValueError, TypeError) as e:
            raise usage.UsageError(str(e)) from None

    def _coerce(self) -> None:
        self["port"] = parse_port(self["port"], "--port")
        self["host"] = _parse_ip(self["host"], "--host", 4, "0.0.0.0 (every interface) or 127.0.0.1")
        if not self["exit"] and (self["exit-ports"] is not None or self["exit-bandwidth"] is not None):
            raise ValueError("--exit-ports and --exit-bandwidth only apply with --exit")
        extra: dict[str, Any] = {}
        if self["exit-ports"] is not None:
            extra["exit_ports"] = parse_port_list(self["exit-ports"])
        if self["exit-bandwidth"] is not None:
            extra["exit_bandwidth"] = _parse_int(self["exit-bandwidth"], "--exit-bandwidth")
        try:
            self["settings"] = TunnelSettings(
                become_exitnode=bool(self["exit"]),
                max_joined_circuits=_parse_int(self["max-joined-circuits"], "--max-joined-circuits"), **extra)
        except ValueError as e:  # name the option the user typed, not the settings field
            message = str(e)
            for field, option in SETTING_OPTIONS.items():
                message = message.replace(field, option)
            raise ValueError(message) from None
        if self["status-port"] is not None:
            self["status-port"] = parse_port(self["status-port"], "--status-port")
        self["status-interface"] = _parse_ip(self["status-interface"], "--status-interface", None,
                                             "127.0.0.1 (the default) or ::1")
        interval = _parse_float(self["status-interval"], "--status-interval")
        if interval < 0:
            raise ValueError(f"--status-interval must be >= 0, got {interval}")
        self["status-interval"] = interval
        if self["socks5-port"] is not None:
            self["socks5-port"] = parse_port(self["socks5-port"], "--socks5-port", 0, 65536 - len(SOCKS5_HOPS))
        if not self["key-file"]:
            raise ValueError("--key-file must not be empty")
        if self["guard-file"] is None:
            self["guard-file"] = guard_path(self["key-file"])
        elif not self["guard-file"]:
            raise ValueError("--guard-file must not be empty")
        level = str(self["log-level"]).lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"--log-level must be one of {', '.join(LOG_LEVELS)}; got {self['log-level']!r}")
        self["log-level"] = LogLevel.levelWithName(level)


def _parse_ip(text: str, what: str, version: int | None, example: str) -> str:
    """An IP address literal (of ``version`` 4 or 6, or either if None); ``ValueError`` otherwise."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{what} must be an IP address such as {example}, got {text!r}") from None
    if version is not None and address.version != version:
        raise ValueError(f"{what} must be an IPv{version} address such as {example}, got {text!r}")
    return str(address)


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, got {text!r}") from None


def _parse_float(text: str, what: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {text!r}") from None


def make_service(options: Options, reactor: Any) -> IService:
    """Build the service tree for ``options`` on ``reactor``.

    :raises tunnels.runtime.ReactorMismatch: ``reactor`` is not the asyncio reactor.
    :raises tunnels.daemon.keyfile.KeyFileError: the key file cannot be used.
    :raises OSError: the ``--bootstrap-ca`` file cannot be read.
    """
    from .keyfile import load_or_create_key
    from ..runtime import check_reactor
    from .service import TunnelService
    from ..socks5 import Socks5Service
    from .web import StatusService

    check_reactor(reactor)
    key_bin = load_or_create_key(options["key-file"])
    trust_root = None
    if options["bootstrap-ca"]:
        from .bootstrap import trust_root_from_pem
        with open(options["bootstrap-ca"], "rb") as f:
            trust_root = trust_root_from_pem(f.read())
    bootstrap: list[Address] = options["bootstrap"]
    service = TunnelService(reactor, host=options["host"], port=options["port"], settings=options["settings"],
                            key_bin=key_bin, bootstrap=bootstrap, bootstrap_urls=options["bootstrap-url"],
                            trust_root=trust_root, testnet=bool(options["testnet"]),
                            status_interval=options["status-interval"], log_level=options["log-level"],
                            port_label="--port", guard_file=options["guard-file"])
    if options["status-port"] is not None:
        StatusService(reactor, service.status, options["status-port"], options["status-interface"],
                      label="--status-port").setServiceParent(service)
    if options["socks5-port"] is not None:
        Socks5Service(reactor, service, options["socks5-port"], SOCKS5_HOPS, label="--socks5-port",
                      show_destinations=bool(options["socks5-debug"])).setServiceParent(service)
    return service


def makeService(options: Options) -> IService:  # noqa: N802 (twistd's name)
    """twistd's entry point: the global reactor must already be the asyncio reactor.

    Configuration problems end the process with a one-line message (status 1) instead of
    a traceback; so do ports in use and a node that fails to start (:class:`NodeRoot`).
    """
    from twisted.internet import reactor

    from .keyfile import KeyFileError
    from .process import ExitStatus, NodeRoot
    from ..runtime import ReactorMismatch
    try:
        node = make_service(options, reactor)
    except (ReactorMismatch, KeyFileError) as e:
        raise SystemExit(f"txtunnels: {e}") from None
    except OSError as e:
        raise SystemExit(f"txtunnels: cannot read {e.filename!r}: {e.strerror}") from None
    exit_status = ExitStatus()
    exit_status.arm()
    parent = getattr(options, "parent", None)
    daemon = parent is not None and not parent.get("nodaemon", True)
    return NodeRoot(reactor, node, exit_status, daemon=daemon)
