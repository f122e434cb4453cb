"""
Real Tahoe-LAFS grids over the private networks of ``_i2pnet.py`` and
``_tornet.py``, for the integration tests and ``benchmarks/tahoe_grid.py``.

A L{Grid} is an introducer, two storage nodes and a client-only node
(C{--listen=none}), each its own ``tahoe run`` child process in its own
process group, configured the way an operator hiding its IP would:
``[connections] tcp = disabled``, ``reveal-IP-address = false``, and
``shares.needed=1, happy=2, total=2`` so that a file lives on both storage
nodes and a healthy check proves both carry it.

Which program runs each node is a L{Runner}: L{STOCK} (Tahoe's own
``tahoe``), L{SIDETLS} (``python -m foolscap_sidetls.tahoe``) or
L{stock_patched} (stock Tahoe with txi2p adjusted in the child only, see
``_tahoe_stock.py``).  Nodes are created with stock ``tahoe create-*``
(creating writes files and allocates addresses; only ``run`` makes Tubs),
and the CLI commands (put, get, check) are stock too: they speak HTTP to
the client node's web port on 127.0.0.1.

Everything listens on and dials 127.0.0.1 only: storage and introducer
hints are I2P destinations or onions of the private networks, and TCP
hints are disabled.  A failure raises L{GridError} carrying the tail of
every node's output and twistd.log.
"""

from __future__ import annotations

import configparser
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from . import _i2pnet

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
TAHOE = str(Path(sys.executable).parent / "tahoe")

#: How long a node may take to form the grid (SAM sessions cost ~20 s each
#: on i2pd; onion descriptors a few seconds on the private Tor network).
FORM_TIMEOUT = 120.0
#: Bound on one CLI command (put/get/check of a few MiB).
COMMAND_TIMEOUT = 300.0
_POLL = 0.25
_LOG_TAIL = 60


class GridError(AssertionError):
    """The grid did not do what was asked; the message ends with every node's log tail."""


