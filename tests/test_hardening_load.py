"""
Hardening: floods and load, in memory and over loopback TCP.

- A slow-open flood: connections that connect and say nothing are dropped
  by the negotiation timeout; with C{max_negotiating} the listener holds at
  most that many at once, and honest peers get through during the flood.
- Many dialers at once, and connect/call/disconnect cycles, over real
  loopback sockets: all served, and the process's open file descriptors
  come back to where they were.
- Hostile peers over real sockets: the descriptor of a connection our end
  dropped is closed.

The full-size runs (500 dialers, 1,000 cycles with RSS, a 500-connection
flood against a listener in its own process) are C{make stress}
(benchmarks/stress.py); these are the same checks at a size C{make test}
can afford.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from foolscap.api import Tub
from foolscap.ipb import IConnectionHintHandler
from foolscap.util import allocate_tcp_port

from foolscap_sidetls import dialer, install, listener

from ._hostile import ACTIONS, PHASES, Echo, FaultClientEndpoint, LogCapture, Script, certificate, makeTub
from .test_hardening_peers import PeerCase, coroutine

CAP = 50
NEGOTIATION = 30.0


def open_sockets() -> int:
    """This process's open socket descriptors (lazily made reactor pipes aside)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink("/proc/self/fd/" + fd).startswith("socket:")
        except OSError:
            pass
    return count


class SlowOpenFloodTests(PeerCase):
    """In memory, on a fake clock: the flood at full size (500) costs little here."""

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

    async def flood(self, count: int) -> list[Any]:
        """C{count} connections that connect and send nothing; their transports."""
        made: list[Any] = []
        for _ in range(count):
            self.net.client_endpoint("srv").connect(Factory.forProtocol(Protocol)).addBoth(made.append)
        await self.until(lambda: len(made) == count, "the flood to connect")
        self.assertEqual([m for m in made if isinstance(m, Failure)], [])
        return [m.transport for m in made]

    @coroutine
    async def test_flood_with_cap(self) -> None:
        """
        500 silent connections in ten waves, an honest dialer between each
        two: every honest call succeeds, the listener never holds more than
        50 connections negotiating, and once the negotiation timeout has
        passed none of the 500 is left, each with one line in the log.
        """
        ours, furl, ep = self.floodListener(CAP)
        silent: list[Any] = []
        served = 0
        for wave in range(10):
            silent += await self.flood(50)
            self.assertLessEqual(len(ep.factory.negotiating), CAP)
            honest = makeTub(self, 2 + wave % 3, self.stoppers)
            honest.removeAllConnectionHintHandlers()
            honest.addConnectionHintHandler("memory", self.net.hint_handler())
            install(honest)
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
        dropped = [line for line in lines if "to admit a new connection" in line]
        timedOut = [line for line in lines if "negotiation did not complete within 30 s" in line]
        self.assertEqual(len(dropped) + len(timedOut), 500, lines[:3])
        self.assertEqual(len(timedOut), held)
        self.assertIn(
            "negotiation failed before the peer sent anything: dropped while still "
            "negotiating (before the peer sent anything) to admit a new connection: 50 "
            "connections were negotiating (max_negotiating=50)",
            dropped[0],
        )
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
    async def test_honest_peer_mid_negotiation_is_never_the_one_dropped(self) -> None:
        """
        The cap is full of silent connections; an honest dialer's request
        arrives, then twice the cap of further silent connections: the
        silent ones are dropped, and the honest connection completes.
        """
        ours, furl, ep = self.floodListener(CAP)
        await self.flood(CAP)
        honest = makeTub(self, 2, self.stoppers)
        honest.removeAllConnectionHintHandlers()
        honest.addConnectionHintHandler("memory", self.net.hint_handler())
        install(honest)
        result: list[Any] = []
        honest.getReference(furl).addCallback(lambda r: r.callRemote("echo", b"honest")).addBoth(result.append)
        # Until our end has the honest request (and has started TLS)...
        await self.until(
            lambda: any(p._received for p in ep.factory.negotiating), "the honest request"
        )
        honestWrapper = next(p for p in ep.factory.negotiating if p._received)
        # ...then the flood goes on, all at once.
        for _ in range(2 * CAP):
            self.net.client_endpoint("srv").connect(Factory.forProtocol(Protocol))
        self.clock.advance(0)
        self.assertFalse(honestWrapper._lost)
        self.assertIsNone(honestWrapper._diagnosis)
        await self.until(lambda: result, "the honest call")
        self.assertEqual(result, [b"honest"])


@implementer(IConnectionHintHandler)
class _TCPHints:
    """tcp:127.0.0.1:PORT hints, dialed through a script (or honestly, without one)."""

    def __init__(self, script: Any = None) -> None:
        self.script = script

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> Any:
        port = int(hint.rsplit(":", 1)[1])
        ep: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        if self.script is not None:
            ep = FaultClientEndpoint(ep, self.script)
        return dialer(ep, handshake_timeout=None, close_timeout=None), "127.0.0.1"

    def describe(self) -> str:
        return "loopback"


