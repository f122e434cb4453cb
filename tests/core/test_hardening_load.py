"""
Hardening: floods and load, in memory and over loopback TCP.

- A slow-open flood: connections that connect and say nothing are dropped
  by the negotiation timeout; with C{max_negotiating} the listener holds at
  most that many at once, and honest peers get through during the flood.
- A header-then-stall flood: connections that send the plaintext request
  for the (public) TubID and then stall, so that they get as far as an
  honest peer in the middle of its TLS handshake.  What C{max_negotiating}
  still guarantees then is checked exactly: an honest connection is
  dropped only once C{max_negotiating - 1} newer ones are still negotiating.
- Many dialers at once, and connect/call/disconnect cycles, over real
  loopback sockets: all served, and the process's open file descriptors
  come back to where they were.
- Hostile peers over real sockets, as dialer against our listener and as
  listener against our dialer: the descriptor of a connection our end
  dropped is closed.

The full-size runs (500 dialers, 1,000 cycles with RSS, a 500-connection
flood against a listener in its own process) are C{make stress}
(benchmarks/stress.py); these are the same checks at a size C{make test}
can afford.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from foolscap.api import Tub
from foolscap.ipb import IConnectionHintHandler
from foolscap.util import allocate_tcp_port

from foolscap_sidetls import dialer, install, listener
from foolscap_sidetls import Phase
from foolscap_sidetls._protocol import SILENT_GRACE, SideTLSFactory, SideTLSProtocol

from .._support.hostile import (
    add_matrix,
    Echo,
    FaultClientEndpoint,
    FaultServerEndpoint,
    LogCapture,
    Script,
    certificate,
    hostileNegotiation,
    makeTub,
    seed,
    turn,
)
from .._support.waiting import coroutine
from .._support.peers import PeerCase, peerText

CAP = 50
NEGOTIATION = 30.0


def open_descriptors() -> int:
    """This process's open file descriptors, of every kind (sockets, pipes, files)."""
    # listdir holds one open itself while it reads the directory.
    return len(os.listdir("/proc/self/fd")) - 1


def dropped(phase: str, silent: bool) -> str:
    """The reason a connection dropped for max_negotiating=CAP gives."""
    if silent:
        because = "it had sent nothing for %g s or more, and was the oldest such" % (SILENT_GRACE,)
    else:
        because = "it was the oldest (none had been silent for %g s)" % (SILENT_GRACE,)
    return (
        "negotiation failed %s: dropped to admit a new connection: %d connections were "
        "negotiating (max_negotiating=%d) and %s" % (phase, CAP, CAP, because)
    )


class HeaderThenStall(Protocol):
    """Sends a valid plaintext request for C{tubID} (it is in the FURL), then nothing, ever."""

    tubID = ""

    def connectionMade(self) -> None:
        self.transport.write(
            b"GET /id/%s HTTP/1.1\r\nHost: srv\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n"
            % (self.tubID.encode("ascii"),)
        )

    def dataReceived(self, data: bytes) -> None:
        pass


