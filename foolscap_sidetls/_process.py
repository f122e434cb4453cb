"""
Starting a helper daemon (tor, i2pd) in a process group of its own.

A child spawned by Twisted shares our process group, so a terminal's Ctrl-C
(SIGINT to the foreground group) reaches it too and kills it before we stop
it cleanly (removing onion services, closing its control connection).
Twisted's C{spawnProcess} has no setsid/setpgid option, so the child is
started through the running Python, which calls C{setpgid(0, 0)} and then
C{execv}s the daemon: the pid Twisted reports stays the daemon's own, and
signals we send it (TERM, KILL) still reach it.

Both launchers (L{foolscap_sidetls.tor} and L{foolscap_sidetls.i2p}) also
share the rest of supervising one: L{DaemonProcess} (its output's end, how
it ended, stopping it) and L{find_executable}.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import deque
from typing import Any, Callable, Optional, Sequence

from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProcessProtocol, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

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


class DaemonProcess(ProcessProtocol):
    """
    A helper daemon we launched (tor, i2pd): keeps the end of its output
    for error messages, says how it ended, and stops it.

    Its waiters fire in the same turn as L{processEnded}, not through
    Foolscap's C{OneShotObserverList} (which fires a turn later on the
    global reactor): tried for tor, C{test_temporary_log_outlives_a_failed_launch}
    then found the temporary DataDirectory still there after tor ended
    (its removal waits on this); and the launchers' tests run on a
    C{MemoryReactorClock}, which C{eventually} never reaches.
    """

    transport: Any

    #: Lines of output kept for error messages.
    TAIL = 30

    def __init__(self) -> None:
        self._tail: deque[str] = deque(maxlen=self.TAIL)
        self._partial = b""
        self.ended: Optional[Failure] = None
        self._waiting: list[Deferred] = []

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._tail.append(line.decode("utf-8", "replace").rstrip("\r"))

    errReceived = outReceived

    def output(self, empty: str = "(no output)") -> str:
        """The end of what it wrote (stdout and stderr), or C{empty}."""
        lines = list(self._tail)
        if self._partial:
            lines.append(self._partial.decode("utf-8", "replace"))
        return "\n".join(lines) or empty

    def how(self) -> str:
        """C{"is running"}, C{"exited with status 1"}, C{"was killed by signal 9"}."""
        if self.ended is None:
            return "is running"
        sig = getattr(self.ended.value, "signal", None)
        if sig is not None:
            return "was killed by signal %s" % (sig,)
        return "exited with status %s" % (getattr(self.ended.value, "exitCode", None),)

    @property
    def pid(self) -> Optional[int]:
        """Its process id while it runs, else None."""
        if self.ended is not None:
            return None
        return getattr(self.transport, "pid", None)

    def processEnded(self, reason: Failure) -> None:
        self.ended = reason
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def when_ended(self) -> Deferred:
        """Fires (with None) in the turn the process ends; at once if it has."""
        if self.ended is not None:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def terminate(self, reactor: IReactorTime, grace: float) -> Deferred:
        """SIGTERM, then SIGKILL after C{grace} seconds; fires once the process is gone."""
        transport = self.transport
        if self.ended is not None or transport is None:
            return defer.succeed(None)
        ended = self.when_ended()
        try:
            transport.signalProcess("TERM")
        except error.ProcessExitedAlready:
            return ended

        def kill() -> None:
            if self.ended is None:
                try:
                    transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass

        timer = reactor.callLater(grace, kill)

        def gone(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return ended.addBoth(gone)


def find_executable(
    program: str,
    given: Optional[str],
    search_path: str,
    search_dirs: Sequence[str],
    *,
    argument: str,
    not_found: Callable[[str], Exception],
) -> str:
    """
    The daemon executable to launch: C{given} (a path, or a bare name
    looked up like C{program}), else C{program} on C{search_path} (the
    process's PATH) or in C{search_dirs} (Debian puts tor and i2pd in
    /usr/sbin, which is not on an ordinary user's PATH).

    One search for both daemons, so that their errors say the same things
    in the same words: what was looked for, where, the Debian package to
    install, and the argument (C{argument}) that names another executable.

    @param not_found: makes the exception to raise from its message
        (L{foolscap_sidetls.tor.TorNotFound}, L{foolscap_sidetls.i2p.I2PDNotFound}).
    @return: an absolute path to an executable file.
    """
    install = "install the Debian/Ubuntu package '%s' (apt-get install %s)" % (program, program)
    article = "an" if program[:1] in "aeiou" else "a"
    instead = "pass the path of %s %s executable" % (article, program)
    search = os.pathsep.join([search_path] + list(search_dirs))
    places = ", ".join(search_dirs)
    if given is None:
        found = shutil.which(program, path=search)
        if found is None:
            raise not_found(
                "%s executable not found on PATH or in %s; %s, or pass %s='/path/to/%s'"
                % (program, places, install, argument, program)
            )
        return os.path.abspath(found)
    if os.sep not in given:
        found = shutil.which(given, path=search)
        if found is None:
            raise not_found(
                "%s %r not found on PATH or in %s; %s or %s" % (argument, given, places, install, instead)
            )
        return os.path.abspath(found)
    if not os.path.exists(given):
        raise not_found("%s %r does not exist; %s or %s" % (argument, given, install, instead))
    if os.path.isdir(given) or not os.access(given, os.X_OK):
        raise not_found("%s %r is not an executable file" % (argument, given))
    return os.path.abspath(given)
