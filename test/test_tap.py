# -*- test-case-name: test.test_tap -*-
"""Tests for :mod:`tunnels.daemon.tap` (twistd options, service tree) and :mod:`tunnels.daemon.keyfile`."""
from __future__ import annotations

import io
import os
import stat
import sys

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tunnels.daemon.keyfile import KEY_LENGTH, KeyFileError, load_key, load_or_create_key
from tunnels.runtime import ReactorMismatch
from tunnels.daemon.service import TunnelService, leveled_logger
from tunnels.socks5 import Socks5Service
from tunnels.daemon.web import StatusService
from tunnels.daemon.tap import USAGE_STATUS, Options, make_service, parse_port_list


def parse(*args: str) -> Options:
    """Parse ``args`` as ``twistd tunnels`` would."""
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionsTests(SynchronousTestCase):
    """Coercion and validation of the command line."""

    def test_defaults(self) -> None:
        """Defaults: all interfaces on 8090, relay only, no status port, key in ./txtunnels.key."""
        options = parse()
        self.assertEqual((options["host"], options["port"]), ("0.0.0.0", 8090))
        self.assertFalse(options["settings"].become_exitnode)
        self.assertIsNone(options["status-port"])
        self.assertEqual(options["status-interface"], "127.0.0.1")
        self.assertEqual(options["key-file"], "./txtunnels.key")
        self.assertEqual(options["status-interval"], 60.0)
        self.assertIs(options["log-level"], LogLevel.info)

    def test_all_options(self) -> None:
        """Every option is coerced into its typed value."""
        options = parse("--host", "127.0.0.1", "--port", "0", "--exit", "--exit-ports", "53,123,4000-4002",
                        "--exit-bandwidth", "1000", "--bootstrap", "127.0.0.1:9000", "--bootstrap", "[::1]:9001",
                        "--bootstrap-url", "https://example.test/list", "--testnet", "--status-port", "8080",
                        "--status-interval", "2.5", "--max-joined-circuits", "7", "--socks5-port", "1080",
                        "--log-level", "warn", "--key-file", "/tmp/x.key")
        settings = options["settings"]
        self.assertTrue(settings.become_exitnode)
        self.assertEqual(settings.exit_ports, (53, 123, 4000, 4001, 4002))
        self.assertEqual(settings.exit_bandwidth, 1000)
        self.assertEqual(settings.max_joined_circuits, 7)
        self.assertEqual(options["bootstrap"], [("127.0.0.1", 9000), ("::1", 9001)])
        self.assertEqual(options["bootstrap-url"], ["https://example.test/list"])
        self.assertEqual((options["port"], options["status-port"], options["socks5-port"]), (0, 8080, 1080))
        self.assertEqual(options["status-interval"], 2.5)
        self.assertIs(options["log-level"], LogLevel.warn)
        self.assertTrue(options["testnet"])

    def usage_error(self, *args: str) -> str:
        """Parse ``args`` expecting a usage error; return the one line it wrote on stderr."""
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit, msg=args) as caught:
            parse(*args)
        self.assertEqual(caught.exception.code, USAGE_STATUS, args)
        text = stderr.getvalue()
        self.assertEqual(text.count("\n"), 1, text)
        self.assertTrue(text.startswith("twistd tunnels: ") and text.endswith("(see: twistd tunnels --help)\n"),
                        text)
        return text

    def test_invalid_values(self) -> None:
        """Each malformed value ends parsing with one line on stderr naming the option, status 2."""
        cases = [
            (["--port", "x"], "--port"),
            (["--port", "70000"], "--port"),
            (["--bootstrap", "nohost"], "--bootstrap"),
            (["--bootstrap", "1.2.3.4:0"], "--bootstrap"),
            (["--bootstrap-url", "http://example.test/list"], "https://"),
            (["--exit-ports", "53"], "--exit"),
            (["--exit", "--exit-ports", "10-5"], "empty port range"),
            (["--exit", "--exit-ports", "0"], "exit port"),
            (["--exit", "--exit-bandwidth", "0"], "--exit-bandwidth must be"),
            (["--max-joined-circuits", "-1"], "--max-joined-circuits must be"),
            (["--status-port", "http"], "--status-port"),
            (["--status-interval", "-1"], "--status-interval"),
            (["--socks5-port", "65534"], "--socks5-port"),
            (["--log-level", "verbose"], "--log-level must be one of debug, info, warn, error, critical; "
                                         "got 'verbose'"),
            (["--key-file", ""], "--key-file"),
            (["--host", "example.org"], "--host must be an IP address"),
            (["--host", "::1"], "--host must be an IPv4 address"),
            (["--status-interface", "localhost"], "--status-interface must be an IP address"),
            (["--no-such-option"], "option --no-such-option not recognized"),
        ]
        for args, needle in cases:
            self.assertIn(needle, self.usage_error(*args), args)

    def test_version(self) -> None:
        """--version prints txtunnels' version (and Twisted's) on stdout and exits 0."""
        from tunnels.version import VERSION
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        with self.assertRaises(SystemExit) as caught:
            parse("--version")
        self.assertEqual(caught.exception.code, 0)
        self.assertTrue(stdout.getvalue().startswith(f"txtunnels {VERSION} (Twisted "), stdout.getvalue())

    def test_port_list_cap(self) -> None:
        """A huge --exit-ports range is refused rather than expanded without bound."""
        with self.assertRaises(ValueError):
            parse_port_list("1024-65535")
        self.assertEqual(parse_port_list(" 5, 3,3 "), (3, 5))


