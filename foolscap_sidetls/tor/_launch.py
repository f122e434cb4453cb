"""
Launching a tor of our own: finding the executable, writing its torrc,
starting it in a process group of its own, reading its control port, its
log file, and stopping it (and removing a temporary DataDirectory).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Any, Callable, Optional

from twisted.internet import defer, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint

from .._process import DaemonProcess, find_executable, spawn_in_own_group
from ._bootstrap import BOOTSTRAP_TIMEOUT
from ._common import _kind, _quietly
from ._control import _open_control, _Session
from ._errors import TorError, TorNotFound

#: How long a launched tor may take to open its control port.
LAUNCH_TIMEOUT = 60.0
#: A launched tor's log is moved aside (to C{.old}) at a launch once it is
#: bigger than this, so a tor relaunched after each failure does not fill
#: the disk.
LOG_MAX = 1024 * 1024
#: How long a launched tor gets to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE = 10.0

#: torrc options launch() sets itself.
_RESERVED_OPTIONS = (
    "DataDirectory",
    "ControlPort",
    "ControlPortWriteToFile",
    "ControlSocket",
    "CookieAuthentication",
    "CookieAuthFile",
    "HashedControlPassword",
    "__OwningControllerProcess",
    "RunAsDaemon",
)
_OPTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _TorProcess(DaemonProcess):
    """A launched tor, and what its launcher cleans up after it."""

    def __init__(self) -> None:
        DaemonProcess.__init__(self)
        #: A temporary DataDirectory to remove once this tor has exited.
        self.temporary: Optional[str] = None
        #: Where it logs; whether its launch failed (see _Launcher._log_file).
        self.log_file: Optional[str] = None
        self.failed = False


def _nonempty(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def _find_tor(tor_binary: Optional[str]) -> str:
    """
    The tor executable to launch.  Not C{txtorcon.util.find_tor_binary}: it
    runs C{which tor} in a shell (blocking, on the process's PATH rather
    than L{_search_path}, answering bytes) and then globs fixed directories;
    L{find_executable} over PATH and L{TOR_SEARCH_DIRS} is the same search in
    one call, honours both settings and says nothing is found in words.
    """
    # The package's TOR_SEARCH_DIRS, read now: programs and tests set it there.
    from . import TOR_SEARCH_DIRS

    return find_executable(
        "tor", tor_binary, _search_path(), TOR_SEARCH_DIRS, argument="tor_binary", not_found=TorNotFound
    )


def _search_path() -> str:
    return os.environ.get("PATH", os.defpath)


def _torrc_lines(options: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in options.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            lines.append("%s %s" % (key, v))
    return lines


def _check_extra_config(extra_config: object) -> dict[str, list[str]]:
    if extra_config is None:
        return {}
    if not isinstance(extra_config, dict):
        raise TypeError(
            "launch() expects extra_config to be a dict of torrc options, such as "
            "{'SocksPort': '9055'}, got %s" % (_kind(extra_config),)
        )
    reserved = {name.lower(): name for name in _RESERVED_OPTIONS}
    checked: dict[str, list[str]] = {}
    for key, value in extra_config.items():
        if not isinstance(key, str) or not _OPTION_NAME.match(key):
            raise ValueError("extra_config key %r is not a torrc option name" % (key,))
        if key.lower() in reserved:
            raise ValueError(
                "extra_config may not set %r: launch() sets it itself (use "
                "data_directory= for the DataDirectory)" % (reserved[key.lower()],)
            )
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise ValueError("extra_config[%r] is an empty list" % (key,))
        texts = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise TypeError(
                    "extra_config[%r] must be a str, an int or a list of those, got %s"
                    % (key, _kind(v))
                )
            text = str(v)
            if "\n" in text or "\r" in text or "\0" in text:
                raise ValueError("extra_config[%r] contains a line break: %r" % (key, text))
            texts.append(text)
        checked[key] = texts
    return checked


class _Launcher:
    """
    Starts one tor process for a L{launch} handler, and stops it.

    Not C{txtorcon.launch}, which spawns the tor executable itself (so it
    cannot be put in a process group of its own, see
    L{foolscap_sidetls._process}), writes its torrc through C{TorConfig}
    (the private test network's repeated C{DirAuthority} lines and our
    exact torrc are asserted by the tests), kills tor on any stderr output
    by default, and reports failures and progress in its own words rather
    than Foolscap's status strings and the messages the tests assert
    (C{"tor (...) exited with status 1 before opening its control port;
    its output ends: ..."}, the log file named in L{TorBootstrapError}).
    """

    def __init__(
        self,
        data_directory: Optional[str],
        tor_binary: str,
        extra_config: dict[str, list[str]],
        bootstrap_timeout: Optional[float] = BOOTSTRAP_TIMEOUT,
    ) -> None:
        self.data_directory = data_directory
        self.tor_binary = tor_binary
        self.extra_config = extra_config
        self.bootstrap_timeout = bootstrap_timeout
        self.process: Optional[_TorProcess] = None
        #: Where tor writes its log (sidetls-tor.log in its DataDirectory, or a
        #: temporary file with a temporary DataDirectory), once launched.
        self.log_file: Optional[str] = None
        self._shutdown_trigger: Any = None
        self._reactor: Any = None

    def describe(self) -> str:
        if self.process is not None and self.process.ended is None and self.process.pid is not None:
            return "launched tor, pid %s" % (self.process.pid,)
        return "launched tor"

    def _config(self, datadir: str, portfile: str) -> list[str]:
        options: dict[str, Any] = {
            "DataDirectory": datadir,
            "ControlPort": "127.0.0.1:auto",
            "ControlPortWriteToFile": portfile,
            "CookieAuthentication": "1",
            "__OwningControllerProcess": str(os.getpid()),
            "SocksPort": "127.0.0.1:auto ExtendedErrors",
            "Log": "notice stdout",
        }
        options.update(self.extra_config)
        return _torrc_lines(options)

    async def open(self, reactor: Any, report: Callable[[str], None]) -> _Session:
        report("launching tor")
        self._reactor = reactor
        process = _TorProcess()
        if self.data_directory is None:
            datadir = process.temporary = tempfile.mkdtemp(prefix="sidetls-tor-")
        else:
            datadir = os.path.abspath(self.data_directory)
            os.makedirs(datadir, mode=0o700, exist_ok=True)
        portfile = os.path.join(datadir, "sidetls-control-port")
        torrc = os.path.join(datadir, "sidetls-torrc")
        try:
            if os.path.exists(portfile):
                os.remove(portfile)
            with open(torrc, "w") as f:
                f.write("\n".join(self._config(datadir, portfile)) + "\n")
            log_file = self._log_file(process, datadir)
            try:
                # In a process group of its own: a terminal's Ctrl-C
                # reaches only us, and we stop tor cleanly.
                spawn_in_own_group(
                    reactor,
                    process,
                    self.tor_binary,
                    # The log file on the command line, appended ("+Log")
                    # to whatever Log lines the torrc has.
                    [self.tor_binary, "--defaults-torrc", os.devnull, "-f", torrc,
                     "+Log", "notice file " + log_file],
                    env={"HOME": datadir, "PATH": _search_path()},
                    path=datadir,
                )
            except OSError as e:
                raise TorError("could not start %s: %s" % (self.tor_binary, e)) from None
            self.process = process
            if self._shutdown_trigger is None:
                self._shutdown_trigger = reactor.addSystemEventTrigger(
                    "before", "shutdown", self.stop
                )
            host, port = await self._control_address(reactor, portfile, process)
            session = await _open_control(
                reactor,
                TCP4ClientEndpoint(reactor, host, port),
                report,
                where="the control port (%s:%d) of the tor launched here (pid %s)"
                % (host, port, process.pid),
                after_auth=self._take_ownership,
                bootstrap_timeout=self.bootstrap_timeout,
                log_hint="Tor's log: %s" % (log_file,),
                launched=True,
            )
        except BaseException as e:
            # Its log tells why, unless we gave up on it ourselves.
            process.failed = not isinstance(e, CancelledError)
            self._end(process)
            raise
        session.on_lost(lambda: _quietly(self._end(process)))
        return session

    def _log_file(self, process: _TorProcess, datadir: str) -> str:
        """
        Where this launch's tor logs: appended to, so a failed launch's log
        is still there after the next one starts; moved to C{.old} past
        L{LOG_MAX} bytes.  A temporary DataDirectory is removed when tor
        stops, so its log lives beside it and outlives a failed launch.
        """
        if process.temporary is None:
            path = os.path.join(datadir, "sidetls-tor.log")
        elif self.log_file is not None and os.path.exists(self.log_file):
            path = self.log_file  # kept after a failed launch
        else:
            fd, path = tempfile.mkstemp(prefix="sidetls-tor-", suffix=".log")
            os.close(fd)
        try:
            if os.path.exists(path) and os.path.getsize(path) > LOG_MAX:
                os.replace(path, path + ".old")
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        except OSError as e:
            raise TorError("cannot write tor's log file %s: %s" % (path, e.strerror or e)) from None
        self.log_file = process.log_file = path
        return path

    @staticmethod
    async def _take_ownership(protocol: Any) -> None:
        # tor exits when this control connection closes (we exited or
        # stopped it), not only when it notices our pid is gone.
        await protocol.queue_command("TAKEOWNERSHIP")

    async def _control_address(
        self, reactor: Any, portfile: str, process: _TorProcess
    ) -> tuple[str, int]:
        deadline = reactor.seconds() + LAUNCH_TIMEOUT
        while True:
            if process.ended is not None:
                raise TorError(
                    "tor (%s) %s before opening its control port; its output ends:\n%s"
                    % (self.tor_binary, process.how(), process.output())
                )
            try:
                with open(portfile) as f:
                    text = f.read()
            except FileNotFoundError:
                text = ""
            found = re.search(r"PORT=([0-9.]+):(\d+)", text)
            if found:
                return found.group(1), int(found.group(2))
            if reactor.seconds() > deadline:
                raise TorError(
                    "tor (%s) did not open its control port within %d s; its output ends:\n%s"
                    % (self.tor_binary, LAUNCH_TIMEOUT, process.output())
                )
            await task.deferLater(reactor, 0.05, lambda: None)

    def _end(self, process: _TorProcess) -> Deferred:
        """Stop C{process} (if still running) and remove a temporary directory."""
        reactor = self._reactor
        d = process.terminate(reactor, TERMINATE_GRACE) if reactor is not None else defer.succeed(None)

        def cleanup(_: Any) -> None:
            if process.temporary is not None:
                shutil.rmtree(process.temporary, ignore_errors=True)
                process.temporary = None
                # Its log, unless it tells why this launch failed.
                log_file = process.log_file
                if log_file is not None and not (process.failed and _nonempty(log_file)):
                    try:
                        os.remove(log_file)
                    except FileNotFoundError:
                        pass

        return d.addBoth(cleanup)

    def stop(self) -> Deferred:
        if self._shutdown_trigger is not None and self._reactor is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except (ValueError, KeyError):
                pass
            self._shutdown_trigger = None
        if self.process is None:
            return defer.succeed(None)
        return self._end(self.process)
