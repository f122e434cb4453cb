"""
The foolscap-sidetls command: the real program in subprocesses for what a
user runs (create-node, serve, ping over loopback TCP; exit statuses;
nothing left behind by an invalid file), and its pieces in-process for
option checking and for create-node against an in-memory SAM bridge.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import socket
import subprocess
from typing import Any, Optional

from twisted.internet import error
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from foolscap_sidetls import _onion, config, i2p
from foolscap_sidetls._version import __version__
from foolscap_sidetls._cli import _create, _nodefile, _output, _ping

from ..i2p._fakes import FakeSAMBridge
from ._support import PROGRAM, WAIT, CommandReactor, Serving, free_port, listing, main, program, scratch


class Program(SynchronousTestCase):
    """The installed command, as a user runs it."""

    def setUp(self) -> None:
        self.dir = scratch(self)

    def test_create_node_serve_ping_over_tcp(self) -> None:
        node = os.path.join(self.dir, "node")
        created = program("create-node", node, "--listen=tcp", "--hostname=127.0.0.1")
        self.assertEqual(created.returncode, 0, created.stderr)
        path = os.path.join(node, "node.cfg")
        self.assertIn("created %s\n" % (path,), created.stdout)

        serving = Serving(self, node)
        furl = serving.furl()
        self.assertEqual(serving.lines[0], "foolscap-sidetls %s serving %r (pid %d)"
                         % (__version__, path, serving.process.pid))
        self.assertRegex(furl, r"^pb://[a-z2-7]{32}@tcp:127\.0\.0\.1:\d+/[a-z2-7]{32}$")
        hint = furl.split("@")[1].split("/")[0]

        pinged = program("ping", furl, "--count", "2", "--interval", "0")
        self.assertEqual(pinged.returncode, 0, pinged.stdout + pinged.stderr)
        lines = pinged.stdout.splitlines()
        self.assertEqual(lines[0], "pinging Tub %s at 1 hint (default handlers)" % (furl[5:37],))
        self.assertEqual(lines[1:3], ["  %s: connected; this hint won" % (hint,), "    via sidetls+tcp"])
        self.assertRegex(lines[3], r"^connected in \d+\.\d\d s through %s$" % (hint,))
        self.assertEqual(lines[4], "this end:  dialer, TLS client")
        self.assertEqual(lines[5], "other end: listener, TLS server (foolscap-sidetls %s)" % (__version__,))
        self.assertRegex(lines[6], r"^ping 1: \d+\.\d\d ms$")
        self.assertRegex(lines[7], r"^ping 2: \d+\.\d\d ms$")
        self.assertRegex(lines[8], r"^2 of 2 calls answered; round trip min/avg/max = [\d.]+/[\d.]+/[\d.]+ ms$")
        self.assertEqual(len(lines), 9)
        self.assertEqual(pinged.stderr, "")

        # with the node's own configuration too
        again = program("ping", furl, "--config", path, "--count", "1")
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertIn("(handlers from %r)" % (path,), again.stdout)

        code, rest, err = serving.stop()
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(rest.splitlines()[-3:-2], ["ready after %s; try 'foolscap-sidetls ping %s'; Ctrl-C stops"
                                                     % (rest.split("ready after ")[1].split(";")[0], furl)])
        self.assertEqual(rest.splitlines()[-2:], ["stopping...", "stopped"])

        # The same FURL on the next start: same identity, same name.
        serving = Serving(self, node)
        self.assertEqual(serving.furl(), furl)
        self.assertEqual(serving.stop()[0], 0)

    def test_ping_refused(self) -> None:
        port = free_port()
        furl = "pb://%s@tcp:127.0.0.1:%d/%s" % ("a" * 32, port, "b" * 32)
        # the limits are allowed: 120 s, one call, no pause
        pinged = program("ping", furl, "--timeout", "120", "--count", "1", "--interval", "0")
        self.assertEqual(pinged.returncode, 1)
        self.assertEqual(
            pinged.stdout,
            "pinging Tub %s at 1 hint (default handlers)\n"
            "  tcp:127.0.0.1:%d: refused: nothing accepts connections there\n    via sidetls+tcp\n"
            % ("a" * 32, port),
        )
        self.assertEqual(pinged.stderr, "foolscap-sidetls ping: could not connect: Connection was refused by "
                         "other side: 111: Connection refused.\n")

    def test_usage_errors_exit_2(self) -> None:
        for args, message in [
            (("ping", "http://example.org/"),
             "foolscap-sidetls ping: error: 'http://example.org/' is not a FURL (unknown FURL prefix in "
             "'http://example.org/'); expected pb://TUBID@HINTS/NAME\n"),
            (("frobnicate",), None),
            (("ping",), None),
        ]:
            result = program(*args)
            self.assertEqual(result.returncode, 2, (args, result.stderr))
            self.assertEqual(result.stdout, "")
            if message is not None:
                self.assertEqual(result.stderr, message)
            else:
                self.assertTrue(result.stderr.startswith("usage: foolscap-sidetls"), result.stderr)

    def test_check_as_module(self) -> None:
        path = os.path.join(self.dir, "node.cfg")
        with open(path, "w") as f:
            f.write("[node]\ntub.port = disabled\ntub.location = disabled\n[connections]\ntcp = toor\n")
        result = program("check", path, module=True)
        self.assertEqual((result.returncode, result.stdout), (2, ""))
        self.assertEqual(
            result.stderr,
            "foolscap-sidetls check: error: %r [connections] tcp = 'toor': unknown handler; expected one of "
            "tcp, tor, i2p, disabled\n" % (path,),
        )
        with open(path, "w") as f:
            f.write("[node]\ntub.port = disabled\ntub.location = disabled\n")
        result = program("check", self.dir, module=True)  # a directory means its node.cfg
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(result.stdout.splitlines()[0], "%r is valid." % (path,))

    def test_invalid_config_leaves_nothing_behind(self) -> None:
        """
        A file that would launch tor (a stand-in, found where the file
        says, that leaves a mark if it ever runs), publish an onion and
        listen, but whose last-read value is bad: checking is not lazy.
        """
        marker = os.path.join(self.dir, "tor-ran")
        tor = os.path.join(self.dir, "fake-tor")
        with open(tor, "w") as f:
            f.write("#!/bin/sh\ntouch %s\nexit 1\n" % (marker,))
        os.chmod(tor, 0o755)
        key, onion = _onion.new_key()
        os.makedirs(os.path.join(self.dir, "private"))
        with open(os.path.join(self.dir, "private", "tor.key"), "w") as f:
            f.write(key)
        path = os.path.join(self.dir, "node.cfg")
        with open(path, "w") as f:
            f.write(
                "[node]\ntub.port = tcp:%d:interface=127.0.0.1,listen:tor\ntub.location = tor:%s:3457,tor:x\n"
                "[tor]\nlaunch = true\ntor.executable = ./fake-tor\nonion = true\nonion.local_port = %d\n"
                "onion.external_port = 3457\nonion.private_key_file = private/tor.key\n"
                "[connections]\ntcp = tor\n" % (free_port(), onion, free_port())
            )
        # Valid but for the last hint: the stand-in is what would be launched.
        with open(path) as f:
            valid = f.read().replace(",tor:x", "")
        self.assertEqual(config.from_string(valid, basedir=self.dir)._tor.executable, tor)
        before = listing(self.dir)
        result = program("serve", path)
        self.assertEqual((result.returncode, result.stdout), (2, ""))
        self.assertEqual(
            result.stderr,
            "foolscap-sidetls serve: error: %r [node] tub.location = 'tor:%s:3457,tor:x': 'tor:x' is not a "
            "tor:HOST:PORT hint; expected hints such as tcp:example.net:3457, tor:ADDRESS.onion:3457, "
            "i2p:ADDRESS.b32.i2p, or AUTO\n" % (path, onion),
        )
        self.assertEqual(listing(self.dir), before)
        self.assertFalse(os.path.exists(marker))

    def test_ping_ignores_the_current_directory(self) -> None:
        """Without --config ping only dials: a client.port (or anything) here is not read."""
        with open(os.path.join(self.dir, "client.port"), "w") as f:
            f.write("garbage\n")
        port = free_port()
        furl = "pb://%s@tcp:127.0.0.1:%d/%s" % ("a" * 32, port, "b" * 32)
        before = listing(self.dir)
        pinged = subprocess.run([PROGRAM, "ping", furl, "--timeout", "20"], capture_output=True, text=True,
                                timeout=WAIT, cwd=self.dir)
        self.assertEqual(pinged.returncode, 1, pinged.stderr)
        self.assertEqual(
            pinged.stdout,
            "pinging Tub %s at 1 hint (default handlers)\n"
            "  tcp:127.0.0.1:%d: refused: nothing accepts connections there\n    via sidetls+tcp\n"
            % ("a" * 32, port),
        )
        self.assertEqual(listing(self.dir), before)

    def test_serve_port_in_use(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            path = os.path.join(self.dir, "node.cfg")
            with open(path, "w") as f:
                f.write("[node]\ntub.port = tcp:%d:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:%d\n" % (port, port))
            result = program("serve", path)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr,
            "foolscap-sidetls serve: %r [node] tub.port: could not listen on 'tcp:%d:interface=127.0.0.1' "
            "(Couldn't listen on 127.0.0.1:%d: [Errno 98] Address already in use.)\n" % (path, port, port),
        )

    def test_serve_needs_a_listener(self) -> None:
        path = os.path.join(self.dir, "node.cfg")
        with open(path, "w") as f:
            f.write("[node]\ntub.port = disabled\ntub.location = disabled\n")
        result = program("serve", path)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr,
            "foolscap-sidetls serve: error: %r [node] tub.port = 'disabled': this Tub only dials, so there is "
            "nothing to serve; set tub.port and tub.location (or use 'create-node')\n" % (path,),
        )


# -- in-process -----------------------------------------------------------------------


class Help(SynchronousTestCase):
    def test_every_command_has_help(self) -> None:
        for command, first in [
            ([], "usage: foolscap-sidetls [-h] [--version] COMMAND ..."),
            (["check"], "usage: foolscap-sidetls check [-h] CONFIG"),
            (["create-node"], "usage: foolscap-sidetls create-node [-h] [--listen tcp|tor|i2p|none]"),
            (["serve"], "usage: foolscap-sidetls serve [-h] CONFIG"),
            (["ping"], "usage: foolscap-sidetls ping [-h] [--config CONFIG] [--count N]"),
        ]:
            code, out, err = main(command + ["--help"])
            self.assertEqual((code, err), (0, ""))
            self.assertTrue(out.startswith(first), out)

    def test_usage_errors_before_the_reactor_runs(self) -> None:
        reactor = CommandReactor()
        code, out, err = main(["ping"], reactor)
        self.assertEqual((code, out), (2, ""))
        self.assertTrue(err.startswith("usage: foolscap-sidetls ping"), err)
        self.assertTrue(err.endswith("foolscap-sidetls ping: error: the following arguments are required: FURL\n"), err)
        self.assertFalse(reactor.hasRun)


class CreateNode(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = scratch(self)
        self.node = os.path.join(self.dir, "node")

    def create(self, *options: str, reactor: Optional[CommandReactor] = None) -> tuple[int, str, str]:
        return main(["create-node", self.node, *options], reactor)

    def check(self) -> list[str]:
        code, out, err = main(["check", self.node])
        self.assertEqual((code, err), (0, ""))
        return out.splitlines()

    def read(self) -> str:
        with open(os.path.join(self.node, "node.cfg")) as f:
            return f.read()

    def assertRefused(self, options: list[str], message: str, reactor: Optional[CommandReactor] = None) -> None:
        """Exit status 2, exactly this on stderr, and nothing made."""
        self.assertEqual(self.create(*options, reactor=reactor),
                         (2, "", "foolscap-sidetls create-node: error: %s\n" % (message,)), options)
        self.assertEqual(os.listdir(self.dir), [])

    def test_option_errors(self) -> None:
        for options, message in [
            ([], "--listen=tcp needs --hostname=NAME (what other machines call this one), or --port=ENDPOINT "
                 "and --location=HINTS"),
            (["--listen=udp"], "--listen=udp: unknown listener 'udp'; expected tcp, tor, i2p (comma-separated) "
                               "or none"),
            (["--listen=none,tcp"], "--listen=none cannot be combined with other listeners"),
            (["--hostname=a", "--hide-ip"], "--hide-ip cannot be used with --listen=tcp (a tcp: hint reveals "
                                            "this machine's address); try --listen=tor"),
            (["--port=tcp:3457"], "--port and --location go together (--port says where to listen, --location "
                                  "what to announce)"),
            (["--hostname=a", "--port=tcp:1", "--location=tcp:a:1"],
             "--hostname cannot be used with --port/--location (they say where, explicitly)"),
            (["--listen=tor", "--hostname=a"], "--hostname, --port and --location are for --listen=tcp"),
            (["--listen=tor", "--tor-launch", "--tor-control-port=tcp:127.0.0.1:9051"],
             "use either --tor-launch or --tor-control-port, not both"),
            (["--listen=i2p", "--i2p-launch", "--i2p-sam-port=tcp:127.0.0.1:7656"],
             "use either --i2p-launch or --i2p-sam-port, not both"),
            (["--hostname=a", "--tor-launch"], "--tor-* options need --listen=tor or --hide-ip"),
            (["--hostname=a", "--i2cp-options=inbound.length=1"], "--i2p-* options need --listen=i2p"),
            (["--listen=tor", "--tor-executable=tor"], "--tor-executable needs --tor-launch"),
        ]:
            self.assertRefused(options, message)

    def test_values_checked_as_check_would(self) -> None:
        """Each value is checked by the config module's rules before anything is made or asked."""
        endpoints = ("expected descriptions such as tcp:3457 or tcp:3457:interface=127.0.0.1, listen:tor, "
                     "listen:i2p")
        hints = ("expected hints such as tcp:example.net:3457, tor:ADDRESS.onion:3457, i2p:ADDRESS.b32.i2p, "
                 "or AUTO")
        for options, message in [
            (["--port=tcp:notaport", "--location=tcp:x:1"],
             "--port=tcp:notaport: 'tcp:notaport' is not a server endpoint description (its port 'notaport' is "
             "not a number); " + endpoints),
            (["--port=tcp:0", "--location=tcp:x:1"],
             "--port=tcp:0: 'tcp:0' listens on port 0, which is not allowed: you must choose (the announced "
             "location must stay valid); expected a fixed port such as tcp:3457"),
            (["--port=tcp:port=0:interface=127.0.0.1", "--location=tcp:127.0.0.1:1"],
             "--port=tcp:port=0:interface=127.0.0.1: 'tcp:port=0:interface=127.0.0.1' listens on port 0, which "
             "is not allowed: you must choose (the announced location must stay valid); expected a fixed port "
             "such as tcp:3457"),
            (["--port=tcp:3457", "--location=tcp:example.net:http"],
             "--location=tcp:example.net:http: 'tcp:example.net:http' is not a tcp:HOST:PORT hint; " + hints),
            (["--port=tcp:3457", "--location=tcp:a:1,"],
             "--location=tcp:a:1,: has an empty entry; expected hints separated by commas"),
            (["--port=tcp:3457", "--location=tcp:a:1\n[tor]\nlaunch = true"],
             "--location='tcp:a:1\\n[tor]\\nlaunch = true': has a line break; expected a value on one line"),
            (["--hostname=::1"],
             "--hostname=::1: an IPv6 address, but create-node listens on IPv4 (tcp:PORT); expected a DNS name "
             "or an IPv4 address, or --port=tcp6:PORT with --location=tcp:[ADDRESS]:PORT"),
            (["--hostname=node_1.example.net"],
             "--hostname=node_1.example.net: not a name a tcp: hint can carry; expected a DNS name (letters, "
             "digits, '-' and '.') or an IPv4 address"),
            (["--hostname=a,b"],
             "--hostname=a,b: not a name a tcp: hint can carry; expected a DNS name (letters, digits, '-' and "
             "'.') or an IPv4 address"),
            (["--listen=tor", "--tor-control-port=tcp:127.0.0.1:x"],
             "--tor-control-port=tcp:127.0.0.1:x: not a client endpoint description (its port 'x' is not a "
             "number); expected one such as 'tcp:127.0.0.1:9051'"),
            (["--listen=tor", "--tor-launch", "--tor-executable=/nonexistent/tor"],
             "--tor-executable=/nonexistent/tor: /nonexistent/tor is not an executable file; expected the path "
             "of a tor executable (relative paths start at %s)" % (os.getcwd(),)),
            (["--listen=i2p", "--i2p-sam-port=unix"],
             "--i2p-sam-port=unix: not a client endpoint description (it has no path); expected one such as "
             "'tcp:127.0.0.1:7656'"),
        ]:
            self.assertRefused(options, message)

    def test_bad_i2cp_options_ask_nothing_of_the_router(self) -> None:
        bridge = FakeSAMBridge()
        reactor = CommandReactor(bridge)
        self.assertRefused(
            ["--listen=i2p", "--i2p-sam-port=tcp:127.0.0.1:7656", "--i2cp-options=inbound.length"],
            "--i2cp-options=inbound.length: 'inbound.length' is not NAME=VALUE; expected NAME=VALUE pairs "
            "separated by commas, e.g. inbound.length=1, outbound.length=1",
            reactor,
        )
        self.assertEqual((reactor.tcpClients, bridge.commands), ([], []))

    def test_launch_without_the_daemon(self) -> None:
        from foolscap_sidetls import tor

        self.patch(os, "environ", dict(os.environ, PATH=os.path.join(self.dir, "empty")))
        self.patch(tor, "TOR_SEARCH_DIRS", (os.path.join(self.dir, "nothing"),))
        self.patch(i2p, "I2PD_SEARCH_DIRS", (os.path.join(self.dir, "nothing"),))
        self.assertRefused(
            ["--listen=tor", "--tor-launch"],
            "--tor-launch: no tor executable found on PATH or in %s; expected tor installed (apt-get install "
            "tor) or --tor-executable set to its path" % (os.path.join(self.dir, "nothing"),),
        )
        self.assertRefused(
            ["--listen=i2p", "--i2p-launch"],
            "--i2p-launch: no i2pd executable found on PATH or in %s; expected i2pd installed (apt-get install "
            "i2pd) or --i2p-executable set to its path" % (os.path.join(self.dir, "nothing"),),
        )

    def test_directory_must_be_new(self) -> None:
        os.makedirs(os.path.join(self.node, "something"))
        code, out, err = self.create("--hostname=127.0.0.1")
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, "foolscap-sidetls create-node: error: %s exists and is not an empty directory; to "
                              "avoid clobbering anything, create-node wants a new one\n" % (self.node,))
        self.assertEqual(os.listdir(self.node), ["something"])

    def test_tcp(self) -> None:
        code, out, err = self.create("--port=tcp:4000:interface=127.0.0.1", "--location=tcp:127.0.0.1:4000,AUTO")
        self.assertEqual((code, err), (0, ""))
        path = os.path.join(self.node, "node.cfg")
        self.assertEqual(
            self.read(),
            "# -*- mode: conf; coding: utf-8 -*-\n"
            "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
            "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check %s'.\n\n"
            "[node]\ntub.port = tcp:4000:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:4000,AUTO\n"
            "#timeout.keepalive =\n#timeout.disconnect =\n" % (path,),
        )
        self.assertEqual(
            out,
            "created %s\n  tub.port = tcp:4000:interface=127.0.0.1\n  tub.location = tcp:127.0.0.1:4000,AUTO\n"
            "serve it with: foolscap-sidetls serve %s\n" % (path, path),
        )
        self.assertEqual(stat_mode(os.path.join(self.node, "private")), 0o700)
        lines = self.check()
        self.assertIn("  tcp:4000:interface=127.0.0.1 (role-based: each connection is the TLS server)", lines)
        self.assertIn("  tcp:127.0.0.1:4000", lines)

    def test_hostname(self) -> None:
        for hostname, port in [("127.0.0.1", r"tcp:(\d+):interface=127\.0\.0\.1"),
                               ("localhost", r"tcp:(\d+):interface=127\.0\.0\.1"),
                               ("node.example.net", r"tcp:(\d+)")]:
            code, out, err = self.create("--hostname=" + hostname)
            self.assertEqual((code, err), (0, ""))
            found = re.search(r"\ntub\.port = %s\ntub\.location = tcp:%s:(\d+)\n" % (port, re.escape(hostname)),
                              self.read())
            assert found is not None, self.read()
            self.assertEqual(found.group(1), found.group(2))
            shutil.rmtree(self.node)

    def test_tor(self) -> None:
        code, out, err = self.create("--listen=tor", "--hide-ip", "--tor-control-port=tcp:127.0.0.1:9051")
        self.assertEqual((code, err), (0, ""))
        text = self.read()
        local = int(text.split("onion.local_port = ")[1].split("\n")[0])
        keyfile = os.path.join(self.node, "private", "tor_onion.privkey")
        with open(keyfile) as f:
            onion = _onion.address_of_key(f.read().strip())
        self.assertEqual(stat_mode(keyfile), 0o600)
        self.assertIn(
            "[node]\ntub.port = tcp:%d:interface=127.0.0.1\ntub.location = tor:%s:3457\n"
            "reveal-IP-address = false\n#timeout.keepalive =\n#timeout.disconnect =\n\n"
            "[connections]\ntcp = tor\n\n"
            "[tor]\ncontrol.port = tcp:127.0.0.1:9051\nonion = true\nonion.local_port = %d\n"
            "onion.external_port = 3457\nonion.private_key_file = private/tor_onion.privkey\n" % (local, onion, local),
            text,
        )
        self.assertEqual(out.splitlines()[0], "made the onion service key: %s" % (onion,))
        lines = self.check()
        self.assertIn("  tcp: hints -> sidetls+tor (control port tcp:127.0.0.1:9051)", lines)
        self.assertIn("  tor:%s:3457" % (onion,), lines)
        self.assertNotIn("warning", " ".join(lines))

    def test_tor_launch_executable_written_absolute(self) -> None:
        """The file resolves relative paths from the node directory; the option meant the current one."""
        os.makedirs(os.path.join(self.dir, "bin"))
        tor = os.path.join(self.dir, "bin", "tor")
        with open(tor, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(tor, 0o755)
        old = os.getcwd()
        os.chdir(self.dir)
        self.addCleanup(os.chdir, old)
        code, out, err = self.create("--listen=tor", "--tor-launch", "--tor-executable=bin/tor")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("[tor]\nlaunch = true\ntor.executable = %s\nonion = true\n" % (tor,), self.read())
        self.assertIn(
            "  tor: hints -> sidetls+tor (a tor launched here (%s, data in %s))"
            % (tor, os.path.join(self.node, "private", "tor-statedir")),
            self.check(),
        )

    def test_i2p_asks_the_sam_bridge_for_a_key(self) -> None:
        bridge = FakeSAMBridge()
        code, out, err = self.create(
            "--listen=i2p", "--i2p-sam-port=tcp:127.0.0.1:7656", "--i2cp-options=inbound.length=0,outbound.length=0",
            reactor=CommandReactor(bridge),
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(bridge.verbs(), ["HELLO VERSION", "DEST GENERATE"])
        self.assertEqual(bridge.open_sockets(), [])
        keyfile = os.path.join(self.node, "private", "i2p_dest.privkey")
        address = i2p.address_of(keyfile)
        self.assertEqual(stat_mode(keyfile), 0o600)
        self.assertEqual(
            out.splitlines()[:2],
            ["connecting to the I2P router's SAM bridge at tcp:127.0.0.1:7656 (to make the destination key)...",
             "made the I2P destination key: %s" % (address,)],
        )
        self.assertIn(
            "[node]\ntub.port = listen:i2p\ntub.location = i2p:%s:3457\n" % (address,), self.read()
        )
        self.assertIn(
            "[i2p]\nsam.port = tcp:127.0.0.1:7656\ni2cp.options = inbound.length=0,outbound.length=0\n"
            "dest = true\ndest.port = 3457\ndest.private_key_file = private/i2p_dest.privkey\n",
            self.read(),
        )
        lines = self.check()
        self.assertIn("  I2P destination %s:3457 (key %s; through SAM at tcp:127.0.0.1:7656, options "
                      "inbound.length=0, outbound.length=0)" % (address, keyfile), lines)
        self.assertIn("  i2p:%s:3457" % (address,), lines)
        self.assertRegex(address, r"^[a-z2-7]{52}\.b32\.i2p$")

    def test_i2p_bridge_down_leaves_nothing(self) -> None:
        bridge = FakeSAMBridge()
        bridge.down = True
        code, out, err = self.create("--listen=i2p", reactor=CommandReactor(bridge))
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith(
            "foolscap-sidetls create-node: could not make an I2P destination key: no SAM bridge answering at "
            "tcp:127.0.0.1:7656 (connection refused)."
        ), err)
        self.assertEqual(os.listdir(self.dir), [])

    def test_listen_none(self) -> None:
        code, out, err = self.create("--listen=none")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("[node]\ntub.port = disabled\ntub.location = disabled\n", self.read())
        self.assertIn("  none (tub.location = disabled): this Tub only dials", self.check())


class PingOptions(SynchronousTestCase):
    """ping's numbers are checked before anything is dialed."""

    def test_refused(self) -> None:
        furl = "pb://%s@tcp:127.0.0.1:1/%s" % ("a" * 32, "b" * 32)
        for options, message in [
            (["--timeout=0"], "--timeout=0: expected a number of seconds more than 0 and at most 120 (Foolscap's "
                              "own limit for a connection)"),
            (["--timeout=-5"], "--timeout=-5: expected a number of seconds more than 0 and at most 120 "
                               "(Foolscap's own limit for a connection)"),
            (["--timeout=120.5"], "--timeout=120.5: expected a number of seconds more than 0 and at most 120 "
                                  "(Foolscap's own limit for a connection)"),
            (["--timeout=nan"], "--timeout=nan: expected a number of seconds more than 0 and at most 120 "
                                "(Foolscap's own limit for a connection)"),
            (["--count=0"], "--count=0: expected a whole number of calls, at least 1"),
            (["--count=-3"], "--count=-3: expected a whole number of calls, at least 1"),
            (["--interval=-0.5"], "--interval=-0.5: expected a number of seconds, 0 or more"),
            (["--interval=inf"], "--interval=inf: expected a number of seconds, 0 or more"),
        ]:
            self.assertEqual(main(["ping", furl, *options]),
                             (2, "", "foolscap-sidetls ping: error: %s\n" % (message,)), options)


class Progress(SynchronousTestCase):
    """What serve prints while a slow step goes on."""

    def test_each_step_once_then_still_waiting(self) -> None:
        clock = Clock()
        clock.advance(1000)
        out = io.StringIO()
        progress = _output.Progress(clock, out)
        progress.start()
        clock.advance(_output.STILL_WAITING)
        self.assertEqual(out.getvalue(), "")  # nothing to wait on yet
        progress("tor: launching tor")
        progress("tor: launching tor")
        clock.advance(2.5)
        progress("tor: waiting for tor bootstrap (10%: conn)")
        self.assertEqual(progress.elapsed(), _output.STILL_WAITING + 2.5)
        clock.advance(_output.STILL_WAITING - 2.5)
        clock.advance(_output.STILL_WAITING)
        progress.stop()
        clock.advance(10 * _output.STILL_WAITING)
        self.assertEqual(
            out.getvalue().splitlines(),
            [
                "  [ 15.0 s] tor: launching tor",
                "  [ 17.5 s] tor: waiting for tor bootstrap (10%: conn)",
                "  [ 30.0 s] ... still waiting for tor bootstrap (10%: conn)",
                "  [ 45.0 s] ... still waiting for tor bootstrap (10%: conn)",
            ],
        )
        self.assertEqual(clock.getDelayedCalls(), [])
        progress.stop()  # twice is harmless


def stat_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


class PlainWords(SynchronousTestCase):
    def test_statuses(self) -> None:
        for status, handler, won, words in [
            ("successful", "h", True, "connected; this hint won"),
            ("successful", "h", False, "connected"),
            ("abandoned", "h", False, "abandoned: another hint connected first"),
            ("connection refused", "h", False, "refused: nothing accepts connections there"),
            ("bad hint: no handler registered", None, False,
             "not tried: no handler for this hint type (disabled in the configuration, or unknown)"),
            (None, None, False, "not tried: no handler for this hint type (disabled in the configuration, or unknown)"),
            ("bad hint: unrecognized TCP hint", "h", False, "unusable hint: unrecognized TCP hint"),
            ("failed to connect: tor could not connect", "h", False, "failed: tor could not connect"),
            ("negotiation failed: TLS handshake failed", "h", False,
             "reached, but the Foolscap/TLS negotiation failed: TLS handshake failed"),
            ("connecting", "h", False, "gave up while connecting"),
            ("waiting for tor bootstrap (50%: x)", "h", False, "gave up while: waiting for tor bootstrap (50%: x)"),
            (None, "h", False, "not tried"),
        ]:
            self.assertEqual(_ping._plain(status, handler, won), words)


# -- issue 12: the file written with configparser, tor's control port found through the reactor --


#: create-node's options, and what it printed and wrote before its file was
#: written with configparser: (options, with an in-memory SAM bridge, exit
#: status, stdout, stderr, node.cfg or None).  Ports count from 41001; BASE
#: is the scratch directory, ADDR the onion or I2P address made.
_WRITTEN = [
    (['--port=tcp:4000:interface=127.0.0.1', '--location=tcp:127.0.0.1:4000,AUTO'], False, 0,
     'created BASE/n0/node.cfg\n'
     '  tub.port = tcp:4000:interface=127.0.0.1\n'
     '  tub.location = tcp:127.0.0.1:4000,AUTO\n'
     'serve it with: foolscap-sidetls serve BASE/n0/node.cfg\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n0/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = tcp:4000:interface=127.0.0.1\n'
     'tub.location = tcp:127.0.0.1:4000,AUTO\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'),
    (['--hostname=localhost'], False, 0,
     'created BASE/n1/node.cfg\n'
     '  tub.port = tcp:41001:interface=127.0.0.1\n'
     '  tub.location = tcp:localhost:41001\n'
     'serve it with: foolscap-sidetls serve BASE/n1/node.cfg\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n1/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = tcp:41001:interface=127.0.0.1\n'
     'tub.location = tcp:localhost:41001\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'),
    (['--hostname=node.example.net'], False, 0,
     'created BASE/n2/node.cfg\n'
     '  tub.port = tcp:41002\n'
     '  tub.location = tcp:node.example.net:41002\n'
     'serve it with: foolscap-sidetls serve BASE/n2/node.cfg\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n2/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = tcp:41002\n'
     'tub.location = tcp:node.example.net:41002\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'),
    (['--listen=tor', '--hide-ip', '--tor-control-port=tcp:127.0.0.1:9051'], False, 0,
     'made the onion service key: ADDR\n'
     'created BASE/n3/node.cfg\n'
     '  tub.port = tcp:41003:interface=127.0.0.1\n'
     '  tub.location = tor:ADDR:3457\n'
     'serve it with: foolscap-sidetls serve BASE/n3/node.cfg\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n3/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = tcp:41003:interface=127.0.0.1\n'
     'tub.location = tor:ADDR:3457\n'
     'reveal-IP-address = false\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'
     '\n'
     '[connections]\n'
     'tcp = tor\n'
     '\n'
     '[tor]\n'
     'control.port = tcp:127.0.0.1:9051\n'
     'onion = true\n'
     'onion.local_port = 41003\n'
     'onion.external_port = 3457\n'
     'onion.private_key_file = private/tor_onion.privkey\n'),
    (['--listen=tcp,tor', '--hostname=10.0.0.5', '--tor-control-port=unix:/run/tor/control'], False, 0,
     'made the onion service key: ADDR\n'
     'created BASE/n4/node.cfg\n'
     '  tub.port = tcp:41004,tcp:41005:interface=127.0.0.1\n'
     '  tub.location = tcp:10.0.0.5:41004,tor:ADDR:3457\n'
     'serve it with: foolscap-sidetls serve BASE/n4/node.cfg\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n4/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = tcp:41004,tcp:41005:interface=127.0.0.1\n'
     'tub.location = tcp:10.0.0.5:41004,tor:ADDR:3457\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'
     '\n'
     '[tor]\n'
     'control.port = unix:/run/tor/control\n'
     'onion = true\n'
     'onion.local_port = 41005\n'
     'onion.external_port = 3457\n'
     'onion.private_key_file = private/tor_onion.privkey\n'),
    (['--listen=i2p', '--i2p-sam-port=tcp:127.0.0.1:7656', '--i2cp-options=inbound.length=0,outbound.length=0'], True, 0,
     "connecting to the I2P router's SAM bridge at tcp:127.0.0.1:7656 (to make the destination key)...\n"
     'made the I2P destination key: ADDR\n'
     'created BASE/n5/node.cfg\n'
     '  tub.port = listen:i2p\n'
     '  tub.location = i2p:ADDR:3457\n'
     'serve it with: foolscap-sidetls serve BASE/n5/node.cfg\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n5/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = listen:i2p\n'
     'tub.location = i2p:ADDR:3457\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'
     '\n'
     '[i2p]\n'
     'sam.port = tcp:127.0.0.1:7656\n'
     'i2cp.options = inbound.length=0,outbound.length=0\n'
     'dest = true\n'
     'dest.port = 3457\n'
     'dest.private_key_file = private/i2p_dest.privkey\n'),
    (['--listen=tor,i2p', '--hide-ip', '--tor-launch', '--tor-executable=BASE/bin-fake'], True, 0,
     'made the onion service key: ADDR\n'
     "connecting to the I2P router's SAM bridge at tcp:127.0.0.1:7656 (to make the destination key)...\n"
     'made the I2P destination key: ADDR\n'
     'created BASE/n6/node.cfg\n'
     '  tub.port = tcp:41006:interface=127.0.0.1,listen:i2p\n'
     '  tub.location = tor:ADDR:3457,i2p:ADDR:3457\n'
     'serve it with: foolscap-sidetls serve BASE/n6/node.cfg\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n6/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = tcp:41006:interface=127.0.0.1,listen:i2p\n'
     'tub.location = tor:ADDR:3457,i2p:ADDR:3457\n'
     'reveal-IP-address = false\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'
     '\n'
     '[connections]\n'
     'tcp = tor\n'
     '\n'
     '[tor]\n'
     'launch = true\n'
     'tor.executable = BASE/bin-fake\n'
     'onion = true\n'
     'onion.local_port = 41006\n'
     'onion.external_port = 3457\n'
     'onion.private_key_file = private/tor_onion.privkey\n'
     '\n'
     '[i2p]\n'
     'sam.port = tcp:127.0.0.1:7656\n'
     'dest = true\n'
     'dest.port = 3457\n'
     'dest.private_key_file = private/i2p_dest.privkey\n'),
    (['--listen=none'], False, 0,
     'created BASE/n7/node.cfg\n'
     '  tub.port = disabled\n'
     '  tub.location = disabled\n'
     'this node only dials, so there is nothing to serve; reach a FURL with its handlers: foolscap-sidetls ping --config BASE/n7/node.cfg FURL\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n7/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = disabled\n'
     'tub.location = disabled\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'),
    (['--listen=none', '--tor-control-port=tcp:127.0.0.1:9051', '--i2p-sam-port=tcp:127.0.0.1:7656', '--i2cp-options=inbound.length=1'], False, 0,
     'created BASE/n8/node.cfg\n'
     '  tub.port = disabled\n'
     '  tub.location = disabled\n'
     'this node only dials, so there is nothing to serve; reach a FURL with its handlers: foolscap-sidetls ping --config BASE/n8/node.cfg FURL\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n8/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = disabled\n'
     'tub.location = disabled\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'
     '\n'
     '[tor]\n'
     'control.port = tcp:127.0.0.1:9051\n'
     '\n'
     '[i2p]\n'
     'sam.port = tcp:127.0.0.1:7656\n'
     'i2cp.options = inbound.length=1\n'),
    (['--listen=none', '--tor-launch', '--i2p-launch', '--i2p-executable=BASE/bin-fake'], False, 0,
     'created BASE/n9/node.cfg\n'
     '  tub.port = disabled\n'
     '  tub.location = disabled\n'
     'this node only dials, so there is nothing to serve; reach a FURL with its handlers: foolscap-sidetls ping --config BASE/n9/node.cfg FURL\n',
     '',
     '# -*- mode: conf; coding: utf-8 -*-\n'
     "# Written by 'foolscap-sidetls create-node'.  The keys mean what they mean in\n"
     "# Tahoe-LAFS's tahoe.cfg; check this file with 'foolscap-sidetls check BASE/n9/node.cfg'.\n"
     '\n'
     '[node]\n'
     'tub.port = disabled\n'
     'tub.location = disabled\n'
     '#timeout.keepalive =\n'
     '#timeout.disconnect =\n'
     '\n'
     '[tor]\n'
     'launch = true\n'
     '\n'
     '[i2p]\n'
     'launch = true\n'
     'i2p.executable = BASE/bin-fake\n'),
    (['--port=tcp:4001:interface=127.0.0.1', '--location=tor:abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz2345.onion:3457', '--hide-ip', '--tor-control-port=tcp:127.0.0.1:9051'], False, 2,
     '',
     "foolscap-sidetls create-node: error: --location=tor:abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz2345.onion:3457: 'tor:abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz2345.onion:3457': host 'abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz2345.onion' is not a valid v3 onion address: its version byte is 157, not 3; expected a v3 onion address: 56 base32 characters (a-z, 2-7) before '.onion', ending in tor's checksum and the version byte 3\n",
     None),
]


class ConfigWriting(SynchronousTestCase):
    """create-node writes its file with configparser: the same bytes as the text it used to join."""

    def test_same_bytes_as_before(self) -> None:
        base = scratch(self)
        ports = itertools.count(41001)
        self.patch(_create, "allocate_tcp_port", lambda: next(ports))
        with open(os.path.join(base, "bin-fake"), "w") as f:
            f.write("#!/bin/sh\nexit 1\n")
        os.chmod(os.path.join(base, "bin-fake"), 0o755)
        for index, (options, bridged, code, out, err, text) in enumerate(_WRITTEN):
            node = os.path.join(base, "n%d" % (index,))
            reactor = CommandReactor(FakeSAMBridge()) if bridged else CommandReactor()
            got = main(["create-node", node, *[o.replace("BASE", base) for o in options]], reactor)
            path = os.path.join(node, "node.cfg")
            written = None
            if os.path.exists(path):
                with open(path, newline="") as f:
                    written = f.read()
            made = re.findall(r"^made the (?:onion service|I2P destination) key: (\S+)$", got[1], re.M)

            def normal(found: Optional[str]) -> Optional[str]:
                for address in made:
                    found = found and found.replace(address, "ADDR")
                return found and found.replace(base, "BASE")

            self.assertEqual((got[0], normal(got[1]), normal(got[2]), normal(written)), (code, out, err, text),
                             options)

    def test_render(self) -> None:
        """Keys keep their case, '%' is literal, an empty section is left out, comments come around it."""
        self.assertEqual(
            _nodefile.render({"node": [("reveal-IP-address", "false"), ("x", "100%")], "tor": [], "i2p": [("a", "b")]},
                             ["header"], {"node": ("timeout.keepalive",)}),
            "# header\n\n[node]\nreveal-IP-address = false\nx = 100%\n#timeout.keepalive =\n\n[i2p]\na = b\n",
        )

    def test_options_checked_as_sections(self) -> None:
        """
        create-node checks each option's piece of the file through
        config.from_sections, the reader's own checks, rendering and
        parsing no config text to do it; an empty section is left out as
        the file leaves it.
        """

        def refuse(*args: Any, **kwargs: Any) -> None:
            self.fail("config text was rendered or parsed to check an option")

        self.patch(_create, "render", refuse)
        self.patch(config, "from_string", refuse)
        node = _create._read(
            {"node": [("tub.port", "tcp:3457"), ("tub.location", "tcp:example.net:3457")], "tor": []}
        )
        self.assertEqual((node.tub_port, node.location), (("tcp:3457",), ("tcp:example.net:3457",)))
        e = self.assertRaises(config.ConfigError, _create._read, {"node": [("tub.port", "tcp:0")]})
        self.assertEqual((e.section, e.key), ("node", "tub.port"))


class TorControlSearch(SynchronousTestCase):
    """create-node's search for a running tor connects through the reactor, never blocking it."""

    def test_accepted(self) -> None:
        reactor = MemoryReactorClock()
        d = _create.reachable(reactor, "tcp:127.0.0.1:9051")
        self.assertNoResult(d)
        host, port, factory, _, _ = reactor.tcpClients[0]
        self.assertEqual((host, port), ("127.0.0.1", 9051))
        transport = StringTransport()
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        protocol.makeConnection(transport)
        self.assertIs(self.successResultOf(d), True)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_refused(self) -> None:
        reactor = MemoryReactorClock()
        d = _create.reachable(reactor, "tcp:127.0.0.1:9051")
        reactor.tcpClients[0][2].clientConnectionFailed(reactor.connectors[0], Failure(error.ConnectionRefusedError()))
        self.assertIs(self.successResultOf(d), False)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_silent_gives_up_after_the_timeout(self) -> None:
        reactor = MemoryReactorClock()
        d = _create.reachable(reactor, "unix:/var/run/tor/control")
        self.assertEqual(reactor.unixClients[0][0], "/var/run/tor/control")
        reactor.advance(_create.REACH_TIMEOUT - 0.1)
        self.assertNoResult(d)
        reactor.advance(0.1)
        self.assertIs(self.successResultOf(d), False)
        self.assertTrue(reactor.connectors[0].stoppedConnecting)

    def test_create_node_writes_the_first_that_answers(self) -> None:
        """unix: stays silent, tcp:127.0.0.1:9051 accepts: that one is written, the silent one given up."""

        class Ticking(CommandReactor):
            def _answer(self) -> None:
                super()._answer()
                self.advance(_create.REACH_TIMEOUT)

        reactor = Ticking(FakeSAMBridge())
        node = os.path.join(scratch(self), "node")
        code, out, err = main(["create-node", node, "--listen=tor"], reactor)
        self.assertEqual((code, err), (0, ""))
        with open(os.path.join(node, "node.cfg")) as f:
            self.assertIn("\n[tor]\ncontrol.port = tcp:127.0.0.1:9051\nonion = true\n", f.read())
        self.assertEqual([client[0] for client in reactor.unixClients], ["/var/run/tor/control"])
        self.assertEqual([client[:2] for client in reactor.tcpClients], [("127.0.0.1", 9051)])
        self.assertTrue(reactor.connectors[0].stoppedConnecting)
