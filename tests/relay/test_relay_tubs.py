"""
Whole Tubs through the relay: a stock Foolscap dialer calls a hidden Tub
that never listens, the relay copies ciphertext it cannot read or alter,
and the hidden Tub comes back by itself after the relay restarts.

The in-memory tests run synchronously: Foolscap schedules its work on the
global reactor with C{callLater(0)} (its eventual-send queue, its TLS
writes) and so does the in-memory network, so stepping the reactor's due
calls (L{pumpReactor}) runs a whole connection and call without waiting,
and the hidden Tub's relay timers are on a L{Clock}.  The restart test
waits on Foolscap's Reconnector, whose retry is real time, with bounded
waits; the loopback TCP tests spin the reactor, with bounded waits.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from zope.interface import implementer
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.tcp import Client as TCPClientSocket, Port as TCPPort
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import TestCase
from foolscap.api import DeadReferenceError, Referenceable, Tub

from foolscap_sidetls import handler, install, relay
from foolscap_sidetls.testing import MemoryNetwork

from ._helpers import LogEvents, listenerNames, pumpReactor, within
from .._support.tls import certificate

RELAY = "relay"


class Echo(Referenceable):
    def __init__(self) -> None:
        self.calls = 0

    def remote_echo(self, data: bytes) -> bytes:
        self.calls += 1
        return data


def certificate_id_of(name: str) -> str:
    return relay.certificate_id(certificate(name))


# -- changing one byte the relay reads ---------------------------------------------------


class _Tamper(ProtocolWrapper):
    """
    Between the relay and one of its transports: flips one bit of what
    the relay reads, at offset C{at} of the connection whose first bytes
    are C{prefix}.  (L{MemoryNetwork}'s C{record=True} covers recording;
    this is only for altering.)
    """

    factory: "_TamperFactory"
    _seen = 0
    _target: Optional[bool] = None

    def dataReceived(self, data: bytes) -> None:
        prefix, at = self.factory.prefix, self.factory.at
        if self._target is None:
            # The whole header block arrives in one read in memory.
            self._target = data.startswith(prefix)
        offset = at - self._seen
        if self._target and 0 <= offset < len(data):
            data = data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]
            self.factory.tampered += 1
        self._seen += len(data)
        ProtocolWrapper.dataReceived(self, data)


class _TamperFactory(WrappingFactory):
    protocol = _Tamper  # type: ignore[assignment]

    def __init__(self, wrapped: Any, prefix: bytes, at: int) -> None:
        WrappingFactory.__init__(self, wrapped)
        self.prefix = prefix
        self.at = at
        self.tampered = 0


@implementer(IStreamServerEndpoint)
class TamperingEndpoint:
    def __init__(self, inner: Any, prefix: bytes, at: int) -> None:
        self.inner = inner
        self.prefix = prefix
        self.at = at
        self.factory: Optional[_TamperFactory] = None

    def listen(self, factory: Any) -> Any:
        self.factory = _TamperFactory(factory, self.prefix, self.at)
        return self.inner.listen(self.factory)


# -- tests -------------------------------------------------------------------------------


class RelayTubTestCase(TestCase):
    """A relay on a L{MemoryNetwork}, and Tubs to use it."""

    record = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.net = MemoryNetwork(record=self.record)
        self.relayCert = certificate("relay")
        self.startRelay(self.relayEndpoint())

    def relayEndpoint(self) -> Any:
        return self.net.server_endpoint(RELAY)

    def startRelay(self, endpoint: Any) -> Any:
        self.server = relay.RelayServer(self.relayCert)
        self.addCleanup(self.server.stop)
        return self.successResultOf(self.server.listen(endpoint))

    def pump(self) -> None:
        pumpReactor(self.clock)

    def makeTub(self, name: Optional[str] = None) -> Tub:
        tub = Tub(certData=certificate(name).dumpPEM()) if name else Tub()
        tub.setOption("expose-remote-exception-types", False)
        tub._test_options = dict(tub._test_options, connect_timeout=8)
        tub.startService()
        self.addCleanup(tub.stopService)
        return tub

    def hiddenTub(
        self, name: str = "hidden", **kwargs: Any
    ) -> tuple[Tub, relay.RelayListenerEndpoint, str, Echo]:
        """A Tub that listens only at the relay, and its echo FURL."""
        tub = self.makeTub(name)
        # Its own connection-hint handlers, role-based, as install() makes
        # them: the relay listener dials the relay with the inner one.
        tub.addConnectionHintHandler("memory", handler(self.net.hint_handler()))
        # Two hints: the first leads nowhere, and the listener (like any
        # Foolscap dialer of the hidden Tub) gets through with the second.
        url = self.server.url("memory:nobody-here", "memory:" + RELAY)
        kwargs.setdefault("clock", self.clock)
        endpoint = relay.listener(url, tub, retry_initial=0.2, random=lambda: 0.5, **kwargs)
        tub.listenOn(endpoint)
        tub.setLocation(*relay.location_hints(url))
        echo = Echo()
        return tub, endpoint, tub.registerReference(echo), echo

    def registeredHiddenTub(
        self, name: str = "hidden", **kwargs: Any
    ) -> tuple[Tub, relay.RelayListenerEndpoint, str, Echo]:
        hidden, endpoint, furl, echo = self.hiddenTub(name, **kwargs)
        self.pump()
        self.successResultOf(endpoint.when_registered())
        return hidden, endpoint, furl, echo

    def stockDialer(self, name: str = "dialer") -> Tub:
        """A Foolscap Tub with nothing from this project: stock hint handler."""
        tub = self.makeTub(name)
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("memory", self.net.hint_handler())
        return tub

    def connect(self, tub: Tub, furl: str) -> Any:
        d = tub.getReference(furl)
        self.pump()
        return self.successResultOf(d)

    def echo(self, rref: Any, payload: bytes) -> None:
        d = rref.callRemote("echo", payload)
        self.pump()
        self.assertEqual(self.successResultOf(d), payload)


class StockDialerTests(RelayTubTestCase):
    def test_callThroughTheRelay(self) -> None:
        """
        A stock dialer calls a hidden Tub through the relay with an ordinary
        hint; the hidden Tub is the TLS server of a connection it dialed,
        and nothing but the relay listens.
        """
        hidden, endpoint, furl, echo = self.registeredHiddenTub()
        rref = self.connect(self.stockDialer(), furl)
        self.echo(rref, os.urandom(100000))

        (broker,) = hidden.brokers.values()
        self.assertEqual((broker.transport.role, broker.transport.tlsSide), ("listener", "server"))
        self.assertEqual(broker.transport.transport.socket, "outbound")
        # Control channel, the dialer and its stream, all to the relay.
        self.assertEqual(len(self.net.transports), 6)
        self.assertEqual(listenerNames(self.net), {RELAY})
        (listener,) = hidden.getListeners()
        self.assertIsInstance(listener._lp.getHost(), relay.RelayAddress)
        self.assertEqual(self.server.relayed, 1)


class UnknownTubTests(RelayTubTestCase):
    def test_dialerIsToldWhy(self) -> None:
        """
        A stock dialer of a Tub that is not registered hears why, in its
        getReference errback, in the relay's words.
        """
        absent = certificate_id_of("absent")
        furl = "pb://%s@memory:%s/echo" % (absent, RELAY)
        d = self.stockDialer().getReference(furl)
        self.pump()
        failure = self.failureResultOf(d)
        self.assertIn(
            "HTTP/1.1 404 Not Found: no Tub with TubID %s is registered at this relay" % absent,
            str(failure),
        )


class ConfidentialityTests(RelayTubTestCase):
    record = True

    def test_relaySeesNoPlaintext(self) -> None:
        """
        Every byte sent to or by the relay is recorded: the call's random
        payload appears nowhere in it, and the certificates the two Tubs'
        TLS layers see are each other's, not the relay's.
        """
        hidden, endpoint, furl, echo = self.registeredHiddenTub()
        dialer = self.stockDialer()
        rref = self.connect(dialer, furl)
        payload = os.urandom(512 * 1024)
        self.echo(rref, payload)

        # Every connection in this test has the relay at one end.
        self.assertEqual(listenerNames(self.net), {RELAY})
        streams = [b"".join(t.sent) for t in self.net.transports]
        everything = b"".join(streams)
        # The recording is the real traffic: the call went both ways
        # through it, and Foolscap's plaintext request is readable there.
        self.assertGreater(len(everything), 2 * len(payload))
        self.assertIn(b"GET /id/" + hidden.tubID.encode(), everything)
        for offset in range(0, len(payload) - 32, len(payload) // 64):
            window = payload[offset : offset + 32]
            for stream in streams:
                self.assertNotIn(window, stream)

        dialerSide = rref.tracker.broker.transport
        (hiddenBroker,) = hidden.brokers.values()
        hiddenSide = hiddenBroker.transport
        seenByDialer = relay.certificate_id(dialerSide.getPeerCertificate())
        seenByHidden = relay.certificate_id(hiddenSide.getPeerCertificate())
        self.assertEqual(seenByDialer, hidden.tubID)
        self.assertEqual(seenByHidden, dialer.tubID)
        self.assertNotIn(self.server.relay_id, (seenByDialer, seenByHidden))


class TamperingTests(RelayTubTestCase):
    def relayEndpoint(self) -> Any:
        # One bit of the dialer's stream, 200 KiB in: inside the call's
        # TLS records, long after the handshake.
        self.tamper = TamperingEndpoint(
            self.net.server_endpoint(RELAY),
            b"GET /id/" + certificate_id_of("hidden").encode(),
            200 * 1024,
        )
        return self.tamper

    def test_oneChangedByteFailsTheConnection(self) -> None:
        """
        The hidden Tub's TLS layer, which received the altered record,
        fails the connection on the record's integrity check instead of
        delivering altered data, and the call never runs.
        """
        logs = LogEvents("foolscap_sidetls").install(self)
        hidden, endpoint, furl, echo = self.registeredHiddenTub()
        rref = self.connect(self.stockDialer(), furl)
        d = rref.callRemote("echo", os.urandom(512 * 1024))
        self.pump()
        failure = self.failureResultOf(d, DeadReferenceError)
        assert self.tamper.factory is not None
        self.assertEqual(self.tamper.factory.tampered, 1)
        self.assertEqual(echo.calls, 0)
        self.assertIn("Connection was lost", str(failure))
        self.assertEqual(hidden.brokers, {})
        # Why, on the side that read the record: OpenSSL's integrity check.
        listenerEnds = [e for e in logs.events if e.get("role") == "listener" and "why" in e]
        self.assertEqual(len(listenerEnds), 1, logs.lines())
        self.assertRegex(
            listenerEnds[0]["why"], re.compile(r"^TLS error: .*(bad record mac|decryption failed)")
        )


class RegistrationTests(RelayTubTestCase):
    def test_cannotRegisterAnotherTubsID(self) -> None:
        """
        A Tub that claims the victim's TubID, without its key, is refused
        by the relay; the victim registers, and dialers reach the victim.
        """
        victim, victimEndpoint, victimFurl, echo = self.registeredHiddenTub("victim")

        forger = self.makeTub("forger")
        forger.tubID = victim.tubID  # its certificate is still its own
        forger.addConnectionHintHandler("memory", self.net.hint_handler())
        endpoint = relay.listener(
            self.server.url("memory:" + RELAY), forger, retry_initial=5, clock=self.clock
        )
        forger.listenOn(endpoint)
        self.pump()
        self.assertEqual(endpoint.state, relay.WAITING)
        self.assertIsInstance(endpoint.last_error.value, relay.RelayRefusedError)
        self.assertIn(
            "cannot register TubID %s: this connection's certificate is that of TubID %s"
            % (victim.tubID, certificate_id_of("forger")),
            str(endpoint.last_error.value),
        )
        self.assertEqual(self.server.registered, {victim.tubID})
        rref = self.connect(self.stockDialer(), victimFurl)
        self.echo(rref, b"x")
        self.assertEqual(echo.calls, 1)


class RestartTests(RelayTubTestCase):
    def test_relayRestarts(self) -> Any:
        """
        The relay goes away and comes back (same certificate, same
        address): the hidden Tub re-registers by itself, and a dialer's
        Reconnector gets through again.

        Foolscap's Reconnector retries in real time (about a second), so
        this test spins the reactor for that part, and the hidden Tub's
        relay timers are the reactor's too.
        """
        hidden, endpoint, furl, echo = self.registeredHiddenTub(clock=reactor)
        dialer = self.stockDialer()
        connected: list[Any] = []
        waiting: list["defer.Deferred[Any]"] = []

        def observe(rref: Any) -> None:
            connected.append(rref)
            if waiting:
                waiting.pop(0).callback(rref)

        reconnector = dialer.connectTo(furl, observe)
        self.addCleanup(reconnector.stopConnecting)
        self.pump()
        (first,) = connected
        self.echo(first, b"one")

        stopped = self.server.stop()
        self.pump()
        self.successResultOf(stopped)
        self.assertEqual(endpoint.state, relay.WAITING)
        self.assertEqual(hidden.brokers, {})

        again: "defer.Deferred[Any]" = defer.Deferred()
        waiting.append(again)
        self.startRelay(self.net.server_endpoint(RELAY))
        d = within(endpoint.when_registered(), 10)  # its first retry is 0.2 s
        d.addCallback(lambda _: self.assertEqual(endpoint.port.registrations, 2))
        d.addCallback(lambda _: within(again, 10))
        d.addCallback(lambda rref: within(rref.callRemote("echo", b"two"), 10))
        d.addCallback(self.assertEqual, b"two")
        d.addCallback(lambda _: self.assertEqual(len(connected), 2))
        return d


class LoopbackTCPTests(TestCase):
    """Over real sockets on 127.0.0.1, with bounded waits."""

    def setUp(self) -> Any:
        self.server = relay.RelayServer(certificate("relay"))
        self.addCleanup(self.server.stop)
        d = self.server.listen(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
        return within(d, 10).addCallback(self._listening)

    def _listening(self, port: Any) -> None:
        self.relayPort = port
        self.url = self.server.url("tcp:127.0.0.1:%d" % (port.getHost().port,))

    def makeTub(self, name: Optional[str] = None) -> Tub:
        tub = Tub(certData=certificate(name).dumpPEM()) if name else Tub()
        tub.setOption("expose-remote-exception-types", False)
        tub._test_options = dict(tub._test_options, connect_timeout=8)
        tub.startService()
        self.addCleanup(tub.stopService)
        return tub

    def hidden(self) -> tuple[Tub, relay.RelayListenerEndpoint, str]:
        hidden = self.makeTub("hidden")
        endpoint = relay.listener(self.url, hidden)
        hidden.listenOn(endpoint)
        hidden.setLocation(*relay.location_hints(self.url))
        return hidden, endpoint, hidden.registerReference(Echo())

    def callThrough(self, dialer: Tub, payloadSize: int) -> "defer.Deferred[Any]":
        """Register, connect, echo; fires with (hidden Tub, rref)."""
        hidden, endpoint, furl = self.hidden()
        payload = os.urandom(payloadSize)
        d = within(endpoint.when_registered(), 10)
        d.addCallback(lambda _: within(dialer.getReference(furl), 10))

        def call(rref: Any) -> Any:
            echoed = within(rref.callRemote("echo", payload), 10)
            echoed.addCallback(self.assertEqual, payload)
            return echoed.addCallback(lambda _: (hidden, rref))

        return d.addCallback(call)

    def checkHiddenSide(self, hidden: Tub) -> None:
        listening = [r for r in reactor.getReaders() if isinstance(r, TCPPort)]
        self.assertEqual(listening, [self.relayPort])
        (broker,) = hidden.brokers.values()
        self.assertEqual(broker.transport.tlsSide, "server")
        self.assertIsInstance(broker.transport.transport, TCPClientSocket)
        self.assertEqual(
            broker.transport.transport.getPeer().port, self.relayPort.getHost().port
        )

    def test_stockDialer(self) -> Any:
        """
        The issue's case: a plain foolscap.api.Tub, nothing installed, with
        its default tcp handler, calls a Tub that never listens -- the only
        listening socket is the relay's -- through the relay over TCP.
        """
        dialer = self.makeTub("dialer")

        def check(result: tuple[Tub, Any]) -> None:
            hidden, rref = result
            transport = rref.tracker.broker.transport
            self.assertIsInstance(transport, TCPClientSocket)  # no sidetls wrapper
            self.assertEqual(transport.getPeer().port, self.relayPort.getHost().port)
            self.checkHiddenSide(hidden)
            self.assertEqual(self.server.relayed, 1)

        return self.callThrough(dialer, 300000).addCallback(check)

    def test_hiddenTubNeverListens(self) -> Any:
        """
        A sidetls dialer this time: it is the TLS client, the hidden Tub
        the TLS server of its TCP client socket to the relay.
        """
        dialer = self.makeTub("dialer")
        install(dialer)

        def check(result: tuple[Tub, Any]) -> None:
            hidden, rref = result
            self.assertEqual(rref.tracker.broker.transport.tlsSide, "client")
            self.checkHiddenSide(hidden)

        return self.callThrough(dialer, 300000).addCallback(check)
