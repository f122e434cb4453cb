"""
Hardening: hostile peers at every phase of the negotiation, in memory.

A scripted peer (tests/_hostile.py) is honest until one of six points --
before its plaintext request, inside it, right after the switch to TLS, in
the middle of a TLS record, once the TLS handshake is done (instead of its
encrypted hello), after the Banana switch -- and then sends random bytes,
truncates and closes, stalls, or closes.  It plays the dialer against our
listener and the listener against our dialer.  Every cell of that matrix
checks that our side:

- fails within a bounded time: the wrapper's timeouts run on a fake clock
  (the in-memory network's too), so "bounded" is the fake time advanced
  before the connection is gone, not a measurement;
- logs exactly one line for the connection, saying where it failed and
  why (L{expectedWhy}: the reason each cell must give);
- leaves no delayed call behind (fake clock, and nothing on the real
  reactor bound to that connection's wrapper, negotiation or broker);
- keeps serving: an honest peer connects and calls while the hostile one is
  still hanging on, and again afterwards.

Nothing here waits on the wall clock: our timers and the network run on a
fake clock, Foolscap's eventual-sends get a bounded number of zero-delay
reactor turns, and Foolscap's own timers (which use the global reactor and
C{time.time()}) are made due and fired rather than waited for.

File descriptors are counted over real loopback TCP in
test_hardening_load.py.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Coroutine, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from foolscap.api import Tub
from foolscap.connections.tcp import DefaultTCP
from foolscap.ipb import IConnectionHintHandler

from foolscap_sidetls import dialer, handler, install, listener, tor as torModule
from foolscap_sidetls._handler import SideTLSHandler
from foolscap_sidetls.testing import OUTBOUND, MemoryNetwork
from ._waiting import coroutine

from ._hostile import (
    add_matrix,
    Echo,
    FaultClientEndpoint,
    FaultServerEndpoint,
    LogCapture,
    Script,
    delayedCallsOf,
    makeTub,
    seed,
    turn,
)

#: Our side's limits, in fake seconds.
HANDSHAKE = 20.0
NEGOTIATION = 30.0
CLOSE = 10.0


class RecordingNetwork(MemoryNetwork):
    """Remembers each connection's two transports and the protocols first connected to them."""

    def __init__(self, **kwargs: Any) -> None:
        MemoryNetwork.__init__(self, **kwargs)
        self.pairs: list[tuple[str, Any, Any, Any, Any]] = []
        #: Called once with the next connection's two transports as soon as
        #: they exist (before any byte moves), then forgotten.
        self.onNextConnection: Optional[Callable[[Any, Any], None]] = None

    def _connect(self, name: str, entry: Any, clientFactory: Any, clientSocket: str) -> Any:
        client = MemoryNetwork._connect(self, name, entry, clientFactory, clientSocket)
        if client is not None:
            clientT, serverT = self.transports[-2:]
            self.pairs.append((name, clientT, serverT, clientT.protocol, serverT.protocol))
            hook, self.onNextConnection = self.onNextConnection, None
            if hook is not None:
                hook(clientT, serverT)
        return client


@implementer(IConnectionHintHandler)
class ScriptedHints:
    """memory: hints dialed through a L{FaultClientEndpoint}: a hostile dialer."""

    def __init__(self, net: MemoryNetwork, script: Script, clock: Clock) -> None:
        self._net = net
        self._script = script
        self._clock = clock

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> Any:
        name = hint.split(":", 1)[1]
        ep = FaultClientEndpoint(self._net.client_endpoint(name, socket=OUTBOUND), self._script)
        # The hostile end sets no limits of its own: what ends the connection is ours.
        return dialer(ep, clock=self._clock, handshake_timeout=None, close_timeout=None), name

    def describe(self) -> str:
        return "hostile-memory"


def expectedPhase(phase: str, action: str) -> str:
    """Where our end is when the hostile one misbehaves (as our log line says)."""
    if phase == "before":
        if action in ("stall", "close"):
            return "before the peer sent anything"
        return "in the plaintext header exchange"
    if phase == "inside":
        return "in the plaintext header exchange"
    if phase == "after-tls":
        return "in Foolscap's negotiation after the TLS handshake"
    return "in the TLS handshake"


