"""
Launching a private i2pd: finding the executable, writing its i2pd.conf,
starting it in a process group of its own (L{foolscap_sidetls._process}),
waiting for its SAM bridge, reading its log for why it has no peers, and
stopping it.  L{_Launcher} is the L{IRouterLauncher} of a L{launch}
handler's SAM bridge.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from typing import Any, Callable, Mapping, Optional

from zope.interface import implementer
from twisted.application.internet import backoffPolicy
from twisted.internet import defer, task
from twisted.internet.defer import CancelledError, Deferred

from .._process import DaemonProcess, find_executable, spawn_in_own_group
from ._errors import I2PDFailed, I2PDNotFound
from ._i2pd_log import I2PDLog
from .sam import I2PError, IRouterLauncher, SAMBridge
from .sam._util import Waiters, global_reactor, kind, log
from .sam._wire import ConnectionFactory, SAMConnection

#: How long a launched i2pd may take until its SAM bridge answers.
LAUNCH_TIMEOUT = 60.0
#: How long a launched i2pd whose log says reseeding failed may take to
#: open a session before the session fails saying so (launch()'s
#: C{reseed_timeout}; None waits for SESSION_TIMEOUT).
RESEED_TIMEOUT = 30.0
#: How long a launched i2pd gets to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE = 5.0
#: While a launched i2pd starts, its SAM port is tried after 0.05 s, then
#: twice as long each time, at most every 0.5 s.
_SAM_POLL_FIRST = 0.05
_SAM_POLL_MAX = 0.5
#: Reseed certificates of Debian's i2pd package, used by a launched i2pd
#: whose data directory has none.
_DEBIAN_CERTIFICATES = "/usr/share/i2pd/certificates"


def _find_i2pd(executable: Optional[str]) -> str:
    if executable is not None and not isinstance(executable, (str, os.PathLike)):
        raise TypeError("launch() expects executable to be a path (str) or None, got %s" % (kind(executable),))
    # The package's I2PD_SEARCH_DIRS, read now: programs and tests set it there.
    from . import I2PD_SEARCH_DIRS

    given = os.fspath(executable) if executable is not None else None
    return find_executable(
        "i2pd", given, os.environ.get("PATH", os.defpath), I2PD_SEARCH_DIRS,
        argument="executable", not_found=I2PDNotFound,
    )


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


#: i2pd settings a launched i2pd needs and the caller may not change.
_FIXED_SETTINGS = {
    "datadir": "is the data_directory argument",
    "conf": "is written by launch()",
    "tunconf": "is set by launch() (no client tunnels)",
    "tunnelsdir": "is set by launch() (no client tunnels)",
    "pidfile": "is kept in the data directory",
    "daemon": "must be false: launch() supervises the process",
    "service": "must be false: launch() chooses the directories",
    "sam.enabled": "must be true: the handler talks to i2pd through SAM",
    "sam.address": "must be 127.0.0.1: the handler connects there",
}


def _check_config(config: object) -> dict[str, str]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(
            "launch() expects config to be a dict of i2pd settings such as "
            "{'netid': 99, 'ntcp2.port': 12345}, got %s" % (kind(config),)
        )
    checked = {}
    for key, value in config.items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_.]+)?$", key):
            raise ValueError(
                "launch(): config key %r is not an i2pd setting name; use i2pd's command-line "
                "names without '--': 'netid', 'ntcp2.port', 'reseed.urls'" % (key,)
            )
        if key in _FIXED_SETTINGS:
            raise ValueError("launch(): config may not set %r: it %s" % (key, _FIXED_SETTINGS[key]))
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, str)):
            text = str(value)
        else:
            raise TypeError("launch(): config %r must be a str, int or bool, got %s" % (key, kind(value)))
        if "\n" in text or "\r" in text:
            raise ValueError("launch(): config %r must be one line" % (key,))
        checked[key] = text
    if "sam.port" in checked:
        port = checked["sam.port"]
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("launch(): config 'sam.port' must be a port number, got %r" % (port,))
    return checked


def _i2pd_conf(settings: dict[str, str]) -> str:
    """An i2pd.conf: top-level settings first, then one [section] per prefix."""
    top = []
    sections: dict[str, list[str]] = {}
    for key, value in settings.items():
        if "." in key:
            section, name = key.split(".", 1)
            sections.setdefault(section, []).append("%s = %s" % (name, value))
        else:
            top.append("%s = %s" % (key, value))
    lines = ["# written by foolscap_sidetls.i2p.launch()"] + top
    for section, entries in sections.items():
        lines += ["", "[%s]" % (section,)] + entries
    return "\n".join(lines) + "\n"


class _I2PDProcess(DaemonProcess):
    """A launched i2pd (see L{DaemonProcess})."""


@implementer(IRouterLauncher)
class _Launcher:
    """Starts (and restarts, if it died) one private i2pd, and stops it."""

    name = "the launched i2pd"

    def __init__(
        self,
        executable: str,
        data_directory: Optional[str],
        config: dict[str, str],
        reactor: Any,
        reseed_timeout: Optional[float] = RESEED_TIMEOUT,
    ) -> None:
        self.executable = executable
        self.reseed_timeout = reseed_timeout
        #: The running i2pd's log, when it writes one to a file.
        self.log: Optional[I2PDLog] = None
        self._config = config
        self._reactor = reactor
        self.sam_port = int(config.get("sam.port") or _free_port())
        self.data_directory: Optional[str] = data_directory
        self._temporary: Optional[str] = None
        self.process: Optional[_I2PDProcess] = None
        self._starting: Optional[Deferred] = None
        self._started: Waiters[None] = Waiters()
        self._shutdown_trigger: Any = None
        self._stopped = False
        self.bridge: Optional[SAMBridge] = None

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            self._reactor = global_reactor()
        return self._reactor

    @property
    def give_up_after(self) -> Optional[float]:
        return self.reseed_timeout

    @property
    def pid(self) -> Optional[int]:
        """The running i2pd's process id, or None."""
        return self.process.pid if self.process is not None else None

    def describe(self) -> str:
        return "launched i2pd, SAM at tcp:127.0.0.1:%d" % (self.sam_port,)

    def no_peers(self) -> Optional[str]:
        if self.log is None:
            return None
        self.log.poll()
        why = self.log.diagnosis()
        if why is None:
            return None
        return "i2pd has no peers: reseeding failed (%s); this machine cannot reach the I2P network. i2pd's log: %s" % (
            why, self.log.path,
        )

    def give_up(self, why: str, elapsed: Optional[float]) -> Exception:
        if elapsed is None:
            return I2PDFailed(why)
        return I2PDFailed("%s (no SAM session after %d s; launch(reseed_timeout=None) keeps waiting)" % (why, elapsed))

    def log_note(self) -> Optional[str]:
        return "i2pd's log: %s" % (self.log.path,) if self.log is not None else None

    def settings(self, datadir: str) -> dict[str, str]:
        settings = {
            "log": "file",
            "logfile": os.path.join(datadir, "i2pd.log"),
            "loglevel": "warn",
            "daemon": "false",
            "service": "false",
            "http.enabled": "false",
            "httpproxy.enabled": "false",
            "socksproxy.enabled": "false",
            "bob.enabled": "false",
            "i2cp.enabled": "false",
            "i2pcontrol.enabled": "false",
            "sam.enabled": "true",
            "sam.address": "127.0.0.1",
            "sam.port": str(self.sam_port),
        }
        if not os.path.isdir(os.path.join(datadir, "certificates")) and os.path.isdir(_DEBIAN_CERTIFICATES):
            settings["certsdir"] = _DEBIAN_CERTIFICATES
        settings.update(self._config)
        return settings

    async def ensure_running(self, report: Callable[[str], None]) -> None:
        if self._stopped:
            raise I2PError("this launched i2pd was stopped")
        if self._starting is None and self.process is not None and self.process.ended is None:
            return
        # Waiting on our own Deferred: a caller that gives up (cancels)
        # leaves the start, and the others waiting for it, alone.
        wait = self._started.wait()
        if self._starting is None:
            self._starting = Deferred.fromCoroutine(self._start(report))
            self._starting.addBoth(self._start_done)
        else:
            report("launching i2pd")
        await wait

    def _start_done(self, result: Any) -> None:
        self._starting = None
        self._started.fire(result, keep=False)

    def _write_files(self, datadir: str) -> list[str]:
        """Write i2pd.conf and an empty tunnels.conf; the arguments i2pd runs with."""
        os.makedirs(datadir, mode=0o700, exist_ok=True)
        conf = os.path.join(datadir, "i2pd.conf")
        tunconf = os.path.join(datadir, "tunnels.conf")
        tunnelsdir = os.path.join(datadir, "tunnels.d")
        settings = self.settings(datadir)
        with open(conf, "w", encoding="utf-8") as f:
            f.write(_i2pd_conf(settings))
        self.log = None
        if settings.get("log") == "file" and settings.get("logfile"):
            logfile = os.path.join(datadir, settings["logfile"])
            try:
                start_at = os.stat(logfile).st_size
            except OSError:
                start_at = 0
            self.log = I2PDLog(logfile, start_at)
        with open(tunconf, "w", encoding="utf-8") as f:
            f.write("# no client tunnels: foolscap_sidetls uses SAM\n")
        os.makedirs(tunnelsdir, exist_ok=True)
        return [
            self.executable,
            "--conf", conf,
            "--tunconf", tunconf,
            "--tunnelsdir", tunnelsdir,
            "--datadir", datadir,
            "--pidfile", os.path.join(datadir, "i2pd.pid"),
        ]

    async def _start(self, report: Callable[[str], None]) -> None:
        report("launching i2pd")
        if self.process is not None and self.process.ended is not None:
            log.warn("launched i2pd {how}; starting it again", how=self.process.how())
        datadir = self.data_directory
        if datadir is None:
            datadir = self._temporary = tempfile.mkdtemp(prefix="sidetls-i2pd-")
            self.data_directory = datadir
        args = self._write_files(datadir)
        process = _I2PDProcess()
        self.process = process
        try:
            # Through a new process group (the exec keeps the pid): a
            # terminal's Ctrl-C then reaches only us, and we stop i2pd.
            spawn_in_own_group(self.reactor, process, self.executable, args, env=dict(os.environ), path=datadir)
        except OSError as e:
            raise I2PDFailed("could not start %s: %s" % (self.executable, e)) from None
        if self._shutdown_trigger is None:
            self._shutdown_trigger = self.reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        try:
            await self._await_sam(process)
        except BaseException:
            await process.terminate(self.reactor, TERMINATE_GRACE)
            raise

    async def _await_sam(self, process: _I2PDProcess) -> None:
        assert self.bridge is not None
        endpoint = self.bridge.endpoint
        assert endpoint is not None
        deadline = self.reactor.seconds() + LAUNCH_TIMEOUT
        delay = backoffPolicy(_SAM_POLL_FIRST, _SAM_POLL_MAX, 2.0, jitter=lambda: 0.0)
        attempt = 0
        while True:
            if process.ended is not None:
                raise I2PDFailed(
                    "the launched i2pd (%s) %s before its SAM bridge answered on 127.0.0.1:%d; "
                    "its output:\n%s\nits log: %s"
                    % (self.executable, process.how(), self.sam_port, process.output("(none)"), self._log_tail())
                )
            connection = SAMConnection(self.bridge.where, self.reactor)
            try:
                await endpoint.connect(ConnectionFactory(connection))
                await connection.hello
                connection.abort()
                return
            except CancelledError:
                connection.abort()
                raise
            except Exception as e:
                connection.abort()
                last = str(e) or type(e).__name__
            if self.reactor.seconds() >= deadline:
                raise I2PDFailed(
                    "the launched i2pd's SAM bridge did not answer on 127.0.0.1:%d within %d s (%s); "
                    "its log: %s" % (self.sam_port, LAUNCH_TIMEOUT, last, self._log_tail())
                )
            await task.deferLater(self.reactor, delay(attempt), lambda: None)
            attempt += 1

    def stop_process(self) -> Deferred:
        """Stop the running i2pd, but not this launcher: the next use starts one again."""
        process = self.process
        if process is None:
            return defer.succeed(None)
        d = process.terminate(self.reactor, TERMINATE_GRACE)
        d.addErrback(lambda f: log.failure("stopping the launched i2pd", f))
        return d

    def _log_tail(self) -> str:
        if self.data_directory is None:
            return "(none)"
        path = os.path.join(self.data_directory, "i2pd.log")
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                lines = f.readlines()[-15:]
        except OSError:
            return "(no %s)" % (path,)
        return "%s:\n%s" % (path, "".join(lines).rstrip())

    def stop(self) -> Deferred:
        """Stop i2pd (SIGTERM, then SIGKILL after 5 s); remove a temporary data directory."""
        self._stopped = True
        if self._starting is not None:
            self._starting.cancel()
        if self._shutdown_trigger is not None:
            self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        process = self.process
        d = process.terminate(self.reactor, TERMINATE_GRACE) if process is not None else defer.succeed(None)

        def clean(_: Any) -> None:
            if self._temporary is not None:
                shutil.rmtree(self._temporary, ignore_errors=True)
                self._temporary = None

        return d.addBoth(clean)
