"""
A private Tor network on 127.0.0.1 for the integration tests.

One directory authority, three relays and two client tors ("server" hosts
onion services, "dialer" connects to them), every one a real Debian
``tor`` started here and stopped by pid.  Nothing listens on or connects to
a non-loopback address: every node has ``TestingTorNetwork 1`` and only our
authority in its ``DirAuthority`` line, so no public relay, authority or
fallback directory is ever contacted.

Why these options (measured on tor 0.4.9):

- an onion-service connection needs four distinct relays (the authority
  relays too), so three relays are the minimum;
- ``AssumeReachable 1``: relays otherwise wait for a self-test that never
  succeeds on a network this small and never publish;
- ``TestingDirAuthVoteHSDir *``, ``TestingDirAuthVoteGuard *`` and
  ``AuthDirVoteStableGuaranteeMinUptime 0``: HSDir/Stable/Guard flags at
  once instead of after ~45 s of uptime;
- a 10 s voting interval (the fastest tor accepts) with 2 s vote and
  distribution delays;
- ``MaxConsensusAgeForDiffs 1 minutes``: relays otherwise spend more and
  more CPU computing diffs against every consensus they ever saw;
- ``ShutdownWaitLength 0``: relays otherwise take 30 s to exit on SIGTERM;
- an empty ``--defaults-torrc`` so the system's torrc-defaults is ignored;
- ``LearnCircuitBuildTimeout 0``: on loopback circuits build in ~30 ms and
  tor learns a ~40 ms timeout, after which any 4-hop onion circuit built
  while the machine is busy is abandoned (rendezvous then fails);
- clients: ``UseEntryGuards 0``: in the first minute of the network only
  one router has a non-zero bandwidth in the consensus, so a client that
  picks it as its guard also picks it as the last hop of every onion
  circuit, which then loops back to its first hop and is refused.

Clients start only once the authority's consensus lists every router as an
HSDir, so their first consensus already has the full HSDir ring (a client
whose ring differs from the service's cannot find its descriptor).

Every tor also gets ``__OwningControllerProcess`` set to this process, so
tors left behind by a crashed test run exit on their own.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

ROUTERS = 4  # the authority and three relays
_POLL = 0.25
_LOG_TAIL = 40
#: While a node lags, SIGNAL RELOAD it this often (seconds): a node that
#: missed a download waits out an exponential backoff otherwise.
_RELOAD_EVERY = 3.0


class TorNetworkError(RuntimeError):
    """The private network could not be set up or did not become usable."""


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so none repeats)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def _which(name: str) -> str:
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep) + [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise TorNetworkError("%s not found (apt-get install tor)" % name)


class ControlClient:
    """
    A blocking tor control-port client, just enough for setting up and
    checking the network from outside the reactor: cookie authentication,
    GETINFO and SIGNAL.
    """

    def __init__(self, port: int, cookie_file: Path, timeout: float = 5.0) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buf = b""
        try:
            cookie = cookie_file.read_bytes()
            self.command("AUTHENTICATE " + cookie.hex())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> str:
        while b"\r\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise TorNetworkError("tor closed the control connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def command(self, text: str) -> list[str]:
        """Send one command; return the reply's lines (data lines included)."""
        self._sock.sendall(text.encode("ascii") + b"\r\n")
        lines = []
        while True:
            line = self._line()
            code, sep, rest = line[:3], line[3:4], line[4:]
            if sep == "+":
                lines.append(rest)
                while True:
                    data = self._line()
                    if data == ".":
                        break
                    lines.append(data[1:] if data.startswith("..") else data)
                continue
            lines.append(rest)
            if sep == " ":
                if not code.startswith("2"):
                    raise TorNetworkError("tor refused %r: %s %s" % (text, code, rest))
                return lines

    def getinfo(self, key: str) -> str:
        lines = self.command("GETINFO " + key)
        first = lines[0]
        prefix = key + "="
        if first.startswith(prefix) and first != prefix:
            return first[len(prefix) :]
        # multi-line value: everything up to the final "OK"
        return "\n".join(lines[1:-1])