class MakeServiceTests(SynchronousTestCase):
    """:func:`make_service` builds the tree and refuses a reactor IPv8 cannot run on."""

    def test_refuses_non_asyncio_reactor(self) -> None:
        """A non-asyncio reactor gives ReactorMismatch mentioning --reactor=asyncio."""
        options = parse("--key-file", self.mktemp())
        with self.assertRaises(ReactorMismatch) as caught:
            make_service(options, MemoryReactorClock())
        self.assertIn("--reactor=asyncio", str(caught.exception))

    def test_service_tree(self) -> None:
        """Status and SOCKS5 services are children of the TunnelService when asked for."""
        from twisted.internet import reactor
        key_file = self.mktemp()
        service = make_service(parse("--key-file", key_file, "--status-port", "0", "--socks5-port", "0",
                                     "--testnet"), reactor)
        self.assertIsInstance(service, TunnelService)
        kinds = sorted(type(child).__name__ for child in service)
        self.assertEqual(kinds, [Socks5Service.__name__, StatusService.__name__])
        self.assertTrue(service.testnet)
        self.assertEqual(service.key_bin, load_key(key_file))

    def test_service_tree_minimal(self) -> None:
        """Without --status-port and --socks5-port there are no child services."""
        from twisted.internet import reactor
        service = make_service(parse("--key-file", self.mktemp()), reactor)
        self.assertEqual(list(service), [])


class KeyFileTests(SynchronousTestCase):
    """The identity key file: created 0600, reused, never silently replaced."""

    def test_create_mode_0600(self) -> None:
        """A missing key file is created with mode 0600 even under a permissive umask."""
        path = self.mktemp()
        old = os.umask(0)
        try:
            key = load_or_create_key(path)
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(len(key), KEY_LENGTH)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), key)

    def test_reuse(self) -> None:
        """A second start reads the same identity instead of making a new one."""
        path = self.mktemp()
        self.assertEqual(load_or_create_key(path), load_or_create_key(path))

    def test_corrupt(self) -> None:
        """Garbage, a truncated key and an empty file are KeyFileErrors and stay untouched."""
        for content in (b"not a key", load_or_create_key(self.mktemp())[:-1], b"",
                        b"LibNaCLSK:" + bytes(64)):
            path = self.mktemp()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, content)
            os.close(fd)
            with self.assertRaises(KeyFileError):
                load_or_create_key(path)
            with open(path, "rb") as f:
                self.assertEqual(f.read(), content)

    def test_too_open(self) -> None:
        """A key readable by group or others is refused with a chmod hint."""
        path = self.mktemp()
        load_or_create_key(path)
        os.chmod(path, 0o644)
        with self.assertRaises(KeyFileError) as caught:
            load_or_create_key(path)
        self.assertIn("chmod 600", str(caught.exception))

    def test_not_a_file(self) -> None:
        """A directory where the key should be is a KeyFileError."""
        path = self.mktemp()
        os.mkdir(path, 0o700)
        self.assertRaises(KeyFileError, load_or_create_key, path)

    def test_cannot_create(self) -> None:
        """A key file in a directory that does not exist cannot be created: KeyFileError."""
        path = os.path.join(self.mktemp(), "missing", "key")
        self.assertRaises(KeyFileError, load_or_create_key, path)


class LogLevelTests(SynchronousTestCase):
    """--log-level filters txtunnels' service messages."""

    def test_threshold(self) -> None:
        """A warn-level logger drops info events and passes warnings to the global publisher."""
        seen: list[str] = []

        def observer(event: dict[str, object]) -> None:
            if event.get("log_namespace") == "tunnels.test":
                seen.append(str(event["log_format"]))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        log = leveled_logger(LogLevel.warn, "tunnels.test")
        log.info("status line")
        log.warn("warning line")
        self.assertEqual(seen, ["warning line"])
