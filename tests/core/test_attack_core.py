"""
Security hole 1 and its class: after this end closes a connection, nothing
more reaches the application.

The attack (from a review that attacked the public API over loopback): a
connection sends one 64 KiB write of empty header blocks and never reads.
Foolscap rejects the first block and closes; a wrapper that goes on handing
it the rest of the read makes it reject every block, each rejection a
logged Failure and another C{HTTP/1.1 500} line: 16,384 answers for one
write.  Stock Foolscap, over a TCP transport that stops reading once closed,
answers once.

Over real loopback TCP, stock Foolscap measured in the same test:

- bytes answered per attacking connection, listener and dialer (the mirror:
  a hostile listener flooding our dialer);
- one log line per attacking connection, ours and Foolscap's;
- an honest call served within 1 s while 200 attackers flood.

In memory (iosim, StringTransport, the testing module's transports, the
test splice relay): no byte reaches the application after it called
C{loseConnection} or C{abortConnection}, in each phase; and C{startTLS}
after the connection is lost is refused and leaves nothing scheduled.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase, TestCase

from foolscap.api import Tub
from foolscap.logging import log as flog
from foolscap.negotiate import Negotiation
from foolscap.util import allocate_tcp_port

from foolscap_sidetls import install, listener
from foolscap_sidetls import Phase
from foolscap_sidetls._protocol import SideTLSFactory
from foolscap_sidetls.testing._splice import SpliceRelay, _ParkedProtocol, _RelayEnd
from foolscap_sidetls.testing import MemoryNetwork

from .._support.hostile import Echo, LogCapture, certificate
from .._support.tls import foolscapOptions
from .._support.waiting import coroutine, until

#: The attack: one 64 KiB write of empty header blocks.
EMPTY_BLOCKS = b"\r\n\r\n" * 16384

#: What Foolscap answers a request it cannot parse, once.
ONE_ANSWER = len(b"HTTP/1.1 500 Internal Server Error: internal server error, see logs\r\n\r\n")

CLOSES = ("loseConnection", "abortConnection")


# -- loopback pieces -----------------------------------------------------------


class Attacker(Protocol):
    """Sends the attack at once; counts what comes back (or, with C{read=False}, never reads)."""

    def __init__(self, payload: bytes, read: bool = True) -> None:
        self.payload = payload
        self.read = read
        self.answered = 0
        self.done: Deferred[int] = Deferred()

    def connectionMade(self) -> None:
        if not self.read:
            self.transport.pauseProducing()
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.answered += len(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.done.callback(self.answered)


class HostileListener(Protocol):
    """A listener that floods whoever dials it with the attack, and counts what the dialer sends."""

    def __init__(self, received: list[int], lost: list[int]) -> None:
        self.received = received
        self.lost = lost
        self.count = 0

    def connectionMade(self) -> None:
        self.transport.write(EMPTY_BLOCKS)

    def dataReceived(self, data: bytes) -> None:
        self.count += len(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.received.append(self.count)
        self.lost.append(1)


class FoolscapErrors:
    """Counts Foolscap's own log events for a negotiation error (one per rejected block)."""

    def __init__(self, case: TestCase) -> None:
        self.count = 0
        flog.theLogger.addImmediateObserver(self)
        case.addCleanup(flog.theLogger.removeImmediateObserver, self)

    def __call__(self, event: dict[str, Any]) -> None:
        if str(event.get("message", "")).startswith("negotiation had internal error"):
            self.count += 1


