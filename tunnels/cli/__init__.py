# -*- test-case-name: test.test_cli -*-
"""Command line: ``python -m tunnels`` / ``txtunnels`` (``demo``, ``status``, ``--version``).

Every way it can fail to start ends with one line on stderr and a non-zero status: 2
for a bad command line (the line names the option, what is wrong and what is accepted),
1 when the work itself fails.  Usage lines name the program as the user typed it.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from ..version import version_line

USAGE_STATUS = 2
"""Exit status of a bad command line (argparse's); 1 is "the work failed"."""


class Parser(argparse.ArgumentParser):
    """argparse, with errors on one line: ``prog: message (see: prog --help)``."""

    def error(self, message: str) -> NoReturn:
        """Print one line on stderr and exit with :data:`USAGE_STATUS`."""
        self.exit(USAGE_STATUS, f"{self.prog}: {message} (see: {self.prog} --help)\n")


def at_least(low: int, why: str) -> Callable[[str], int]:
    """An argparse type: an int of at least ``low`` (``why`` says what needs it)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low} ({why}), got {value}")
        return value
    return parse


def positive_seconds(text: str) -> float:
    """An argparse type: seconds, more than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def program_name() -> str:
    """What the user typed: ``txtunnels`` for the console script, ``python -m tunnels`` for the module."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "txtunnels"
    return "python -m tunnels" if name in ("__main__.py", "-m", "-c") else name


def build_parser(prog: str) -> Parser:
    """The parser of ``prog`` and its subcommands."""
    from . import demo, status

    parser = Parser(prog=prog, description="txtunnels: Tor-like anonymous communication for IPv8 applications")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    demo.add_parser(sub)
    status.add_parser(sub)
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point of ``python -m tunnels`` and ``txtunnels``; returns the exit status."""
    args = build_parser(prog or program_name()).parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
