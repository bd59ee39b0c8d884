# -*- test-case-name: test.test_guards -*-
"""The entry-guard file: a node's guards, kept next to its key file across restarts.

Format (JSON, UTF-8, at most :data:`MAX_FILE` bytes)::

    {"version": 1,
     "guards": [{"node_id": "<40 hex digits>", "added_on": <seconds>,
                 "confirmed_on": <seconds> | null, "unlisted_since": <seconds> | null}, ...]}

Times are Unix seconds.  The order of ``guards`` is the sample order
(:class:`~tunnels.core.guards.EntryGuards`).  The file is written atomically (a
temporary file with mode 0600, fsync, rename), since it tells whoever reads it which
relays see our address, as Tor's state file does.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from typing import Any

from ..core.guards import MAX_SAMPLE, Guard
from ..errors import TunnelError

VERSION = 1
MAX_FILE = 16384
"""Bytes a guard file may hold (20 guards take about 3 KB)."""


class GuardFileError(TunnelError):
    """The guard file exists but cannot be read or is not a valid guard file."""


def guard_path(key_file: str) -> str:
    """Where the guards of the node with ``key_file`` live: the same name with ``.guards``."""
    root, _ = os.path.splitext(key_file)
    path = root + ".guards"
    return path if path != key_file else key_file + ".guards"


def encode(guards: Iterable[Guard]) -> bytes:
    """The file's bytes for ``guards`` (in sample order)."""
    entries = [{"node_id": g.node_id.hex(), "added_on": g.added_on, "confirmed_on": g.confirmed_on,
                "unlisted_since": g.unlisted_since} for g in guards]
    return json.dumps({"version": VERSION, "guards": entries}, indent=1).encode("utf-8") + b"\n"


def decode(data: bytes, where: str = "guard file") -> list[Guard]:
    """Parse a guard file.

    :raises GuardFileError: too large, not UTF-8 JSON, another version, or any entry with a
        wrong type, a bad node id, a time that is not a finite number, a duplicate, or more
        than :data:`~tunnels.core.guards.MAX_SAMPLE` entries.
    """
    if len(data) > MAX_FILE:
        raise GuardFileError(f"{where} holds {len(data)} bytes, more than {MAX_FILE}")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise GuardFileError(f"{where} is not JSON: {e}") from None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise GuardFileError(f"{where} is not a version {VERSION} guard file")
    entries = document.get("guards")
    if not isinstance(entries, list) or len(entries) > MAX_SAMPLE:
        raise GuardFileError(f"{where} must list at most {MAX_SAMPLE} guards")
    guards: list[Guard] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise GuardFileError(f"{where}: a guard entry is not an object")
        node_id = entry.get("node_id")
        if not isinstance(node_id, str) or len(node_id) != 40:
            raise GuardFileError(f"{where}: node_id must be 40 hex digits")
        try:
            raw = bytes.fromhex(node_id)
        except ValueError:
            raise GuardFileError(f"{where}: node_id must be 40 hex digits") from None
        if any(g.node_id == raw for g in guards):
            raise GuardFileError(f"{where}: guard {node_id} is listed twice")
        guards.append(Guard(raw, _time(entry.get("added_on"), where), _time(entry.get("confirmed_on"), where, True),
                            _time(entry.get("unlisted_since"), where, True)))
    return guards


def _time(value: Any, where: str, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GuardFileError(f"{where}: times must be finite numbers of seconds")
    return float(value)


def load_guards(path: str) -> list[Guard]:
    """The guards stored at ``path``; none if the file does not exist.

    :raises GuardFileError: unreadable or invalid (see :func:`decode`).
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise GuardFileError(f"cannot read guard file {path!r}: {e.strerror or e}") from None
    return decode(data, path)


def save_guards(path: str, guards: Iterable[Guard]) -> None:
    """Replace the file at ``path`` atomically with ``guards`` (mode 0600).

    :raises OSError: the directory is not writable or the disk is full.
    """
    data = encode(guards)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".guards-", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