class FloodCase(PeerCase):
    """In memory, on a fake clock: a flood at full size (500) costs little here."""

    def floodListener(self, cap: Any) -> tuple[Any, str, Any]:
        ours = makeTub(self, 0, self.stoppers)
        ep = listener(
            self.net.server_endpoint("srv"),
            clock=self.clock,
            negotiation_timeout=NEGOTIATION,
            max_negotiating=cap,
        )
        ours.listenOn(ep)
        ours.setLocation("memory:srv")
        return ours, ours.registerReference(Echo(), "echo"), ep

    def connect(self, count: int, protocol: type = Protocol) -> list[Any]:
        """Start C{count} connections (they complete on the next clock turn); their outcomes."""
        made: list[Any] = []
        for _ in range(count):
            self.net.client_endpoint("srv").connect(Factory.forProtocol(protocol)).addBoth(made.append)
        return made

    async def flood(self, count: int, protocol: type = Protocol) -> list[Any]:
        """C{count} connections that connect and do what C{protocol} does; their transports."""
        made = self.connect(count, protocol)
        await self.until(lambda: len(made) == count, "the flood to connect")
        self.assertEqual([m for m in made if isinstance(m, Failure)], [])
        return [m.transport for m in made]

    def honest(self, cert: int = 2) -> Tub:
        tub = makeTub(self, cert, self.stoppers)
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("memory", self.net.hint_handler())
        install(tub)
        return tub

    async def honestMidHandshake(self, ep: Any, furl: str) -> tuple[SideTLSProtocol, list[Any], Any]:
        """
        An honest dialer whose request our end has received and answered,
        starting TLS; the dialer then hears nothing of that answer until the
        test calls the returned C{resume}, so our end stays in the TLS
        handshake for as long as the test needs.
        """
        result: list[Any] = []
        held: list[Any] = []
        self.net.onNextConnection = lambda dialerEnd, ourEnd: (dialerEnd.pauseProducing(), held.append(dialerEnd))
        self.honest().getReference(furl).addCallback(lambda r: r.callRemote("echo", b"honest")).addBoth(
            result.append
        )
        await self.until(lambda: held, "the honest connection")
        wrapper = self.net.connections[-1].listenerProtocol
        await self.until(lambda: wrapper.phase is not Phase.PLAINTEXT, "the honest request")
        # In the TLS handshake (a live phase is where negotiation stands).
        self.assertIs(wrapper.phase, Phase.HANDSHAKING)
        return wrapper, result, held[0].resumeProducing


