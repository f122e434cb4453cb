"""
Attacks on (and faults of) the SAM bridge against an I2P listener, and the
I2P stream transport's close.

The listener keeps STREAM ACCEPTs open and reopens a lost session; every
way the bridge can fail one of those -- a bad peer line after RESULT=OK,
RESULT=OK then EOF, a refused STREAM ACCEPT, a socket closed before HELLO,
a refused HELLO, an over-long line, INVALID_ID, SESSION CREATE refused or
flapping, the bridge refusing TCP -- must back off exponentially (one retry
pending at a time, up to 10 s) and log one warning per backoff step.  Each
test counts the bridge's connections over 4 s of fake-clock time and the
warnings logged, exactly.  Before the fix a bad peer line made the listener
reconnect at once: 12,592-13,796 SAM connections in 4 s over loopback.

The fake bridge of tests/i2p/_fakes.py is reused, with a hostile mode; one
test runs a hostile bridge on a real loopback socket for 4 s of wall time
and prints the figure (run with -s).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase, TestCase

import foolscap_sidetls
from foolscap_sidetls import i2p
from foolscap_sidetls.i2p.sam import SAMBridge, SAMConnection, SAMServerEndpoint, SAMSession

from ..._support.waiting import coroutine, until
from .._fakes import (
    B32,
    BridgeTestCase,
    FakeSAM,
    FakeSAMBridge,
    FakeSAMEndpoint,
    Recorder,
    make_keypair,
)

#: A peer line whose destination is not I2P base64 at all.
BAD_PEER_LINE = "this-is-not-a-destination FROM_PORT=0 TO_PORT=0"
#: How much fake-clock time each test lets the bridge fail for.
WINDOW = 4.0
#: Stop pumping a runaway reconnect loop at this many connections.
CAP = 2000


class Warnings:
    """The warnings (and worse) foolscap_sidetls.i2p logs while installed."""

    def __init__(self, case: Any) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "foolscap_sidetls.i2p" and event["log_level"] >= LogLevel.warn:
            self.events.append(event)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def clear(self) -> None:
        del self.events[:]


# -- a hostile fake SAM bridge ------------------------------------------------------


class HostileSAM(FakeSAM):
    """The bridge's end of one SAM socket, misbehaving as C{bridge.mode} says."""

    bridge: "HostileBridge"

    def connectionMade(self) -> None:
        if self.bridge.mode == "close":
            # Accept the TCP connection, then close it before HELLO.
            self.transport.loseConnection()

    def do_session_create(self, fields: dict[str, str]) -> None:
        FakeSAM.do_session_create(self, fields)
        if self.bridge.mode == "flap":
            # SESSION STATUS RESULT=OK, then the session is gone.
            self.transport.loseConnection()

    def do_stream_accept(self, fields: dict[str, str]) -> None:
        mode = self.bridge.mode
        if mode == "bad-line":
            self.send("STREAM STATUS RESULT=OK")
            self.send(BAD_PEER_LINE)
        elif mode == "ok-eof":
            self.send("STREAM STATUS RESULT=OK")
            self.transport.loseConnection()
        elif mode == "long-line":
            self.send("STREAM STATUS RESULT=OK")
            self.transport.write(b"A" * 70000)
        elif mode == "invalid-id":
            self.send("STREAM STATUS RESULT=INVALID_ID")
        else:
            FakeSAM.do_stream_accept(self, fields)


class HostileEndpoint(FakeSAMEndpoint):
    bridge: "HostileBridge"

    def connect(self, factory):
        bridge = self.bridge
        bridge.attempts += 1
        if bridge.attempts > CAP:
            # A runaway reconnect loop: hold it here (this connect never
            # completes), so the test can report the count.
            return defer.Deferred()
        return FakeSAMEndpoint.connect(self, factory)


