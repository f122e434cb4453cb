"""
What the command's tests share: a scratch directory, the installed program
in a subprocess (and a 'serve' one read until its FURL), and the real entry
point run in this process on an in-memory reactor.
"""

from __future__ import annotations

import io
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, Optional

from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from foolscap_sidetls import _cli

from .._support.ports import free_port
from ..i2p._fakes import FakeSAMBridge

PROGRAM = os.path.join(os.path.dirname(sys.executable), "foolscap-sidetls")
#: Generous: a loaded 2-core machine runs several suites at once.
WAIT = 30.0


def scratch(case: Any) -> str:
    path = tempfile.mkdtemp(prefix="sidetls-cli-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def listing(top: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, name), top)
                  for root, dirs, files in os.walk(top) for name in dirs + files)


def program(*args: str, module: bool = False) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "foolscap_sidetls"] if module else [PROGRAM]
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=WAIT)


class Serving:
    """A 'serve' subprocess, read line by line until its FURL appears."""

    def __init__(self, case: Any, *args: str) -> None:
        self.process = subprocess.Popen(
            [PROGRAM, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        case.addCleanup(self.kill)
        self.lines: list[str] = []
        self.rest = b""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def furl(self) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        pending = b""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            # Raw reads: a buffered readline() would hide lines it read ahead from select().
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for index, line in enumerate(lines):
                self.lines.append(line.decode())
                if line.startswith(b"furl: "):
                    self.rest = b"".join(rest + b"\n" for rest in lines[index + 1:]) + pending
                    return line[len(b"furl: "):].decode().strip()
        raise AssertionError("serve printed no FURL: %r, stderr %r" % (self.lines, self.stop()[2]))

    def stop(self) -> tuple[int, str, str]:
        """SIGINT (Ctrl-C); the exit status, the rest of stdout, stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=WAIT)
        return self.process.returncode, self.rest.decode() + out, err


class CommandReactor(MemoryReactorClock):
    """
    The reactor C{_cli.main()} runs in these tests: C{run()} returns once
    the command has stopped it.  Each TCP connection the command dials goes
    to C{bridge} (an in-memory SAM bridge), or is refused without one.
    """

    def __init__(self, bridge: Optional[FakeSAMBridge] = None) -> None:
        super().__init__()
        self.bridge = bridge
        self._answered = 0

    def run(self) -> None:
        self.running = self.hasRun = True
        for hook, args, kwargs in self.whenRunningHooks:
            hook(*args, **kwargs)
        for _ in range(1000):
            if not self.running:
                return
            self._answer()
            if self.bridge is not None:
                self.bridge.flush()
        raise AssertionError("the command never finished")

    def _answer(self) -> None:
        while self._answered < len(self.tcpClients):
            factory = self.tcpClients[self._answered][2]
            connector = self.connectors[self._answered]
            self._answered += 1
            if self.bridge is None or self.bridge.down:
                factory.clientConnectionFailed(connector, Failure(error.ConnectionRefusedError()))
            else:
                self.bridge.endpoint.connect(factory)


def main(argv: list[str], reactor: Optional[CommandReactor] = None) -> tuple[int, str, str]:
    """The real entry point, in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            _cli.main(argv, reactor=reactor if reactor is not None else CommandReactor())
        except SystemExit as e:
            code = e.code
        else:  # pragma: no cover - main() always exits
            raise AssertionError("main() returned")
    assert isinstance(code, int), code
    return code, out.getvalue(), err.getvalue()
