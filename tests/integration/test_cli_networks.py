"""
The foolscap-sidetls command over the session's private networks: for Tor
and for I2P, 'create-node' writes a node, 'serve' publishes it (an onion
service, an I2P destination) and prints its FURL, and 'ping' -- a separate
process with a configuration of its own -- reaches it and reports which
hint won and the TLS side each end took.

The configurations point at the fixture daemons: tor's control ports
(C{[tor] control.port}) and the I2P router's SAM bridge (C{[i2p] sam.port},
with the zero-hop C{i2cp.options} a one-router network needs).  Slow steps
run side by side: both onion services publish at once, and the I2P node
opens its session while they do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest
from twisted.trial.unittest import SynchronousTestCase

from foolscap_sidetls import __version__

from . import _i2pnet

PROGRAM = os.path.join(os.path.dirname(sys.executable), "foolscap-sidetls")
I2CP = ",".join("%s=%s" % kv for kv in _i2pnet.SESSION_OPTIONS.items())
#: A private network on a busy 2-core machine: publishing can take a while.
WAIT = 150.0
ONION_FURL = re.compile(r"^pb://[a-z2-7]{32}@tor:[a-z2-7]{56}\.onion:3457/[a-z2-7]{32}$")
I2P_FURL = re.compile(r"^pb://[a-z2-7]{32}@i2p:[a-z2-7]{52}\.b32\.i2p:3457/[a-z2-7]{32}$")


@pytest.fixture(autouse=True)
def _networks(request, tor_network, i2p_router):
    request.instance.net = tor_network
    request.instance.router = i2p_router


def program(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROGRAM, *args], capture_output=True, text=True, timeout=WAIT)


class Serve:
    """A 'serve' process; its output is read once it has printed the FURL (or exited)."""

    def __init__(self, case: Any, directory: str) -> None:
        self.log = open(os.path.join(directory, "serve.out"), "w+")
        self.process = subprocess.Popen(
            [PROGRAM, "serve", directory], stdout=self.log, stderr=subprocess.STDOUT, text=True
        )
        case.addCleanup(self.kill)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def furl(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith("furl: "):
                    return line[len("furl: "):]
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("serve printed no FURL:\n" + self.output())

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(2)  # SIGINT, as Ctrl-C
        code = self.process.wait(timeout=60)
        return code, self.output()


def ping(furl: str, config: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PROGRAM, "ping", furl, "--config", config, "--count", "2", "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


class CommandOverNetworks(SynchronousTestCase):
    net: Any
    router: Any

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sidetls-cli-net-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def create(self, name: str, *options: str) -> str:
        directory = self.path(name)
        result = program("create-node", directory, *options)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        checked = program("check", directory)
        self.assertEqual(checked.returncode, 0, checked.stderr)
        self.assertNotIn("warning", checked.stdout)
        return directory

    def dialer_config(self, name: str, text: str) -> str:
        path = self.path(name + ".cfg")
        with open(path, "w") as f:
            f.write("[node]\ntub.port = disabled\ntub.location = disabled\n[connections]\ntcp = disabled\n" + text)
        return path

    def assertPinged(self, process: subprocess.Popen, hint_type: str, handler: str) -> str:
        out, err = process.communicate(timeout=WAIT)
        self.assertEqual(process.returncode, 0, out + err)
        lines = out.splitlines()
        self.assertRegex(lines[1], r"^  %s:\S+: connected; this hint won$" % (hint_type,))
        self.assertTrue(lines[2].startswith("    via " + handler), lines[2])
        self.assertEqual(lines[4], "this end:  dialer, TLS client")
        self.assertEqual(lines[5], "other end: listener, TLS server (foolscap-sidetls %s)" % (__version__,))
        self.assertRegex(lines[-1], r"^2 of 2 calls answered; round trip min/avg/max = ")
        return out

    def test_tor_both_ways_and_i2p(self) -> None:
        started = time.monotonic()
        server, dialer = self.net.server, self.net.dialer
        # One node on each client tor; each is pinged through the other tor.
        nodes = {
            name: self.create(name, "--listen=tor", "--tor-control-port=tcp:127.0.0.1:%d" % node.control_port)
            for name, node in (("on-server-tor", server), ("on-dialer-tor", dialer))
        }
        i2p_node = self.create(
            "on-i2p", "--listen=i2p", "--i2p-sam-port=" + self.router.sam_description, "--i2cp-options=" + I2CP
        )
        serving = {name: Serve(self, directory) for name, directory in nodes.items()}
        serving["on-i2p"] = Serve(self, i2p_node)
        deadline = time.monotonic() + WAIT
        furls = {name: s.furl(deadline) for name, s in serving.items()}
        published = time.monotonic() - started
        self.assertRegex(furls["on-server-tor"], ONION_FURL)
        self.assertRegex(furls["on-dialer-tor"], ONION_FURL)
        self.assertRegex(furls["on-i2p"], I2P_FURL)

        via = {
            "server": self.dialer_config("via-server-tor", "[tor]\ncontrol.port = tcp:127.0.0.1:%d\n" % server.control_port),
            "dialer": self.dialer_config("via-dialer-tor", "[tor]\ncontrol.port = tcp:127.0.0.1:%d\n" % dialer.control_port),
            "i2p": self.dialer_config(
                "via-i2p", "[i2p]\nsam.port = %s\ni2cp.options = %s\n" % (self.router.sam_description, I2CP)
            ),
        }
        pings = {
            "on-server-tor": ping(furls["on-server-tor"], via["dialer"]),
            "on-dialer-tor": ping(furls["on-dialer-tor"], via["server"]),
            "on-i2p": ping(furls["on-i2p"], via["i2p"]),
        }
        out = self.assertPinged(pings["on-server-tor"], "tor", "sidetls+tor (control port 127.0.0.1:%d" % dialer.control_port)
        self.assertPinged(pings["on-dialer-tor"], "tor", "sidetls+tor (control port 127.0.0.1:%d" % server.control_port)
        i2p_out = self.assertPinged(pings["on-i2p"], "i2p", "sidetls+i2p (SAM at %s)" % (self.router.sam_description,))

        # serve said what it was waiting for, and stops cleanly on Ctrl-C.
        outputs = {}
        for name, s in serving.items():
            code, output = s.stop()
            self.assertEqual(code, 0, output)
            self.assertEqual(output.splitlines()[-2:], ["stopping...", "stopped"])
            outputs[name] = output
        tor_steps = [
            r"tor: publishing the onion service [a-z2-7]{56}\.onion:3457",
            r"tor: connecting to tor control port 127\.0\.0\.1:\d+",
            r"tor: adding the onion service",
            r"tor: waiting for tor to publish the onion service descriptor",
            r"tor: onion service tor:[a-z2-7]{56}\.onion:3457 published",
        ]
        for step in tor_steps:
            self.assertRegex(outputs["on-server-tor"], r"(?m)^  \[ *\d+\.\d s\] " + step + "$")
        for step in [
            r"i2p: opening a SAM session for [a-z2-7]{52}\.b32\.i2p \(i2pd takes ~20 s\)",
            r"i2p: listening on i2p:[a-z2-7]{52}\.b32\.i2p:3457",
        ]:
            self.assertRegex(outputs["on-i2p"], r"(?m)^  \[ *\d+\.\d s\] " + step + "$")
        print("\n--- serve (tor) ---\n%s--- ping (tor) ---\n%s--- serve (i2p) ---\n%s--- ping (i2p) ---\n%s"
              "published after %.1f s, whole test %.1f s"
              % (outputs["on-server-tor"], out, outputs["on-i2p"], i2p_out, published, time.monotonic() - started))