class HostileBridge(FakeSAMBridge):
    server_class = HostileSAM

    def __init__(self) -> None:
        FakeSAMBridge.__init__(self)
        self.mode = ""
        #: TCP connections asked for (refused ones included).
        self.attempts = 0
        self.endpoint = HostileEndpoint(self)

    def flush(self) -> None:
        """Move bytes until quiet, or until a runaway loop made L{CAP} connections."""
        for _ in range(10000):
            if self.attempts > CAP:
                return
            moved = False
            for pump in list(self.pumps):
                if pump.clientIO.disconnected and pump.serverIO.disconnected:
                    self.pumps.remove(pump)
                elif pump.pump(advanceClock=False):
                    moved = True
            if not moved:
                return

    def run(self, seconds: float, step: float = 0.05) -> None:
        """Let C{seconds} of fake time pass, moving bytes at each step."""
        for _ in range(int(round(seconds / step))):
            self.clock.advance(step)
            self.flush()

    def drop_accepts(self, nickname: str) -> None:
        """The bridge closes the listener's pending STREAM ACCEPTs (session kept)."""
        for acceptor in self.accepting.pop(nickname, []):
            acceptor.transport.loseConnection()
        self.flush()


class HostileBridgeTestCase(BridgeTestCase):
    def setUp(self) -> None:
        self.bridge = HostileBridge()
        self.clock = self.bridge.clock
        self.warnings = Warnings(self)

    def assertBackoff(self, connections: int, delays: list[float], why: str) -> None:
        """
        Over L{WINDOW} s from now: exactly C{connections} new SAM connections
        (a handful per second at most) and one warning per backoff step,
        each saying C{why} and retrying after the next of C{delays}.
        """
        before = self.bridge.attempts
        self.bridge.run(WINDOW)
        made = self.bridge.attempts - before
        self.assertLessEqual(made, 10, "%d SAM connections in %g s" % (made, WINDOW))
        self.assertEqual(made, connections)
        lines = self.warnings.lines()
        self.assertEqual(len(lines), len(delays), lines[:5])
        self.assertEqual([float(e["delay"]) for e in self.warnings.events], delays)
        for line in lines:
            self.assertIn(why, line)


# -- the listener's retry loops --------------------------------------------------------