@dataclass(frozen=True)
class Runner:
    """
    How to run Tahoe's command line for one node: C{argv} is what stands
    for C{tahoe}, C{env} is added to the child's environment.
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    #: True for nodes served by foolscap-sidetls (which reads the keys
    #: Tahoe lacks: C{[i2p] i2cp.options}, C{[tor] control.port} alone).
    sidetls: bool = False

    def command(self, *args: str) -> list[str]:
        return list(self.argv) + list(args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        return env


STOCK = Runner("stock", (TAHOE,))
SIDETLS = Runner("sidetls", (PYTHON, "-m", "foolscap_sidetls.tahoe"), sidetls=True)


def stock_patched(i2cp_options: Mapping[str, str], invert_tls: bool = True) -> Runner:
    """
    Stock Tahoe whose txi2p sessions get C{i2cp_options} (stock Tahoe cannot
    pass them: Tahoe ticket 2889) and, with C{invert_tls=False}, whose
    txi2p ``invertTLS`` workaround is off (the negative control).
    """
    options = ",".join("%s=%s" % item for item in sorted(i2cp_options.items()))
    name = "stock+invertTLS" if invert_tls else "stock-no-invertTLS"
    return Runner(
        name,
        (PYTHON, str(HERE / "_tahoe_stock.py")),
        {"SIDETLS_TEST_I2CP_OPTIONS": options, "SIDETLS_TEST_INVERT_TLS": "1" if invert_tls else "0"},
    )


def sidetls_unavailable(timeout: float = 60.0) -> Optional[str]:
    """
    Why C{python -m foolscap_sidetls.tahoe} cannot run here, or L{None}
    when C{--version} answers.
    """
    try:
        done = subprocess.run(
            SIDETLS.command("--version"),
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "%s --version did not answer within %s s" % (" ".join(SIDETLS.argv), timeout)
    if done.returncode != 0:
        out = (done.stdout + done.stderr).decode("utf-8", "replace").strip().splitlines()
        return "%s --version exited %d: %s" % (
            " ".join(SIDETLS.argv[1:]),
            done.returncode,
            " | ".join(out[-3:]),
        )
    return None


# -- networks ----------------------------------------------------------------


class Network(Protocol):
    """What a L{Grid} needs to know about the network its nodes use."""

    name: str

    def create_args(self, role: str) -> list[str]:
        """C{tahoe create-*} arguments for a node of C{role} that listens."""

    def sections(self, role: str, runner: Runner, listening: bool) -> dict[str, dict[str, str]]:
        """tahoe.cfg sections/keys to set for C{role} run by C{runner}."""


class I2PNetwork:
    """
    The private i2pd of ``_i2pnet.py``.  Every node uses its SAM bridge; the
    session options it needs (zero hops) reach sidetls nodes as
    C{[i2p] i2cp.options} and stock nodes through ``_tahoe_stock.py``.
    """

    name = "i2p"

    def __init__(self, router: _i2pnet.I2PRouter, options: Mapping[str, str] = _i2pnet.SESSION_OPTIONS) -> None:
        self.router = router
        self.options = dict(options)

    @property
    def sam(self) -> str:
        return self.router.sam_description

    def create_args(self, role: str) -> list[str]:
        return ["--listen=i2p", "--i2p-sam-port=" + self.sam]

    def sections(self, role: str, runner: Runner, listening: bool) -> dict[str, dict[str, str]]:
        i2p = {"enabled": "true", "sam.port": self.sam}
        if runner.sidetls:
            i2p["i2cp.options"] = ",".join("%s=%s" % item for item in sorted(self.options.items()))
        return {"i2p": i2p}

    def stock(self, invert_tls: bool = True) -> Runner:
        """The stock runner this network needs (its session options patched in)."""
        return stock_patched(self.options, invert_tls)


class TorNetwork:
    """
    The private Tor network of ``_tornet.py``.  Listening nodes (introducer,
    storage) host their onions on its ``server`` tor, the client uses the
    ``dialer`` tor.  sidetls nodes get C{[tor] control.port} only (that
    tor's SocksPort is C{127.0.0.1:PORT}, which stock Foolscap's control
    handler cannot use); stock nodes also get C{socks.port}.
    """

    name = "tor"

    def __init__(self, net: Any) -> None:
        self.net = net

    def _tor(self, role: str) -> Any:
        return self.net.dialer if role == "client" else self.net.server

    def create_args(self, role: str) -> list[str]:
        return ["--listen=tor", "--tor-control-port=tcp:127.0.0.1:%d" % self._tor(role).control_port]

    def sections(self, role: str, runner: Runner, listening: bool) -> dict[str, dict[str, str]]:
        tor = self._tor(role)
        section = {"enabled": "true", "control.port": "tcp:127.0.0.1:%d" % tor.control_port}
        if not runner.sidetls:
            section["socks.port"] = "tcp:127.0.0.1:%d" % tor.socks_port
        return {"tor": section}

    def stock(self, invert_tls: bool = True) -> Runner:
        return STOCK


# -- nodes -------------------------------------------------------------------


def _tail(path: Path, lines: int = _LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return "(unreadable: %s)" % (e,)
    # the grid's own polling of the welcome page is noise
    text = [line for line in text if "GET /?t=json" not in line]
    if len(text) > lines:
        text = ["... (%d lines cut)" % (len(text) - lines)] + text[-lines:]
    return "\n".join(text)


class Node:
    """One Tahoe node directory and the ``run`` child serving it."""

    def __init__(self, grid: "Grid", name: str, role: str, runner: Runner) -> None:
        self.grid = grid
        self.name = name
        self.role = role
        self.runner = runner
        self.basedir = grid.workdir / name
        self.webport = _i2pnet.free_port()
        self.output = grid.workdir / ("%s.out" % name)
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.started_at: Optional[float] = None

    def __repr__(self) -> str:
        return "<tahoe %s %s (%s)>" % (self.role, self.name, self.runner.name)

    @property
    def listening(self) -> bool:
        return self.role != "client"

    @property
    def twistd_log(self) -> Path:
        return self.basedir / "logs" / "twistd.log"

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d/" % (self.webport,)

    def create_command(self, introducer_furl: Optional[str]) -> list[str]:
        if self.role == "introducer":
            return STOCK.command("create-introducer", *self.grid.network.create_args(self.role), str(self.basedir))
        args = ["create-node", "--nickname=" + self.name]
        if introducer_furl:
            args.append("--introducer=" + introducer_furl)
        if self.role == "client":
            args += ["--listen=none", "--no-storage"]
        else:
            args += self.grid.network.create_args(self.role)
        args += ["--shares-needed=1", "--shares-happy=2", "--shares-total=2", str(self.basedir)]
        return STOCK.command(*args)

    def configure(self, extra: Mapping[str, Mapping[str, str]] = {}) -> None:
        """Rewrite tahoe.cfg for the grid: TCP off, IP hidden, the network's sections."""
        cfg_path = self.basedir / "tahoe.cfg"
        cfg = configparser.ConfigParser()
        cfg.read(cfg_path, encoding="utf-8")
        edits: dict[str, dict[str, str]] = {
            "node": {"reveal-IP-address": "false", "web.port": "tcp:%d:interface=127.0.0.1" % self.webport},
            "connections": {"tcp": "disabled"},
        }
        if self.role != "introducer":
            edits["client"] = {"shares.needed": "1", "shares.happy": "2", "shares.total": "2"}
        for section, keys in self.grid.network.sections(self.role, self.runner, self.listening).items():
            edits.setdefault(section, {}).update(keys)
        for section, more in extra.items():
            edits.setdefault(section, {}).update(more)
        for section, keys in edits.items():
            if not cfg.has_section(section):
                cfg.add_section(section)
            for key, value in keys.items():
                cfg.set(section, key, value)
        with open(cfg_path, "w", encoding="utf-8") as f:
            cfg.write(f)

    def start(self) -> None:
        with open(self.output, "ab") as out:
            # stdin is a pipe nobody writes to: `tahoe run` exits when it
            # closes, so a node outlives neither stop() nor a killed test run.
            self.process = subprocess.Popen(
                self.runner.command("run", str(self.basedir)),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(self.basedir),
                env=self.runner.environment(),
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the node's process group, SIGKILL after C{grace} seconds."""
        proc = self.process
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)

    def log_text(self) -> str:
        """Everything the node wrote: its output and twistd.log."""
        parts = []
        for path in (self.output, self.twistd_log):
            try:
                parts.append(path.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def logs(self) -> str:
        state = "not started"
        if self.process is not None:
            code = self.process.poll()
            state = "pid %d running" % self.process.pid if code is None else "exited %s" % code
        text = "---- %r, %s, in %s ----\n== output (create and run)\n%s" % (self, state, self.basedir, _tail(self.output))
        if self.twistd_log.exists():
            # `tahoe run` logs to its output; twistd.log exists only if twistd wrote one
            text += "\n== twistd.log\n" + _tail(self.twistd_log)
        return text

    def welcome(self, as_json: bool = True, timeout: float = 10.0) -> Any:
        """The node's welcome page (parsed C{?t=json}, or the HTML text)."""
        url = self.url + ("?t=json" if as_json else "")
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            body = reply.read().decode("utf-8")
        return json.loads(body) if as_json else body

    def welcome_text(self) -> str:
        """The welcome page as one line of text: connection statuses and their failures."""
        try:
            page = self.welcome(as_json=False)
        except (OSError, ValueError) as e:
            return "(welcome page unavailable: %s)" % (e,)
        text = re.sub(r"<[^>]+>", " ", page)
        return re.sub(r"\s+", " ", html.unescape(text)).strip()


# -- the grid ----------------------------------------------------------------


@dataclass
class Timings:
    """Seconds measured on one grid (from the start of the first ``run``)."""

    created: float = 0.0
    #: the client's Tub connected to the introducer (from the client's start)
    introducer: Optional[float] = None
    #: the client connected to its first / second storage server (from its start)
    first_server: Optional[float] = None
    formed: Optional[float] = None
    #: from the introducer's start to the client seeing both servers
    total: Optional[float] = None


class Grid:
    """
    An introducer, 2 storage nodes and a client.  C{runners} maps a role
    (C{introducer}, C{storage0}, C{storage1}, C{client}) to its L{Runner};
    missing roles use C{default}.  C{config} adds tahoe.cfg keys per role
    (or to every node under C{"*"}).
    """

    NAMES = ("introducer", "storage0", "storage1", "client")

    def __init__(
        self,
        workdir: Path,
        network: Network,
        default: Runner,
        runners: Mapping[str, Runner] = {},
        config: Mapping[str, Mapping[str, Mapping[str, str]]] = {},
    ) -> None:
        self.workdir = Path(workdir)
        self.network = network
        self.config = config
        self.nodes: dict[str, Node] = {}
        for name in self.NAMES:
            role = "storage" if name.startswith("storage") else name
            self.nodes[name] = Node(self, name, role, runners.get(name, default))
        self.timings = Timings()
        self.introducer_furl: Optional[str] = None

    def __repr__(self) -> str:
        return "<Grid over %s: %s>" % (
            self.network.name,
            ", ".join("%s=%s" % (n, node.runner.name) for n, node in self.nodes.items()),
        )

    @property
    def client(self) -> Node:
        return self.nodes["client"]

    @property
    def storage(self) -> list[Node]:
        return [self.nodes["storage0"], self.nodes["storage1"]]

    def logs(self) -> str:
        return "\n".join(node.logs() for node in self.nodes.values())

    def fail(self, what: str) -> GridError:
        return GridError("%r: %s\n%s" % (self, what, self.logs()))

    def _extra(self, name: str) -> dict[str, dict[str, str]]:
        extra: dict[str, dict[str, str]] = {}
        for key in ("*", self.nodes[name].role, name):
            for section, keys in self.config.get(key, {}).items():
                extra.setdefault(section, {}).update(keys)
        return extra

    def _create(self, nodes: Sequence[Node], timeout: float) -> None:
        """
        Run the stock ``tahoe create-*`` of C{nodes} at once.  A node whose
        create fails is created once more, from an empty directory, with
        the first attempt's output kept above the second's in its ``.out``
        file and printed: node creation is stock Tahoe for every runner
        (``foolscap-sidetls tahoe create-node`` has its own tests), and a
        ``--listen=tor`` create waits for txtorcon's first onion descriptor
        upload: on the private network that failed once in 72 creations
        (the grid tests' and ``benchmarks/tahoe_grid.py``'s runs of
        2026-12-03), and in none of 36 more made in a loop.  A second
        failure fails the grid.
        """
        failed = self._create_once(nodes, timeout)
        if failed:
            for node, code in failed:
                print(
                    "%r: creating %s exited %d; creating it once more. Its output:\n%s"
                    % (self, node.name, code, _tail(node.output)),
                    flush=True,
                )
                shutil.rmtree(node.basedir, ignore_errors=True)
            again = self._create_once([node for node, _ in failed], timeout)
            if again:
                node, code = again[0]
                raise self.fail("creating %s exited %d, twice" % (node.name, code))
        for node in nodes:
            node.configure(self._extra(node.name))

    def _create_once(self, nodes: Sequence[Node], timeout: float) -> list[tuple[Node, int]]:
        """Run the creates; the nodes whose create exited non-zero, with the code."""
        procs = []
        failed: list[tuple[Node, int]] = []
        for node in nodes:
            log = open(node.output, "ab")
            try:
                procs.append(
                    (
                        node,
                        subprocess.Popen(
                            node.create_command(self.introducer_furl),
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        ),
                    )
                )
            finally:
                log.close()
        deadline = time.monotonic() + timeout
        for node, proc in procs:
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for _, other in procs:
                    if other.poll() is None:
                        os.killpg(other.pid, signal.SIGKILL)
                        other.wait(10)
                raise self.fail("creating %s took more than %s s" % (node.name, timeout))
            if code != 0:
                failed.append((node, code))
        return failed

    def start(self, timeout: float = FORM_TIMEOUT) -> None:
        """Create and start every node; returns once the introducer's FURL exists."""
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        introducer = self.nodes["introducer"]
        self._create([introducer], timeout)
        introducer.start()
        furl_file = introducer.basedir / "private" / "introducer.furl"
        self._until(lambda: furl_file.exists() and furl_file.read_text().strip() != "", timeout, "the introducer to write its FURL")
        self.introducer_furl = furl_file.read_text().strip()
        others = [self.nodes[name] for name in self.NAMES[1:]]
        self._create(others, timeout)
        self.timings.created = time.monotonic() - began
        for node in others:
            node.start()

    def _until(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes.values():
                if node.process is not None and node.process.poll() is not None:
                    raise self.fail("%s exited with status %s while waiting for %s" % (node.name, node.process.returncode, what))
            try:
                result = check()
            except (OSError, ValueError):
                result = None
            if result:
                return result
            if time.monotonic() >= deadline:
                raise self.fail("timed out after %s s waiting for %s" % (timeout, what))
            time.sleep(_POLL)

    def servers(self) -> list[dict[str, Any]]:
        """The client's view of the storage servers (welcome page JSON)."""
        return list(self.client.welcome()["servers"])

    def connected(self) -> int:
        return sum(1 for s in self.servers() if s["connection_status"].lower().startswith("connected"))

    def wait_formed(self, servers: int = 2, timeout: float = FORM_TIMEOUT) -> Timings:
        """Block until the client is connected to C{servers} storage servers."""
        client = self.client
        assert client.started_at is not None, "wait_formed() before start()"
        first_started = self.nodes["introducer"].started_at
        assert first_started is not None
        deadline = time.monotonic() + timeout
        while True:
            state = self._until(lambda: client.welcome(), max(0.1, deadline - time.monotonic()), "the client's web page")
            now = time.monotonic() - client.started_at
            statuses = state["introducers"]["statuses"]
            if self.timings.introducer is None and any(s.lower().startswith("connected") for s in statuses):
                self.timings.introducer = now
            up = sum(1 for s in state["servers"] if s["connection_status"].lower().startswith("connected"))
            if up >= 1 and self.timings.first_server is None:
                self.timings.first_server = now
            if up >= servers:
                self.timings.formed = now
                self.timings.total = time.monotonic() - first_started
                return self.timings
            if time.monotonic() >= deadline:
                raise self.fail(
                    "the client saw %d of %d storage servers connected after %s s; introducers: %s; servers: %s;"
                    " its welcome page: %s"
                    % (
                        up,
                        servers,
                        timeout,
                        statuses,
                        [(s["nickname"], s["connection_status"]) for s in state["servers"]],
                        client.welcome_text(),
                    )
                )
            time.sleep(_POLL)

    def wait_for_status(self, node: Node, needle: str, timeout: float = FORM_TIMEOUT) -> str:
        """
        Block until C{node}'s welcome page (where Tahoe shows why each
        connection attempt failed) contains C{needle}; the page's text.
        """
        last = [""]

        def says() -> Optional[str]:
            last[0] = node.welcome_text()
            return last[0] if needle in last[0] else None

        try:
            return str(self._until(says, timeout, "%s's welcome page to say %r" % (node.name, needle)))
        except GridError as e:
            raise GridError("%s\n---- %s's welcome page last said:\n%s" % (e, node.name, last[0])) from None

    def tahoe(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run stock C{tahoe -d CLIENT ARGS}; its stdout, or L{GridError}."""
        try:
            done = subprocess.run(
                STOCK.command("-d", str(self.client.basedir), *args),
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise self.fail("tahoe %s took more than %s s" % (" ".join(args), timeout))
        if done.returncode != 0:
            raise self.fail(
                "tahoe %s exited %d:\n%s%s"
                % (" ".join(args), done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
            )
        return done.stdout.decode("utf-8", "replace")

    def put(self, path: Path) -> str:
        """Upload C{path}; its read cap."""
        return self.tahoe("put", str(path)).strip().splitlines()[-1].strip()

    def get(self, cap: str, path: Path) -> None:
        self.tahoe("get", cap, str(path))

    def check_verify(self, cap: str) -> str:
        return self.tahoe("check", "--verify", cap)

    def stop(self) -> None:
        """Stop every node (client first, introducer last); safe to call twice."""
        for name in reversed(self.NAMES):
            try:
                self.nodes[name].stop()
            except Exception:
                proc = self.nodes[name].process
                if proc is not None and proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except OSError:
                        pass

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def require_sidetls() -> None:
    """
    Skip (locally) or fail (under CI, which installs the C{[tahoe]} extra)
    when C{python -m foolscap_sidetls.tahoe} cannot run.
    """
    import pytest

    why = sidetls_unavailable()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("foolscap-sidetls tahoe unusable under CI: " + why, pytrace=False)
    pytest.skip(why)


def started(workdir: Path, network: Network, default: Runner, **kwargs: Any) -> Grid:
    """A L{Grid} created and started (stopped again if starting fails)."""
    grid = Grid(workdir, network, default, **kwargs)
    try:
        grid.start()
    except BaseException:
        grid.stop()
        raise
    return grid


def round_trip(grid: Grid, workdir: Path, size: int) -> tuple[bytes, bytes, str, float, float]:
    """
    Put C{size} random bytes through C{grid}'s client and get them back:
    (sent, received, read cap, put seconds, get seconds).
    """
    source = workdir / ("put-%d.bin" % size)
    target = workdir / ("got-%d.bin" % size)
    sent = random_file(source, size)
    began = time.monotonic()
    cap = grid.put(source)
    put_took = time.monotonic() - began
    began = time.monotonic()
    grid.get(cap, target)
    get_took = time.monotonic() - began
    return sent, target.read_bytes(), cap, put_took, get_took
