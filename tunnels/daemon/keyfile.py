# -*- test-case-name: test.test_tap -*-
"""The node's identity key on disk: created once with mode 0600, then reused.

A node's IPv8 key is its identity: its public half is the onion key other nodes
encrypt to and the id they remember.  A silently regenerated key would make a
relay a stranger to the network after a restart (and hide that something went
wrong with its files), so any problem with an existing file is an error, never a
reason to make a new key.
"""
from __future__ import annotations

import os
import stat

from ipv8.keyvault.crypto import default_eccrypto

from ..errors import TunnelError
from ..node import new_key_bin

KEY_PREFIX = b"LibNaCLSK:"
"""How IPv8 marks a serialised curve25519 private key."""
KEY_LENGTH = len(KEY_PREFIX) + 64
"""Bytes in a serialised key: the prefix, a 32-byte X25519 and a 32-byte Ed25519 seed."""


class KeyFileError(TunnelError):
    """The key file exists but cannot be used (unreadable, corrupt, too open)."""


def load_or_create_key(path: str) -> bytes:
    """Return the IPv8 private key stored at ``path``, creating it first if absent.

    A new file is created atomically with ``O_CREAT | O_EXCL`` and mode 0600, so
    it is never readable by others, not even for a moment, and two processes
    cannot both create it.  An existing file must be a regular file, unreadable
    by group and others, and hold exactly one valid key.

    :raises KeyFileError: the file cannot be created, read or used.
    """
    try:
        return _create(path)
    except FileExistsError:
        return load_key(path)


def load_key(path: str) -> bytes:
    """Read and validate an existing key file.

    :raises KeyFileError: unreadable, not a regular file, group/world accessible
        (``chmod 600`` fixes that) or not a valid IPv8 curve25519 private key.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise KeyFileError(f"cannot open key file {path!r}: {e.strerror or e}") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {path!r} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(f"key file {path!r} has mode {mode:04o}: it must not be accessible by group or "
                               f"others (run: chmod 600 {path})")
        data = os.read(fd, KEY_LENGTH + 1)
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path!r}: {e.strerror or e}") from e
    finally:
        os.close(fd)
    check_key(data, path)
    return data


def check_key(data: bytes, where: str = "key") -> None:
    """Raise :class:`KeyFileError` unless ``data`` is a usable IPv8 curve25519 private key."""
    if len(data) != KEY_LENGTH or not data.startswith(KEY_PREFIX):
        raise KeyFileError(f"{where!r} does not hold a txtunnels/IPv8 curve25519 private key "
                           f"({len(data)} bytes; expected {KEY_LENGTH} starting with {KEY_PREFIX.decode()}); "
                           "it is corrupt or not a key file: restore it from a backup, or move it away to "
                           "start with a new identity")
    if not any(data[len(KEY_PREFIX):]):
        raise KeyFileError(f"{where!r} holds an all-zero key (an interrupted write?)")
    try:
        default_eccrypto.key_from_private_bin(data)
    except Exception as e:  # the key libraries raise assorted types for bad bytes
        raise KeyFileError(f"{where!r} holds an invalid key: {e}") from e


def _create(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        raise
    except OSError as e:
        raise KeyFileError(f"cannot create key file {path!r}: {e.strerror or e}") from e
    key = new_key_bin()
    try:
        os.fchmod(fd, 0o600)            # independent of the umask
        view = memoryview(key)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        os.unlink(path)                 # never leave a half-written identity behind
        raise KeyFileError(f"cannot write key file {path!r}: {e.strerror or e}") from e
    os.close(fd)
    return key
