"""
An I2P router that cannot reach the network, in memory: a launched i2pd
whose log says reseeding failed (no peers), and an attached router whose SAM
bridge never answers SESSION CREATE.  Driven by a MemoryReactorClock and the
fake SAM bridge of tests/i2p/_fakes.py; i2pd's log is a file we write, with the
exact lines i2pd 2.45.1 writes.  The real i2pd is in
tests/integration/test_i2p_offline.py.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock

from foolscap_sidetls import Limits, i2p
from foolscap_sidetls._process import OWN_GROUP_CODE
from foolscap_sidetls.i2p import _i2pd_log, _launch
from foolscap_sidetls.i2p._handler import _make_handler
from foolscap_sidetls.i2p._i2pd_log import I2PDLog
from foolscap_sidetls.i2p.sam import SAMBridge

from ._fakes import FakeSAMBridge, TempTestCase

#: What i2pd 2.45.1 (Debian) logs at loglevel=warn on a machine without
#: DNS, within a second of starting (9 of its 10 attempts left out).
NO_DNS = b"""\
22:18:26@917/none - i2pd v2.45.1 (0.9.57) starting...
22:18:26@917/error - RouterInfo: Can't open file 
22:18:26@917/error - Reseed: Couldn't connect to i2p.novg.net: Host not found (authoritative)
22:18:26@917/warn - Reseed: SU3 download failed
22:18:26@917/error - Reseed: Couldn't connect to reseed2.i2p.net: Host not found (authoritative)
22:18:26@917/warn - Reseed: SU3 download failed
22:18:26@917/warn - Reseed: Failed to reseed from servers after 10 attempts
22:18:26@917/warn - Reseed: Failed to reseed from servers
22:18:26@917/warn - Transports: Can't find routers for peer test IPv4
"""
NO_PEERS = b"22:18:33@959/error - Tunnels: Can't create outbound tunnel, no peers available\n"
#: ... and with reseed.urls empty.
NO_SERVERS = b"""\
22:43:25@478/warn - Reseed: No reseed servers specified
22:43:25@478/warn - Reseed: Failed to reseed from servers
"""
LAST = "2 attempts; the last: Couldn't connect to reseed2.i2p.net: Host not found (authoritative)"


class FakeProcessTransport:
    pid = 4242

    def __init__(self) -> None:
        self.signals: list[str] = []

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)


class Ticking(TempTestCase):
    def tick(self, sam: FakeSAMBridge, seconds: int) -> None:
        """Advance one second at a time, as the real clock does."""
        for _ in range(seconds):
            sam.advance(1)

    def ours(self, clock: MemoryReactorClock) -> list[Any]:
        """The timers left, but the fake bridge's own (its never-sent SESSION STATUS)."""
        return [c for c in clock.getDelayedCalls() if "FakeSAM" not in repr(c)]


class LogTests(TempTestCase):
    def write(self, data: bytes, mode: str = "ab") -> str:
        with open(self.path, mode) as f:
            f.write(data)
        return self.path

    def setUp(self) -> None:
        self.path = self.mktemp()

    def test_reseed_failed(self) -> None:
        log = I2PDLog(self.write(NO_DNS))
        log.poll()
        self.assertEqual((log.reseed_failed, log.reseed_errors, log.no_peers), (True, 2, False))
        self.assertEqual(log.diagnosis(), LAST)
        self.write(NO_PEERS)
        log.poll()
        self.assertTrue(log.no_peers)

    def test_no_servers(self) -> None:
        log = I2PDLog(self.write(NO_SERVERS))
        log.poll()
        self.assertEqual(log.diagnosis(), "No reseed servers specified")

    def test_not_yet(self) -> None:
        """Reseed attempts failing, but i2pd has not given up yet: no diagnosis."""
        log = I2PDLog(self.write(NO_DNS.split(b"22:18:26@917/warn - Reseed: Failed")[0]))
        log.poll()
        self.assertEqual((log.reseed_errors, log.diagnosis()), (2, None))

    def test_earlier_run_ignored(self) -> None:
        """Lines an earlier i2pd wrote into the same data directory's log do not count."""
        self.write(NO_DNS)
        log = I2PDLog(self.path, os.stat(self.path).st_size)
        log.poll()
        self.assertIsNone(log.diagnosis())
        # Truncated (a new log): read from its start.
        self.write(NO_SERVERS, "wb")
        log.poll()
        self.assertEqual(log.diagnosis(), "No reseed servers specified")

    def test_hostile_lines(self) -> None:
        """Over-long lines, control characters, bad UTF-8: bounded reads, short printable reasons."""
        reason = "Couldn't connect to \x1b[2Jevil\x07: " + "x" * 5000
        self.write(b"1@1/error - Reseed: " + reason.encode() + b"\xff\xfe\n")
        self.write(b"A" * (3 * _i2pd_log._LOG_READ))  # a line that never ends...
        self.write(b" - Reseed: Failed to reseed from servers\n")  # ...whose end says this
        log = I2PDLog(self.path)
        log.poll()
        self.assertEqual(log.reseed_errors, 1)
        why = log.reseed_reason
        assert why is not None
        self.assertEqual(why, "Couldn't connect to ?[2Jevil?: " + "x" * 169 + "...")
        self.assertEqual(len(why), 203)
        self.assertTrue(why.isprintable())
        polls = 1
        while log._offset < os.stat(self.path).st_size:
            log.poll()
            polls += 1
            # Never more than one line's worth held back.
            self.assertLessEqual(len(log._partial), _i2pd_log._LOG_LINE)
        self.assertEqual(polls, 4)
        # The over-long line was cut, and its tail was not read as a line.
        self.assertFalse(log.reseed_failed)
        self.assertIsNone(log.diagnosis())

    def test_missing_file(self) -> None:
        log = I2PDLog(self.path + ".none")
        log.poll()
        self.assertIsNone(log.diagnosis())


