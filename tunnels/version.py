# -*- test-case-name: test.test_cli -*-
"""The txtunnels version, and the one line that ``--version`` prints everywhere.

``setup.py`` reads :data:`VERSION` from this file (without importing the package), so
the installed distribution, ``python -m tunnels --version``, ``txtunnels --version``
and ``twistd tunnels --version`` always agree.
"""
from __future__ import annotations

import platform

VERSION = "0.1.0"


def version_line(program: str = "txtunnels") -> str:
    """``"<program> 0.1.0 (Twisted 26.10.0, pyipv8 3.2.1, Python 3.11.7)"``: what ``--version`` prints."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for distribution, label in (("twisted", "Twisted"), ("pyipv8", "pyipv8")):
        try:
            parts.append(f"{label} {version(distribution)}")
        except PackageNotFoundError:
            parts.append(f"{label} not installed")
    parts.append(f"Python {platform.python_version()}")
    return f"{program} {VERSION} ({', '.join(parts)})"
