"""
Hardening: hostile peers at every phase of the negotiation, in memory.

A scripted peer (tests/_hostile.py) is honest until one of five points --
before its plaintext request, inside it, right after the switch to TLS, in
the middle of a TLS record, after the Banana switch -- and then sends random
bytes, truncates and closes, stalls, or closes.  It plays the dialer against
our listener and the listener against our dialer.  Every cell of that
matrix checks that our side:

- fails within a bounded time: the wrapper's timeouts run on a fake clock
  (the in-memory network's too), so "bounded" is the fake time advanced
  before the connection is gone, not a measurement;
- logs exactly one line for the connection, saying where it failed;
- leaves no delayed call behind (fake clock, and nothing on the real
  reactor bound to that connection's wrapper, negotiation or broker);
- keeps serving: an honest peer connects and calls while the hostile one is
  still hanging on, and again afterwards.

File descriptors are counted over real loopback TCP in
test_hardening_load.py.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Optional

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from foolscap.ipb import IConnectionHintHandler

from foolscap_sidetls import dialer, handler, listener
from foolscap_sidetls.testing import OUTBOUND, MemoryNetwork

from ._hostile import (
    ACTIONS,
    PHASES,
    Echo,
    FaultClientEndpoint,
    FaultServerEndpoint,
    LogCapture,
    Script,
    delayedCallsOf,
    makeTub,
    turn,
)

#: Our side's limits, in fake seconds.
HANDSHAKE = 20.0
NEGOTIATION = 30.0
CLOSE = 10.0


def coroutine(f: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Deferred]:
    def test(self: Any) -> Deferred:
        return Deferred.fromCoroutine(f(self))

    test.__name__ = f.__name__
    test.__doc__ = f.__doc__
    return test


class RecordingNetwork(MemoryNetwork):
    """Remembers each connection's two transports and the protocols first connected to them."""

    def __init__(self, **kwargs: Any) -> None:
        MemoryNetwork.__init__(self, **kwargs)
        self.pairs: list[tuple[str, Any, Any, Any, Any]] = []

    def _connect(self, name: str, entry: Any, clientFactory: Any, clientSocket: str) -> Any:
        client = MemoryNetwork._connect(self, name, entry, clientFactory, clientSocket)
        if client is not None:
            clientT, serverT = self.transports[-2:]
            self.pairs.append((name, clientT, serverT, clientT.protocol, serverT.protocol))
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
    return "in the TLS handshake"


def expectedBound(phase: str, action: str) -> float:
    """The fake seconds within which our end must have dropped the connection."""
    if action != "stall":
        return 1.0
    if phase in ("before", "inside"):
        return NEGOTIATION + 1
    if phase in ("after-switch", "mid-record"):
        return HANDSHAKE + 1
    return CLOSE + 1  # after-banana: from Foolscap's disconnect timeout on


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

    async def sleep(self, seconds: float) -> None:
        """Real time, pumping the fake clock's zero-delay calls meanwhile."""
        end = reactor.seconds() + seconds
        while reactor.seconds() < end:
            self.clock.advance(0)
            await task.deferLater(reactor, 0.01, lambda: None)

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

    def ourDialer(self) -> Any:
        tub = makeTub(self, 0, self.stoppers)
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
            ours.keepaliveTimeout = 0.2
            ours.disconnectTimeout = 1
        script = Script(phase, action, seed=hash((phase, action)) & 0xFFFF)
        evil = makeTub(self, 1, self.stoppers)
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
        script = Script(phase, action, seed=hash((action, phase)) & 0xFFFF)
        evil = makeTub(self, 1, self.stoppers)
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
            ours.keepaliveTimeout = 0.2
            ours.disconnectTimeout = 1
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
            # getReference failed, and says why.
            self.assertEqual(len(outcome), 1)
            self.assertIsInstance(outcome[0], Failure)
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
            # Foolscap notices the silence (1 s of real time) and closes; the
            # peer never answers the close.
            for _ in range(500):
                if wrapper.disconnecting:
                    break
                await self.sleep(0.02)
            self.assertTrue(wrapper.disconnecting, "Foolscap's disconnect timeout did not fire")
        took = await self.advanceUntil(lambda: wrapper._lost, expectedBound(phase, action))
        self.assertIsNotNone(took, "our end never dropped the connection")
        assert took is not None
        self.assertLessEqual(took, expectedBound(phase, action))
        self.assertTrue(wrapper.transport.disconnected)

        lines = self.logs.lines(role=wrapper.role, peer=wrapper._peerText())
        self.assertEqual(len(lines), 1, lines)
        # A clean hang-up in the plaintext phase is what port scanners and
        # losing parallel hints do too: debug; anything else: info.
        hangUp = phase in ("before", "inside") and action in ("close", "truncate")
        level = LogLevel.debug if hangUp else LogLevel.info
        self.assertEqual(len(self.logs.lines(level, role=wrapper.role, peer=wrapper._peerText())), 1)
        if hangUp:
            self.assertEqual(self.logs.lines(LogLevel.info, role=wrapper.role), [])
        if phase != "after-banana":
            self.assertIn("negotiation failed %s: " % (expectedPhase(phase, action),), lines[0])
            if action == "stall":
                self.assertRegex(lines[0], "within (%g|%g) s" % (HANDSHAKE, NEGOTIATION))
        elif action == "stall":
            self.assertIn("closed by aborting it, the peer did not complete the close within 10 s", lines[0])
        else:
            self.assertIn(": connection lost: ", lines[0])

        self.assertEqual(delayedCallsOf(watched), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class HostilePeerTests(PeerCase):
    """The matrix: phase x action x which end is hostile (40 tests, added below)."""


def _addMatrix() -> None:
    for phase in PHASES:
        for action in ACTIONS:
            for role, method in (("Dialer", "hostileDialer"), ("Listener", "hostileListener")):

                def test(self: Any, phase: str = phase, action: str = action, method: str = method) -> Deferred:
                    return Deferred.fromCoroutine(getattr(self, method)(phase, action))

                name = "test_hostile%s_%s_%s" % (role, action, phase.replace("-", "_"))
                test.__name__ = name
                test.__doc__ = "A hostile %s that %s %s." % (role.lower(), action, phase)
                setattr(HostilePeerTests, name, test)


_addMatrix()


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
    async def test_foolscaps_own_timeout_without_ours(self) -> None:
        """
        With no C{negotiation_timeout}, Foolscap's own (here shortened to
        1 s) drops a silent connection, and our line gives its reason.
        """
        ours = makeTub(self, 0, self.stoppers)
        ours.listenOn(
            listener(self.net.server_endpoint("srv", socket=OUTBOUND), clock=self.clock),
            _test_options={"server_timeout": 1},
        )
        silent = self.net.client_endpoint("srv")
        from twisted.internet.protocol import Factory, Protocol

        connected: list[Any] = []
        silent.connect(Factory.forProtocol(Protocol)).addBoth(connected.append)
        await self.until(lambda: connected, "the silent connection")
        wrapper = self.net.pairs[0][4]
        for _ in range(300):
            if wrapper._lost:
                break
            await self.sleep(0.02)
        self.assertTrue(wrapper._lost)
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
