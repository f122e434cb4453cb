"""
The real entry points, in subprocesses with bounded waits:
C{python -m foolscap_sidetls.tahoe} and C{foolscap-sidetls tahoe} behave
as C{tahoe}, and a node they run says it is role-based.
"""

from __future__ import annotations

import io
import os
import selectors
import signal
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

import allmydata
from allmydata import node

from foolscap_sidetls.tahoe import INSTALL_HINT, main

from .._support.ports import free_port
from ._support import node_dir

PROGRAM = os.path.join(os.path.dirname(sys.executable), "foolscap-sidetls")
#: Generous: a loaded 2-core machine runs several suites at once.
WAIT = 60.0


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL)


class EntryPointTests(SynchronousTestCase):
    def test_version(self) -> None:
        """python -m foolscap_sidetls.tahoe --version is Tahoe's --version."""
        done = _run(sys.executable, "-m", "foolscap_sidetls.tahoe", "--version")
        self.assertEqual((done.returncode, done.stdout.splitlines()[0]), (0, "tahoe-lafs/%s" % (allmydata.__version__,)))

    def test_helpGoesToTahoe(self) -> None:
        """foolscap-sidetls tahoe --help: the console script hands --help to Tahoe, not to its own parser."""
        done = _run(PROGRAM, "tahoe", "--help")
        self.assertEqual(done.returncode, 0)
        self.assertIn("Usage: tahoe [global-options] <command> [command-options]", done.stdout)
        self.assertNotIn("usage: foolscap-sidetls", done.stdout)

    def test_createNode(self) -> None:
        """create-node --listen=none writes Tahoe's node directory (tub.port = disabled)."""
        basedir = os.path.join(node_dir(self), "node")
        done = _run(sys.executable, "-m", "foolscap_sidetls.tahoe", "create-node", "--listen=none", basedir)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.splitlines()[0], "Node created in '%s'" % (basedir,))
        with open(os.path.join(basedir, "tahoe.cfg")) as f:
            text = f.read()
        self.assertEqual([line for line in text.splitlines() if line.startswith("tub.")],
                         ["tub.port = disabled", "tub.location = disabled"])

    def test_runIntroducer(self) -> None:
        """
        tahoe run of an introducer under the launcher: it runs, says once
        that its Tubs are role-based, and its listener is sidetls's.
        """
        port = free_port()
        basedir = os.path.join(node_dir(self), "introducer")
        created = _run(sys.executable, "-m", "foolscap_sidetls.tahoe", "create-introducer", "--listen=tcp",
                       "--port=tcp:%d:interface=127.0.0.1" % (port,), "--location=tcp:127.0.0.1:%d" % (port,), basedir)
        self.assertEqual(created.returncode, 0, created.stderr)
        process = subprocess.Popen(
            [sys.executable, "-m", "foolscap_sidetls.tahoe", "run", "--allow-stdin-close", basedir],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.addCleanup(process.wait, WAIT)
        self.addCleanup(process.kill)
        lines = []
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + WAIT
        while not any("introducer running" in line for line in lines) and time.monotonic() < deadline:
            if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                line = process.stdout.readline()
                if not line:
                    break
                lines.append(line)
        process.send_signal(signal.SIGTERM)
        # twistd ends by re-raising the signal, as stock `tahoe run` does.
        self.assertEqual(process.wait(WAIT), -signal.SIGTERM)
        said = [line for line in lines if "every Tub of this node is role-based" in line]
        self.assertEqual(len(said), 1, "".join(lines))
        self.assertEqual(
            len([line for line in lines if "Starting factory <Listener" in line and "<sidetls listener on " in line]),
            2,  # the introducer's Tub, the log-port Tub
        )


class RefusalTests(SynchronousTestCase):
    def test_tahoeNotInstalled(self) -> None:
        """Without Tahoe-LAFS: one line saying how to install it, exit 1."""
        code = (
            "import sys; sys.modules['allmydata'] = None\n"
            "from foolscap_sidetls.tahoe import main\nmain(['--version'])\n"
        )
        done = _run(sys.executable, "-c", code)
        self.assertEqual((done.returncode, done.stdout, done.stderr), (1, "", INSTALL_HINT + "\n"))

    def test_mismatchRefusedByMain(self) -> None:
        """An unchecked Tahoe release: main() exits 1 with the refusal, and Tahoe is left unpatched."""
        self.patch(allmydata, "__version__", "1.99.0")
        real = node.create_tub
        err = io.StringIO()
        with self.assertRaises(SystemExit) as caught:
            main(["--version"], stderr=err)
        self.assertEqual(caught.exception.code, 1)
        self.assertIn("Tahoe-LAFS 1.99.0 does not match", err.getvalue())
        self.assertIn("Nothing was patched", err.getvalue())
        self.assertIs(node.create_tub, real)
