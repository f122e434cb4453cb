"""
The foolscap-sidetls command as a new user met it (issue 13): every test
goes through the real entry point, C{foolscap_sidetls._cli.main} -- in a
subprocess (the installed command, or C{main()} run by C{python -c}) where
Foolscap needs the real reactor, in this process on an in-memory reactor
where it does not.

  1. ping's remote outcomes (unknown swissnum, no such method, a remote
     exception) are plain sentences with exit status 1, not tracebacks;
  2. ping's per-hint diagnosis does not depend on whose timer gives up
     first, and ping says what it waits on while it waits;
  6. advice names the command's options and configuration keys, not the
     Python API;
  7. create-node makes a dial-only node with its own tor or i2pd;
 14. -v, --log-file, --version, and help for check's argument.

Everything listens and is dialed on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

from twisted.trial.unittest import SynchronousTestCase

import foolscap
import twisted
from foolscap_sidetls._cli import _errors, _ping, _service
from foolscap_sidetls._version import __version__

from ..i2p._fakes import FakeSAMBridge
from ._support import CommandReactor, Serving, free_port, main

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAM = os.path.join(os.path.dirname(sys.executable), "foolscap-sidetls")
#: Generous: a loaded 2-core machine runs several suites at once.
WAIT = 60.0
ONION = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
B32 = "ukeu3k5oycgaauneqgtnvselmt4yemvoilkln7jpvamvfx7dnkdq.b32.i2p"
TUBID = "a" * 32
SWISS = "b" * 32
DIAL_ONLY = "[node]\ntub.port = disabled\ntub.location = disabled\n"


def scratch(case: Any) -> str:
    path = tempfile.mkdtemp(prefix="sidetls-cli-field-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def run(*args: str, prelude: Optional[str] = None) -> subprocess.CompletedProcess:
    """
    The command in a subprocess: the installed script, or -- with a
    C{prelude} of Python run first (a shorter Foolscap timer, say) --
    C{main()} called by C{python -c}.
    """
    if prelude is None:
        argv = [PROGRAM]
    else:
        argv = [sys.executable, "-c", prelude + "\nfrom foolscap_sidetls._cli import main\nmain()"]
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=WAIT, cwd=PROJECT)


def write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Silent:
    """A loopback port that accepts connections (in the kernel) and never says a word."""

    def __init__(self, case: Any) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = int(self.socket.getsockname()[1])
        case.addCleanup(self.socket.close)


# -- 1. remote outcomes ---------------------------------------------------------------


def _serve_objects() -> None:
    """
    Run by the tests in a subprocess: one Tub on 127.0.0.1 with objects
    that are not ping services; prints "NAME FURL" lines, then serves until
    killed (or for WAIT seconds at most).
    """
    from twisted.internet import defer, task

    from foolscap.api import Referenceable, RemoteInterface
    from foolscap_sidetls import config

    class RIOther(RemoteInterface):
        __remote_name__ = "RIOther.tests.foolscap-sidetls"

        def hello() -> str:  # type: ignore[misc]
            return str  # type: ignore[return-value]

    from zope.interface import implementer

    class Plain(Referenceable):
        """Not a ping service: no whoami, no ping."""

        def remote_hello(self) -> str:
            return "hello"

    @implementer(RIOther)  # type: ignore[misc]
    class Typed(Referenceable):
        """Not a ping service either, and says so through its interface (as a Tahoe introducer does)."""

        def remote_hello(self) -> str:
            return "hello"

    class Raises(Referenceable):
        def remote_whoami(self, caller: Any) -> None:
            raise ValueError("the whoami of this object is broken")

    class PingRaises(_service.PingService):
        def remote_ping(self, data: bytes = b"") -> bytes:
            raise RuntimeError("no pings today")

    async def serve(reactor: Any) -> None:
        from foolscap.util import allocate_tcp_port

        port = allocate_tcp_port()
        node = config.from_string(
            "[node]\ntub.port = tcp:%d:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:%d\n" % (port, port),
            basedir=sys.argv[1],
        )
        tub = await config.create_tub(node, reactor)
        for name, thing in [("plain", Plain()), ("typed", Typed()), ("raises", Raises()),
                            ("ping-raises", PingRaises())]:
            print(name, tub.registerReference(thing), flush=True)
        print("unknown", "pb://%s@tcp:127.0.0.1:%d/%s" % (tub.getTubID(), port, "z" * 32), flush=True)
        await task.deferLater(reactor, WAIT, lambda: None)

    task.react(lambda reactor: defer.ensureDeferred(serve(reactor)))


class RemoteOutcomes(SynchronousTestCase):
    """Item 1: 'ping' at objects that are not ping services."""

    dir: str
    port: int
    server: subprocess.Popen
    furls: dict[str, str]

    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = tempfile.mkdtemp(prefix="sidetls-cli-field-")
        cls.server = subprocess.Popen(
            [sys.executable, "-c", "from tests.cli.test_cli_field import _serve_objects; _serve_objects()", cls.dir],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT,
        )
        cls.furls = {}
        assert cls.server.stdout is not None
        deadline = time.monotonic() + WAIT
        while len(cls.furls) < 5 and time.monotonic() < deadline:
            line = cls.server.stdout.readline()
            if not line:
                break
            name, furl = line.split()
            cls.furls[name] = furl
        cls.port = int(cls.furls["plain"].split("@tcp:127.0.0.1:")[1].split("/")[0]) if cls.furls else 0

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.kill()
        cls.server.communicate(timeout=WAIT)
        shutil.rmtree(cls.dir, True)

    def ping(self, name: str) -> tuple[int, list[str], str]:
        if len(self.furls) != 5:
            self.server.kill()
            self.fail("the object server did not start: %r" % (self.server.communicate(timeout=WAIT),))
        result = run("ping", self.furls[name], "--count", "2", "--interval", "0")
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        return result.returncode, result.stdout.splitlines(), result.stderr

    def assertConnected(self, lines: list[str]) -> None:
        hint = "tcp:127.0.0.1:%d" % (self.port,)
        self.assertEqual(lines[0], "pinging Tub %s at 1 hint (default handlers)" % (self.furls["plain"][5:37],))
        self.assertEqual(lines[1:3], ["  %s: connected; this hint won" % (hint,), "    via sidetls+tcp"])

    def test_unknown_swissnum(self) -> None:
        code, lines, err = self.ping("unknown")
        self.assertEqual(code, 1)
        self.assertConnected(lines)
        self.assertEqual(len(lines), 3)
        self.assertEqual(
            err,
            "foolscap-sidetls ping: connected to Tub %s, but it has no object with this FURL's name (swissnum): "
            "the FURL is mistyped or out of date, or the object is no longer registered there\n"
            % (self.furls["plain"][5:37],),
        )

    def test_object_without_the_method(self) -> None:
        code, lines, err = self.ping("plain")
        self.assertEqual(code, 1)
        self.assertConnected(lines)
        self.assertEqual(lines[4:], ["this end:  dialer, TLS client", "other end: unknown"])
        self.assertEqual(err, "foolscap-sidetls ping: connected, but the object at this FURL is not a "
                              "foolscap-sidetls ping service: it has no 'whoami' method\n")

    def test_object_with_an_interface_without_the_method(self) -> None:
        code, lines, err = self.ping("typed")
        self.assertEqual(code, 1)
        self.assertConnected(lines)
        self.assertEqual(lines[-1], "other end: unknown")
        self.assertEqual(err, "foolscap-sidetls ping: connected, but the object at this FURL is not a "
                              "foolscap-sidetls ping service: it has no 'whoami' method (its interface is "
                              "RIOther.tests.foolscap-sidetls)\n")

    def test_remote_exception(self) -> None:
        code, lines, err = self.ping("raises")
        self.assertEqual(code, 1)
        self.assertConnected(lines)
        self.assertEqual(lines[-1], "other end: unknown")
        self.assertEqual(err, "foolscap-sidetls ping: connected, but the 'whoami' call failed at the other end: "
                              "ValueError: the whoami of this object is broken\n")

    def test_remote_exception_in_a_ping(self) -> None:
        code, lines, err = self.ping("ping-raises")
        self.assertEqual(code, 1)
        self.assertConnected(lines)
        self.assertEqual(lines[-1], "other end: listener, TLS server (foolscap-sidetls %s)" % (__version__,))
        self.assertEqual(err, "foolscap-sidetls ping: call 1 failed at the other end: RuntimeError: no pings today\n")


# -- 2. timers and progress -----------------------------------------------------------


class GivingUp(SynchronousTestCase):
    """
    Item 2: a one-hint FURL whose tor never answers (a control port that
    accepts and stays silent): whichever timer gives up first, ping's, or
    Foolscap's own, the hint's line says what it was waiting for.
    """

    def setUp(self) -> None:
        self.dir = scratch(self)
        self.silent = Silent(self)
        self.config = write(os.path.join(self.dir, "node.cfg"),
                            DIAL_ONLY + "[tor]\ncontrol.port = tcp:127.0.0.1:%d\n" % (self.silent.port,))
        self.furl = "pb://%s@tor:%s:3457/%s" % (TUBID, ONION, SWISS)
        self.report = (
            "pinging Tub %s at 1 hint (handlers from %r)\n"
            "  tor:%s:3457: gave up while: connecting to tor control port 127.0.0.1:%d\n"
            "    via sidetls+tor (control port 127.0.0.1:%d)\n"
            % (TUBID, self.config, ONION, self.silent.port, self.silent.port)
        )

    def test_ping_gives_up_first(self) -> None:
        result = run("ping", self.furl, "--config", self.config, "--timeout", "3")
        self.assertEqual((result.returncode, result.stdout), (1, self.report))
        self.assertEqual(result.stderr, "foolscap-sidetls ping: could not connect: no connection within 3 s\n")

    def test_foolscap_gives_up_first(self) -> None:
        """Foolscap's 120 s timer, made 2 s, fires before ping's 5 s: same diagnosis."""
        result = run("ping", self.furl, "--config", self.config, "--timeout", "5",
                     prelude="from foolscap.connection import TubConnector\nTubConnector.CONNECTION_TIMEOUT = 2")
        self.assertEqual((result.returncode, result.stdout), (1, self.report))
        self.assertEqual(result.stderr, "foolscap-sidetls ping: could not connect: no connection within 2 s "
                                        "(Foolscap's own limit for a connection)\n")

    def test_progress_while_waiting(self) -> None:
        """Every STILL_WAITING seconds (made 1 s here), what is still under way; on stderr, the report stays clean."""
        result = run("ping", self.furl, "--config", self.config, "--timeout", "3.5",
                     prelude="import foolscap_sidetls._cli._output\nfoolscap_sidetls._cli._output.STILL_WAITING = 1.0")
        self.assertEqual((result.returncode, result.stdout), (1, self.report))
        lines = result.stderr.splitlines()
        step = "tor:%s:3457: connecting to tor control port 127.0.0.1:%d" % (ONION, self.silent.port)
        shown = [re.sub(r"^  \[ *(\d+\.\d) s\] ", "", line) for line in lines[:-1]]
        self.assertEqual(shown, [step, "... still " + step, "... still " + step])
        times = [float(re.match(r"^  \[ *(\d+\.\d) s\]", line).group(1)) for line in lines[:-1]]  # type: ignore
        for expected, seen in zip([1.0, 2.0, 3.0], times):
            self.assertTrue(expected <= seen < expected + 0.5, times)
        self.assertEqual(lines[-1], "foolscap-sidetls ping: could not connect: no connection within 3.5 s")

    def test_default_timeout_is_inside_foolscaps(self) -> None:
        code, out, err = main(["ping", "--help"])
        self.assertEqual((code, err), (0, ""))
        self.assertIn("give up connecting after this long (default: 90; at most 120, Foolscap's own limit)",
                      " ".join(out.split()))
        from foolscap.connection import TubConnector

        self.assertLess(_ping.DEFAULT_TIMEOUT, TubConnector.CONNECTION_TIMEOUT)


# -- 6. the command's words -----------------------------------------------------------


class CommandWords(SynchronousTestCase):
    """Item 6: advice names create-node's options and the configuration's keys."""

    def setUp(self) -> None:
        self.dir = scratch(self)

    def test_ping_with_a_config(self) -> None:
        refused = free_port()
        config = write(os.path.join(self.dir, "dial.cfg"), DIAL_ONLY + "[tor]\ncontrol.port = tcp:127.0.0.1:%d\n"
                       "[i2p]\nsam.port = tcp:127.0.0.1:%d\n" % (refused, refused))
        furl = "pb://%s@tor:%s:3457,i2p:%s:3457/%s" % (TUBID, ONION, B32, SWISS)
        result = run("ping", furl, "--config", config, "--timeout", "20")
        self.assertEqual(result.returncode, 1)
        lines = result.stdout.splitlines()
        self.assertEqual(len(lines), 5)
        self.assertTrue(lines[1].startswith("  tor:%s:3457: failed: could not connect to tor's control port at "
                                            "127.0.0.1:%d (connection refused). " % (ONION, refused)), lines[1])
        self.assertTrue(lines[1].endswith(", or set [tor] launch = true in %r to start a tor of its own"
                                          % (config,)), lines[1])
        self.assertTrue(lines[3].startswith("  i2p:%s:3457: failed: no SAM bridge answering at tcp:127.0.0.1:%d "
                                            "(connection refused). " % (B32, refused)), lines[3])
        self.assertTrue(lines[3].endswith(" Or set [i2p] launch = true (with no sam.port) in %r to start an i2pd "
                                          "of its own." % (config,)), lines[3])
        self.assertIn("set [", result.stderr)
        self.assertNotIn("foolscap_sidetls.", result.stdout + result.stderr)

    def test_ping_without_a_config(self) -> None:
        if answers(7656):
            self.skipTest("something answers at 127.0.0.1:7656, the default SAM port")
        result = run("ping", "pb://%s@i2p:%s:3457/%s" % (TUBID, B32, SWISS), "--timeout", "20")
        self.assertEqual(result.returncode, 1)
        advice = (" Or set [i2p] launch = true (with no sam.port) in a file passed with --config "
                  "(foolscap-sidetls create-node DIR --listen=none --i2p-launch writes one) to start an i2pd "
                  "of its own.")
        self.assertTrue(result.stdout.splitlines()[1].endswith(advice), result.stdout)
        self.assertTrue(result.stderr.endswith(advice + "\n"), result.stderr)
        self.assertNotIn("foolscap_sidetls.", result.stdout + result.stderr)

    def test_create_node(self) -> None:
        bridge = FakeSAMBridge()
        bridge.down = True
        code, out, err = main(["create-node", os.path.join(self.dir, "node"), "--listen=i2p"], CommandReactor(bridge))
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("foolscap-sidetls create-node: could not make an I2P destination key: "
                                       "no SAM bridge answering at tcp:127.0.0.1:7656 (connection refused). "), err)
        self.assertTrue(err.endswith(" Or pass --i2p-launch to start an i2pd of its own.\n"), err)
        self.assertNotIn("foolscap_sidetls.", err)

    def test_serve(self) -> None:
        node = os.path.join(self.dir, "node")
        code, out, err = main(["create-node", node, "--listen=i2p", "--i2p-sam-port=tcp:127.0.0.1:7656"],
                              CommandReactor(FakeSAMBridge()))
        self.assertEqual((code, err), (0, ""))
        path = os.path.join(node, "node.cfg")
        refused = free_port()
        with open(path) as f:
            text = f.read().replace("sam.port = tcp:127.0.0.1:7656", "sam.port = tcp:127.0.0.1:%d" % (refused,))
        write(path, text)
        result = run("serve", node)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertTrue(result.stderr.startswith(
            "foolscap-sidetls serve: %r [i2p] dest = 'true': could not listen on the I2P destination: no SAM "
            "bridge answering at tcp:127.0.0.1:%d (connection refused). " % (path, refused)), result.stderr)
        self.assertTrue(result.stderr.endswith(
            " Or set [i2p] launch = true (with no sam.port) in %r to start an i2pd of its own.\n" % (path,)),
            result.stderr)

    def test_translation_keeps_everything_else(self) -> None:
        api = "x. Or let foolscap_sidetls.i2p.launch() start an i2pd of its own. y"
        self.assertEqual(_errors.cli_words(api, None), "x. Or pass --i2p-launch to start an i2pd of its own. y")
        self.assertEqual(_errors.cli_words(api, "n.cfg"),
                         "x. Or set [i2p] launch = true (with no sam.port) in 'n.cfg' to start an i2pd of its own. y")
        self.assertEqual(_errors.cli_words("or pass tor_binary='/path/to/tor'", "n.cfg"),
                         "or set [tor] tor.executable = /path/to/tor in 'n.cfg'")
        self.assertEqual(_errors.cli_words("nothing to change", None), "nothing to change")


# -- 7. dial-only nodes ---------------------------------------------------------------


class DialOnly(SynchronousTestCase):
    """Item 7: create-node --listen=none with a tor or i2pd of its own, and what it says to do next."""

    def setUp(self) -> None:
        self.dir = scratch(self)
        self.node = os.path.join(self.dir, "node")
        self.path = os.path.join(self.node, "node.cfg")
        self.marker = os.path.join(self.dir, "tor-ran")
        self.tor = write(os.path.join(self.dir, "fake-tor"), "#!/bin/sh\ntouch %s\nexit 1\n" % (self.marker,))
        os.chmod(self.tor, stat.S_IRWXU)

    def create(self, *options: str, reactor: Optional[CommandReactor] = None) -> tuple[int, str, str]:
        return main(["create-node", self.node, "--listen=none", *options], reactor)

    def closing(self) -> str:
        return ("created %s\n  tub.port = disabled\n  tub.location = disabled\nthis node only dials, so there is "
                "nothing to serve; reach a FURL with its handlers: foolscap-sidetls ping --config %s FURL\n"
                % (self.path, self.path))

    def body(self) -> str:
        with open(self.path) as f:
            return f.read().split("\n\n", 1)[1]

    def test_listen_none_says_what_to_do(self) -> None:
        self.assertEqual(self.create(), (0, self.closing(), ""))

    def test_own_tor(self) -> None:
        reactor = CommandReactor()
        self.assertEqual(self.create("--tor-launch", "--tor-executable=" + self.tor, reactor=reactor),
                         (0, self.closing(), ""))
        self.assertEqual(self.body(), "[node]\ntub.port = disabled\ntub.location = disabled\n#timeout.keepalive =\n"
                                      "#timeout.disconnect =\n\n[tor]\nlaunch = true\ntor.executable = %s\n" % (self.tor,))
        self.assertEqual(reactor.tcpClients, [])
        code, out, err = main(["check", self.node])
        self.assertEqual((code, err), (0, ""))
        self.assertIn("  tor: hints -> sidetls+tor (a tor launched here (%s, data in %s))"
                      % (self.tor, os.path.join(self.node, "private", "tor-statedir")), out.splitlines())
        self.assertFalse(os.path.exists(self.marker))

        # ping with it launches that tor (this one exits at once: a failure, after it ran).
        result = run("ping", "--config", self.node, "pb://%s@tor:%s:3457/%s" % (TUBID, ONION, SWISS), "--timeout", "20")
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertTrue(os.path.exists(self.marker))
        self.assertTrue(result.stdout.splitlines()[1].startswith("  tor:%s:3457: failed: " % (ONION,)), result.stdout)

    def test_running_tor_and_i2p(self) -> None:
        reactor = CommandReactor()
        self.assertEqual(self.create("--tor-control-port=tcp:127.0.0.1:9051", "--i2p-sam-port=tcp:127.0.0.1:7656",
                                     "--i2cp-options=inbound.length=1", reactor=reactor),
                         (0, self.closing(), ""))
        self.assertEqual(self.body(), "[node]\ntub.port = disabled\ntub.location = disabled\n#timeout.keepalive =\n"
                                      "#timeout.disconnect =\n\n[tor]\ncontrol.port = tcp:127.0.0.1:9051\n\n"
                                      "[i2p]\nsam.port = tcp:127.0.0.1:7656\ni2cp.options = inbound.length=1\n")
        self.assertEqual(reactor.tcpClients, [])  # no destination key: nothing asked of a router

    def test_own_i2pd(self) -> None:
        i2pd = write(os.path.join(self.dir, "fake-i2pd"), "#!/bin/sh\nexit 1\n")
        os.chmod(i2pd, stat.S_IRWXU)
        self.assertEqual(self.create("--i2p-launch", "--i2p-executable=" + i2pd), (0, self.closing(), ""))
        self.assertEqual(self.body(), "[node]\ntub.port = disabled\ntub.location = disabled\n#timeout.keepalive =\n"
                                      "#timeout.disconnect =\n\n[i2p]\nlaunch = true\ni2p.executable = %s\n" % (i2pd,))

    def test_hide_ip_with_own_tor(self) -> None:
        self.assertEqual(self.create("--hide-ip", "--tor-launch", "--tor-executable=" + self.tor),
                         (0, self.closing(), ""))
        self.assertEqual(self.body(), "[node]\ntub.port = disabled\ntub.location = disabled\nreveal-IP-address = false\n"
                                      "#timeout.keepalive =\n#timeout.disconnect =\n\n[connections]\ntcp = tor\n\n"
                                      "[tor]\nlaunch = true\ntor.executable = %s\n" % (self.tor,))


# -- 14. logging, version, help -------------------------------------------------------


class Logging(SynchronousTestCase):
    """Item 14: -v and --log-file on serve and ping, --version, check's help."""

    def setUp(self) -> None:
        self.dir = scratch(self)
        self.port = free_port()
        self.hint = "tcp:127.0.0.1:%d" % (self.port,)
        self.furl = "pb://%s@%s/%s" % (TUBID, self.hint, SWISS)
        self.report = ("pinging Tub %s at 1 hint (default handlers)\n  %s: refused: nothing accepts connections "
                       "there\n    via sidetls+tcp\n" % (TUBID, self.hint))
        self.refused = "foolscap-sidetls ping: could not connect: Connection was refused by other side: 111: " \
                       "Connection refused.\n"

    def read(self, path: str) -> list[str]:
        with open(path) as f:
            return f.read().splitlines()

    def test_ping_log_file(self) -> None:
        """Twisted's log in the file; Foolscap's only with -v; stdout and stderr as without a log."""
        quiet, verbose = os.path.join(self.dir, "quiet.log"), os.path.join(self.dir, "verbose.log")
        write(quiet, "kept\n")
        result = run("ping", self.furl, "--log-file", quiet)
        self.assertEqual((result.returncode, result.stdout, result.stderr), (1, self.report, self.refused))
        lines = self.read(quiet)
        self.assertEqual(lines[0], "kept")  # appended to
        self.assertRegex(lines[-1], r"^\S+ \[twisted\.internet\.base#info\] Main loop terminated\.$")
        self.assertEqual([line for line in lines if "connection refused for" in line], [])

        result = run("ping", self.furl, "-v", "--log-file", verbose)
        self.assertEqual((result.returncode, result.stdout, result.stderr), (1, self.report, self.refused))
        foolscaps = [line for line in self.read(verbose) if "connection refused for" in line]
        self.assertEqual(len(foolscaps), 1, self.read(verbose))
        self.assertRegex(foolscaps[0], r"^\S+ \[-\] connection refused for %s$" % (re.escape(self.hint),))

    def test_ping_verbose_to_stderr(self) -> None:
        result = run("ping", self.furl, "--verbose")
        self.assertEqual((result.returncode, result.stdout), (1, self.report))
        lines = result.stderr.splitlines()
        self.assertIn(self.refused.rstrip("\n"), lines)
        self.assertEqual(len([line for line in lines if re.match(r"^\S+ \[-\] connection refused for %s$"
                                                                 % (re.escape(self.hint),), line)]), 1)

    def test_serve_log_file(self) -> None:
        node = os.path.join(self.dir, "node")
        code, out, err = main(["create-node", node, "--hostname=127.0.0.1"])
        self.assertEqual((code, err), (0, ""))
        log = os.path.join(self.dir, "serve.log")
        serving = Serving(self, node, "-v", "--log-file", log)
        furl = serving.furl()
        self.assertEqual(run("ping", furl, "--count", "1").returncode, 0)
        code, rest, err = serving.stop()
        self.assertEqual((code, err), (0, ""))
        lines = self.read(log)
        self.assertEqual(len([line for line in lines if re.match(r"^\S+ \[foolscap\.pb\.Listener#info\] Starting "
                                                                 r"factory <Listener ", line)]), 1)
        self.assertEqual(len([line for line in lines if line.endswith(" [-] Negotiation started")]), 1)

    def test_bad_log_file(self) -> None:
        path = os.path.join(self.dir, "missing", "ping.log")
        self.assertEqual(
            main(["ping", self.furl, "--log-file", path]),
            (2, "", "foolscap-sidetls ping: error: --log-file=%s: cannot open it for appending (No such file or "
                    "directory); expected the path of a file in an existing, writable directory\n" % (path,)),
        )

    def test_version(self) -> None:
        import platform

        self.assertEqual(main(["--version"]), (0, "foolscap-sidetls %s (Foolscap %s, Twisted %s, Python %s)\n"
                                               % (__version__, foolscap.__version__, twisted.__version__,
                                                  platform.python_version()), ""))

    def test_help(self) -> None:
        code, out, err = main(["check", "--help"])
        self.assertEqual((code, err), (0, ""))
        self.assertIn("CONFIG a configuration file (node.cfg, or a Tahoe-LAFS tahoe.cfg), or a node directory "
                      "holding one", " ".join(out.split()))
        for command in ("serve", "ping"):
            code, out, err = main([command, "--help"])
            self.assertEqual((code, err), (0, ""))
            words = " ".join(out.split())
            self.assertIn("-v, --verbose log in detail, Foolscap's own log included (to stderr, or to --log-file)",
                          words)
            self.assertIn("--log-file PATH append Twisted's log", words)
