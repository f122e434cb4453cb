"""
Starting a helper daemon (tor, i2pd) in a process group of its own.

A child spawned by Twisted shares our process group, so a terminal's Ctrl-C
(SIGINT to the foreground group) reaches it too and kills it before we stop
it cleanly (removing onion services, closing its control connection).
Twisted's C{spawnProcess} has no setsid/setpgid option, so the child is
started through the running Python, which calls C{setpgid(0, 0)} and then
C{execv}s the daemon: the pid Twisted reports stays the daemon's own, and
signals we send it (TERM, KILL) still reach it.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

from twisted.internet.interfaces import IProcessProtocol

#: What the intermediate Python runs: a new process group, then the daemon
#: in its place (same pid).
OWN_GROUP_CODE = "import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])"


def own_group_command(executable: str, args: Sequence[str]) -> tuple[str, list[str]]:
    """
    The C{(executable, args)} for C{spawnProcess} that run C{executable}
    with C{args} (C{args[0]} being its own name, as for C{spawnProcess})
    in a new process group.
    """
    return sys.executable, [sys.executable, "-c", OWN_GROUP_CODE, executable, *args[1:]]


def spawn_in_own_group(
    reactor: Any,
    protocol: IProcessProtocol,
    executable: str,
    args: Sequence[str],
    env: Optional[dict[str, str]] = None,
    path: Optional[str] = None,
) -> Any:
    """C{reactor.spawnProcess}, the child in a process group of its own; returns its transport."""
    python, wrapped = own_group_command(executable, args)
    return reactor.spawnProcess(protocol, python, wrapped, env=env, path=path)
