# -*- test-case-name: test.test_twistd -*-
"""How a ``twistd tunnels`` process ends when its node cannot start: one line on stderr, status 1.

What Twisted offers (read in Twisted 26.10: ``application/app.py``,
``scripts/_twistd_unix.py``, ``scripts/twistd.py``), and what each does here:

- An exception raised while the application starts (``privilegedStartService`` or
  ``startService``, before the reactor runs) makes twistd exit 1.  Daemonized, the child
  reports ``repr`` of its last line through a status pipe and the parent prints
  ``An error has occurred: ...`` (cut at 100 bytes).  With ``-n`` the process dies with a
  traceback written into the log, not a reason on stderr.
- ``SystemExit`` raised there ends a ``-n`` process with its status, but a daemonizing
  parent then waits forever (it keeps the status pipe's write end open itself): seen.
- Once the reactor has run, twistd returns normally and the process exits 0.  The only
  hook is the reactor's private ``_exitSignal``, which re-raises a signal (and dying of
  SIGTERM counts as success for systemd).  Nothing public sets an exit status.

So every socket binds in ``privilegedStartService`` (Twisted's own idiom, as in
``internet.TCPServer``): a port in use is a :class:`~tunnels.errors.StartupError` before
the reactor runs.  :class:`NodeRoot` turns it into one line, and :class:`ExitStatus` makes
the status non-zero:

- daemonized, the error is raised on: Twisted's status pipe tells the parent, which exits 1;
- with ``-n`` (systemd, containers), the line goes to the real stderr, the reactor stops at
  once (twistd removes its pid file and closes its log as usual), and an ``atexit`` handler
  registered when the service was made (so it runs after every handler registered later)
  ends the process with ``os._exit(1)``: the one public way left to set a status after
  twistd has returned.  A failure after start (a bug while the node starts) takes the same
  path in both modes.
"""
from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from twisted.application.service import MultiService, Service
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import StartupError
from .service import ServiceStopped

PROGRAM = "txtunnels"


class ExitStatus:
    """The status the process must end with, and the one line on stderr that says why.

    :param stderr: where the line goes (default: the process's real stderr,
        ``sys.__stderr__``, since twistd redirects ``sys.stderr`` into its log).
    :param exit: ends the process with a status (``os._exit``).
    """

    def __init__(self, stderr: TextIO | None = None, exit: Callable[[int], Any] = os._exit) -> None:
        self.stderr = stderr
        self.exit = exit
        self.status = 0
        self.reason: str | None = None

    def fail(self, reason: str, status: int = 1) -> None:
        """Record the first failure and print its line (later ones are only logged by the caller)."""
        if self.status:
            return
        self.status, self.reason = status, reason
        stream = self.stderr or sys.__stderr__
        if stream is not None:
            stream.write(f"{PROGRAM}: {reason}\n")
            stream.flush()

    def arm(self) -> None:
        """Apply the status at interpreter exit (register early: ``atexit`` runs handlers last-in first)."""
        atexit.register(self.at_exit)

    def at_exit(self) -> None:
        """End the process with the recorded status, if a failure was recorded."""
        if not self.status:
            return
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        self.exit(self.status)


def one_line(failure: Failure) -> str:
    """``"TypeError: message"`` of a failure, on one line (for errors that are bugs)."""
    text = f"{failure.type.__name__}: {failure.getErrorMessage()}"
    return " ".join(text.split())


class NodeRoot(MultiService):
    """The service ``twistd tunnels`` runs: the node service and its front ends as children.

    A :class:`StartupError` from a child becomes one line and exit status 1 (see the module
    docstring for how, per twistd mode); so does a node that fails to start later.

    :param node: the :class:`~tunnels.daemon.service.TunnelService` (also a child).
    :param daemon: whether twistd daemonizes (no ``-n``).
    """

    log = Logger()

    def __init__(self, reactor: Any, node: Any, exit_status: ExitStatus, daemon: bool = False) -> None:
        super().__init__()
        self.reactor = reactor
        self.node = node
        self.exit_status = exit_status
        self.daemon = daemon
        self.failed = False
        node.setServiceParent(self)

    def privilegedStartService(self) -> None:  # noqa: N802 (Twisted API)
        """Bind every port (children do), or fail with one line."""
        try:
            super().privilegedStartService()
        except StartupError as e:
            self._cannot_start(str(e))

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Start the children unless binding failed; watch the node's own start."""
        if self.failed:
            Service.startService(self)
            return
        try:
            super().startService()
        except StartupError as e:
            self._cannot_start(str(e))
            return
        self.node.when_running().addErrback(self._failed_later)

    def _cannot_start(self, reason: str) -> None:
        self.log.critical("txtunnels cannot start: {reason}", reason=reason)
        if self.daemon:
            raise StartupError(reason)
        self.failed = True
        self.exit_status.fail(reason)
        self._stop_reactor()

    def _failed_later(self, failure: Failure) -> None:
        if failure.check(ServiceStopped):
            return
        reason = failure.getErrorMessage() if failure.check(StartupError) else \
            f"the node failed to start: {one_line(failure)} (traceback in the log)"
        self.exit_status.fail(reason)
        self._stop_reactor()

    def _stop_reactor(self) -> None:
        """Stop the reactor now, or as soon as it runs (a failure may come before ``reactor.run``)."""
        if self.reactor.running:
            self.reactor.stop()
        else:
            self.reactor.callWhenRunning(self.reactor.stop)