class LoopbackCase(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.logs = LogCapture().install(self)
        self.tubs: list[Tub] = []

    def tub(self, cert: int) -> Tub:
        tub = Tub(certData=certificate(cert))
        tub.setOption("expose-remote-exception-types", False)
        tub.startService()
        self.addCleanup(lambda: tub.stopService() if tub.running else None)
        return tub

    def serve(self, **limits: Any) -> tuple[Tub, str]:
        port = allocate_tcp_port()
        ours = self.tub(0)
        ours.listenOn(listener(TCP4ServerEndpoint(reactor, port, interface="127.0.0.1"), **limits))
        ours.setLocation("tcp:127.0.0.1:%d" % port)
        return ours, ours.registerReference(Echo(), "echo")

    def dialing(self, cert: int, script: Any = None) -> Tub:
        tub = self.tub(cert)
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("tcp", _TCPHints(script))
        return tub

    async def eventually(self, condition: Callable[[], Any], what: str, seconds: float = 30) -> Any:
        """Wait for a condition (failing after C{seconds}; a bound on waiting, not a measurement)."""
        for _ in range(int(seconds / 0.01)):
            result = condition()
            if result:
                return result
            await task.deferLater(reactor, 0.01, lambda: None)
        self.fail("never happened: %s" % (what,))

    async def listening(self, tub: Tub) -> None:
        await self.eventually(lambda: all(l._lp is not None for l in tub.getListeners()), "listening")


class LoopbackLoadTests(LoopbackCase):
    @coroutine
    async def test_many_dialers_at_once(self) -> None:
        """20 Tubs dial one listener at the same moment: all are served; no descriptor is left."""
        ours, furl = self.serve()
        await self.listening(ours)
        dialers = [self.dialing(1 + i) for i in range(20)]
        before = open_sockets()
        results = await defer.gatherResults(
            [d.getReference(furl).addCallback(lambda r, i=i: r.callRemote("echo", i)) for i, d in enumerate(dialers)]
        )
        self.assertEqual(results, list(range(20)))
        self.assertEqual(len(ours.brokers), 20)
        self.assertEqual(open_sockets(), before + 2 * 20)  # both ends of each connection
        await defer.gatherResults([d.stopService() for d in dialers])
        await self.eventually(lambda: not ours.brokers, "the listener to forget them")
        await self.eventually(lambda: open_sockets() == before, "descriptors back to %d" % (before,))

    @coroutine
    async def test_connect_call_disconnect_cycles(self) -> None:
        """100 cycles: the descriptor count after cycle 100 is what it was after cycle 10."""
        ours, furl = self.serve()
        await self.listening(ours)
        dialing = self.dialing(1)
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
                counts[cycle] = await self.eventually(
                    lambda: open_sockets() if cycle == 10 or open_sockets() == counts[10] else None,
                    "descriptors at cycle %d" % (cycle,),
                )
        self.assertEqual(counts[100], counts[10])
        self.assertEqual(self.logs.lines(LogLevel.info), [])


class LoopbackHostileTests(LoopbackCase):
    """
    Over real sockets, the connection our end drops really is closed: the
    whole phase x action matrix of a hostile dialer (20 tests, added below),
    with our limits shortened to a second or so of real time.
    """

    async def check(self, phase: str, action: str, **limits: Any) -> None:
        ours, furl = self.serve(**limits)
        await self.listening(ours)
        if phase == "after-banana" and action == "stall":
            ours.keepaliveTimeout = 0.2
            ours.disconnectTimeout = 1
        script = Script(phase, action, seed=7)
        evil = self.dialing(1, script)
        before = open_sockets()
        outcome: list[Any] = []
        evil.getReference(furl).addBoth(outcome.append)
        if phase == "after-banana":
            await self.eventually(lambda: outcome, "the hostile reference")
            self.assertNotIsInstance(outcome[0], Failure)
            script.protocols[0].arm()
            if action == "truncate":
                outcome[0].callRemote("echo", b"x" * 3000).addErrback(lambda f: None)
        await self.eventually(lambda: script.fired, "the script to fire")
        # Served meanwhile:
        honest = self.dialing(2)
        rref = await honest.getReference(furl)
        self.assertEqual(await rref.callRemote("echo", b"meanwhile"), b"meanwhile")
        await honest.stopService()
        # Our end drops the hostile connection; both its descriptors close.
        await self.eventually(lambda: open_sockets() == before, "the hostile connection's descriptors to close")
        lines = self.logs.lines(role="listener")
        self.assertEqual(len(lines), 1, lines)


def _addLoopbackMatrix() -> None:
    for phase in PHASES:
        for action in ACTIONS:

            def test(self: Any, phase: str = phase, action: str = action) -> Deferred:
                return Deferred.fromCoroutine(
                    self.check(phase, action, negotiation_timeout=1.5, handshake_timeout=1.0, close_timeout=1.0)
                )

            name = "test_%s_%s" % (action, phase.replace("-", "_"))
            test.__name__ = name
            test.__doc__ = "A hostile dialer that %s %s, over loopback TCP." % (action, phase)
            setattr(LoopbackHostileTests, name, test)


_addLoopbackMatrix()
