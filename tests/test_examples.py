"""
The examples as a user runs them: each is started as a program of its own
(its real entry point), in a session of its own as a terminal starts a job,
and interrupted with SIGINT sent to its whole process group, as a terminal's
Ctrl-C is.  While it waits it must say, every 10 seconds, what it waits on;
interrupted, it must stop cleanly -- "stopping...", "stopped", exit status 0,
nothing on stderr -- and leave no daemon behind.

The tor and i2pd that --launch starts can reach nothing and stay on
127.0.0.1: tor goes through a SOCKS proxy at a closed loopback port, i2pd is
a lone router on a private network ID that does not reseed.  So they wait
for ever, which is what these tests need.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ._support.waiting import blocking_until

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
#: The bound on any one wait: generous, as a loaded 2-core machine runs
#: several suites at once; the examples' own progress comes every 10 s.
WAIT = 30.0
#: Where Debian puts the daemons, besides PATH.
DAEMON_DIRS = ("/usr/sbin", "/usr/bin")
#: A status line: "  [ 12.3 s] ...".
STATUS = r"^  \[ *\d+\.\d s\] "


def closed_port() -> int:
    """A loopback port nothing listens on (allocated, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_daemon(name: str) -> None:
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *DAEMON_DIRS])
    if shutil.which(name, path=search) is None:
        raise SkipTest("%s is not installed; `make system-deps` installs tor and i2pd" % (name,))


def need_proc() -> None:
    if not os.path.isdir("/proc/self"):
        raise SkipTest("finding the example's child daemon reads /proc (Linux)")


def parent_of(pid: int) -> Optional[int]:
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    return int(stat.rsplit(")", 1)[1].split()[1])


def name_of(pid: int) -> Optional[str]:
    try:
        with open("/proc/%d/comm" % (pid,)) as f:
            return f.read().strip()
    except OSError:
        return None