class SlowOpenFloodTests(FloodCase):
    @coroutine
    async def test_flood_with_cap(self) -> None:
        """
        500 silent connections in ten waves, an honest dialer between each
        two: every honest call succeeds, the listener never holds more than
        50 connections negotiating, and once the negotiation timeout has
        passed none of the 500 is left, each with one line in the log.
        (The fake clock stands still during the waves, so no connection is
        silent for long: the oldest is dropped each time.)
        """
        ours, furl, ep = self.floodListener(CAP)
        silent: list[Any] = []
        served = 0
        for wave in range(10):
            silent += await self.flood(50)
            self.assertLessEqual(len(ep.factory.negotiating), CAP)
            honest = self.honest(2 + wave % 3)
            await self.call(honest, furl, b"wave %d" % wave)
            served += 1
            self.stoppers.pop()
            await self.stop(honest)
            alive = [t for t in silent if not t.disconnected]
            self.assertLessEqual(len(alive), CAP)
        self.assertEqual(served, 10)
        held = len([t for t in silent if not t.disconnected])
        self.assertGreater(held, 0)
        took = await self.advanceUntil(lambda: all(t.disconnected for t in silent), NEGOTIATION)
        self.assertIsNotNone(took)
        assert took is not None
        self.assertLessEqual(took, NEGOTIATION + 1)
        self.assertEqual(len(ep.factory.negotiating), 0)
        lines = [line for line in self.logs.lines(LogLevel.info, role="listener")]
        where = "sidetls listener, connection from "
        cap = [line for line in lines if line.endswith(dropped("before the peer sent anything", False))]
        timedOut = [
            line
            for line in lines
            if line.endswith(
                ": negotiation failed before the peer sent anything: it did not complete "
                "within 30 s (negotiation_timeout)"
            )
        ]
        self.assertEqual(len(cap) + len(timedOut), 500, lines[:3])
        self.assertEqual(len(timedOut), held)
        self.assertTrue(all(line.startswith(where) for line in lines), lines[:3])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @coroutine
    async def test_flood_without_cap_times_out(self) -> None:
        """Without a cap the flood is held until the negotiation timeout, then dropped."""
        ours, furl, ep = self.floodListener(None)
        silent = await self.flood(500)
        self.assertEqual(len([t for t in silent if not t.disconnected]), 500)
        took = await self.advanceUntil(lambda: all(t.disconnected for t in silent), NEGOTIATION)
        self.assertEqual(took, NEGOTIATION)
        self.assertEqual(len(self.logs.lines(LogLevel.info, role="listener")), 500)

    @coroutine
    async def test_silent_flood_never_drops_a_peer_that_spoke(self) -> None:
        """
        The cap is full of connections silent for longer than the grace; an
        honest dialer's request arrives and our end is kept from reading
        more of it; then twice the cap of further silent connections, in
        waves with the grace passing between them.  The silent ones are
        dropped, oldest silent first, and the honest connection completes.
        """
        ours, furl, ep = self.floodListener(CAP)
        await self.flood(CAP)
        self.clock.advance(SILENT_GRACE)
        honest, result, resume = await self.honestMidHandshake(ep, furl)
        for wave in range(4):
            await self.flood(CAP // 2)
            self.assertIsNot(honest.phase, Phase.LOST)
            # Not dropped: our limits close at once (CLOSING), and it is
            # still where it was.
            self.assertIs(honest.phase, Phase.HANDSHAKING)
            self.assertIn(honest, ep.factory.negotiating)
            self.clock.advance(SILENT_GRACE)
        self.assertEqual(len(ep.factory.negotiating), CAP)
        resume()
        await self.until(lambda: result, "the honest call")
        self.assertEqual(result, [b"honest"])
        lines = self.logs.lines(LogLevel.info, role="listener")
        # One for the honest connection's arrival, one per later arrival.
        self.assertEqual(len(lines), 1 + 2 * CAP, lines[:3])
        for line in lines:
            self.assertTrue(line.endswith(dropped("before the peer sent anything", True)), line)


class HeaderThenStallFloodTests(FloodCase):
    """
    Connections that send a valid request for the TubID (public: it is in
    the FURL) and stall: our end answers, starts TLS and waits in the
    handshake, exactly where an honest peer is for a round trip.
    """

    async def fill(self, furl: str) -> list[Any]:
        HeaderThenStall.tubID = furl.split("//", 1)[1].split("@", 1)[0]
        stalled = await self.flood(CAP, HeaderThenStall)
        return stalled

    @coroutine
    async def test_honest_peer_in_the_same_burst_gets_in(self) -> None:
        """
        The cap is full of header-then-stall connections; a burst of them
        arrives with an honest dialer's connection in its middle, all
        accepted before any of them has been read (a listening socket's
        backlog looks like this).  The honest connection has not spoken
        when the rest of the burst arrives, yet it is not the one dropped:
        the oldest stalled ones are, and it completes.
        """
        ours, furl, ep = self.floodListener(CAP)
        stalled = await self.fill(furl)
        # Each request read and answered: our end is in the TLS handshake.
        await self.until(
            lambda: all(p.phase is Phase.HANDSHAKING for p in ep.factory.negotiating), "the stalled requests"
        )
        self.assertEqual(len(ep.factory.negotiating), CAP)
        before = self.connect(CAP // 4, HeaderThenStall)
        result: list[Any] = []
        pending = len(self.clock.getDelayedCalls())
        self.honest().getReference(furl).addCallback(lambda r: r.callRemote("echo", b"burst")).addBoth(
            result.append
        )
        # Foolscap makes the honest connection on a later reactor turn; the
        # fake clock does not move until it has.
        for _ in range(100):
            if len(self.clock.getDelayedCalls()) > pending:
                break
            await turn()
        self.assertEqual(len(self.clock.getDelayedCalls()), pending + 1, "the honest connection was not made")
        after = self.connect(CAP // 4, HeaderThenStall)
        built = len(self.net.connections)
        self.clock.advance(0)
        self.assertEqual(len(self.net.connections), built + 2 * (CAP // 4) + 1)
        # Every connection of the burst was accepted before any was read (a
        # delivery is scheduled after the accepts already pending).
        honest = self.net.connections[built + CAP // 4].listenerProtocol
        self.assertEqual(len(before) + len(after), 2 * (CAP // 4))
        self.assertIsNot(honest.phase, Phase.LOST)
        # Not dropped: our limits close at once (CLOSING).
        self.assertNotIn(honest.phase, (Phase.CLOSING, Phase.LOST))
        await self.until(lambda: result, "the honest call")
        self.assertEqual(result, [b"burst"])
        self.assertEqual(sum(1 for t in stalled if t.disconnected), 2 * (CAP // 4) + 1)
        # The oldest stalled ones went, in TLS handshake, each with its reason.
        lines = self.logs.lines(LogLevel.info, role="listener")
        self.assertEqual(len(lines), 2 * (CAP // 4) + 1, lines[:3])
        for line in lines:
            self.assertTrue(line.endswith(dropped("in the TLS handshake", False)), line)

    @coroutine
    async def test_what_the_cap_guarantees(self) -> None:
        """
        The bound, exactly: an honest connection kept mid-negotiation
        survives C{CAP - 1} newer header-then-stall connections, and the
        next one, with those C{CAP - 1} still negotiating, drops it.  (So an
        attacker keeps honest peers out only by opening C{CAP - 1}
        connections within one honest negotiation.)
        """
        ours, furl, ep = self.floodListener(CAP)
        await self.fill(furl)
        honest, result, resume = await self.honestMidHandshake(ep, furl)
        self.assertEqual(len(ep.factory.negotiating), CAP)
        await self.flood(CAP - 1, HeaderThenStall)
        await self.until(
            lambda: all(p.phase is Phase.HANDSHAKING for p in ep.factory.negotiating), "their requests"
        )
        self.assertIsNot(honest.phase, Phase.LOST)
        self.assertIs(next(iter(ep.factory.negotiating)), honest)  # the oldest now
        await self.flood(1, HeaderThenStall)
        await self.until(lambda: honest.phase is Phase.LOST, "the honest connection to be dropped")
        self.assertEqual(
            self.logs.lines(role="listener", peer=peerText(honest)),
            ["sidetls listener, connection from %s: %s" % (peerText(honest), dropped("in the TLS handshake", False))],
        )
        resume()
        await self.until(lambda: result, "the honest dialer to hear of it")
        self.assertIsInstance(result[0], Failure)


class _Counting(SideTLSProtocol):
    checks = 0

    def _stillNegotiating(self) -> bool:
        _Counting.checks += 1
        return SideTLSProtocol._stillNegotiating(self)


class EvictionCostTests(SynchronousTestCase):
    def test_constant_work_per_connection(self) -> None:
        """
        With the cap full, each new connection costs a bounded number of
        looks at the others, not one per connection held (the registry was
        rescanned on every accept).  Counted, not timed.
        """
        clock = Clock()
        factory = SideTLSFactory(Factory.forProtocol(Protocol), False, clock, maxNegotiating=500)
        factory.protocol = _Counting
        _Counting.checks = 0
        made = []
        for i in range(3000):
            p = factory.buildProtocol(None)
            p.makeConnection(StringTransport())
            if i % 2:
                p.dataReceived(b"GET ")  # half of them speak
            made.append(p)
            if i % 700 == 0:
                clock.advance(SILENT_GRACE)
        self.assertEqual(len(factory.negotiating), 500)
        self.assertLessEqual(_Counting.checks, 2 * 2500)
        # Dropped by the cap (closed at once by this end), or still negotiating.
        self.assertEqual(sum(1 for p in made if p.phase is Phase.CLOSING), 2500)
        self.assertEqual(sum(1 for p in made if p.phase is Phase.PLAINTEXT), 500)


@implementer(IConnectionHintHandler)
class _TCPHints:
    """tcp:127.0.0.1:PORT hints, dialed through a script (or honestly, without one)."""

    def __init__(self, script: Any = None, **limits: Any) -> None:
        self.script = script
        self.limits = limits or {"handshake_timeout": None, "close_timeout": None}

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> Any:
        port = int(hint.rsplit(":", 1)[1])
        ep: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        if self.script is not None:
            ep = FaultClientEndpoint(ep, self.script)
        return dialer(ep, **self.limits), "127.0.0.1"

    def describe(self) -> str:
        return "loopback"


class LoopbackCase(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.logs = LogCapture().install(self)
        self.tubs: list[Tub] = []

    def tub(self, cert: int, script: Optional[Script] = None) -> Tub:
        tub = Tub(certData=certificate(cert))
        tub.setOption("expose-remote-exception-types", False)
        if script is not None:
            tub.negotiationClass = hostileNegotiation(script)
        tub.startService()
        self.addCleanup(lambda: tub.stopService() if tub.running else None)
        return tub

    def serve(self, cert: int = 0, script: Optional[Script] = None, **limits: Any) -> tuple[Tub, str]:
        port = allocate_tcp_port()
        ours = self.tub(cert, script)
        endpoint: Any = TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
        if script is not None:
            endpoint = FaultServerEndpoint(endpoint, script)
            limits = {"handshake_timeout": None, "close_timeout": None}
        ours.listenOn(listener(endpoint, **limits))
        ours.setLocation("tcp:127.0.0.1:%d" % port)
        return ours, ours.registerReference(Echo(), "echo")

    def dialing(self, cert: int, script: Any = None, **limits: Any) -> Tub:
        tub = self.tub(cert, script)
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("tcp", _TCPHints(script, **limits))
        return tub

    async def eventually(self, condition: Callable[[], Any], what: str, seconds: float = 30) -> Any:
        """Wait for a condition (failing after C{seconds}; a bound on waiting, not a measurement)."""
        result = await self.settle(condition, seconds)
        if not result:
            self.fail("never happened: %s" % (what,))
        return result

    async def settle(self, condition: Callable[[], Any], seconds: float) -> Any:
        """Wait up to C{seconds} for a condition; what it last returned."""
        for _ in range(int(seconds / 0.01)):
            result = condition()
            if result:
                return result
            await task.deferLater(reactor, 0.01, lambda: None)
        return condition()

    async def listening(self, tub: Tub) -> None:
        await self.eventually(lambda: all(l._lp is not None for l in tub.getListeners()), "listening")

    async def descriptors(self) -> int:
        """
        The count to come back to, taken with the reactor running: trial
        starts it at the test's first wait, and it opens a pipe of its own
        then (its SIGCHLD waker).
        """
        await turn()
        return open_descriptors()


class LoopbackLoadTests(LoopbackCase):
    @coroutine
    async def test_many_dialers_at_once(self) -> None:
        """20 Tubs dial one listener at the same moment: all are served; no descriptor is left."""
        ours, furl = self.serve()
        await self.listening(ours)
        dialers = [self.dialing(1 + i) for i in range(20)]
        before = await self.descriptors()
        results = await defer.gatherResults(
            [d.getReference(furl).addCallback(lambda r, i=i: r.callRemote("echo", i)) for i, d in enumerate(dialers)]
        )
        self.assertEqual(results, list(range(20)))
        self.assertEqual(len(ours.brokers), 20)
        self.assertEqual(open_descriptors(), before + 2 * 20)  # both ends of each connection
        await defer.gatherResults([d.stopService() for d in dialers])
        await self.eventually(lambda: not ours.brokers, "the listener to forget them")
        await self.eventually(lambda: open_descriptors() == before, "descriptors back to %d" % (before,))

    @coroutine
    async def test_connect_call_disconnect_cycles(self) -> None:
        """
        100 cycles: after cycle 10 and after cycle 100 the process has the
        descriptors it had before the first (given up to 10 s to close
        them; the figures are in the failure message).
        """
        ours, furl = self.serve()
        await self.listening(ours)
        dialing = self.dialing(1)
        baseline = await self.descriptors()
        counts = {}
        for cycle in range(1, 101):
            rref = await dialing.getReference(furl)
            self.assertEqual(await rref.callRemote("echo", cycle), cycle)
            gone: Deferred = Deferred()
            rref.notifyOnDisconnect(gone.callback, None)
            rref.tracker.broker.transport.loseConnection()
            await gone
            await self.eventually(lambda: not ours.brokers and not dialing.brokers, "both ends to forget it")
            if cycle in (10, 100):
                await self.settle(lambda: open_descriptors() == baseline, 10)
                counts[cycle] = open_descriptors()
        self.assertEqual(
            (counts[10], counts[100]),
            (baseline, baseline),
            "open descriptors: %d before the first cycle, %d after cycle 10, %d after cycle 100"
            % (baseline, counts[10], counts[100]),
        )
        self.assertEqual(self.logs.lines(LogLevel.info), [])


#: Our limits over loopback, in real seconds.
LOOPBACK_LIMITS = {"negotiation_timeout": 1.5, "handshake_timeout": 1.0, "close_timeout": 1.0}


class LoopbackHostileTests(LoopbackCase):
    """
    Over real sockets, the connection our end drops really is closed: the
    whole phase x action matrix, of a hostile dialer against our listener
    and of a hostile listener against our dialer (48 tests, added below),
    with our limits shortened to a second or so of real time.  Every
    descriptor of the process is counted, sockets or not.
    """

    async def hostileDialer(self, phase: str, action: str) -> None:
        ours, furl = self.serve(**LOOPBACK_LIMITS)
        await self.listening(ours)
        if phase == "after-banana" and action == "stall":
            ours.keepaliveTimeout = 0.2
            ours.disconnectTimeout = 1
        script = Script(phase, action, seed=seed("loopback dialer", phase, action))
        evil = self.dialing(1, script)
        before = await self.descriptors()
        outcome: list[Any] = []
        evil.getReference(furl).addBoth(outcome.append)
        await self.fire(script, outcome)
        # Served meanwhile:
        honest = self.dialing(2)
        rref = await honest.getReference(furl)
        self.assertEqual(await rref.callRemote("echo", b"meanwhile"), b"meanwhile")
        await honest.stopService()
        # Our end drops the hostile connection; both its descriptors close.
        await self.eventually(
            lambda: open_descriptors() == before, "the hostile connection's descriptors to close"
        )
        lines = self.logs.lines(role="listener")
        self.assertEqual(len(lines), 1, lines)

    async def hostileListener(self, phase: str, action: str) -> None:
        script = Script(phase, action, seed=seed("loopback listener", phase, action))
        evil, evilFurl = self.serve(1, script)
        await self.listening(evil)
        honest, goodFurl = self.serve(2)
        await self.listening(honest)
        ours = self.dialing(0, **LOOPBACK_LIMITS)
        if phase == "after-banana" and action == "stall":
            ours.keepaliveTimeout = 0.2
            ours.disconnectTimeout = 1
        before = await self.descriptors()
        outcome: list[Any] = []
        ours.getReference(evilFurl).addBoth(outcome.append)
        await self.fire(script, outcome)
        # Our dialer still reaches others meanwhile:
        rref = await ours.getReference(goodFurl)
        self.assertEqual(await rref.callRemote("echo", b"meanwhile"), b"meanwhile")
        rref.tracker.broker.transport.loseConnection()
        await self.eventually(lambda: not honest.brokers and not ours.brokers, "both connections to go")
        # Our end dropped the hostile connection; every descriptor it used is closed.
        await self.eventually(
            lambda: open_descriptors() == before, "the hostile connection's descriptors to close"
        )
        lines = [line for line in self.logs.lines(role="dialer")]
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("sidetls dialer, connection to 127.0.0.1:"), lines[0])

    async def fire(self, script: Script, outcome: list[Any]) -> None:
        if script.phase == "after-banana":
            await self.eventually(lambda: outcome, "the hostile reference")
            self.assertNotIsInstance(outcome[0], Failure)
            script.protocols[0].arm()
            if script.action == "truncate":
                outcome[0].callRemote("echo", b"x" * 3000).addErrback(lambda f: None)
        await self.eventually(lambda: script.fired, "the script to fire")


add_matrix(
    LoopbackHostileTests,
    lambda end, action, phase: "test_hostile_%s_%s_%s" % (end, action, phase.replace("-", "_")),
    lambda end, action, phase: "A hostile %s that %s %s, over loopback TCP." % (end, action, phase),
)