class Node:
    """One tor process of the network."""

    def __init__(self, network: "TorNetwork", name: str, role: str, ports: list[int]) -> None:
        self.network = network
        self.name = name
        self.role = role
        self.datadir = network.workdir / name
        self.torrc = self.datadir / "torrc"
        self.log = self.datadir / "tor.log"
        self.control_port, self.or_port, self.dir_port, self.socks_port = ports
        self.process: Optional[subprocess.Popen] = None
        self.fingerprint: Optional[str] = None

    def __repr__(self) -> str:
        return "<tor %s %s>" % (self.role, self.name)

    @property
    def cookie_file(self) -> Path:
        return self.datadir / "control_auth_cookie"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    self.network.tor,
                    "--defaults-torrc",
                    str(self.network.empty_defaults),
                    "-f",
                    str(self.torrc),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(self.datadir),
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits until the pid is gone."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def control(self) -> ControlClient:
        return ControlClient(self.control_port, self.cookie_file)

    def tail(self, lines: int = _LOG_TAIL) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as e:
            return "(no log: %s)" % (e,)
        return "\n".join(text.splitlines()[-lines:])


class TorNetwork:
    """
    A private tor network: ``start()`` returns at once, ``wait(timeout)``
    blocks until both client tors can host and reach onion services.

    For tests: ``server`` and ``dialer`` are the two client :class:`Node`\\ s
    (``.socks_port``, ``.control_port``, ``.cookie_file``);
    :meth:`client_config` is the torrc a further client needs to join
    (e.g. ``foolscap_sidetls.tor.launch(extra_config=...)``).
    """

    def __init__(self, workdir: Path, relays: int = ROUTERS - 1) -> None:
        self.workdir = Path(workdir)
        self.tor = ""
        self.empty_defaults = self.workdir / "torrc-defaults-empty"
        ports = iter(_free_ports(4 * (relays + 3)))

        def node(name: str, role: str) -> Node:
            return Node(self, name, role, [next(ports) for _ in range(4)])

        self.authority = node("auth", "authority")
        self.relays = [node("relay%d" % i, "relay") for i in range(relays)]
        self.server = node("server", "client")
        self.dialer = node("dialer", "client")
        self.clients = [self.server, self.dialer]
        self.routers = 1 + relays
        self._dirauthority = ""
        self._started_at: Optional[float] = None
        self._clients_started = False
        self._usable = False
        self._stopped = False
        self.usable_after: Optional[float] = None

    def __repr__(self) -> str:
        return "<TorNetwork in %s>" % (self.workdir,)

    @property
    def nodes(self) -> list[Node]:
        return [self.authority] + self.relays + self.clients

    # -- configuration -------------------------------------------------------

    def _common(self, node: Node) -> list[str]:
        debug = []
        if os.environ.get("SIDETLS_TOR_DEBUG"):
            # info-level logs of every node, for chasing a failure
            debug = ["Log info file %s" % (node.datadir / "info.log")]
        return debug + [
            "TestingTorNetwork 1",
            "DataDirectory %s" % node.datadir,
            "Log notice stdout",
            "SafeLogging 0",
            "ShutdownWaitLength 0",
            "ControlPort 127.0.0.1:%d" % node.control_port,
            "CookieAuthentication 1",
            "__OwningControllerProcess %d" % os.getpid(),
            "PathsNeededToBuildCircuits 0.67",
            "LearnCircuitBuildTimeout 0",
            "ClientUseIPv6 0",
            self._dirauthority,
        ]

    def _router(self, node: Node) -> list[str]:
        return [
            "Nickname %s" % node.name,
            "Address 127.0.0.1",
            "ORPort 127.0.0.1:%d" % node.or_port,
            "SocksPort 0",
            "AssumeReachable 1",
            "ExitRelay 0",
            "ExitPolicy reject *:*",
            "MaxConsensusAgeForDiffs 1 minutes",
            "ContactInfo foolscap-sidetls test network",
        ]

    def _authority_lines(self) -> list[str]:
        node = self.authority
        return [
            "DirPort 127.0.0.1:%d" % node.dir_port,
            "AuthoritativeDirectory 1",
            "V3AuthoritativeDirectory 1",
            "V3AuthVotingInterval 10",
            "V3AuthVoteDelay 2",
            "V3AuthDistDelay 2",
            "TestingV3AuthInitialVotingInterval 10",
            "TestingV3AuthInitialVoteDelay 2",
            "TestingV3AuthInitialDistDelay 2",
            "TestingDirAuthVoteHSDir *",
            "TestingDirAuthVoteGuard *",
            "AuthDirVoteStableGuaranteeMinUptime 0",
            "AuthDirMaxServersPerAddr 0",
        ]

    def client_config(self) -> dict[str, str]:
        """torrc options (as a dict) for a further client tor to join."""
        return {
            "TestingTorNetwork": "1",
            "DirAuthority": self._dirauthority.split(" ", 1)[1],
            "PathsNeededToBuildCircuits": "0.67",
            "UseEntryGuards": "0",
            "LearnCircuitBuildTimeout": "0",
            "ClientUseIPv6": "0",
            "ShutdownWaitLength": "0",
            "SafeLogging": "0",
        }

    def _write(self, node: Node, lines: list[str]) -> None:
        node.torrc.write_text("\n".join(lines) + "\n")

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Generate keys and start the authority and relays; returns at once."""
        if self._started_at is not None:
            raise TorNetworkError("TorNetwork.start() called twice")
        self._started_at = time.monotonic()
        self.tor = _which("tor")
        gencert = _which("tor-gencert")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.empty_defaults.write_text("")
        for node in self.nodes:
            node.datadir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(node.datadir, 0o700)
        auth = self.authority
        keys = auth.datadir / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        gen = subprocess.run(
            [
                gencert,
                "--create-identity-key",
                "-m",
                "12",
                "-a",
                "127.0.0.1:%d" % auth.dir_port,
                "--passphrase-fd",
                "0",
            ],
            input=b"sidetls\n",
            cwd=str(keys),
            capture_output=True,
            timeout=60,
        )
        if gen.returncode != 0:
            raise TorNetworkError(
                "tor-gencert failed (%d): %s"
                % (gen.returncode, gen.stderr.decode(errors="replace"))
            )
        cert = (keys / "authority_certificate").read_text()
        v3ident = re.search(r"^fingerprint ([0-9A-F]{40})$", cert, re.M)
        if v3ident is None:
            raise TorNetworkError("no fingerprint in tor-gencert's certificate:\n" + cert)
        # The authority's relay identity, generated by tor itself.
        listing = subprocess.run(
            [
                self.tor,
                "--defaults-torrc",
                str(self.empty_defaults),
                "-f",
                os.devnull,
                "--ignore-missing-torrc",
                "--list-fingerprint",
                "--DataDirectory",
                str(auth.datadir),
                "--ORPort",
                "127.0.0.1:%d" % auth.or_port,
                "--Nickname",
                auth.name,
                "--Log",
                "err stderr",
            ],
            capture_output=True,
            timeout=60,
        )
        found = re.search(
            r"^%s ((?:[0-9A-F]{4} ?){10})$" % auth.name,
            listing.stdout.decode(errors="replace"),
            re.M,
        )
        if listing.returncode != 0 or found is None:
            raise TorNetworkError(
                "tor --list-fingerprint failed (%d): %s%s"
                % (
                    listing.returncode,
                    listing.stdout.decode(errors="replace"),
                    listing.stderr.decode(errors="replace"),
                )
            )
        auth.fingerprint = found.group(1).replace(" ", "")
        self._dirauthority = "DirAuthority %s orport=%d no-v2 v3ident=%s 127.0.0.1:%d %s" % (
            auth.name,
            auth.or_port,
            v3ident.group(1),
            auth.dir_port,
            auth.fingerprint,
        )
        self._write(auth, self._common(auth) + self._router(auth) + self._authority_lines())
        for relay in self.relays:
            self._write(relay, self._common(relay) + self._router(relay))
        for client in self.clients:
            self._write(
                client,
                self._common(client)
                + ["SocksPort 127.0.0.1:%d" % client.socks_port, "UseEntryGuards 0"],
            )
        for node in [auth] + self.relays:
            node.start()

    def wait(self, timeout: float) -> None:
        """
        Block until the network carries onion services, or raise
        L{TorNetworkError} saying what is missing (the caller prints
        L{logs}).
        """
        if self._started_at is None:
            raise TorNetworkError("TorNetwork.wait() before start()")
        if self._stopped:
            raise TorNetworkError("TorNetwork was stopped")
        deadline = time.monotonic() + timeout
        if not self._clients_started:
            self._poll(
                deadline,
                self._authority_ready,
                "the authority's consensus to list every router as HSDir",
            )
            for client in self.clients:
                client.start()
            self._clients_started = True
        for client in self.clients:
            self.wait_client(client, max(0.0, deadline - time.monotonic()))
        if not self._usable:
            self._usable = True
            self.usable_after = time.monotonic() - self._started_at

    def wait_client(self, client: Node, timeout: float) -> None:
        """Block until C{client} is bootstrapped and sees every HSDir."""
        self._poll(
            time.monotonic() + timeout,
            lambda: self._client_ready(client),
            "%s to bootstrap and see every router as HSDir" % (client.name,),
            lagging=[client],
        )

    def _poll(
        self, deadline: float, check, what: str, lagging: Optional[list[Node]] = None
    ) -> None:
        last = "not checked yet"
        reloaded_at = time.monotonic()
        while True:
            for node in self.nodes:
                if node.process is not None and not node.running():
                    raise TorNetworkError(
                        "%s exited with status %s while waiting for %s; its log ends:\n%s"
                        % (node.name, node.process.returncode, what, node.tail())
                    )
            try:
                ok, last = check()
            except (OSError, TorNetworkError) as e:
                ok, last = False, "%s: %s" % (type(e).__name__, e)
            if ok:
                return
            now = time.monotonic()
            if now >= deadline:
                raise TorNetworkError("timed out waiting for %s; last check: %s" % (what, last))
            if lagging and now - reloaded_at > _RELOAD_EVERY:
                # A node that missed a download backs off exponentially;
                # RELOAD resets that.
                for node in lagging:
                    self._reload(node)
                reloaded_at = now
            time.sleep(_POLL)

    def _reload(self, node: Node) -> None:
        try:
            with node.control() as c:
                c.command("SIGNAL RELOAD")
        except (OSError, TorNetworkError):
            pass

    @staticmethod
    def _hsdirs(entries: str) -> tuple[int, int]:
        """(routers, routers flagged HSDir and Running) in a GETINFO ns/all."""
        routers = hsdirs = 0
        for line in entries.splitlines():
            if line.startswith("r "):
                routers += 1
            elif line.startswith("s "):
                flags = line.split()[1:]
                if "HSDir" in flags and "Running" in flags:
                    hsdirs += 1
        return routers, hsdirs

    def _authority_ready(self) -> tuple[bool, str]:
        with self.authority.control() as c:
            routers, hsdirs = self._hsdirs(c.getinfo("ns/all"))
        return hsdirs >= self.routers, "consensus has %d routers, %d HSDirs (need %d)" % (
            routers,
            hsdirs,
            self.routers,
        )

    def _client_ready(self, client: Node) -> tuple[bool, str]:
        with client.control() as c:
            phase = c.getinfo("status/bootstrap-phase")
            circuit = c.getinfo("status/circuit-established")
            routers, hsdirs = self._hsdirs(c.getinfo("ns/all"))
        progress = re.search(r"PROGRESS=(\d+)", phase)
        done = progress is not None and progress.group(1) == "100"
        ok = done and circuit.strip() == "1" and hsdirs >= self.routers
        return ok, "%s; circuit-established=%s; %d HSDirs of %d routers" % (
            phase,
            circuit.strip(),
            hsdirs,
            routers,
        )

    # -- for tests -----------------------------------------------------------

    def kill_client(self, client: Node) -> None:
        """Kill a client tor (SIGKILL, as a crash); L{restart_client} brings it back."""
        client.kill()

    def restart_client(self, client: Node, timeout: float = 60) -> None:
        """Start a killed client again, on the same ports and data directory."""
        if not client.running():
            client.start()
        self.wait_client(client, timeout)

    def stop(self) -> None:
        """Stop every tor this network started; safe to call twice."""
        self._stopped = True
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception:
                if node.process is not None:
                    try:
                        os.kill(node.process.pid, signal.SIGKILL)
                    except OSError:
                        pass

    def logs(self) -> str:
        parts = []
        for node in self.nodes:
            if node.process is None:
                continue
            parts.append(
                "---- %s (%s, pid %d) ----\n%s"
                % (node.name, node.role, node.process.pid, node.tail())
            )
        return "\n".join(parts)