class Example:
    """One example program, read line by line, in a process group of its own."""

    def __init__(self, case: SynchronousTestCase, script: str, *args: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="sidetls-example-test-")
        case.addCleanup(shutil.rmtree, self.dir, True)
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(EXAMPLES, script), *args],
            cwd=self.dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        case.addCleanup(self.kill)
        self.lines: list[str] = []
        self._pending = b""

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        if self.group_alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def line(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first line from here on that matches C{pattern}."""
        for index, line in enumerate(self.lines):
            found = re.search(pattern, line)
            if found:
                del self.lines[: index + 1]
                return found
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        seen = list(self.lines)
        try:
            while time.monotonic() < deadline:
                # Raw reads: a buffered readline() would hide lines it read ahead from select().
                if not selector.select(timeout=deadline - time.monotonic()):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._pending += chunk
                *lines, self._pending = self._pending.split(b"\n")
                for index, raw in enumerate(lines):
                    text = raw.decode()
                    seen.append(text)
                    found = re.search(pattern, text)
                    if found:
                        self.lines = [rest.decode() for rest in lines[index + 1 :]]
                        return found
        finally:
            selector.close()
        if self.group_alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        _, err = self.process.communicate(timeout=WAIT)
        raise AssertionError(
            "no line matching %r within %s s; stdout %r, stderr %r" % (pattern, timeout, seen, err.decode())
        )

    def child(self, name: str) -> int:
        """The pid of the example's child process called C{name}, once it runs."""

        def find() -> Optional[int]:
            for entry in os.listdir("/proc"):
                if entry.isdigit() and parent_of(int(entry)) == self.process.pid and name_of(int(entry)) == name:
                    return int(entry)
            return None

        return int(blocking_until(find, WAIT, "the example to start %s" % (name,)))

    def interrupt(self, whole_group: bool = True) -> tuple[int, list[str], str]:
        """
        SIGINT: to the process group, as a terminal's Ctrl-C, or to the
        example alone (as C{kill -INT}, or a terminal once the daemon runs
        in a group of its own).  The exit status, the rest of stdout's
        lines, and stderr.
        """
        if whole_group:
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            os.kill(self.process.pid, signal.SIGINT)
        out, err = self.process.communicate(timeout=WAIT)
        rest = self.lines + (self._pending + out).decode().splitlines()
        return self.process.returncode, rest, err.decode()


class StoppedCleanly:
    """The assertions every interrupted example has to pass."""

    def assertStoppedCleanly(
        self: Any, example: Example, daemon: Optional[int], whole_group: bool = True
    ) -> list[str]:
        started = time.monotonic()
        code, rest, err = example.interrupt(whole_group)
        took = time.monotonic() - started
        self.assertEqual((code, err), (0, ""), "stdout after the signal: %r" % (rest,))
        self.assertEqual(rest[-2:], ["stopping...", "stopped"], rest)
        self.assertEqual(rest.count("stopping..."), 1, rest)
        self.assertFalse([line for line in rest if "error" in line.lower()], rest)
        # Stopping is bounded: the launchers SIGKILL a daemon 5 s (i2pd) or
        # 10 s (tor) after a SIGTERM it ignores.
        self.assertLess(took, 15.0)
        if daemon is not None:
            blocking_until(lambda: not os.path.exists("/proc/%d" % (daemon,)), 5, "the daemon (pid %d) to be gone" % (daemon,))
        blocking_until(lambda: not example.group_alive(), 5, "nothing left in the example's process group")
        return rest


class TorOnion(SynchronousTestCase, StoppedCleanly):
    """examples/tor_onion.py --launch, with a tor that reaches nothing."""

    def setUp(self) -> None:
        need_daemon("tor")
        need_proc()
        self.args = ("--launch", "--torrc", "Socks5Proxy=127.0.0.1:%d" % (closed_port(),))

    def test_ctrl_c_while_waiting_for_bootstrap(self) -> None:
        """
        Ctrl-C reaches the launched tor too, which exits at once; the
        example still stops cleanly, after saying what it was waiting on.
        """
        example = Example(self, "tor_onion.py", *self.args)
        example.line(STATUS + r"waiting for tor bootstrap \(\d+%")
        tor = example.child("tor")
        still = example.line(
            STATUS + r"\.\.\. still waiting for tor bootstrap \(\d+%: .*\) "
            r"-- via sidetls\+tor \(launched tor, pid (\d+)\)$",
            timeout=25,
        )
        self.assertEqual(int(still.group(1)), tor)
        self.assertStoppedCleanly(example, tor)

    def test_sigint_to_the_example_alone_stops_tor(self) -> None:
        """SIGINT to the example only (tor untouched): the example stops tor itself."""
        example = Example(self, "tor_onion.py", *self.args)
        example.line(STATUS + r"waiting for tor bootstrap \(\d+%")
        tor = example.child("tor")
        self.assertStoppedCleanly(example, tor, whole_group=False)


class I2PListener(SynchronousTestCase, StoppedCleanly):
    """examples/i2p_listener.py --launch, with an i2pd that reaches nothing."""

    def setUp(self) -> None:
        need_daemon("i2pd")
        need_proc()
        lone = {
            "netid": "99",
            "host": "127.0.0.1",
            "address4": "127.0.0.1",
            "ipv6": "false",
            "nat": "false",
            "ntcp2.port": str(closed_port()),
            "ssu2.enabled": "false",
            "reseed.urls": "",
            "upnp.enabled": "false",
            "nettime.enabled": "false",
        }
        self.args = ["--launch", "--key-file", "listener.key"]
        for key, value in lone.items():
            self.args += ["--i2pd-config", "%s=%s" % (key, value)]

    def test_ctrl_c_while_opening_the_session(self) -> None:
        """
        Ctrl-C reaches the launched i2pd too; the example still stops
        cleanly, after saying what it was waiting on.
        """
        example = Example(self, "i2p_listener.py", *self.args)
        example.line(STATUS + r"listener: opening SAM session \(can take ~20 s\)$")
        i2pd = example.child("i2pd")
        still = example.line(
            STATUS + r"\.\.\. still listener: opening SAM session -- via sidetls\+i2p "
            r"\(launched i2pd, SAM at tcp:127\.0\.0\.1:\d+\), i2pd pid (\d+)$",
            timeout=25,
        )
        self.assertEqual(int(still.group(1)), i2pd)
        self.assertStoppedCleanly(example, i2pd)

    def test_sigint_to_the_example_alone_stops_i2pd(self) -> None:
        """SIGINT to the example only (i2pd untouched): the example stops i2pd itself."""
        example = Example(self, "i2p_listener.py", *self.args)
        example.line(STATUS + r"listener: opening SAM session")
        i2pd = example.child("i2pd")
        self.assertStoppedCleanly(example, i2pd, whole_group=False)


class Relay(SynchronousTestCase, StoppedCleanly):
    """examples/relay.py's parts, each serving until Ctrl-C."""

    #: A relay URL (any relay ID) at a loopback port nothing listens on.
    URL = "relay://ta2axszditdtrusz2wfxx5tq6cui4bv4@tcp:127.0.0.1:%d"

    def test_hidden_ctrl_c_while_the_relay_is_down(self) -> None:
        """
        A hidden Tub whose relay is down says every 10 s that it is still
        registering and why it has not; Ctrl-C stops it cleanly.
        """
        port = closed_port()
        example = Example(self, "relay.py", "hidden", self.URL % (port,))
        example.line(r"^registering with relay://")
        example.line(
            STATUS + r"\.\.\. still registering with the relay: (waiting|connecting) \(last error: "
            r"could not reach the relay at any of its hints: tcp:127\.0\.0\.1:%d: "
            r"Connection was refused" % (port,),
            timeout=25,
        )
        self.assertStoppedCleanly(example, None)

    def test_relay_ctrl_c(self) -> None:
        """A relay interrupted while serving stops cleanly."""
        example = Example(self, "relay.py", "relay", "--port", "0")
        example.line(r"^relay URL: relay://[a-z2-7]{32}@tcp:127\.0\.0\.1:\d+$")
        self.assertStoppedCleanly(example, None)
