"""
The base of the in-memory hostile-peer tests: a recording memory network on
a fake clock, our listener and dialer with their limits, honest peers, and
the expectations each scripted failure must meet (see
tests/core/test_hardening_peers.py for the matrix built on it).
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Coroutine, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from foolscap.api import Tub
from foolscap.ipb import IConnectionHintHandler

from foolscap_sidetls import Phase, dialer, handler, listener
from foolscap_sidetls.testing import OUTBOUND, MemoryNetwork
from .hostile import (
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
    """
    A memory network that can act on a connection before any byte moves.
    Each connection's transports and wrappers are in C{connections}
    (L{foolscap_sidetls.testing.MemoryConnection}).
    """

    def __init__(self, **kwargs: Any) -> None:
        MemoryNetwork.__init__(self, **kwargs)
        #: Called once with the next connection's two transports as soon as
        #: they exist (before any byte moves), then forgotten.
        self.onNextConnection: Optional[Callable[[Any, Any], None]] = None

    def _connect(self, name: str, entry: Any, clientFactory: Any, clientSocket: str) -> Any:
        client = MemoryNetwork._connect(self, name, entry, clientFactory, clientSocket)
        if client is not None:
            connection = self.connections[-1]
            hook, self.onNextConnection = self.onNextConnection, None
            if hook is not None:
                hook(connection.dialer, connection.listener)
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


def peerText(wrapper: Any) -> str:
    """A connection's peer as our log lines name it (C{host:port})."""
    peer = wrapper.transport.getPeer()
    return "%s:%s" % (peer.host, peer.port)


def tlsDelayedCalls() -> list[Any]:
    """The real reactor's pending calls bound to any TLS layer."""
    return [
        call
        for call in reactor.getDelayedCalls()
        if isinstance(getattr(call.func, "__self__", None), TLSMemoryBIOProtocol)
    ]


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
        wrapper = self.net.connections[0].listenerProtocol
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
        wrapper = self.net.connections[0].dialerProtocol
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
        app = wrapper.wrappedProtocol
        watched = [wrapper, app]
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
        took = await self.advanceUntil(lambda: wrapper.phase is Phase.LOST, expectedBound(phase, action))
        self.assertIsNotNone(took, "our end never dropped the connection")
        assert took is not None
        self.assertLessEqual(took, expectedBound(phase, action))
        self.assertTrue(wrapper.transport.disconnected)

        peer = peerText(wrapper)
        lines = self.logs.lines(role=wrapper.role, peer=peer)
        self.assertEqual(len(lines), 1, lines)
        # A clean hang-up in the plaintext phase is what port scanners and
        # losing parallel hints do too: debug; anything else: info.
        hangUp = phase in ("before", "inside", "after-tls") and action in ("close", "truncate")
        level = LogLevel.debug if hangUp else LogLevel.info
        self.assertEqual(len(self.logs.lines(level, role=wrapper.role, peer=peer)), 1)
        if hangUp:
            self.assertEqual(self.logs.lines(LogLevel.info, role=wrapper.role), [])
        where = "sidetls %s, connection %s %s: " % (
            wrapper.role,
            "to" if wrapper.role == "dialer" else "from",
            peer,
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
        # Nor on any TLS layer (ours run on the fake clock, checked next).
        self.assertEqual(tlsDelayedCalls(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