def expectedBound(phase: str, action: str) -> float:
    """The fake seconds within which our end must have dropped the connection."""
    if action != "stall":
        return 1.0
    if phase in ("before", "inside", "after-tls"):
        return NEGOTIATION + 1
    if phase in ("after-switch", "mid-record"):
        return HANDSHAKE + 1
    return CLOSE + 1  # after-banana: from Foolscap's disconnect timeout on


#: The reasons OpenSSL gives for bytes that are no TLS record ("wrong version
#: number", "bad record type, record layer failure", "length mismatch", ...)
#: depend on the bytes and on OpenSSL's version: our line must give one.
TLS_ERROR = re.compile(r"TLS error: [a-z][a-z0-9 ,]*\Z")

#: A peer that closed before TLS was shut down cleanly, as the TLS layer reports it.
CUT_OFF = "the connection was lost (the peer closed it mid-stream, or it was reset)"


def expectedWhy(role: str, phase: str, action: str) -> "str | re.Pattern[str]":
    """
    The reason our end's log line gives (after where it failed) when the
    hostile peer, playing the other role, does C{action} at C{phase}:
    the reason itself, not merely that there was one.  C{role} is our end's.
    """
    if action == "stall":
        if phase in ("before", "inside", "after-tls"):
            return "it did not complete within %g s (negotiation_timeout)" % (NEGOTIATION,)
        if phase == "after-switch" and role == "listener":
            return (
                "TLS handshake failed: no ClientHello arrived within %g s; the peer sent "
                "nothing after the switch to TLS (this end is the listener and the TLS "
                "server): either it stalled, or the peer also acted as TLS server and "
                "waited for a ClientHello too -- if so, it probably picks its TLS side from "
                "the socket direction (stock Foolscap on a transport such as I2P's SAM "
                "STREAM ACCEPT, a reverse tunnel or a relay); run foolscap-sidetls on both "
                "ends" % (HANDSHAKE,)
            )
        if phase == "after-switch":
            return (
                "TLS handshake failed: the peer did not answer this end's ClientHello within "
                "%g s (this end dialed and is the TLS client): it stalled, or it does not "
                "speak TLS after the switch" % (HANDSHAKE,)
            )
        if phase == "mid-record":
            return (
                "TLS handshake failed: the peer started the handshake and then stopped; it "
                "did not complete within %g s (this end is the TLS %s)"
                % (HANDSHAKE, "server" if role == "listener" else "client")
            )
        # after-banana: Foolscap's idle timeout closed it, our close timeout ended it.
        return (
            "closed by aborting it, the peer did not complete the close within %g s (it "
            "neither answered nor read)" % (CLOSE,)
        )
    if action == "random":
        if phase in ("before", "inside", "after-tls"):
            # 5,000 bytes with no end of header block, to Foolscap's header parser.
            return "BananaError: Header too long"
        return TLS_ERROR
    # close, truncate: a clean close, seen through TLS or not.
    if phase in ("before", "inside", "after-tls"):
        return "the peer closed the connection"
    return CUT_OFF


class PeerCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.clock = Clock()
        self.net = RecordingNetwork(clock=self.clock)
        self.logs = LogCapture().install(self)
        self.stoppers: list[Callable[[], Any]] = []
        self.addCleanup(lambda: Deferred.fromCoroutine(self.stopAll()))

    async def stopAll(self) -> None:
        """Stop every Tub, moving the fake clock along so their closes can finish."""
        done: list[Any] = []
        for stop in self.stoppers:
            d = stop()
            if d is not None:
                d.addBoth(done.append)
            else:
                done.append(None)
        for _ in range(4000):
            if len(done) == len(self.stoppers):
                break
            self.clock.advance(0.05)
            await turn()
        failures = [f for f in done if isinstance(f, Failure)]
        self.assertEqual(failures, [])
        self.assertEqual(len(done), len(self.stoppers), "Tubs did not stop")
        # A stopped Tub's listener leaves connections that were still
        # negotiating to their timeouts (as stock Foolscap does).
        await self.advanceUntil(lambda: not self.clock.getDelayedCalls(), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def stop(self, tub: Any) -> None:
        """Stop one Tub now, moving the fake clock along."""
        stopped: list[Any] = []
        tub.stopService().addBoth(stopped.append)
        await self.until(lambda: stopped, "the Tub to stop")
        self.assertNotIsInstance(stopped[0], Failure)

    async def until(self, condition: Callable[[], Any], what: str, turns: int = 3000) -> Any:
        for _ in range(turns):
            result = condition()
            if result:
                return result
            self.clock.advance(0)
            await turn()
        self.fail("never happened: " + what)

    def foolscapIdleTimeoutDue(self, broker: Any) -> None:
        """
        Make the Broker's idle check (Tub.setOption("disconnectTimeout", ...))
        find the connection silent for longer than its limit, and run it at
        once: Foolscap measures the silence with C{time.time()} and
        schedules the check on the global reactor, neither of which a fake
        clock reaches.
        """
        self.assertIsNotNone(broker.disconnectTimer, "no idle check scheduled")
        broker.dataLastReceivedAt = time.time() - broker.disconnectTimeout - 1
        broker.disconnectTimer.reset(0)

    async def advanceUntil(self, condition: Callable[[], bool], limit: float) -> Optional[float]:
        """
        Move the fake clock on a second at a time, up to C{limit} seconds
        and then a bit beyond; return how far it had gone when
        C{condition} first held.
        """
        when: Optional[float] = 0.0 if condition() else None
        elapsed = 0.0
        while elapsed < limit + NEGOTIATION + CLOSE:
            self.clock.advance(1)
            elapsed += 1
            for _ in range(4):
                self.clock.advance(0)
                await turn()
            if when is None and condition():
                when = elapsed
        return when

    # -- the parties ---------------------------------------------------------------

    def ourListener(self, name: str = "srv") -> tuple[Any, str]:
        tub = makeTub(self, 0, self.stoppers)
        tub.listenOn(
            listener(
                self.net.server_endpoint(name, socket=OUTBOUND),
                clock=self.clock,
                handshake_timeout=HANDSHAKE,
                negotiation_timeout=NEGOTIATION,
                close_timeout=CLOSE,
            )
        )
        tub.setLocation("memory:" + name)
        return tub, tub.registerReference(Echo(), "echo")

    def ourDialer(self, cert: int = 0) -> Any:
        tub = makeTub(self, cert, self.stoppers)
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler(
            "memory",
            handler(
                self.net.hint_handler(),
                clock=self.clock,
                handshake_timeout=HANDSHAKE,
                negotiation_timeout=NEGOTIATION,
                close_timeout=CLOSE,
            ),
        )
        return tub

    def honestListener(self, name: str) -> str:
        tub = makeTub(self, 2, self.stoppers)
        self.net.listen(tub, name, socket=OUTBOUND)
        return tub.registerReference(Echo(), "echo")

    def honestDialer(self) -> Any:
        tub = makeTub(self, 2, self.stoppers)
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("memory", handler(self.net.hint_handler(), clock=self.clock))
        return tub

    async def call(self, tub: Any, furl: str, payload: bytes) -> None:
        """C{tub} reaches C{furl} and gets C{payload} echoed."""
        results: list[Any] = []
        tub.getReference(furl).addCallback(lambda rref: rref.callRemote("echo", payload)).addBoth(
            results.append
        )
        await self.until(lambda: results, "an honest call through %s" % (furl,))
        if isinstance(results[0], Failure):
            results[0].raiseException()
        self.assertEqual(results[0], payload)

    # -- the matrix ----------------------------------------------------------------

    async def hostileDialer(self, phase: str, action: str) -> None:
        ours, furl = self.ourListener()
        if phase == "after-banana" and action == "stall":
            # Foolscap's own idle detection (Tahoe's timeout.disconnect).
            ours.setOption("disconnectTimeout", 60)
        script = Script(phase, action, seed=seed("dialer", phase, action))
        evil = makeTub(self, 1, self.stoppers, script)
        evil.removeAllConnectionHintHandlers()
        evil.addConnectionHintHandler("memory", ScriptedHints(self.net, script, self.clock))
        outcome: list[Any] = []
        evil.getReference(furl).addBoth(outcome.append)
        if phase == "after-banana":
            await self.until(lambda: outcome, "the hostile dialer's reference")
            rref = outcome[0]
            self.assertNotIsInstance(rref, Failure)
            script.protocols[0].arm()
            if action == "truncate":
                rref.callRemote("echo", b"x" * 3000).addErrback(lambda f: None)
        await self.until(lambda: script.fired, "the script to fire")
        wrapper = self.net.pairs[0][4]
        await self.checkOurEnd(
            wrapper, phase, action, lambda: self.call(self.honestDialer(), furl, b"meanwhile")
        )
        self.assertEqual([b for b in ours.brokers.values() if b.transport is wrapper], [])
        await self.call(self.honestDialer(), furl, b"afterwards")

    async def hostileListener(self, phase: str, action: str) -> None:
        script = Script(phase, action, seed=seed("listener", phase, action))
        evil = makeTub(self, 1, self.stoppers, script)
        evil.listenOn(
            listener(
                FaultServerEndpoint(self.net.server_endpoint("evil", socket=OUTBOUND), script),
                clock=self.clock,
                handshake_timeout=None,
                close_timeout=None,
            )
        )
        evil.setLocation("memory:evil")
        evilFurl = evil.registerReference(Echo(), "echo")
        goodFurl = self.honestListener("good")
        ours = self.ourDialer()
        if phase == "after-banana" and action == "stall":
            ours.setOption("disconnectTimeout", 60)
        outcome: list[Any] = []
        ours.getReference(evilFurl).addBoth(outcome.append)
        call: list[Any] = []
        if phase == "after-banana":
            await self.until(lambda: outcome, "our reference to the hostile listener")
            rref = outcome[0]
            self.assertNotIsInstance(rref, Failure)
            lost: list[bool] = []
            rref.notifyOnDisconnect(lambda: lost.append(True))
            script.protocols[0].arm()
            if action == "truncate":
                rref.callRemote("echo", b"y" * 3000).addBoth(call.append)
        await self.until(lambda: script.fired, "the script to fire")
        wrapper = self.net.pairs[0][3]
        await self.checkOurEnd(
            wrapper, phase, action, lambda: self.call(ours, goodFurl, b"meanwhile")
        )
        if phase == "after-banana":
            self.assertEqual(lost, [True])
            if action == "truncate":
                # The call in flight failed; it was not lost silently.
                self.assertEqual(len(call), 1)
                self.assertIsInstance(call[0], Failure)
        else:
            # getReference failed, and says why: when our end made the
            # diagnosis, in the same words as our log line.
            self.assertEqual(len(outcome), 1)
            self.assertIsInstance(outcome[0], Failure)
            why = expectedWhy("dialer", phase, action)
            if action == "stall":
                assert isinstance(why, str)
                self.assertIn(why, str(outcome[0].value))
            else:
                self.assertTrue(str(outcome[0].value).strip(), outcome[0])
        await self.call(ours, goodFurl, b"afterwards")

    async def checkOurEnd(
        self, wrapper: Any, phase: str, action: str, meanwhile: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        app = wrapper._app
        watched = [wrapper, app, wrapper._tls]
        broker = getattr(app.dataReceived, "__self__", None)
        if broker is not app:
            watched.append(broker)  # after the Banana switch
        # Another peer is served while this one still hangs on (or has just failed).
        await meanwhile()
        if phase == "after-banana" and action == "stall":
            # Foolscap notices the silence and closes; the peer never answers the close.
            self.assertFalse(wrapper.disconnecting)
            self.foolscapIdleTimeoutDue(broker)
            await self.until(lambda: wrapper.disconnecting, "Foolscap's idle disconnect")
        took = await self.advanceUntil(lambda: wrapper._lost, expectedBound(phase, action))
        self.assertIsNotNone(took, "our end never dropped the connection")
        assert took is not None
        self.assertLessEqual(took, expectedBound(phase, action))
        self.assertTrue(wrapper.transport.disconnected)

        lines = self.logs.lines(role=wrapper.role, peer=wrapper._peerText())
        self.assertEqual(len(lines), 1, lines)
        # A clean hang-up in the plaintext phase is what port scanners and
        # losing parallel hints do too: debug; anything else: info.
        hangUp = phase in ("before", "inside", "after-tls") and action in ("close", "truncate")
        level = LogLevel.debug if hangUp else LogLevel.info
        self.assertEqual(len(self.logs.lines(level, role=wrapper.role, peer=wrapper._peerText())), 1)
        if hangUp:
            self.assertEqual(self.logs.lines(LogLevel.info, role=wrapper.role), [])
        where = "sidetls %s, connection %s %s: " % (
            wrapper.role,
            "to" if wrapper.role == "dialer" else "from",
            wrapper._peerText(),
        )
        if phase != "after-banana":
            where += "negotiation failed %s: " % (expectedPhase(phase, action),)
        elif action != "stall":
            where += "connection lost: "
        why = expectedWhy(wrapper.role, phase, action)
        if isinstance(why, str):
            self.assertEqual(lines[0], where + why)
        else:
            self.assertTrue(lines[0].startswith(where), lines[0])
            self.assertRegex(lines[0][len(where) :], why)

        self.assertEqual(delayedCallsOf(watched), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class HostilePeerTests(PeerCase):
    """The matrix: phase x action x which end is hostile (48 tests, added below)."""


add_matrix(
    HostilePeerTests,
    lambda end, action, phase: "test_hostile%s_%s_%s" % (end.capitalize(), action, phase.replace("-", "_")),
    lambda end, action, phase: "A hostile %s that %s %s." % (end, action, phase),
)


class BoundedCloseTests(PeerCase):
    """
    After this end closes a TLS connection, Twisted's TLS layer waits for
    the peer's close_notify; a peer that never sends it held the socket,
    and Tub.stopService, forever.
    """

    async def stalledPeer(self, close_timeout: Optional[float]) -> tuple[Any, Any]:
        """Our listening Tub, connected to a dialer that has gone silent after negotiation."""
        ours = makeTub(self, 0, self.stoppers)
        ours.listenOn(
            listener(self.net.server_endpoint("srv", socket=OUTBOUND), clock=self.clock, close_timeout=close_timeout)
        )
        ours.setLocation("memory:srv")
        furl = ours.registerReference(Echo(), "echo")
        script = Script("after-banana", "stall")
        evil = makeTub(self, 1, self.stoppers)
        evil.removeAllConnectionHintHandlers()
        evil.addConnectionHintHandler("memory", ScriptedHints(self.net, script, self.clock))
        outcome: list[Any] = []
        evil.getReference(furl).addBoth(outcome.append)
        await self.until(lambda: outcome, "the connection")
        script.protocols[0].arm()
        return ours, self.net.pairs[0][4]

    async def stopping(self, ours: Any) -> list[Any]:
        stopped: list[Any] = []
        self.stoppers.remove(self.stoppers[0])  # stopped here instead
        ours.stopService().addBoth(stopped.append)
        return stopped

    @coroutine
    async def test_without_close_timeout_the_close_never_ends(self) -> None:
        """The problem is real: with C{close_timeout=None}, an hour is not enough."""
        ours, wrapper = await self.stalledPeer(None)
        stopped = await self.stopping(ours)
        await self.advanceUntil(lambda: bool(stopped), 3600)
        self.assertEqual(stopped, [])
        self.assertFalse(wrapper._lost)
        wrapper.transport.abortConnection()  # let the test end
        await self.until(lambda: stopped, "the Tub to stop after the abort")

    @coroutine
    async def test_close_timeout_bounds_the_close(self) -> None:
        """With the default-style bound, stopService finishes once it has passed, not before."""
        ours, wrapper = await self.stalledPeer(CLOSE)
        stopped = await self.stopping(ours)
        took = await self.advanceUntil(lambda: bool(stopped), CLOSE)
        self.assertEqual(took, CLOSE)
        self.assertTrue(wrapper._lost)
        lines = self.logs.lines(role="listener")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("closed by aborting it, the peer did not complete the close within 10 s", lines[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class TimeoutTests(PeerCase):
    @coroutine
    async def test_finished_negotiation_is_not_timed_out(self) -> None:
        """The negotiation timeout only ever drops connections still negotiating."""
        ours, furl = self.ourListener()
        dialing = self.honestDialer()
        rrefs: list[Any] = []
        dialing.getReference(furl).addBoth(rrefs.append)
        await self.until(lambda: rrefs, "the connection")
        await self.advanceUntil(lambda: False, NEGOTIATION * 3)
        echoed: list[Any] = []
        rrefs[0].callRemote("echo", b"still here").addBoth(echoed.append)
        await self.until(lambda: echoed, "the call")
        self.assertEqual(echoed, [b"still here"])
        self.assertEqual(self.logs.lines(), [])

    @coroutine
    async def test_finished_connection_holds_no_delayed_call(self) -> None:
        """
        Once negotiation is over the negotiation timer is cancelled, at both
        ends: a live connection holds no delayed call (before, each held one
        until its negotiation_timeout passed).  The fake clock never moves.
        """
        ours, furl = self.ourListener()
        dialing = self.ourDialer(cert=3)
        await self.call(dialing, furl, b"done negotiating")
        dialerEnd, listenerEnd = self.net.pairs[0][3], self.net.pairs[0][4]
        self.assertEqual(self.clock.seconds(), 0)
        for wrapper in (dialerEnd, listenerEnd):
            self.assertFalse(wrapper._stillNegotiating(), wrapper)
            self.assertIsNone(wrapper._negotiationTimer, wrapper)
            self.assertFalse(wrapper._lost, wrapper)
        # Zero-delay calls (TLS write batching) run; time does not move.
        for _ in range(10):
            self.clock.advance(0)
            await turn()
        self.assertEqual(self.clock.seconds(), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(delayedCallsOf([dialerEnd, listenerEnd]), [])

    @coroutine
    async def test_foolscaps_own_timeout_without_ours(self) -> None:
        """
        With no C{negotiation_timeout}, Foolscap's own (120 s for a
        listener, on the global reactor) drops a silent connection, and our
        line gives its reason.  The timer is made due rather than waited for.
        """
        ours = makeTub(self, 0, self.stoppers)
        ours.listenOn(listener(self.net.server_endpoint("srv", socket=OUTBOUND), clock=self.clock))
        silent = self.net.client_endpoint("srv")
        from twisted.internet.protocol import Factory, Protocol

        connected: list[Any] = []
        silent.connect(Factory.forProtocol(Protocol)).addBoth(connected.append)
        await self.until(lambda: connected, "the silent connection")
        wrapper = self.net.pairs[0][4]
        timer = wrapper._app.negotiationTimer
        self.assertTrue(timer.active())
        # What the docs say: Foolscap's listener gives a negotiation 120 s.
        self.assertTrue(110 < timer.getTime() - reactor.seconds() <= 120, timer)
        timer.reset(0)
        await self.until(lambda: wrapper._lost, "Foolscap's negotiation timeout to drop it")
        lines = self.logs.lines(role="listener")
        self.assertEqual(
            lines,
            [
                "sidetls listener, connection from dialer-1:1: negotiation failed before the "
                "peer sent anything: NegotiationError: negotiation timeout"
            ],
        )

    @coroutine
    async def test_normal_use_logs_nothing(self) -> None:
        """
        A FURL with two hints (one connection wins, the other is turned away
        as a duplicate or abandoned) and a clean shutdown: nothing at info
        level or above.
        """
        ours = makeTub(self, 0, self.stoppers)
        for name in ("a", "b"):
            ours.listenOn(listener(self.net.server_endpoint(name, socket=OUTBOUND), clock=self.clock))
        ours.setLocation("memory:a", "memory:b")
        furl = ours.registerReference(Echo(), "echo")
        await self.call(self.honestDialer(), furl, b"two hints")
        self.assertEqual(len(self.net.pairs), 2)
        await self.stopAll()
        self.stoppers.clear()
        self.assertEqual(self.logs.lines(LogLevel.info), [])


class ArgumentTests(TestCase):
    def test_listener_limits(self) -> None:
        ep = MemoryNetwork(clock=Clock()).server_endpoint("x")
        for kwargs, error, words in [
            ({"max_negotiating": 0}, ValueError, "max_negotiating must be at least 1"),
            ({"max_negotiating": "10"}, TypeError, "max_negotiating must be a whole number"),
            ({"max_negotiating": True}, TypeError, "max_negotiating must be a whole number"),
            ({"negotiation_timeout": 0}, ValueError, "negotiation_timeout must be more than 0"),
            ({"close_timeout": -1}, ValueError, "close_timeout must be more than 0"),
            ({"close_timeout": "30"}, TypeError, "close_timeout must be a number of seconds or None"),
            # 0 used to mean "no limit" without saying so; "30" failed deep in startTLS.
            ({"handshake_timeout": 0}, ValueError, "handshake_timeout must be more than 0 seconds (None: no limit), got 0"),
            ({"handshake_timeout": "30"}, TypeError, "handshake_timeout must be a number of seconds or None, got '30' (str)"),
        ]:
            e = self.assertRaises(error, listener, ep, **kwargs)
            self.assertIn(words, str(e))
            self.assertIn("foolscap_sidetls.listener()", str(e))

    def test_dialer_and_handler_limits(self) -> None:
        net = MemoryNetwork(clock=Clock())
        e = self.assertRaises(ValueError, dialer, net.client_endpoint("x"), negotiation_timeout=0)
        self.assertIn("foolscap_sidetls.dialer(): negotiation_timeout must be more than 0", str(e))
        e = self.assertRaises(TypeError, handler, net.hint_handler(), close_timeout=[])
        self.assertIn("foolscap_sidetls.handler(): close_timeout must be a number", str(e))
        e = self.assertRaises(ValueError, dialer, net.client_endpoint("x"), handshake_timeout=-1)
        self.assertIn("foolscap_sidetls.dialer(): handshake_timeout must be more than 0", str(e))
        e = self.assertRaises(TypeError, handler, net.hint_handler(), handshake_timeout="30")
        self.assertIn("foolscap_sidetls.handler(): handshake_timeout must be a number", str(e))
        tub = Tub()
        for kwargs, error, words in [
            ({"handshake_timeout": 0}, ValueError, "handshake_timeout must be more than 0"),
            ({"negotiation_timeout": "5"}, TypeError, "negotiation_timeout must be a number"),
            ({"close_timeout": 0.0}, ValueError, "close_timeout must be more than 0"),
        ]:
            e = self.assertRaises(error, install, tub, **kwargs)
            self.assertIn("foolscap_sidetls.install(): " + words, str(e))
        # Nothing was wrapped by the calls that failed.
        self.assertIsInstance(tub._connectionHandlers["tcp"], DefaultTCP)

    def test_install_limits(self) -> None:
        """
        install() gives every handler it wraps the dialer limits; called
        again, it rewraps the same inner handler with the new ones (no
        second layer), and leaves handlers that are role-based already.
        """
        tub = Tub()
        tub.addConnectionHintHandler("memory", MemoryNetwork(clock=Clock()).hint_handler())
        tor = torModule.socks_endpoint(TCP4ClientEndpoint(Clock(), "127.0.0.1", 9050), close_timeout=7)
        tub.addConnectionHintHandler("tor", tor)
        install(tub, handshake_timeout=11, negotiation_timeout=12, close_timeout=13)
        handlers = tub._connectionHandlers
        for name in ("tcp", "memory"):
            h = handlers[name]
            self.assertIsInstance(h, SideTLSHandler)
            self.assertEqual((h._handshakeTimeout, h._negotiationTimeout, h._closeTimeout), (11, 12, 13))
        inner = handlers["tcp"].inner
        self.assertIsInstance(inner, DefaultTCP)
        self.assertIs(handlers["tor"], tor)
        self.assertEqual(tor._close_timeout, 7)
        install(tub, negotiation_timeout=40)
        h = handlers["tcp"]
        self.assertIs(h.inner, inner)
        self.assertEqual((h._handshakeTimeout, h._negotiationTimeout, h._closeTimeout), (60.0, 40, 30.0))
        self.assertIs(handler(tor), tor)
        # The dialers it makes carry them.
        endpoint, _ = handlers["memory"].hint_to_endpoint("memory:x", Clock(), lambda s: None)
        self.assertEqual(endpoint._negotiationTimeout, 40)
