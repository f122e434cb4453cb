"""
A real i2pd that cannot reseed: launched by L{i2p.launch} on 127.0.0.1
with its one reseed server at a loopback port nothing listens on -- what a
machine with no network gives i2pd (there, i2pd's default reseed hosts are
"Host not found").  Nothing but 127.0.0.1 is contacted.

Before: C{listen()} (the CLI's C{serve}) waited the full 300 s SESSION CREATE
timeout, then named a random SAM port.  Now it fails after
C{reseed_timeout} s saying that i2pd has no peers because reseeding failed
(with i2pd's reason) and naming i2pd's log; the launched i2pd is stopped.

Figures are printed at the end (pytest -s).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from foolscap.api import Tub

from foolscap_sidetls import i2p
from .._support.ports import free_port
from .._support.waiting import coroutine, until

#: launch()'s default reseed_timeout, and the bound on when the failure
#: must arrive after listen() (launching i2pd takes about a second).
TIMEOUT = i2p.RESEED_TIMEOUT
LATEST = 45
FIGURES: dict[str, str] = {}


def _offline_config() -> dict[str, Any]:
    """i2pd settings: loopback only, a private netid, one unreachable reseed server."""
    return {
        "netid": "99",
        "host": "127.0.0.1",
        "address4": "127.0.0.1",
        "ipv6": "false",
        "nat": "false",
        "ntcp2.port": str(free_port()),
        "ssu2.enabled": "false",
        "upnp.enabled": "false",
        "nettime.enabled": "false",
        "reseed.urls": "https://127.0.0.1:%d/" % (free_port(),),
    }


class Offline(TestCase):
    timeout = LATEST + 60

    def setUp(self) -> None:
        if shutil.which("i2pd", path=os.pathsep.join([os.environ.get("PATH", "")] + list(i2p.I2PD_SEARCH_DIRS))) is None:
            if os.environ.get("CI") == "true":
                self.fail("integration prerequisite missing under CI: i2pd (apt-get install i2pd)")
            self.skipTest("i2pd not found (apt-get install i2pd)")
        self.data = tempfile.mkdtemp(prefix="sidetls-i2p-offline-")
        self.addCleanup(shutil.rmtree, self.data, True)

    @coroutine
    async def test_listen_cannot_reseed(self) -> None:
        """serve's case: listening through a launched i2pd that cannot reseed."""
        handler = i2p.launch(data_directory=os.path.join(self.data, "i2pd"), config=_offline_config())
        self.addCleanup(handler.stop)
        tub = Tub()
        tub.startService()
        self.addCleanup(tub.stopService)
        statuses: list[str] = []
        dialing: list[str] = []
        started = time.monotonic()
        listening = i2p.listen(tub, handler, os.path.join(self.data, "node.key"), update_status=statuses.append)
        listening.addTimeout(LATEST + 5, reactor)
        # ping's case too: the handler's dialing session.
        opening = handler.prepare(dialing.append).addTimeout(LATEST + 5, reactor)
        pid = int(await until(self, lambda: handler.launched_pid, 15, "i2pd to be launched"))
        process = handler._bridge.launcher.process  # type: ignore[union-attr]
        # The launched i2pd has a process group of its own (Ctrl-C spares it).
        await until(self, lambda: os.getpgid(pid) == pid, 10, "i2pd to lead a process group of its own")
        self.assertNotEqual(os.getpgid(pid), os.getpgid(0))
        errors = []
        for d in (listening, opening):
            try:
                await d
            except i2p.I2PDFailed as e:
                errors.append(str(e))
            else:
                self.fail("a SAM session opened through an i2pd that cannot reseed")
        took = time.monotonic() - started
        FIGURES["listen, i2pd cannot reseed: failure after"] = "%.1f s (reseed_timeout=%d)" % (took, TIMEOUT)
        self.assertTrue(TIMEOUT <= took <= LATEST, took)
        log_file = os.path.join(self.data, "i2pd", "i2pd.log")
        for message in errors:
            self.assertRegex(
                message,
                r"^i2pd has no peers: reseeding failed \((\d+ attempts; the last: )?(Couldn't|Failed to) connect to "
                r"127\.0\.0\.1[^)]*\); this machine cannot reach the I2P network\. i2pd's log: %s "
                r"\(no SAM session after \d+ s; launch\(reseed_timeout=None\) keeps waiting\)$" % (log_file,),
            )
        # Meanwhile the status said so, well before the failure.
        for seen in (statuses, dialing):
            self.assertEqual(seen[:2], ["launching i2pd", "opening SAM session (can take ~20 s)"])
            said = [s for s in seen if s.startswith("opening SAM session: i2pd has no peers: reseeding failed")]
            self.assertGreaterEqual(len(said), 1, seen)
            self.assertRegex(said[0], r"; giving up in (2\d|1\d) s$")
        # And the i2pd is not left running.
        await until(self, lambda: process.ended is not None, 15, "the launched i2pd to exit")
        FIGURES["launched i2pd stopped after the failure within"] = "%.1f s" % (time.monotonic() - started - took,)
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)
        self.assertEqual(tub.getListeners(), [])

    @classmethod
    def tearDownClass(cls) -> None:
        for name, value in FIGURES.items():
            print("FIGURE %s: %s" % (name, value))