class AcceptLoopTests(HostileBridgeTestCase):
    def test_bad_peer_line(self) -> None:
        """
        The bridge answers HELLO and SESSION CREATE, then every STREAM
        ACCEPT with RESULT=OK and a malformed peer line: one retry of both
        accepts per backoff step (t = 0.5, 1.5, 3.5 s), one warning per step.
        """
        self.bridge.mode = "bad-line"
        b32, accepted, port = self.open_listener()
        # The session's socket and the two first STREAM ACCEPTs.
        self.assertEqual(self.bridge.attempts, 3)
        self.assertEqual(len(self.warnings.lines()), 1)
        self.warnings.clear()
        self.assertBackoff(6, [1.0, 2.0, 4.0], "sent a bad peer line 'this-is-not-a-destination FROM_PORT=0 TO_PORT=0'")
        self.assertEqual(accepted, [])
        self.assertEqual(port.failures, 4)
        self.assertIn("expected an I2P destination in base64", self.warnings.lines()[0])

    def test_good_peer_resets_backoff(self) -> None:
        """Only an accepted, well-formed peer starts the backoff over."""
        self.bridge.mode = "bad-line"
        b32, accepted, port = self.open_listener()
        self.bridge.run(WINDOW)
        self.assertEqual(self.bridge.attempts, 9)
        self.assertEqual(port.failures, 4)
        # The bridge mends; the next retry (due at 7.5 s) opens good accepts.
        self.bridge.mode = ""
        self.bridge.run(4.0)
        self.assertEqual(len(self.bridge.accepting["srv"]), 2)
        self.assertEqual(port.failures, 4)
        d, _ = self.dial(self.handler())
        self.bridge.flush()
        self.successResultOf(d)
        self.assertEqual(len(accepted), 1)
        self.assertEqual(port.failures, 0)
        self.assertEqual(len(self.bridge.accepting["srv"]), 2)
        # Failing again starts at the first delay.
        self.warnings.clear()
        self.bridge.mode = "bad-line"
        self.bridge.drop_accepts("srv")
        self.assertBackoff(6, [0.5, 1.0, 2.0, 4.0], "I2P listener")

    def test_quiet_period_resets_backoff(self) -> None:
        """A minute without a failure after the last retry also starts the backoff over."""
        self.bridge.mode = "ok-eof"
        b32, accepted, port = self.open_listener()
        self.bridge.run(WINDOW)
        self.assertEqual(self.bridge.attempts, 9)
        self.bridge.mode = ""
        self.bridge.run(4.0)
        self.assertEqual(port.failures, 4)
        self.bridge.run(60.0)
        self.warnings.clear()
        self.bridge.mode = "ok-eof"
        self.bridge.drop_accepts("srv")
        self.assertBackoff(6, [0.5, 1.0, 2.0, 4.0], "I2P listener")

    def test_ok_then_eof(self) -> None:
        """RESULT=OK, then the bridge closes the accepting socket: backed off."""
        self.bridge.mode = "ok-eof"
        b32, accepted, port = self.open_listener()
        self.assertEqual(self.bridge.attempts, 3)
        self.warnings.clear()
        self.bridge.run(0.01)
        self.assertBackoff(6, [1.0, 2.0, 4.0], "closed the connection while we waited for the answer to STREAM ACCEPT")
        self.assertEqual(accepted, [])

    def test_long_line(self) -> None:
        """70,000 bytes without a newline after RESULT=OK: backed off, the limit named once per step."""
        self.bridge.mode = "long-line"
        b32, accepted, port = self.open_listener()
        self.assertEqual(self.bridge.attempts, 3)
        self.assertBackoff(6, [0.5, 1.0, 2.0, 4.0], "sent a line longer than 65536 bytes while we waited for the answer to STREAM ACCEPT")

    def test_accept_refused(self) -> None:
        """The bridge drops the pending accepts, then refuses every STREAM ACCEPT."""
        b32, accepted, port = self.open_listener()
        self.bridge.refuse["STREAM ACCEPT"] = ("I2P_ERROR", "no")
        self.bridge.drop_accepts("srv")
        # Both accepts closed: one step.
        self.assertEqual(len(self.warnings.lines()), 1)
        self.assertIn("closed the connection while we waited for the answer to STREAM ACCEPT",
                      self.warnings.lines()[0])
        self.assertIn("retrying in 0.5 s", self.warnings.lines()[0])
        self.warnings.clear()
        self.assertBackoff(6, [1.0, 2.0, 4.0], "could not open a STREAM ACCEPT: the SAM bridge at fake SAM refused STREAM ACCEPT: RESULT=I2P_ERROR MESSAGE=no")

    def test_closed_before_hello(self) -> None:
        """The bridge takes the TCP connection and closes it at once."""
        b32, accepted, port = self.open_listener()
        self.bridge.mode = "close"
        self.bridge.drop_accepts("srv")
        self.warnings.clear()
        self.assertBackoff(6, [1.0, 2.0, 4.0], "it closed the connection without answering HELLO; is it a SAM bridge?")

    def test_hello_refused(self) -> None:
        b32, accepted, port = self.open_listener()
        self.bridge.hello = 'HELLO REPLY RESULT=I2P_ERROR MESSAGE="busy"'
        self.bridge.drop_accepts("srv")
        self.warnings.clear()
        self.assertBackoff(6, [1.0, 2.0, 4.0], "refused HELLO: RESULT=I2P_ERROR MESSAGE=busy")

    def test_refused_tcp(self) -> None:
        b32, accepted, port = self.open_listener()
        self.bridge.down = True
        self.bridge.drop_accepts("srv")
        self.warnings.clear()
        # One refused connection per step: the retry stops the refill.
        self.assertBackoff(3, [1.0, 2.0, 4.0], "no SAM bridge answering at fake SAM (connection refused)")
        self.assertEqual(self.bridge.attempts, 6)


