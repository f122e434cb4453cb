"""
Whole Tubs through the relay: a stock Foolscap dialer calls a hidden Tub
that never listens, the relay copies ciphertext it cannot read or alter,
and the hidden Tub comes back by itself after the relay restarts.

Foolscap runs on the global reactor, so these tests return Deferreds and
trial spins it; all but the last run over the in-memory network (no
sockets), the last over loopback TCP.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from zope.interface import implementer
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.tcp import Client as TCPClientSocket, Port as TCPPort
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import TestCase
from foolscap.api import DeadReferenceError, Referenceable, Tub

from foolscap_sidetls import handler, install, relay
from foolscap_sidetls import _relay_wire as wire
from foolscap_sidetls.testing import MemoryNetwork

from ._tls import certificate

RELAY = "relay"


class Echo(Referenceable):
    def __init__(self) -> None:
        self.calls = 0

    def remote_echo(self, data: bytes) -> bytes:
        self.calls += 1
        return data


def waitUntil(predicate: Callable[[], Any], timeout: float = 8.0) -> "defer.Deferred[None]":
    @defer.inlineCallbacks
    def poll() -> Any:
        for _ in range(int(timeout / 0.01)):
            if predicate():
                return
            yield task.deferLater(reactor, 0.01, lambda: None)
        raise AssertionError("condition not reached within %s s" % (timeout,))

    return poll()


# -- a relay's-eye view of its connections ----------------------------------------------


class _Tap(ProtocolWrapper):
    """
    Sits between the relay and each of its transports: keeps every byte
    the relay read and wrote, and may change one byte the relay reads.
    """

    factory: "_TapFactory"

    def __init__(self, factory: "_TapFactory", wrapped: Any) -> None:
        ProtocolWrapper.__init__(self, factory, wrapped)
        self.read: list[bytes] = []
        self.written: list[bytes] = []
        self._seen = 0
        self._target = False
        factory.taps.append(self)

    def dataReceived(self, data: bytes) -> None:
        tamper = self.factory.tamper
        if tamper is not None:
            prefix, at = tamper
            if not self.read:
                # The connection to alter is the one whose first bytes are
                # this request (the whole header block arrives in one read).
                self._target = data.startswith(prefix)
            offset = at - self._seen
            if self._target and 0 <= offset < len(data):
                data = data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]
                self.factory.tampered += 1
        self._seen += len(data)
        self.read.append(data)
        ProtocolWrapper.dataReceived(self, data)

    def write(self, data: bytes) -> None:
        self.written.append(data)
        ProtocolWrapper.write(self, data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))


class _TapFactory(WrappingFactory):
    protocol = _Tap  # type: ignore[assignment]

    def __init__(self, wrapped: Any, tamper: Optional[tuple[bytes, int]]) -> None:
        WrappingFactory.__init__(self, wrapped)
        self.taps: list[_Tap] = []
        self.tamper = tamper
        self.tampered = 0


@implementer(IStreamServerEndpoint)
class TappedEndpoint:
    def __init__(self, inner: Any, tamper: Optional[tuple[bytes, int]] = None) -> None:
        self.inner = inner
        self.factory: Optional[_TapFactory] = None
        self.tamper = tamper

    def listen(self, factory: Any) -> Any:
        self.factory = _TapFactory(factory, self.tamper)
        return self.inner.listen(self.factory)


# -- tests -------------------------------------------------------------------------------


class RelayTubTestCase(TestCase):
    timeout = 20

    def setUp(self) -> Any:
        self.net = MemoryNetwork()
        self.relayCert = certificate("relay")
        return self.startRelay()

    def startRelay(self, endpoint: Any = None) -> "defer.Deferred[Any]":
        self.server = relay.RelayServer(self.relayCert)
        self.addCleanup(self.server.stop)
        return self.server.listen(endpoint or self.net.server_endpoint(RELAY))

    def makeTub(self, name: Optional[str] = None) -> Tub:
        tub = Tub(certData=certificate(name).dumpPEM()) if name else Tub()
        tub.setOption("expose-remote-exception-types", False)
        tub._test_options = dict(tub._test_options, connect_timeout=8)
        tub.startService()
        self.addCleanup(tub.stopService)
        return tub

    def hiddenTub(self, name: str = "hidden", **kwargs: Any) -> tuple[Tub, relay.RelayListenerEndpoint, str, Echo]:
        """A Tub that listens only at the relay, and its echo FURL."""
        tub = self.makeTub(name)
        # Its own connection-hint handlers, role-based, as install() makes
        # them: the relay listener dials the relay with the inner one.
        tub.addConnectionHintHandler("memory", handler(self.net.hint_handler()))
        # Two hints: the first leads nowhere, and the listener (like any
        # Foolscap dialer of the hidden Tub) gets through with the second.
        url = self.server.url("memory:nobody-here", "memory:" + RELAY)
        endpoint = relay.listener(url, tub, retry_initial=0.2, **kwargs)
        tub.listenOn(endpoint)
        tub.setLocation(*relay.location_hints(url))
        echo = Echo()
        return tub, endpoint, tub.registerReference(echo), echo

    def stockDialer(self, name: str = "dialer") -> Tub:
        """A Foolscap Tub with nothing from this project: stock hint handler."""
        tub = self.makeTub(name)
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("memory", self.net.hint_handler())
        return tub


class StockDialerTests(RelayTubTestCase):
    @defer.inlineCallbacks
    def test_callThroughTheRelay(self) -> Any:
        """
        A stock dialer calls a hidden Tub through the relay with an ordinary
        hint; the hidden Tub is the TLS server of a connection it dialed,
        and nothing but the relay listens.
        """
        hidden, endpoint, furl, echo = self.hiddenTub()
        yield endpoint.when_registered()
        rref = yield self.stockDialer().getReference(furl)
        payload = os.urandom(100000)
        self.assertEqual((yield rref.callRemote("echo", payload)), payload)

        (broker,) = hidden.brokers.values()
        self.assertEqual((broker.transport.role, broker.transport.tlsSide), ("listener", "server"))
        self.assertEqual(broker.transport.transport.socket, "outbound")
        self.assertEqual(list(self.net._listeners), [RELAY])
        (listener,) = hidden.getListeners()
        self.assertIsInstance(listener._lp.getHost(), relay.RelayAddress)
        self.assertEqual(self.server.relayed, 1)


class UnknownTubTests(RelayTubTestCase):
    @defer.inlineCallbacks
    def test_dialerIsToldWhy(self) -> Any:
        """
        A stock dialer of a Tub that is not registered hears why, in its
        getReference errback, in the relay's words.
        """
        absent = certificate_id_of("absent")
        furl = "pb://%s@memory:%s/echo" % (absent, RELAY)
        failure = yield self.assertFailure(self.stockDialer().getReference(furl), Exception)
        self.assertIn(
            "HTTP/1.1 404 Not Found: no Tub with TubID %s is registered at this relay" % absent,
            str(failure),
        )


class TappedRelayTestCase(RelayTubTestCase):
    """The relay listens through a L{TappedEndpoint}."""

    def setUp(self) -> Any:
        self.net = MemoryNetwork()
        self.relayCert = certificate("relay")
        self.tap = TappedEndpoint(self.net.server_endpoint(RELAY), self.tamper())
        return self.startRelay(self.tap)

    def tamper(self) -> Optional[tuple[bytes, int]]:
        return None


class ConfidentialityTests(TappedRelayTestCase):

    @defer.inlineCallbacks
    def test_relaySeesNoPlaintext(self) -> Any:
        """
        Every byte the relay read or wrote is recorded: the call's random
        payload appears nowhere in it, and the certificates the two Tubs'
        TLS layers see are each other's, not the relay's.
        """
        hidden, endpoint, furl, echo = self.hiddenTub()
        yield endpoint.when_registered()
        dialer = self.stockDialer()
        rref = yield dialer.getReference(furl)
        payload = os.urandom(512 * 1024)
        self.assertEqual((yield rref.callRemote("echo", payload)), payload)

        assert self.tap.factory is not None
        streams = [b"".join(t.read) for t in self.tap.factory.taps] + [
            b"".join(t.written) for t in self.tap.factory.taps
        ]
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
        seenByDialer = wire.certificate_id(dialerSide.getPeerCertificate())
        seenByHidden = wire.certificate_id(hiddenSide.getPeerCertificate())
        self.assertEqual(seenByDialer, hidden.tubID)
        self.assertEqual(seenByHidden, dialer.tubID)
        self.assertNotIn(self.server.relay_id, (seenByDialer, seenByHidden))


class TamperingTests(TappedRelayTestCase):
    def tamper(self) -> Optional[tuple[bytes, int]]:
        # One bit of the dialer's stream, 200 KiB in: inside the call's
        # TLS records, long after the handshake.
        return (b"GET /id/" + certificate_id_of("hidden").encode(), 200 * 1024)

    @defer.inlineCallbacks
    def test_oneChangedByteFailsTheConnection(self) -> Any:
        hidden, endpoint, furl, echo = self.hiddenTub()
        yield endpoint.when_registered()
        rref = yield self.stockDialer().getReference(furl)
        payload = os.urandom(512 * 1024)
        d = rref.callRemote("echo", payload)
        failure = yield self.assertFailure(d, DeadReferenceError)
        assert self.tap.factory is not None
        self.assertEqual(self.tap.factory.tampered, 1)
        # The connection failed rather than delivering altered data: the
        # hidden Tub never ran the call.
        self.assertEqual(echo.calls, 0)
        self.assertIn("Connection was lost", str(failure))
        yield waitUntil(lambda: not hidden.brokers)


def certificate_id_of(name: str) -> str:
    return wire.certificate_id(certificate(name))


class RegistrationTests(RelayTubTestCase):
    @defer.inlineCallbacks
    def test_cannotRegisterAnotherTubsID(self) -> Any:
        """
        A Tub that claims the victim's TubID, without its key, is refused
        by the relay; the victim registers, and dialers reach the victim.
        """
        victim, victimEndpoint, victimFurl, echo = self.hiddenTub("victim")
        yield victimEndpoint.when_registered()

        forger = self.makeTub("forger")
        forger.tubID = victim.tubID  # its certificate is still its own
        forger.addConnectionHintHandler("memory", self.net.hint_handler())
        endpoint = relay.listener(self.server.url("memory:" + RELAY), forger, retry_initial=5)
        forger.listenOn(endpoint)
        yield waitUntil(lambda: endpoint.last_error is not None)
        self.assertIsInstance(endpoint.last_error.value, relay.RelayRefusedError)
        self.assertIn(
            "cannot register TubID %s: this connection's certificate is that of TubID %s"
            % (victim.tubID, certificate_id_of("forger")),
            str(endpoint.last_error.value),
        )
        self.assertEqual(self.server.registered, {victim.tubID})
        rref = yield self.stockDialer().getReference(victimFurl)
        yield rref.callRemote("echo", b"x")
        self.assertEqual(echo.calls, 1)


class RestartTests(RelayTubTestCase):
    @defer.inlineCallbacks
    def test_relayRestarts(self) -> Any:
        """
        The relay goes away and comes back (same certificate, same
        address): the hidden Tub re-registers by itself, and a dialer's
        Reconnector gets through again.
        """
        hidden, endpoint, furl, echo = self.hiddenTub()
        yield endpoint.when_registered()
        dialer = self.stockDialer()
        connected: list[Any] = []
        reconnector = dialer.connectTo(furl, connected.append)
        self.addCleanup(reconnector.stopConnecting)
        yield waitUntil(lambda: connected)
        self.assertEqual((yield connected[0].callRemote("echo", b"one")), b"one")

        yield self.server.stop()
        yield waitUntil(lambda: endpoint.state != relay.REGISTERED and not hidden.brokers)
        yield self.startRelay()
        yield endpoint.when_registered()
        yield waitUntil(lambda: len(connected) == 2)
        self.assertEqual((yield connected[1].callRemote("echo", b"two")), b"two")
        self.assertEqual(endpoint.port.registrations, 2)


class LoopbackTCPTests(RelayTubTestCase):
    def setUp(self) -> Any:
        self.net = MemoryNetwork()
        self.relayCert = certificate("relay")
        return self.startRelay(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")).addCallback(
            self._listening
        )

    def _listening(self, port: Any) -> None:
        self.relayPort = port
        self.url = self.server.url("tcp:127.0.0.1:%d" % (port.getHost().port,))

    @defer.inlineCallbacks
    def test_hiddenTubNeverListens(self) -> Any:
        """
        Over real sockets: the only listening socket in the reactor is the
        relay's, and the hidden Tub's connection is a TCP client socket to
        it, on which the hidden Tub is the TLS server.
        """
        hidden = self.makeTub("hidden")
        endpoint = relay.listener(self.url, hidden)
        hidden.listenOn(endpoint)
        hidden.setLocation(*relay.location_hints(self.url))
        furl = hidden.registerReference(Echo())
        yield endpoint.when_registered()
        dialer = self.makeTub("dialer")
        install(dialer)  # a sidetls dialer this time (the others are stock)
        rref = yield dialer.getReference(furl)
        payload = os.urandom(300000)
        self.assertEqual((yield rref.callRemote("echo", payload)), payload)
        self.assertEqual(rref.tracker.broker.transport.tlsSide, "client")

        listening = [r for r in reactor.getReaders() if isinstance(r, TCPPort)]
        self.assertEqual(listening, [self.relayPort])
        (broker,) = hidden.brokers.values()
        self.assertEqual(broker.transport.tlsSide, "server")
        self.assertIsInstance(broker.transport.transport, TCPClientSocket)
        self.assertEqual(
            broker.transport.transport.getPeer().port, self.relayPort.getHost().port
        )
