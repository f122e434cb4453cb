"""
Hardening: hostile peers at every phase of the negotiation, in memory.

A scripted peer (tests/_support/hostile.py) is honest until one of six points --
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

import time
from typing import Any, Optional

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import TestCase

from foolscap.api import Tub
from foolscap.connections.tcp import DefaultTCP

from foolscap_sidetls import Limits, Phase, dialer, handler, install, listener, tor as torModule
from foolscap_sidetls._foolscap import tubHandlers
from foolscap_sidetls._handler import SideTLSHandler
from foolscap_sidetls.testing import OUTBOUND, MemoryNetwork
from .._support.peers import CLOSE, NEGOTIATION, PeerCase, ScriptedHints
from .._support.waiting import coroutine

from .._support.hostile import (
    add_matrix,
    Echo,
    Script,
    delayedCallsOf,
    makeTub,
    turn,
)


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
        return ours, self.net.connections[0].listenerProtocol

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
        self.assertIsNot(wrapper.phase, Phase.LOST)
        wrapper.transport.abortConnection()  # let the test end
        await self.until(lambda: stopped, "the Tub to stop after the abort")

    @coroutine
    async def test_close_timeout_bounds_the_close(self) -> None:
        """With the default-style bound, stopService finishes once it has passed, not before."""
        ours, wrapper = await self.stalledPeer(CLOSE)
        stopped = await self.stopping(ours)
        took = await self.advanceUntil(lambda: bool(stopped), CLOSE)
        self.assertEqual(took, CLOSE)
        self.assertIs(wrapper.phase, Phase.LOST)
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
        connection = self.net.connections[0]
        dialerEnd, listenerEnd = connection.dialerProtocol, connection.listenerProtocol
        self.assertEqual(self.clock.seconds(), 0)
        for wrapper in (dialerEnd, listenerEnd):
            # Done negotiating (the phase says so), so no negotiation timer:
            self.assertIs(wrapper.phase, Phase.ESTABLISHED, wrapper)
        # no call is pending on the fake clock for any time to come.
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.getTime() > 0], [])
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
        wrapper = self.net.connections[0].listenerProtocol
        timer = wrapper.wrappedProtocol.negotiationTimer
        self.assertTrue(timer.active())
        # What the docs say: Foolscap's listener gives a negotiation 120 s.
        self.assertTrue(110 < timer.getTime() - reactor.seconds() <= 120, timer)
        timer.reset(0)
        await self.until(lambda: wrapper.phase is Phase.LOST, "Foolscap's negotiation timeout to drop it")
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
        self.assertEqual(len(self.net.connections), 2)
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
        self.assertIsInstance(tubHandlers(tub)["tcp"], DefaultTCP)

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
        handlers = tubHandlers(tub)
        for name in ("tcp", "memory"):
            h = handlers[name]
            self.assertIsInstance(h, SideTLSHandler)
            self.assertEqual(h.limits, Limits(handshake_timeout=11, negotiation_timeout=12, close_timeout=13))
        inner = handlers["tcp"].inner
        self.assertIsInstance(inner, DefaultTCP)
        self.assertIs(handlers["tor"], tor)
        self.assertEqual(tor.limits.close_timeout, 7)
        install(tub, negotiation_timeout=40)
        h = handlers["tcp"]
        self.assertIs(h.inner, inner)
        self.assertEqual(h.limits, Limits(handshake_timeout=60.0, negotiation_timeout=40, close_timeout=30.0))
        self.assertIs(handler(tor), tor)
        # The dialers it makes carry them.
        endpoint, _ = handlers["memory"].hint_to_endpoint("memory:x", Clock(), lambda s: None)
        self.assertEqual(endpoint.limits, Limits(negotiation_timeout=40))