class SessionLoopTests(HostileBridgeTestCase):
    def test_session_create_refused(self) -> None:
        """
        The session is lost and reopening it is refused, then it reopens
        but is dropped at once: reopening is no success, so the backoff
        goes on (8 s) instead of starting over.
        """
        b32, accepted, port = self.open_listener()
        self.bridge.refuse["SESSION CREATE"] = ("DUPLICATED_DEST", "in use")
        self.bridge.drop_session("srv")
        self.assertEqual(len(self.warnings.lines()), 1)
        self.assertIn("the SAM session was lost; reopening it", self.warnings.lines()[0])
        self.warnings.clear()
        self.assertBackoff(3, [1.0, 2.0, 4.0], "reopening the SAM session failed: the SAM bridge at fake SAM refused "
                           "SESSION CREATE: RESULT=DUPLICATED_DEST")
        del self.bridge.refuse["SESSION CREATE"]
        self.bridge.mode = "flap"
        self.warnings.clear()
        # The retry due at 7.5 s reopens the session, which is dropped.
        self.assertBackoff(3, [8.0], "the SAM session was lost; reopening it")
        self.assertEqual(port.failures, 5)

    def test_session_flaps(self) -> None:
        """SESSION CREATE succeeds, then the bridge drops the session at once, every time."""
        b32, accepted, port = self.open_listener()
        self.bridge.mode = "flap"
        self.bridge.drop_session("srv")
        self.warnings.clear()
        # Each step: the session's socket and its two accepts.
        self.assertBackoff(9, [1.0, 2.0, 4.0], "the SAM session was lost; reopening it")
        self.assertEqual(self.bridge.verbs().count("SESSION CREATE"), 4)

    def test_invalid_id(self) -> None:
        """The bridge answers every STREAM ACCEPT with INVALID_ID: the session is reopened, backed off."""
        b32, accepted, port = self.open_listener()
        self.bridge.mode = "invalid-id"
        self.bridge.drop_accepts("srv")
        self.warnings.clear()
        # 0.5 s: two accepts (INVALID_ID), then at 1.5 and 3.5 s a new
        # session and its two accepts.
        self.assertBackoff(8, [1.0, 2.0, 4.0], "I2P listener")
        # The first session, and the two reopened.
        self.assertEqual(self.bridge.verbs().count("SESSION CREATE"), 3)
        self.assertEqual(
            sum("no longer knows the session" in line for line in self.warnings.lines()), 3
        )

    def test_stop_cancels_retry(self) -> None:
        self.bridge.mode = "bad-line"
        b32, accepted, port = self.open_listener()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        d = port.stopListening()
        self.bridge.flush()
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        before = self.bridge.attempts
        self.bridge.run(WINDOW)
        self.assertEqual(self.bridge.attempts, before)


# -- the stream transport after the application closed it ----------------------------


