"""
A real tor that cannot bootstrap: launched by L{tor.launch} with one
directory authority, on 127.0.0.1, that refuses every connection or closes
it at once -- what a machine with no network, or behind a firewall, gives
tor.  (Tor's own authorities and fallback directories are switched off, so
nothing but 127.0.0.1 is contacted; on a loopback-only machine this is how
every launched tor ends up.)

Before: a dial (C{ping}) or a listen (C{serve}) through it waited forever,
the status saying C{"waiting for tor bootstrap (5%: ...; last problem:
...)"}.  Now it fails after C{bootstrap_timeout} seconds without progress,
with tor's last warning in words (which relay, which reason), the path of
tor's log, and what to check; the launched tor is stopped.

Figures are printed at the end (pytest -s).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from foolscap.api import Tub

from foolscap_sidetls import tor
from .._support.ports import free_port
from .._support.waiting import coroutine, until

ONION = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
#: Seconds without progress before giving up, and the bound on when the
#: failure must arrive after the dial (launching tor takes about a second).
TIMEOUT = 10
LATEST = 25
FIGURES: dict[str, str] = {}


class _CloseAtOnce(Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


def _offline_config(port: int) -> dict[str, Any]:
    """torrc lines: our one (unreachable) authority at 127.0.0.1:port, nothing else."""
    return {
        "TestingTorNetwork": 1,
        "UseDefaultFallbackDirs": 0,
        "DirAuthority": "offline orport=%d no-v2 v3ident=%s 127.0.0.1:%d %s"
        % (port, "B" * 40, port, "A" * 40),
    }


class Offline(TestCase):
    def setUp(self) -> None:
        if tor.TOR_SEARCH_DIRS and shutil.which(
            "tor", path=os.pathsep.join([os.environ.get("PATH", "")] + list(tor.TOR_SEARCH_DIRS))
        ) is None:
            if os.environ.get("CI") == "true":
                self.fail("integration prerequisite missing under CI: tor (apt-get install tor)")
            self.skipTest("tor not found (apt-get install tor)")
        self.data = tempfile.mkdtemp(prefix="sidetls-offline-")
        self.addCleanup(shutil.rmtree, self.data, True)

    def launch(self, port: int) -> tor.TorHandler:
        handler = tor.launch(
            data_directory=os.path.join(self.data, "tor"),
            extra_config=_offline_config(port),
            bootstrap_timeout=TIMEOUT,
        )
        self.addCleanup(handler.stop)
        return handler

    async def started(self, handler: tor.TorHandler) -> int:
        """The launched tor's pid, once it runs."""

        def pid() -> Any:
            process = handler._launcher.process  # type: ignore[union-attr]
            return process is not None and process.pid

        return int(await until(self, pid, 15, "tor to be launched"))

    async def assertStopped(self, handler: tor.TorHandler, pid: int) -> None:
        process = handler._launcher.process  # type: ignore[union-attr]
        assert process is not None
        await until(self, lambda: process.ended is not None, 15, "the launched tor to exit")
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)
        self.assertEqual(handler.describe(), "sidetls+tor (launched tor)")

    def assertLog(self, message: str) -> str:
        log_file = os.path.join(self.data, "tor", "sidetls-tor.log")
        self.assertIn(". Tor's log: %s. Check that this machine can reach the internet" % (log_file,), message)
        with open(log_file) as f:
            self.assertRegex(f.read(), r"\[notice\] Bootstrapped \d+% \(conn\): Connecting to a relay")
        return log_file

    @coroutine
    async def test_dial_authority_refuses(self) -> None:
        """ping's case: a Tub dialing a tor: hint through the launched tor."""
        port = free_port()
        handler = self.launch(port)
        tub = Tub()
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("tor", handler)
        tub.startService()
        self.addCleanup(tub.stopService)
        furl = "pb://%s@tor:%s:3457/offline" % ("a" * 32, ONION)
        started = time.monotonic()
        connecting = tub.getReference(furl).addTimeout(LATEST + 5, reactor)
        info = tub.getConnectionInfoForFURL(furl)  # as ping reads it
        pid = await self.started(handler)
        try:
            await connecting
        except tor.TorBootstrapError as e:
            reached = str(e)
        else:
            self.fail("getReference through a tor that cannot bootstrap succeeded")
        took = time.monotonic() - started
        status = info.connectorStatuses["tor:%s:3457" % (ONION,)]
        FIGURES["dial, authority refusing: failure after"] = "%.1f s (bootstrap_timeout=%d)" % (took, TIMEOUT)
        self.assertTrue(TIMEOUT <= took <= LATEST, took)
        self.assertRegex(
            status,
            r"^failed to connect: tor made no bootstrap progress for 10 s: it is at 5%% \(Connecting to a "
            r"relay\)\. Its last warning: the connection to the relay at 127\.0\.0\.1:%d was refused "
            r"\(tor says \"Connection refused\", reason CONNECTREFUSED(, \d+ times)?\)\. " % (port,),
        )
        # What ping prints: the hint's status, and getReference's failure.
        self.assertEqual(status, "failed to connect: " + reached)
        self.assertLog(status)
        await self.assertStopped(handler, pid)

    @coroutine
    async def test_listen_authority_closes(self) -> None:
        """serve's case: publishing an onion service through the launched tor."""
        closer = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(_CloseAtOnce)
        )
        self.addCleanup(closer.stopListening)
        port = closer.getHost().port
        handler = self.launch(port)
        tub = Tub()
        tub.startService()
        self.addCleanup(tub.stopService)
        statuses: list[str] = []
        started = time.monotonic()
        listening = tor.listen(tub, handler, update_status=statuses.append).addTimeout(LATEST + 5, reactor)
        pid = await self.started(handler)
        try:
            await listening
        except tor.TorBootstrapError as e:
            message = str(e)
        else:
            self.fail("listen() through a tor that cannot bootstrap succeeded")
        took = time.monotonic() - started
        FIGURES["listen, authority closing connections: failure after"] = "%.1f s (bootstrap_timeout=%d)" % (
            took, TIMEOUT,
        )
        self.assertTrue(TIMEOUT <= took <= LATEST, took)
        self.assertRegex(
            message,
            r"^tor made no bootstrap progress for 10 s: it is at 10%% \(Connected to a relay\)\. Its last "
            r"warning: the connection to the relay at 127\.0\.0\.1:%d (was reset, by the relay or by a "
            r"firewall or proxy in between|failed during the TLS handshake: something in between "
            r"interfered, or it is not a tor relay) \(" % (port,),
        )
        self.assertLog(message)
        self.assertTrue(
            any(re.match(r"^waiting for tor bootstrap \(10%: Connected to a relay; last problem: ", s) for s in statuses),
            statuses,
        )
        self.assertEqual(tub.getListeners(), [])
        await self.assertStopped(handler, pid)

    @classmethod
    def tearDownClass(cls) -> None:
        for name, figure in FIGURES.items():
            print("%s: %s" % (name, figure))