class LoopbackAttackTests(TestCase):
    """Over real loopback TCP (127.0.0.1 only), sidetls against stock Foolscap."""

    timeout = 60

    def setUp(self) -> None:
        self.logs = LogCapture().install(self)
        self.foolscapErrors = FoolscapErrors(self)

    def tub(self, cert: int) -> Tub:
        tub = Tub(certData=certificate(cert))
        tub.startService()
        self.addCleanup(lambda: tub.stopService() if tub.running else None)
        return tub

    async def serve(self, sidetls: bool, cert: int, backlog: int = 50) -> tuple[Tub, str, int, Any]:
        """A listening Tub (stock, or sidetls via the public API); its FURL, port and endpoint."""
        tub = self.tub(cert)
        port = allocate_tcp_port()
        endpoint: Any = TCP4ServerEndpoint(reactor, port, backlog=backlog, interface="127.0.0.1")
        if sidetls:
            endpoint = listener(endpoint)
        tub.listenOn(endpoint)
        tub.setLocation("tcp:127.0.0.1:%d" % port)
        furl = tub.registerReference(Echo(), "echo")
        await until(self, lambda: all(l._lp is not None for l in tub.getListeners()), 10, "listening")
        return tub, furl, port, endpoint

    async def attack(self, port: int, read: bool = True) -> Attacker:
        attacker = Attacker(EMPTY_BLOCKS, read)
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(lambda: attacker))
        return attacker

    @coroutine
    async def test_listener_answers_no_more_than_stock(self) -> None:
        """
        One attacking connection each against a stock listener and a
        sidetls one: sidetls answers no more bytes than stock (one
        C{500} line: 71 bytes).  It answered 16,384 of them.
        """
        answered = {}
        for name, sidetls in (("stock", False), ("sidetls", True)):
            _, _, port, _ = await self.serve(sidetls, 0 if not sidetls else 1)
            attacker = await self.attack(port)
            answered[name] = await until(self, lambda: attacker.done.called, 10, name + " to close") and (
                attacker.answered
            )
        self.assertEqual(answered["stock"], ONE_ANSWER, answered)
        self.assertLessEqual(answered["sidetls"], answered["stock"], answered)
        self.assertEqual(answered["sidetls"], ONE_ANSWER, answered)

    @coroutine
    async def test_one_log_line_per_attacking_connection(self) -> None:
        """
        Five attacking connections against a sidetls listener: five lines
        in our log (one each, saying why), and Foolscap logs one error per
        connection, as it does for stock (it logged one per block).
        """
        counts = {}
        for name, sidetls in (("stock", False), ("sidetls", True)):
            before = self.foolscapErrors.count
            _, _, port, _ = await self.serve(sidetls, 2 if not sidetls else 3)
            attackers = [await self.attack(port) for _ in range(5)]
            await until(self, lambda: all(a.done.called for a in attackers), 10, name + " to close them")
            counts[name] = self.foolscapErrors.count - before
        self.assertEqual(counts, {"stock": 5, "sidetls": 5})
        lines = self.logs.lines(LogLevel.info, role="listener")
        self.assertEqual(len(lines), 5, lines)
        for line in lines:
            self.assertTrue(line.startswith("sidetls listener, connection from 127.0.0.1:"), line)
            self.assertTrue(
                line.endswith(": negotiation failed in the plaintext header exchange: BananaError: not right"),
                line,
            )

    @coroutine
    async def test_honest_call_within_a_second_during_a_flood(self) -> None:
        """
        200 attacking connections that never read, and an honest dialer
        started in the same reactor turn: the honest call is answered
        within 1 s, and every attacking connection is closed with one line
        in the log.  (The backlog is raised so that 201 connections made at
        once are not queued by the kernel: what is measured is the
        listener's work per connection.)
        """
        ours, furl, port, endpoint = await self.serve(True, 4, backlog=512)
        honest = self.tub(5)
        install(honest)
        attacks = [
            TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
                Factory.forProtocol(lambda: Attacker(EMPTY_BLOCKS, read=False))
            )
            for _ in range(200)
        ]
        started = reactor.seconds()
        answer: list[Any] = []
        honest.getReference(furl).addCallback(lambda r: r.callRemote("echo", b"honest")).addBoth(answer.append)
        await until(self, lambda: answer, 30, "the honest call")
        took = reactor.seconds() - started
        attackers = await defer.gatherResults(attacks)
        self.addCleanup(lambda: [a.transport.abortConnection() for a in attackers])
        self.assertEqual(answer, [b"honest"])
        self.assertLess(took, 1.0, "the honest call took %.2f s" % (took,))
        await honest.stopService()
        factory = endpoint.factory
        await until(self, lambda: not factory.protocols, 10, "every connection closed", lambda: len(factory.protocols))
        self.assertEqual(len(self.logs.lines(LogLevel.info, role="listener")), 200)
        self.assertEqual(self.foolscapErrors.count, 200)

    @coroutine
    async def test_mirror_hostile_listener_floods_our_dialer(self) -> None:
        """
        A hostile listener floods the dialer with empty header blocks: our
        dialer's Foolscap gets one block (stock gets one read) and answers
        it once, writing back no more than stock does, with one line in
        our log and one error in Foolscap's.
        """
        received: list[int] = []
        lost: list[int] = []
        factory = Factory.forProtocol(lambda: HostileListener(received, lost))
        hostile = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(hostile.stopListening)
        furl = "pb://%s@tcp:127.0.0.1:%d/echo" % ("a" * 32, hostile.getHost().port)
        written = {}
        delivered: dict[str, list[int]] = {}
        errors = {}
        for name, sidetls in (("stock", False), ("sidetls", True)):
            chunks: list[int] = []
            delivered[name] = chunks

            class Counting(Negotiation):
                def dataReceived(self, chunk: bytes, chunks: list[int] = chunks) -> None:
                    if chunk:
                        chunks.append(len(chunk))
                    Negotiation.dataReceived(self, chunk)

            tub = self.tub(6 if not sidetls else 7)
            tub.negotiationClass = Counting
            if sidetls:
                install(tub)
            before = self.foolscapErrors.count
            outcome: list[Any] = []
            tub.getReference(furl).addBoth(outcome.append)
            await until(self, lambda: outcome and len(lost) == len(written) + 1, 10, name + " to give up")
            self.assertIsInstance(outcome[0], Failure)
            written[name] = received[-1]
            errors[name] = self.foolscapErrors.count - before
        self.assertEqual(len(delivered["sidetls"]), 1, delivered["sidetls"][:5])
        self.assertEqual(delivered["sidetls"], [4])  # the first empty block
        self.assertLessEqual(written["sidetls"], written["stock"], written)
        self.assertEqual(errors, {"stock": 1, "sidetls": 1})
        lines = self.logs.lines(role="dialer")
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("sidetls dialer, connection to 127.0.0.1:"), lines[0])


