"""
Writing secrets to disk: Tub certificates, onion and I2P keys, the relay's
identity.  One implementation, because every key file this package writes
must be private from its first byte and never half-written.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional, Union

_Path = Union[str, "os.PathLike[str]"]


def write_private(path: _Path, data: Union[str, bytes], *, replace: bool = True) -> bool:
    """
    Write C{data} to C{path}, readable by this user only from its first
    byte (a key must never be readable by others, even briefly), and
    atomically: a crash leaves the old file or the new one, never part of
    one.

    @param data: text is written as ASCII (keys and ports are), bytes as
        they are.
    @param replace: L{False} never replaces a file that exists, even one
        another process wrote a moment ago: for identities, where two
        starts racing must end up with one key, not one each.
    @return: L{True} if C{data} was written; L{False} if C{replace} is
        false and C{path} already existed (it was left alone).
    @raise OSError: the directory is missing or not writable (nothing is
        left behind).
    """
    target = os.fspath(path)
    raw = data.encode("ascii") if isinstance(data, str) else data
    directory = os.path.dirname(os.path.abspath(target))
    fd, temporary = tempfile.mkstemp(prefix=".sidetls-", dir=directory)
    try:
        # mkstemp already makes the file 0600; say so rather than rely on it.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temporary, target)
            return True
        try:
            os.link(temporary, target)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def read_small(path: _Path) -> Optional[str]:
    """
    The ASCII text, stripped, of a small file this project writes (a key,
    a port number), or None when there is no such file: a missing file is
    the normal first start, so only that is not an error.

    @raise OSError: it exists but cannot be read.
    @raise UnicodeDecodeError: it is not ASCII.  Callers name the file and
        what it is for in their own terms.
    """
    try:
        with open(path, "r", encoding="ascii") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None