class StreamCloseTests(SynchronousTestCase):
    def accepted(self, after_peer: bytes = b""):
        """A SAM socket past its peer line, with C{after_peer} received in the same read."""
        clock = MemoryReactorClock()
        connection = SAMConnection("tcp:127.0.0.1:7656", clock)
        transport = StringTransport()
        connection.makeConnection(transport)
        connection.dataReceived(b"HELLO REPLY RESULT=OK VERSION=3.1\n")
        self.successResultOf(connection.hello)
        d = connection.request("STREAM ACCEPT ID=a SILENT=false", "STREAM ACCEPT", "STREAM STATUS", 30)
        connection.dataReceived(b"STREAM STATUS RESULT=OK\n")
        self.successResultOf(d)
        line = connection.next_line()
        public, _ = make_keypair()
        connection.dataReceived(public.encode() + b" FROM_PORT=0 TO_PORT=0\n" + after_peer)
        self.successResultOf(line)
        return connection, transport

    def test_no_bytes_after_lose_connection(self) -> None:
        for close in ("loseConnection", "abortConnection"):
            connection, transport = self.accepted()
            app = Recorder()
            here = i2p.I2PAddress(B32)
            connection.attach(app, here, here)
            connection.dataReceived(b"12345")
            getattr(app.transport, close)()
            connection.dataReceived(b"more bytes from the peer")
            self.assertEqual(app.received, b"12345", close)
            self.assertIsNone(app.lost)
            connection.connectionLost(None)
            self.assertIsNotNone(app.lost)
            self.assertEqual(len(app.received), 5)

    def test_no_held_bytes_after_close_in_connection_made(self) -> None:
        """Bytes that came with the peer line are not delivered to an application that closed at once."""

        class Closer(Recorder):
            def connectionMade(self) -> None:
                self.transport.loseConnection()

        connection, transport = self.accepted(b"held bytes")
        app = Closer()
        here = i2p.I2PAddress(B32)
        connection.attach(app, here, here)
        self.assertEqual(app.received, b"")
        self.assertTrue(transport.disconnecting)

    def test_next_line_after_eof(self) -> None:
        """The bridge closed after RESULT=OK: waiting for the peer line fails at once."""
        clock = MemoryReactorClock()
        connection = SAMConnection("tcp:127.0.0.1:7656", clock)
        connection.makeConnection(StringTransport())
        connection.dataReceived(b"HELLO REPLY RESULT=OK VERSION=3.1\n")
        d = connection.request("STREAM ACCEPT ID=a SILENT=false", "STREAM ACCEPT", "STREAM STATUS", 30)
        connection.dataReceived(b"STREAM STATUS RESULT=OK\n")
        self.successResultOf(d)
        connection.connectionLost(None)
        f = self.failureResultOf(connection.next_line(), i2p.SAMConnectionLost)
        self.assertIn("closed the STREAM ACCEPT connection before a peer arrived", str(f.value))


# -- over a real loopback socket -------------------------------------------------------


class _BadLineSAM(LineReceiver):
    """A SAM bridge on loopback that answers STREAM ACCEPT with RESULT=OK and a bad peer line."""

    delimiter = b"\n"
    factory: Any

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.factory.open.add(self)

    def connectionLost(self, reason: object = None) -> None:
        self.factory.open.discard(self)

    def lineReceived(self, raw: bytes) -> None:
        words = raw.decode("utf-8").split(" ")
        verb = " ".join(words[:2])
        if verb == "HELLO VERSION":
            self.sendLine(b"HELLO REPLY RESULT=OK VERSION=3.1")
        elif verb == "SESSION CREATE":
            fields = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            self.sendLine(b"SESSION STATUS RESULT=OK DESTINATION=" + fields["DESTINATION"].encode())
        elif verb == "STREAM ACCEPT":
            self.sendLine(b"STREAM STATUS RESULT=OK")
            self.sendLine(BAD_PEER_LINE.encode())


class LoopbackTests(TestCase):
    @coroutine
    async def test_bad_peer_line_loopback(self) -> None:
        """
        The issue's measurement: a bad-line bridge on 127.0.0.1 for 4 s of
        wall time; the old listener made 12,592-13,796 SAM connections.
        """
        warnings = Warnings(self)
        bridge = Factory.forProtocol(_BadLineSAM)
        bridge.connections = 0  # type: ignore[attr-defined]
        bridge.open = set()  # type: ignore[attr-defined]
        server = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(bridge)
        self.addCleanup(server.stopListening)
        sam = TCP4ClientEndpoint(reactor, "127.0.0.1", server.getHost().port, timeout=5)
        _, private = make_keypair()
        session = SAMSession(SAMBridge(sam, "loopback SAM", reactor), "listen", "bad", private, {})
        endpoint = foolscap_sidetls.listener(SAMServerEndpoint(session, None))
        port = await endpoint.listen(Factory.forProtocol(Recorder)).addTimeout(10, reactor)
        try:
            await task.deferLater(reactor, WINDOW, lambda: None)
            made = bridge.connections  # type: ignore[attr-defined]
            logged = len(warnings.lines())
        finally:
            await port.stopListening()
        print("\nbad peer line over loopback: %d SAM connections and %d warnings in %g s" % (made, logged, WINDOW))
        self.assertLessEqual(made, 10)
        self.assertLessEqual(logged, 4)
        await until(self, lambda: not bridge.open, 5, "the bridge's sockets to close")  # type: ignore[attr-defined]
