"""
C{tahoe create-node --listen=i2p --i2p-launch} under the launcher, which
Tahoe-LAFS refuses ("--i2p-launch is under development"): the real entry
point, in a subprocess, with a fake i2pd (tests/tahoe/fake_i2pd.py, a real
process serving SAM's HELLO and DEST GENERATE on 127.0.0.1) launched by
foolscap_sidetls.i2p.launch to make the destination key, then stopped.
The tahoe.cfg it writes says C{[i2p] launch = true}, and the launcher's
I2P provider reads it as a launching handler.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from twisted.internet import reactor
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from allmydata import client
from allmydata.scripts import runner

from foolscap_sidetls import i2p

from ._support import launcher, node_dir

#: Generous: a loaded 2-core machine runs several suites at once.
WAIT = 60.0
FAKE_I2PD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_i2pd.py")


def _create(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "foolscap_sidetls.tahoe", "create-node", *argv],
        capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL,
    )


class CreateNodeI2PLaunchTests(SynchronousTestCase):
    def fake_i2pd(self) -> str:
        """An executable that runs tests/tahoe/fake_i2pd.py (launch() execs it by path)."""
        path = os.path.join(node_dir(self), "i2pd")
        with open(path, "w") as f:
            f.write('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, FAKE_I2PD))
        os.chmod(path, stat.S_IRWXU)
        return path

    def test_i2pLaunch(self) -> None:
        """
        create-node --listen=i2p --i2p-launch --i2p-executable=I2PD: exit 0;
        i2pd launched once (in the node's own i2pd directory, where `run`
        launches it) and stopped; the key file private (0600); tahoe.cfg's
        [i2p] says launch = true and the key, tub.location the key's
        address.
        """
        executable = self.fake_i2pd()
        basedir = os.path.join(node_dir(self), "node")
        done = _create("--listen=i2p", "--i2p-launch", "--i2p-executable=%s" % (executable,), basedir)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("Node created in '%s'" % (basedir,), done.stdout)
        statedir = os.path.join(basedir, "private", "i2p-statedir")
        with open(os.path.join(statedir, "fake-i2pd.record")) as f:
            self.assertEqual(f.read().splitlines(), ["started", "stopped"])
        keyfile = os.path.join(basedir, "private", "i2p_dest.privkey")
        self.assertEqual(stat.S_IMODE(os.stat(keyfile).st_mode), 0o600)
        address = i2p.address_of(keyfile)

        with open(os.path.join(basedir, "tahoe.cfg")) as f:
            text = f.read()
        lines = text.splitlines()
        self.assertEqual(
            [line for line in lines if line.startswith("tub.")],
            ["tub.port = listen:i2p", "tub.location = i2p:%s:3457" % (address,)],
        )
        i2p_section = lines[lines.index("[i2p]") + 1 :]
        self.assertEqual(
            i2p_section[: i2p_section.index("")],
            [
                "launch = true",
                "i2p.executable = %s" % (executable,),
                "dest = true",
                "dest.port = 3457",
                "dest.private_key_file = %s" % (os.path.join("private", "i2p_dest.privkey"),),
            ],
        )

        # What `foolscap-sidetls tahoe run` makes of it: a launching handler.
        launcher(self)
        provider = client.create_i2p_provider(reactor, client.read_config(basedir, "client.port"))
        self.addCleanup(provider.networks.stopService)
        self.assertEqual(
            provider.get_i2p_handler().describe().split(", SAM at ")[0], "sidetls+i2p (launched i2pd"
        )

    def test_noI2pd(self) -> None:
        """An i2pd that cannot be found: one line saying so, exit 1, no traceback."""
        basedir = os.path.join(node_dir(self), "node")
        done = _create("--listen=i2p", "--i2p-launch", "--i2p-executable=/nonexistent/i2pd", basedir)
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        self.assertTrue(
            done.stderr.startswith(
                "foolscap-sidetls tahoe: could not make the I2P destination key with a launched i2pd: "
            ),
            done.stderr,
        )
        self.assertIn("/nonexistent/i2pd", done.stderr)


class OptionTests(SynchronousTestCase):
    def refusal(self, *argv: str) -> str:
        with self.assertRaises(UsageError) as caught:
            runner.Options().parseOptions(["create-node", *argv, node_dir(self)])
        return str(caught.exception)

    def test_launchAccepted(self) -> None:
        """
        --i2p-launch parses under the launcher (stock: "--i2p-launch is under
        development"), and Tahoe's other I2P option checks still hold.
        """
        launcher(self)
        options = runner.Options()
        options.parseOptions(["create-node", "--listen=i2p", "--i2p-launch", node_dir(self)])
        self.assertEqual((options.subOptions["i2p-launch"], options.subOptions["listen"]), (True, "i2p"))
        self.assertEqual(
            [
                self.refusal("--listen=tcp", "--hostname=a", "--i2p-launch"),
                self.refusal("--listen=i2p", "--i2p-launch", "--i2p-sam-port=tcp:127.0.0.1:7656"),
            ],
            ["--i2p-launch requires --listen=i2p", "use either --i2p-launch or --i2p-sam-port=, not both"],
        )