# -- in memory: every phase ----------------------------------------------------------


class Recorder(Negotiation):
    """
    A listener's application with Foolscap's phases, that closes (with
    C{how}) on its first delivery in phase C{closeIn} and records whatever
    reaches it after that.

    It is a L{Negotiation} only so that the wrapper treats it as one (keeps
    it "negotiating" until its C{dataReceived} is rebound); it overrides
    everything Foolscap's would do.
    """

    def __init__(self, closeIn: str, how: str) -> None:
        Negotiation.__init__(self)
        self.closeIn = closeIn
        self.how = how
        self.phase = "plaintext"
        self.received: list[tuple[str, bytes]] = []
        self.afterClose: list[bytes] = []
        self.closed = False
        self.lost = 0

    def makeConnection(self, transport: Any) -> None:
        Protocol.makeConnection(self, transport)

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        self.got(data)

    def got(self, data: bytes) -> None:
        if self.closed:
            self.afterClose.append(data)
            return
        self.received.append((self.phase, data))
        if self.phase == self.closeIn:
            return self.close()
        if self.phase == "plaintext":
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            self.transport.startTLS(foolscapOptions("listener"))
            self.transport.write(b"hello from the listener")  # as Foolscap's does at once
            self.phase = "hellos"
            if self.closeIn == "handshake":
                self.close()
        elif self.phase == "hellos":
            # What switchToBanana does: the wrapper sees negotiation is over.
            self.dataReceived = lambda data: self.got(data)  # type: ignore[method-assign]
            self.phase = "established"

    def close(self) -> None:
        self.closed = True
        getattr(self.transport, self.how)()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.lost += 1


#: Larger than what the TLS layer reads at a time (2 ** 15): one message
#: is several deliveries in one read, the first of which makes the
#: application close.
BIG = 40000


class ScriptedDialer(Protocol):
    """
    The peer: a header block (and C{extra} empty blocks in the same
    write), then TLS and a hello, then another message once the listener's
    hello arrives; each message is L{BIG} bytes.
    """

    def __init__(self, extra: int) -> None:
        self.extra = extra
        self.tls = False

    def connectionMade(self) -> None:
        self.transport.write(b"GET /id/x HTTP/1.1\r\n\r\n" + b"\r\n\r\n" * self.extra)

    def dataReceived(self, data: bytes) -> None:
        if not self.tls:
            self.tls = True
            self.transport.startTLS(foolscapOptions("dialer"))
            self.transport.write(b"h" * BIG)
        else:
            self.transport.write(b"b" * BIG)


PHASES = ("plaintext", "handshake", "hellos", "established")


