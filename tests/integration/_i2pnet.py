"""
A private I2P "network" for the integration tests: one i2pd on 127.0.0.1
that is its own floodfill, on a network id of its own (99), with no
reseeding and nothing else listening, reached through its SAM bridge.

What makes one router enough (measured on Debian's i2pd 2.45.1): i2pd
refuses 127.0.0.1 peers, so several routers on loopback never form a
network; but a single floodfill router publishes and finds lease sets in
its own netDb, and sessions with zero-hop tunnels (L{SESSION_OPTIONS}) need
no peers.  The address book stays enabled (disabling it crashes 2.45.1's
SAM on STREAM CONNECT); its subscriptions go through I2P, which has no
peers here, so nothing leaves the machine.  SAM answers ~0.2 s after start;
each session is ready ~20 s after SESSION CREATE (i2pd's fixed check).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

from .._support.ports import free_port

#: I2CP options every SAM session on this router needs: zero hops (there
#: are no peers) and lease-set type 1 (works around a lookup bug of 2.45.1).
SESSION_OPTIONS = {"inbound.length": "0", "outbound.length": "0", "i2cp.leaseSetType": "1"}


def private_config(ntcp2_port: int) -> dict[str, str]:
    """
    The i2pd settings (command-line names without C{--}) that make a lone
    offline router: for L{I2PRouter}, and for C{i2p.launch(config=...)}.
    """
    return {
        "netid": "99",
        "floodfill": "true",
        "host": "127.0.0.1",
        "address4": "127.0.0.1",
        "port": str(ntcp2_port),
        "ipv4": "true",
        "ipv6": "false",
        "nat": "false",
        "ntcp2.enabled": "true",
        "ntcp2.published": "true",
        "ntcp2.port": str(ntcp2_port),
        "ssu2.enabled": "false",
        "reseed.urls": "",
        "reseed.verify": "false",
        "upnp.enabled": "false",
        "nettime.enabled": "false",
        "addressbook.enabled": "true",
    }


def _conf_text(settings: dict[str, str]) -> str:
    top, sections = [], {}  # type: ignore[var-annotated]
    for key, value in settings.items():
        if "." in key:
            section, name = key.split(".", 1)
            sections.setdefault(section, []).append("%s = %s" % (name, value))
        else:
            top.append("%s = %s" % (key, value))
    lines = top
    for section, entries in sections.items():
        lines += ["", "[%s]" % (section,)] + entries
    return "\n".join(lines) + "\n"


class I2PRouter:
    """
    One private i2pd.  C{start()} does not wait; C{wait(timeout)} blocks
    until SAM answers HELLO; C{stop()} (idempotent) and C{kill()} end the
    process by pid.  C{start()} after C{stop()}/C{kill()} restarts it on the
    same ports and data directory.

    @ivar sam_port: the SAM bridge's port on 127.0.0.1.
    @ivar ntcp2_port: the router's (published, loopback-only) NTCP2 port.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.datadir = self.workdir / "data"
        self.conf = self.workdir / "i2pd.conf"
        self.log_path = self.workdir / "i2pd.log"
        self.output_path = self.workdir / "i2pd.out"
        self.sam_port = free_port()
        self.ntcp2_port = free_port()
        self.executable = "i2pd"
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self.started_at: Optional[float] = None
        self.ready_after: Optional[float] = None

    def __repr__(self) -> str:
        state = "not started"
        if self._proc is not None:
            state = "pid %d" % self._proc.pid if self._proc.poll() is None else "exited %s" % self._proc.returncode
        return "<I2PRouter SAM 127.0.0.1:%d (%s) in %s>" % (self.sam_port, state, self.workdir)

    @property
    def sam_description(self) -> str:
        """The SAM bridge as a Twisted client endpoint description."""
        return "tcp:127.0.0.1:%d" % (self.sam_port,)

    @property
    def pid(self) -> Optional[int]:
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    def settings(self) -> dict[str, str]:
        settings = {
            "log": "file",
            "logfile": str(self.log_path),
            "loglevel": "warn",
            "daemon": "false",
            "service": "false",
        }
        settings.update(private_config(self.ntcp2_port))
        settings.update(
            {
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
        )
        return settings

    def start(self) -> None:
        if self.pid is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.datadir.mkdir(exist_ok=True)
        self.conf.write_text(_conf_text(self.settings()))
        tunconf = self.workdir / "tunnels.conf"
        tunconf.write_text("")
        tunnelsdir = self.workdir / "tunnels.d"
        tunnelsdir.mkdir(exist_ok=True)
        with open(self.output_path, "ab") as out:
            self._proc = subprocess.Popen(
                [
                    self.executable,
                    "--conf", str(self.conf),
                    "--tunconf", str(tunconf),
                    "--tunnelsdir", str(tunnelsdir),
                    "--datadir", str(self.datadir),
                    "--pidfile", str(self.workdir / "i2pd.pid"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(self.workdir),
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.ready_after = None

    def wait(self, timeout: float) -> None:
        """Block until the SAM bridge answers HELLO with RESULT=OK."""
        if self._proc is None:
            raise RuntimeError("I2PRouter.wait() before start()")
        deadline = time.monotonic() + timeout
        last = "nothing tried yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(
                    "i2pd exited with status %s before its SAM bridge on 127.0.0.1:%d answered"
                    % (code, self.sam_port)
                )
            try:
                with socket.create_connection(("127.0.0.1", self.sam_port), timeout=2) as s:
                    s.sendall(b"HELLO VERSION MIN=3.1 MAX=3.3\n")
                    reply = s.makefile("rb").readline().decode("utf-8", "replace").strip()
                if "RESULT=OK" in reply:
                    assert self.started_at is not None
                    self.ready_after = time.monotonic() - self.started_at
                    return
                last = "SAM answered %r" % (reply,)
            except OSError as e:
                last = str(e)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    "i2pd's SAM bridge on 127.0.0.1:%d did not answer HELLO within %s s (last: %s)"
                    % (self.sam_port, timeout, last)
                )
            time.sleep(0.05)

    def _end(self, first: int, grace: float) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, first)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 5 s; does nothing if it is not running."""
        self._end(signal.SIGTERM, 5)

    def kill(self) -> None:
        """SIGKILL at once: the router 'crashes'."""
        self._end(signal.SIGKILL, 10)

    def logs(self) -> str:
        parts = []
        for path in (self.output_path, self.log_path):
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            if len(lines) > 150:
                lines = ["... (%d lines cut)" % (len(lines) - 150)] + lines[-150:]
            parts.append("== %s\n%s" % (path, "\n".join(lines)))
        return "\n".join(parts) or "(no i2pd output yet)"