class LaunchedOffline(Ticking):
    """A launched i2pd (its process faked) whose log says it could not reseed."""

    def launched(self, reseed_timeout: Any = i2p.RESEED_TIMEOUT, options: Any = None):
        self.sam = FakeSAMBridge()
        self.sam.session_delay = 10000  # tunnels never get built
        self.clock = self.sam.clock
        launcher = _launch._Launcher("/usr/sbin/i2pd", self.mktemp(), {}, self.clock, reseed_timeout)
        process = _launch._I2PDProcess()
        self.transport = FakeProcessTransport()
        process.transport = self.transport
        launcher.process = process
        self.logfile = self.mktemp()
        launcher.log = I2PDLog(self.logfile)
        bridge = SAMBridge(self.sam.endpoint, "tcp:127.0.0.1:7656", self.clock, launcher)
        launcher.bridge = bridge
        handler = _make_handler(bridge, options, None, "launch()", Limits(handshake_timeout=None, close_timeout=None))
        self.addCleanup(self.close, handler)
        return handler

    def close(self, handler: i2p.I2PHandler) -> None:
        if handler._session is not None:
            handler._session.close()
        self.sam.flush()

    def log(self, data: bytes) -> None:
        with open(self.logfile, "ab") as f:
            f.write(data)

    def message(self) -> str:
        return (
            "i2pd has no peers: reseeding failed (%s); this machine cannot reach the I2P network. "
            "i2pd's log: %s" % (LAST, self.logfile)
        )

    def test_zero_hop_sessions_need_no_peers(self) -> None:
        """
        A session whose tunnels have no hops opens without peers (a private
        test network's lone router): a failed reseed is no reason to give
        up on it, nor to stop i2pd.
        """
        h = self.launched(options={"inbound.length": 0, "outbound.length": 0})
        self.sam.session_delay = 45
        statuses: list[str] = []
        d = h.prepare(statuses.append)
        self.sam.flush()
        self.log(NO_DNS + NO_PEERS)
        self.tick(self.sam, 44)
        self.assertNoResult(d)
        self.assertEqual(self.transport.signals, [])
        self.tick(self.sam, 1)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(
            statuses,
            ["opening SAM session (can take ~20 s)",
             "opening SAM session (can take ~20 s): no answer to SESSION CREATE from the launched i2pd's SAM "
             "bridge (tcp:127.0.0.1:7656) for 30 s (the last thing SAM said: 'HELLO REPLY RESULT=OK VERSION=3.1')"],
        )

    def test_fails_after_reseed_timeout(self) -> None:
        h = self.launched()
        statuses: list[str] = []
        d = h.prepare(statuses.append)
        self.sam.flush()
        self.assertEqual(statuses, ["opening SAM session (can take ~20 s)"])
        self.tick(self.sam, 1)
        self.assertEqual(len(statuses), 1)
        self.log(NO_DNS + NO_PEERS)
        self.tick(self.sam, 1)
        self.assertEqual(statuses[1], "opening SAM session: %s; giving up in 28 s" % (self.message(),))
        self.tick(self.sam, 27)
        self.assertNoResult(d)
        self.assertEqual(statuses[-1], "opening SAM session: %s; giving up in 1 s" % (self.message(),))
        self.tick(self.sam, 1)
        f = self.failureResultOf(d, i2p.I2PDFailed)
        self.assertEqual(
            str(f.value),
            self.message() + " (no SAM session after 30 s; launch(reseed_timeout=None) keeps waiting)",
        )
        # The SESSION CREATE socket is closed, i2pd is being stopped, no timer is left.
        self.assertEqual(self.sam.open_sockets(), [])
        self.assertEqual(self.transport.signals, ["TERM"])
        h._bridge.launcher.process.processEnded(error.ProcessTerminated(signal=15))
        self.assertEqual(self.ours(self.clock), [])

    def test_keeps_waiting_without_timeout(self) -> None:
        h = self.launched(reseed_timeout=None)
        self.sam.session_delay = 295
        statuses: list[str] = []
        d = h.prepare(statuses.append)
        self.sam.flush()
        self.log(NO_DNS)
        self.tick(self.sam, 1)
        self.tick(self.sam, 290)
        self.assertNoResult(d)
        self.assertEqual(statuses[1:], ["opening SAM session: %s; still waiting" % (self.message(),)])
        self.assertEqual(self.transport.signals, [])
        # Peers came after all: the session opens.
        self.tick(self.sam, 4)
        self.assertIsNone(self.successResultOf(d))

    def test_stopped_for_want_of_peers(self) -> None:
        """
        The i2pd stops (another session's watch stopped it) while this
        session waits: the error says why, not just "did the router stop?".
        """
        h = self.launched()
        d = h.prepare()
        self.sam.flush()
        self.log(NO_DNS)
        self.tick(self.sam, 5)
        self.sam.drop_session(h.dial_nickname)
        f = self.failureResultOf(d, i2p.I2PDFailed)
        self.assertEqual(str(f.value), self.message())

    def test_reseed_timeout_checked(self) -> None:
        exe = "/bin/true"
        for bad in (0, -1, "30", True, float("nan"), float("inf")):
            e = self.assertRaises(ValueError, i2p.launch, exe, reseed_timeout=bad, reactor=MemoryReactorClock())
            self.assertIn("reseed_timeout must be a number of seconds greater than 0, or None", str(e))
        self.assertEqual(i2p.launch(exe, reseed_timeout=None, reactor=MemoryReactorClock())._bridge.launcher.reseed_timeout, None)
        self.assertEqual(i2p.launch(exe, reactor=MemoryReactorClock())._bridge.launcher.reseed_timeout, 30.0)

    def test_own_process_group(self) -> None:
        """i2pd is started through a Python that leaves our process group, then execs it (same pid)."""
        spawned: list[tuple[str, list[str]]] = []

        class Reactor(MemoryReactorClock):
            def spawnProcess(self, protocol, executable, args, env=None, path=None):
                spawned.append((executable, list(args)))
                raise OSError("not in this test")

        h = i2p.launch("/bin/true", data_directory=self.mktemp(), reactor=Reactor())
        f = self.failureResultOf(h.prepare(), i2p.I2PDFailed)
        self.assertIn("could not start /bin/true", str(f.value))
        [(executable, args)] = spawned
        self.assertEqual(executable, sys.executable)
        self.assertEqual(args[:4], [sys.executable, "-c", OWN_GROUP_CODE, "/bin/true"])
        self.assertEqual(args[4], "--conf")