class EveryPhaseTests(SynchronousTestCase):
    maxDiff = None

    """
    A real TLS session in memory (iosim keeps delivering to an end that
    has closed until it reports the loss): whatever the phase, once the
    application closed, no byte reaches it, and it hears of the loss once.
    """

    def run_phase(self, phase: str, how: str) -> dict[str, Any]:
        clock = Clock()
        apps: list[Recorder] = []

        def build() -> Recorder:
            apps.append(Recorder(phase, how))
            return apps[-1]

        ours = SideTLSFactory(Factory.forProtocol(build), False, clock=clock)  # type: ignore[arg-type]
        peer = SideTLSFactory(
            Factory.forProtocol(lambda: ScriptedDialer(100 if phase == "plaintext" else 0)),  # type: ignore[arg-type]
            True,
            clock=clock,
        )
        _, wrapper, pump = connectedServerAndClient(
            lambda: ours.buildProtocol(None), lambda: peer.buildProtocol(None), clock=clock, greet=False
        )
        for _ in range(40):
            pump.flush()
        app = apps[0]
        return {
            "closed in": app.received[-1][0] if app.received else None,
            "bytes after close": sum(len(data) for data in app.afterClose),
            "lost": app.lost,
            "pending calls": clock.getDelayedCalls(),
        }

    def check(self, how: str) -> None:
        outcomes = {phase: self.run_phase(phase, how) for phase in PHASES}
        expected = {
            phase: {
                "closed in": "plaintext" if phase == "handshake" else phase,
                "bytes after close": 0,
                "lost": 1,
                "pending calls": [],
            }
            for phase in PHASES
        }
        self.assertEqual(outcomes, expected)

    def test_nothing_after_loseConnection(self) -> None:
        """In each phase, after loseConnection: nothing delivered, one connectionLost."""
        self.check("loseConnection")

    def test_nothing_after_abortConnection(self) -> None:
        """In each phase, after abortConnection: nothing delivered, one connectionLost."""
        self.check("abortConnection")


class ClosedNotLostTests(SynchronousTestCase):
    """
    Plaintext phase over a transport that goes on delivering after close
    (pipes, memory, anything not TCP): neither the rest of the read nor any
    later read reaches the application.
    """

    def check(self, how: str) -> None:
        app = Recorder("plaintext", how)
        wrapper = SideTLSFactory(Factory.forProtocol(lambda: app), False, clock=Clock()).buildProtocol(None)  # type: ignore[arg-type]
        transport = StringTransport()
        wrapper.makeConnection(transport)
        wrapper.dataReceived(EMPTY_BLOCKS)
        wrapper.dataReceived(b"GET /id/x HTTP/1.1\r\n\r\n")
        self.assertEqual((len(app.received), len(app.afterClose)), (1, 0))
        self.assertTrue(transport.disconnecting)

    def test_loseConnection(self) -> None:
        self.check("loseConnection")

    def test_abortConnection(self) -> None:
        self.check("abortConnection")


class LostApp(Protocol):
    def __init__(self) -> None:
        self.lost = 0
        self.startTLSError: Optional[BaseException] = None

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.lost += 1