class AttachedOffline(Ticking):
    """A router we did not launch, whose SAM bridge never answers SESSION CREATE."""

    def test_status_and_timeout(self) -> None:
        sam = FakeSAMBridge()
        sam.session_delay = 10000
        h = i2p.sam_endpoint(sam.endpoint, reactor=sam.clock)
        statuses: list[str] = []
        d = h.prepare(statuses.append)
        sam.flush()
        self.tick(sam, 29)
        self.assertEqual(statuses, ["opening SAM session (can take ~20 s)"])
        self.tick(sam, 1)
        said = "(the last thing SAM said: 'HELLO REPLY RESULT=OK VERSION=3.1')"
        self.assertEqual(statuses[1:], [
            "opening SAM session (can take ~20 s): no answer to SESSION CREATE from the SAM bridge at "
            "tcp:127.0.0.1:7656 for 30 s " + said,
        ])
        self.tick(sam, 240)
        self.assertEqual(len(statuses), 10)
        self.assertIn("for 270 s", statuses[-1])
        self.tick(sam, 30)
        f = self.failureResultOf(d, i2p.SAMTimeout)
        self.assertEqual(
            str(f.value),
            "the SAM session did not open: the SAM bridge at tcp:127.0.0.1:7656 did not answer SESSION CREATE "
            "within 300 s %s, so the router has built no tunnels -- is it connected to the I2P network? "
            "Its log or web console says why" % (said,),
        )
        self.assertEqual(sam.open_sockets(), [])
        self.assertEqual(self.ours(sam.clock), [])
        h.stop()

    def test_listen_reports_status(self) -> None:
        """serve's case: listen() says what its session waits for, and rejects a bad update_status."""
        from foolscap.api import Tub

        sam = FakeSAMBridge()
        sam.session_delay = 10000
        h = i2p.sam_endpoint(sam.endpoint, reactor=sam.clock)
        tub = Tub()
        keyfile = self.mktemp()
        e = self.assertRaises(TypeError, i2p.listen, tub, h, keyfile, update_status="print")
        self.assertEqual(
            str(e), "listen() expects update_status to be a callable taking a str, got 'print' (str)"
        )
        statuses: list[str] = []
        d = i2p.listen(tub, h, keyfile, update_status=statuses.append)
        sam.flush()
        self.tick(sam, 30)
        self.assertEqual(statuses, [
            "opening SAM session (can take ~20 s)",
            "opening SAM session (can take ~20 s): no answer to SESSION CREATE from the SAM bridge at "
            "tcp:127.0.0.1:7656 for 30 s (the last thing SAM said: 'HELLO REPLY RESULT=OK VERSION=3.1')",
        ])
        self.tick(sam, 270)
        self.failureResultOf(d, i2p.SAMTimeout)
        self.assertEqual(tub.getListeners(), [])
        h.stop()
        sam.flush()