class StartTLSAfterLossTests(SynchronousTestCase):
    """
    Foolscap's debug timers can call C{startTLS} after the connection is
    lost.  As Twisted's TCP transport does, the wrapper refuses (raises);
    unlike before, no 60 s handshake timer is left behind, and the
    application is not told of the loss a second time.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.app = LostApp()
        self.wrapper = SideTLSFactory(Factory.forProtocol(lambda: self.app), False, clock=self.clock).buildProtocol(None)  # type: ignore[arg-type]
        self.wrapper.makeConnection(StringTransport())

    def test_after_connectionLost(self) -> None:
        self.wrapper.connectionLost(Failure(ConnectionDone()))
        error = self.assertRaises(RuntimeError, self.wrapper.startTLS, foolscapOptions("listener"))
        self.assertIn("after the connection was lost", str(error))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.app.lost, 1)
        self.assertIsNone(self.wrapper.tlsSide)
        self.assertIs(self.wrapper.phase, Phase.LOST)
        self.clock.advance(120)
        self.assertEqual(self.app.lost, 1)

    def test_from_the_applications_connectionLost(self) -> None:
        """Foolscap's path: its connectionLost fires its debug timers, which start TLS."""
        app, wrapper = self.app, self.wrapper

        def lost(reason: Failure) -> None:
            app.lost += 1
            try:
                wrapper.startTLS(foolscapOptions("listener"))
            except RuntimeError as e:
                app.startTLSError = e

        app.connectionLost = lost  # type: ignore[method-assign]
        wrapper.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(app.startTLSError, RuntimeError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(120)
        self.assertEqual(app.lost, 1)


# -- the testing module's transports and the test splice relay -------------------------


class Closer(Protocol):
    """Closes (with C{how}) on its first delivery; counts deliveries."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        if len(self.chunks) == 1:
            getattr(self.transport, self.how)()


class MemoryTransportTests(SynchronousTestCase):
    """
    L{foolscap_sidetls.testing.MemoryTransport} delivered the rest of a
    split delivery after its protocol closed.
    """

    def run_close(self, how: str) -> tuple[int, bytes]:
        clock = Clock()
        net = MemoryNetwork(clock=clock, splitter=lambda data: [data[i : i + 4] for i in range(0, len(data), 4)])
        closer = Closer(how)
        net.server_endpoint("srv").listen(Factory.forProtocol(lambda: closer))
        sender: list[Any] = []
        net.client_endpoint("srv").connect(Factory.forProtocol(Protocol)).addCallback(sender.append)
        clock.advance(0)
        sender[0].transport.write(EMPTY_BLOCKS[:400])
        for _ in range(10):
            clock.advance(0)
        return len(closer.chunks), closer.chunks[0]

    def test_loseConnection(self) -> None:
        self.assertEqual(self.run_close("loseConnection"), (1, b"\r\n\r\n"))

    def test_abortConnection(self) -> None:
        self.assertEqual(self.run_close("abortConnection"), (1, b"\r\n\r\n"))

    def test_after_stock_startTLS(self) -> None:
        """
        Stock-style TLS (the transport's own C{startTLS}): after the
        application closes, the TLS layer still reads the peer's
        close_notify, but hands nothing more up: neither what was in
        flight nor what the peer sent after.
        """
        from .._support.tls import SpeakerFactory

        clock = Clock()
        net = MemoryNetwork(clock=clock)
        listeners = SpeakerFactory("listener", dialer=False)
        net.server_endpoint("srv").listen(listeners)
        dialers = SpeakerFactory("dialer", dialer=True)
        net.client_endpoint("srv").connect(dialers)
        for _ in range(20):
            clock.advance(0)
        ours, peer = listeners.built[0], dialers.built[0]
        self.assertEqual(ours.received, peer.secret)
        after: list[bytes] = []
        ours.dataReceived = after.append  # type: ignore[method-assign]
        peer.transport.write(b"in flight")
        ours.transport.loseConnection()
        peer.transport.write(b"after")
        for _ in range(20):
            clock.advance(0)
        self.assertEqual((after, ours.lostReason is not None), ([], True))


class _FakeReversePort:
    def __init__(self, app: Protocol) -> None:
        self.app = app
        self.wentLive = 0

    def _parkedMade(self, proto: Any) -> None:
        pass

    def _wentLive(self, proto: Any, address: Any) -> Protocol:
        self.wentLive += 1
        return self.app

    def _parkedLost(self, proto: Any) -> None:
        pass


class SpliceTests(SynchronousTestCase):
    """The test splice relay's two protocols, over a transport that goes on delivering after close."""

    def test_parked_connection_closed_in_connectionMade(self) -> None:
        """
        The listener's protocol closes as it is connected: the rest of the
        read that carried the liveness line is not handed to it.  (Later
        reads are the transport's to stop, as TCP does; the protocol has
        the transport itself.)
        """
        for how in CLOSES:

            class ClosesAtOnce(Closer):
                def connectionMade(self) -> None:
                    getattr(self.transport, self.how)()

            app = ClosesAtOnce(how)
            parked = _ParkedProtocol(_FakeReversePort(app))  # type: ignore[arg-type]
            parked.makeConnection(StringTransport())
            parked.dataReceived(b"LIVE 127.0.0.1 1234\n" + EMPTY_BLOCKS[:40])
            self.assertEqual((how, app.chunks), (how, []))

    def test_parked_connection_refused(self) -> None:
        """A refused parked connection does not go live on a later line."""
        port = _FakeReversePort(Closer("loseConnection"))
        parked = _ParkedProtocol(port)  # type: ignore[arg-type]
        parked.makeConnection(StringTransport())
        parked.dataReceived(b"NOT LIVE\n")
        parked.dataReceived(b"LIVE 127.0.0.1 1234\nhello")
        self.assertEqual((port.wentLive, port.app.chunks), (0, []))  # type: ignore[attr-defined]

    def test_relay_end_stopped(self) -> None:
        """After the relay stops (aborting every end), a spliced end forwards nothing more."""
        relay = SpliceRelay(reactor=Clock())  # type: ignore[arg-type]
        front, back = _RelayEnd(relay, "front"), _RelayEnd(relay, "back")
        front.makeConnection(StringTransport())
        back.makeConnection(StringTransport())
        self.assertEqual(relay.spliced, 1)
        back.transport.clear()
        front.dataReceived(b"before")
        relay.stop()
        front.dataReceived(b"after")
        self.assertEqual(back.transport.value(), b"before")
