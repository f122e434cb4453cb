"""
The relay and the hidden Tub's relay listener, below Foolscap: in memory,
on a L{Clock}, with real TLS on the control channel.

The relay is checked against small hand-written peers -- a dialer that
writes bytes, a control client that speaks the documented lines over
C{MemoryTransport.startTLS} -- so its wire protocol is tested as written,
not only against our own client.  Whole Tubs through the relay are in
test_relay_tubs.py.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from typing import Any, Optional

from zope.interface import implementer
from twisted.internet import error
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from foolscap.api import Tub
from foolscap.ipb import IConnectionHintHandler

from foolscap_sidetls import Limits, dialer as sidetlsDialer, handler, relay
from foolscap_sidetls.relay import _url, _wire as wire
from foolscap_sidetls.testing import MemoryNetwork, MemoryTransport

from ._helpers import LogEvents, SourcedEndpoint, advance, listenerNames, pump, relaySide
from .._support.tls import certificate, foolscapOptions

RELAY = "relay"


def idOf(name: str) -> str:
    return wire.certificate_id(certificate(name))


# -- hand-written peers -------------------------------------------------------------


class Dialer(Protocol):
    """Writes C{first} on connect; keeps what comes back and why it ended."""

    transport: Any

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.received = b""
        self.lost: Optional[Failure] = None

    def connectionMade(self) -> None:
        if self.first:
            self.transport.write(self.first)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason


def request(tubid: str) -> bytes:
    """What a Foolscap dialer sends first."""
    return (
        b"GET /id/%s HTTP/1.1\r\nHost: relay\r\nUpgrade: TLS/1.0\r\n"
        b"Connection: Upgrade\r\n\r\n" % tubid.encode()
    )


class App(Protocol):
    """The hidden Tub's listening side, as a plain protocol."""

    transport: Any

    def __init__(self, factory: "AppFactory", addr: Any) -> None:
        self.factory = factory
        self.addr = addr
        self.received = b""
        self.lost: Optional[Failure] = None

    def connectionMade(self) -> None:
        self.factory.made.append(self)
        if self.factory.paused:
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason


class AppFactory(Factory):
    def __init__(self, paused: bool = False) -> None:
        self.made: list[App] = []
        self.paused = paused

    def buildProtocol(self, addr: Any) -> App:
        return App(self, addr)


class FakeHidden(Protocol):
    """
    A hidden Tub's control channel written from the documented wire
    protocol, independently of our client: the plaintext request, then TLS
    (this end the client, via C{MemoryTransport.startTLS}), then lines.
    """

    transport: Any

    def __init__(self, options: Any) -> None:
        self.options = options
        self.answer = b""
        self.tls = False
        self.lines: list[str] = []
        self._partial = b""
        self.lost: Optional[Failure] = None

    def connectionMade(self) -> None:
        self.transport.write(wire.CONTROL_REQUEST)

    def dataReceived(self, data: bytes) -> None:
        if not self.tls:
            self.answer += data
            if self.answer.startswith(b"HTTP/1.1 101") and self.answer.endswith(b"\r\n\r\n"):
                self.tls = True
                self.transport.startTLS(self.options)
            return
        self._partial += data
        *lines, self._partial = self._partial.split(b"\r\n")
        self.lines += [line.decode() for line in lines]

    def send(self, line: str) -> None:
        self.transport.write(line.encode() + b"\r\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason


@implementer(IStreamClientEndpoint)
class CountingEndpoint:
    """A client endpoint that notes when each connection attempt is made."""

    def __init__(self, inner: IStreamClientEndpoint, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock
        self.attempts: list[float] = []

    def connect(self, factory: Any) -> Any:
        self.attempts.append(self.clock.seconds())
        return self.inner.connect(factory)


class RelayTestCase(TestCase):
    """A relay listening in memory, on a Clock."""

    limits = relay.RelayLimits()

    def setUp(self) -> None:
        self.clock = Clock()
        self.net = MemoryNetwork(clock=self.clock)
        self.server = self.makeServer()

    def makeServer(self, **kwargs: Any) -> relay.RelayServer:
        kwargs.setdefault("limits", self.limits)
        server = relay.RelayServer(certificate("relay"), clock=self.clock, **kwargs)
        #: Set C{.source} to make new connections come from that host.
        self.sources = SourcedEndpoint(self.net.server_endpoint(RELAY))
        self.successResultOf(server.listen(self.sources))
        self.addCleanup(self.stopServer, server)
        return server

    def stopServer(self, server: relay.RelayServer) -> None:
        d = server.stop()
        pump(self.clock)
        self.successResultOf(d)

    def dial(self, first: bytes = b"") -> Dialer:
        proto = Dialer(first)
        d = self.net.client_endpoint(RELAY).connect(Factory.forProtocol(lambda: proto))
        pump(self.clock)
        self.successResultOf(d)
        return proto

    def fakeHidden(self, name: str = "hidden", options: Any = None) -> FakeHidden:
        proto = FakeHidden(options if options is not None else foolscapOptions(name))
        d = self.net.client_endpoint(RELAY).connect(Factory.forProtocol(lambda: proto))
        pump(self.clock)
        self.successResultOf(d)
        pump(self.clock)
        return proto

    def hiddenEndpoint(self, name: str = "hidden", **kwargs: Any) -> relay.RelayListenerEndpoint:
        kwargs.setdefault("keepalive", None)
        kwargs.setdefault("description", "test relay")
        kwargs.setdefault("random", lambda: 0.5)  # no jitter: waits are exact
        endpoint = relay.RelayListenerEndpoint(
            kwargs.pop("via", None) or self.net.client_endpoint(RELAY),
            certificate(name),
            clock=self.clock,
            **kwargs,
        )
        return endpoint

    def listenHidden(
        self, name: str = "hidden", factory: Optional[AppFactory] = None, **kwargs: Any
    ) -> tuple[relay.RelayListenerEndpoint, Any, AppFactory]:
        endpoint = self.hiddenEndpoint(name, **kwargs)
        factory = factory or AppFactory()
        port = self.successResultOf(endpoint.listen(factory))
        self.addCleanup(self.stopPort, port)
        pump(self.clock)
        return endpoint, port, factory

    def stopPort(self, port: Any) -> None:
        d = port.stopListening()
        pump(self.clock)
        self.successResultOf(d)


# -- the wire format ------------------------------------------------------------------


class WireTests(TestCase):
    def test_requestKinds(self) -> None:
        tubid = idOf("hidden")
        self.assertEqual(wire.parse_request(request(tubid)), ("dialer", tubid))
        self.assertEqual(wire.parse_request(wire.CONTROL_REQUEST), ("control", ""))
        token = wire.new_token()
        self.assertEqual(
            wire.parse_request(b"GET /relay/v1/stream/%s HTTP/1.1\r\n\r\n" % token.encode()),
            ("stream", token),
        )

    def test_badRequestsSayWhatIsWrong(self) -> None:
        cases = [
            (b"HELLO\r\n\r\n", "is not a 'GET <path> HTTP/1.1' request line"),
            (b"POST /id/x HTTP/1.1\r\n\r\n", "is not a 'GET <path> HTTP/1.1'"),
            (b"GET /id/NOT-A-TUBID HTTP/1.1\r\n\r\n", "'NOT-A-TUBID' is not a TubID"),
            (b"GET /relay/v1/stream/short HTTP/1.1\r\n\r\n", "is not a stream token"),
            (b"GET /index.html HTTP/1.1\r\n\r\n", "unknown path '/index.html'"),
            (b"GET /\xff HTTP/1.1\r\n\r\n", "not ASCII"),
        ]
        for block, expected in cases:
            exc = self.assertRaises(wire.BadRequest, wire.parse_request, block)
            self.assertIn(expected, str(exc))

    def test_relayURL(self) -> None:
        rid = idOf("relay")
        url = relay.RelayServer(certificate("relay")).url("tcp:127.0.0.1:7000", "tcp:[::1]:7000")
        self.assertEqual(url, "relay://%s@tcp:127.0.0.1:7000,tcp:[::1]:7000" % rid)
        self.assertEqual(
            relay.parse_relay_url(url), (rid, ["tcp:127.0.0.1:7000", "tcp:[::1]:7000"])
        )
        self.assertEqual(relay.parse_relay_url("tcp:example.org:7000"), (None, ["tcp:example.org:7000"]))
        self.assertEqual(relay.location_hints(url), ["tcp:127.0.0.1:7000", "tcp:[::1]:7000"])

    def test_badRelayURLs(self) -> None:
        for bad, expected in [
            ("relay://nope@tcp:h:1", "'nope' is not a relay ID"),
            ("relay://%s" % idOf("relay"), "is not a relay ID"),
            ("relay://%s@" % idOf("relay"), "no usable connection hints"),
            ("pb://abc@tcp:h:1/swiss", "bad relay URL"),
            ("", "no usable connection hints"),
        ]:
            exc = self.assertRaises(ValueError, relay.parse_relay_url, bad)
            self.assertIn(expected, str(exc))
            self.assertIn("relay://<relay-id>@<hint>", str(exc))

    def test_tcpHintsAreCheckedStrictly(self) -> None:
        """
        A relay's tcp hints are read by the same strict parser as the Tubs'
        own tcp hints, and a bad one is a ValueError naming it, what is
        wrong, and what is accepted.
        """
        self.assertEqual(_url.parse_tcp_hint("tcp:relay.example.org:7000"), ("relay.example.org", 7000))
        self.assertEqual(_url.parse_tcp_hint("tcp:[::1]:7000"), ("::1", 7000))
        self.assertEqual(_url.parse_tcp_hint("127.0.0.1:7000"), ("127.0.0.1", 7000))
        self.assertEqual(_url.tcp_hint("127.0.0.1:7000"), "tcp:127.0.0.1:7000")
        for bad, why in [
            ("tcp:h:65558", "port '65558' is not a number from 1 to 65535"),
            ("tcp:h:0", "port '0' is not a number from 1 to 65535"),
            ("tcp:h:\u0667\u0660", "it contains '\u0667', which is not printable ASCII"),
            ("tcp:h", "it has no ':PORT' after the host"),
            ("tcp:h:1\n", "it contains '\\n', which is not printable ASCII"),
            # What the relay's own, looser expression used to accept:
            ("tcp:[:::::]:7000", "'[:::::]' is not an IPv6 address"),
            ("tcp:-a..b:7000", "host '-a..b' has an empty label"),
            ("tcp:[1.2.3]:80", "'[1.2.3]' is not an IPv6 address"),
        ]:
            exc = self.assertRaises(ValueError, _url.parse_tcp_hint, bad)
            self.assertTrue(
                str(exc).startswith(
                    "bad tcp hint %r for the relay: unrecognized TCP hint %r: %s"
                    % (bad, bad, why)
                ),
                str(exc),
            )
            self.assertTrue(
                str(exc).endswith(
                    "(expected 'tcp:HOST:PORT', HOST being a DNS name, an IPv4 address "
                    "or an [IPv6] address)"
                ),
                str(exc),
            )

    def test_limitsChecked(self) -> None:
        """Bad limits fail when the RelayLimits is made, each message exact."""
        for kwargs, kind, message in [
            (
                {"max_pending_per_registration": 0},
                ValueError,
                "RelayLimits: max_pending_per_registration must be at least 1, got 0",
            ),
            (
                {"max_connections": True},
                TypeError,
                "RelayLimits: max_connections must be a whole number, got True (bool)",
            ),
            (
                {"max_registrations_per_source": 2.5},
                TypeError,
                "RelayLimits: max_registrations_per_source must be a whole number, got 2.5 (float)",
            ),
            (
                {"stream_timeout": -1},
                ValueError,
                "RelayLimits: stream_timeout must be more than 0 seconds, got -1",
            ),
            (
                {"header_timeout": None},
                TypeError,
                "RelayLimits: header_timeout must be a number of seconds, got None (NoneType)",
            ),
            (
                {"control_idle_timeout": "180"},
                TypeError,
                "RelayLimits: control_idle_timeout must be a number of seconds, got '180' (str)",
            ),
            (
                {"close_timeout": 0},
                ValueError,
                "RelayLimits: close_timeout must be more than 0 seconds (None: no limit), got 0",
            ),
        ]:
            exc = self.assertRaises(kind, relay.RelayLimits, **kwargs)
            self.assertEqual(str(exc), message)
        self.assertIsNone(relay.RelayLimits(close_timeout=None).close_timeout)


# -- the relay: routing and splicing -----------------------------------------------------


class SpliceTests(RelayTestCase):
    def test_dialerIsSplicedToTheHiddenTub(self) -> None:
        """
        A dialer's bytes, request line first, reach the hidden Tub's
        protocol unchanged and its answers come back; the protocol is the
        listener role, built with the dialer's address, on a stream the
        hidden Tub dialed.  Nothing but the relay listens.
        """
        endpoint, port, factory = self.listenHidden()
        self.assertEqual(endpoint.state, relay.REGISTERED)
        self.assertEqual(self.server.registered, {idOf("hidden")})

        first = request(idOf("hidden"))
        dialer = self.dial(first)
        dialer.transport.write(b"after the header")
        pump(self.clock)
        (app,) = factory.made
        self.assertEqual(app.received, first + b"after the header")
        app.transport.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        pump(self.clock)
        self.assertEqual(dialer.received, b"HTTP/1.1 101 Switching Protocols\r\n\r\n")

        self.assertEqual(app.transport.role, "listener")
        self.assertEqual(app.addr, relay.RelayedAddress("dialer-2", 2, "test relay"))
        # Control channel, dialer and stream: every connection was to the relay.
        self.assertEqual(len(self.net.transports), 6)
        self.assertEqual(listenerNames(self.net), {RELAY})
        self.assertEqual(self.server.relayed, 1)
        self.assertEqual(self.server.streams(idOf("hidden")), 1)

    def test_closeOnEitherSideClosesTheOther(self) -> None:
        endpoint, port, factory = self.listenHidden()
        dialer = self.dial(request(idOf("hidden")))
        (app,) = factory.made
        dialer.transport.loseConnection()
        pump(self.clock)
        self.assertIsNotNone(app.lost)

        second = self.dial(request(idOf("hidden")))
        app2 = factory.made[1]
        app2.transport.loseConnection()
        pump(self.clock)
        self.assertIsNotNone(second.lost)
        # Only the control connection is left, and no stream is counted.
        self.assertEqual(self.server.connections, 1)
        self.assertEqual(self.server.streams(idOf("hidden")), 0)

    def test_slowHiddenTubPausesTheDialer(self) -> None:
        """
        End-to-end flow control: while the hidden Tub's protocol does not
        read, a dialer writing as fast as it is allowed is paused after a
        bounded amount -- nothing on the way, the relay included, soaks up
        the stream -- and everything arrives once it reads.
        """
        endpoint, port, factory = self.listenHidden(factory=AppFactory(paused=True))
        flood = Flood()
        d = self.net.client_endpoint(RELAY).connect(Factory.forProtocol(lambda: flood))
        pump(self.clock)
        self.successResultOf(d)
        (app,) = factory.made
        self.assertTrue(flood.paused)
        self.assertLess(flood.sent, Flood.LIMIT)
        inFlight = flood.sent - len(app.received)
        self.assertGreater(inFlight, 0)
        # Three hops of 64 KiB in-memory socket buffers, plus a chunk each.
        self.assertLess(inFlight, 512 * 1024)

        flood.stopFlood()
        app.transport.resumeProducing()
        pump(self.clock)
        self.assertEqual(len(app.received), flood.sent)
        self.assertEqual(app.received, flood.everything())


class Flood(Protocol):
    """Sends a request line, then writes as a push producer until paused."""

    CHUNK = 16 * 1024
    LIMIT = 64 * 1024 * 1024
    transport: Any
    sent = 0
    paused = False
    stopped = False

    def connectionMade(self) -> None:
        self._first = request(idOf("hidden"))
        self._chunks = 0
        self.transport.write(self._first)
        self.sent = len(self._first)
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def chunk(self, n: int) -> bytes:
        return (b"%08d" % n) * (self.CHUNK // 8)

    def everything(self) -> bytes:
        return self._first + b"".join(self.chunk(n) for n in range(self._chunks))

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and not self.stopped and self.sent < self.LIMIT:
            self.transport.write(self.chunk(self._chunks))
            self._chunks += 1
            self.sent += self.CHUNK

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.stopped = True

    def stopFlood(self) -> None:
        self.stopped = True
        self.transport.unregisterProducer()


# -- the relay: bad input and limits ----------------------------------------------------------


class RefusalTests(RelayTestCase):
    limits = relay.RelayLimits(
        max_connections=10,
        max_pending_per_registration=2,
        max_streams_per_registration=3,
        header_timeout=10,
        stream_timeout=20,
        control_idle_timeout=100,
    )

    def assertRefused(self, dialer: Dialer, status: str, *texts: str) -> None:
        answer = dialer.received.decode()
        self.assertTrue(answer.startswith("HTTP/1.1 " + status), answer)
        self.assertTrue(answer.endswith("\r\n\r\n"), answer)
        for text in texts:
            self.assertIn(text, answer)
        self.assertIsNotNone(dialer.lost)

    def test_unknownTubID(self) -> None:
        dialer = self.dial(request(idOf("nobody")))
        self.assertRefused(
            dialer,
            "404 Not Found: no Tub with TubID %s is registered at this relay (relay ID %s)"
            % (idOf("nobody"), idOf("relay")),
        )

    def test_garbage(self) -> None:
        dialer = self.dial(b"HELLO\r\n\r\n")
        self.assertRefused(
            dialer,
            "400 Bad Request: 'HELLO' is not a 'GET <path> HTTP/1.1' request line",
            "accepts, as the first header block",
            "'GET /id/<tubid> HTTP/1.1' from Foolscap dialers",
            "'GET /relay/v1/control HTTP/1.1'",
        )

    def test_headerTooLong(self) -> None:
        dialer = self.dial(b"GET /" + b"x" * 5000)
        self.assertRefused(dialer, "400 Bad Request: no end of header block within 4096 bytes")

    def test_headerTimeout(self) -> None:
        dialer = self.dial(b"GET /id/")
        advance(self.clock, 9)
        self.assertIsNone(dialer.lost)
        advance(self.clock, 1)
        self.assertRefused(dialer, "408 Request Timeout: no complete header block within 10 s")

    def test_unknownStreamToken(self) -> None:
        token = wire.new_token()
        stream = self.dial(b"GET /relay/v1/stream/%s HTTP/1.1\r\n\r\n" % token.encode())
        self.assertRefused(stream, "404 Not Found: no dialer is waiting for stream token " + token)

    def test_fullRelayDropsTheOldestSilentConnection(self) -> None:
        """
        At max_connections a new connection is admitted by dropping the
        oldest one that has not sent its header block -- a flood of silent
        connections cannot keep an honest dialer out -- and connections past
        that stage are never dropped for it.
        """
        hidden = self.fakeHidden()  # past its header: a control channel
        silent = [self.dial() for _ in range(9)]
        self.assertEqual(self.server.connections, 10)
        late = self.dial(request(idOf("nobody")))
        self.assertIsInstance(silent[0].lost.value, error.ConnectionLost)
        self.assertEqual(silent[0].received, b"")
        self.assertEqual([d.lost for d in silent[1:]], [None] * 8)
        self.assertIsNone(hidden.lost)
        # The newcomer was served (its TubID is unknown, and it is told so).
        self.assertRefused(late, "404 Not Found: no Tub with TubID %s" % idOf("nobody"))
        pump(self.clock)
        self.assertEqual(self.server.connections, 9)

        newer = [self.dial() for _ in range(2)]
        self.assertIsInstance(silent[1].lost.value, error.ConnectionLost)
        self.assertEqual([d.lost for d in silent[2:] + newer], [None] * 9)
        self.assertEqual(self.server.connections, 10)

    def test_fullRelayRefusesWhenNoneIsSilent(self) -> None:
        controls = [self.fakeHidden() for _ in range(10)]
        eleventh = self.dial()
        self.assertRefused(
            eleventh,
            "503 Service Unavailable: the relay is holding 10 connections, its limit; try later",
        )
        self.assertEqual([c.lost for c in controls], [None] * 10)
        self.assertEqual(self.server.connections, 10)
        controls[0].transport.loseConnection()
        pump(self.clock)
        self.assertEqual(self.server.connections, 9)
        self.assertIsNone(self.dial().lost)

    def test_pendingLimitPerRegistration(self) -> None:
        """A hidden Tub that does not answer CONNECT ties up two dialers at
        most; the third is refused at once, and they time out with 504."""
        hidden = self.fakeHidden()
        hidden.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        self.assertEqual(hidden.lines, ["OK REGISTER " + idOf("hidden")])
        waiting = [self.dial(request(idOf("hidden"))) for _ in range(2)]
        third = self.dial(request(idOf("hidden")))
        self.assertRefused(
            third,
            "503 Service Unavailable: 2 connections to TubID %s are already waiting"
            % idOf("hidden"),
        )
        self.assertEqual([line.split()[0] for line in hidden.lines[1:]], ["CONNECT"] * 2)
        advance(self.clock, 20)
        for dialer in waiting:
            self.assertRefused(
                dialer,
                "504 Gateway Timeout: the hidden Tub %s did not open this connection's "
                "stream within 20 s" % idOf("hidden"),
            )
        # The registration outlives its dialers.
        self.assertEqual(self.server.registered, {idOf("hidden")})

    def test_streamLimitPerRegistration(self) -> None:
        endpoint, port, factory = self.listenHidden()
        dialers = [self.dial(request(idOf("hidden"))) for _ in range(3)]
        self.assertEqual(len(factory.made), 3)
        fourth = self.dial(request(idOf("hidden")))
        self.assertRefused(
            fourth,
            "503 Service Unavailable: TubID %s already has 3 relayed connections, the "
            "relay's limit per hidden Tub" % idOf("hidden"),
        )
        dialers[0].transport.loseConnection()
        pump(self.clock)
        self.assertIsNone(self.dial(request(idOf("hidden"))).lost)
        self.assertEqual(len(factory.made), 4)

    def test_refusedConnectReachesTheDialer(self) -> None:
        hidden = self.fakeHidden()
        hidden.send("REGISTER " + idOf("hidden"))
        dialer = self.dial(request(idOf("hidden")))
        connect = hidden.lines[-1].split()
        self.assertEqual(connect[0], "CONNECT")
        hidden.send("REFUSED %s busy right now" % connect[1])
        pump(self.clock)
        self.assertRefused(
            dialer,
            "503 Service Unavailable: the hidden Tub %s could not take this connection: "
            "busy right now" % idOf("hidden"),
        )

    def test_registrationEndFailsWaitingDialers(self) -> None:
        hidden = self.fakeHidden()
        hidden.send("REGISTER " + idOf("hidden"))
        dialer = self.dial(request(idOf("hidden")))
        hidden.transport.loseConnection()
        pump(self.clock)
        self.assertRefused(dialer, "503 Service Unavailable: the hidden Tub %s's registration ended" % idOf("hidden"))
        self.assertEqual(self.server.registered, frozenset())


class RegistrationTests(RelayTestCase):
    limits = relay.RelayLimits(max_registrations=1, header_timeout=10, control_idle_timeout=100)

    def test_cannotRegisterAnotherTubsID(self) -> None:
        """
        The TLS handshake proves which key the control client holds; it
        may register that key's TubID and no other.
        """
        hidden = self.fakeHidden("mallory")
        hidden.send("REGISTER " + idOf("victim"))
        pump(self.clock)
        self.assertEqual(
            hidden.lines,
            [
                "ERROR cannot register TubID %s: this connection's certificate is that of "
                "TubID %s, and a Tub may register only the TubID of its own certificate"
                % (idOf("victim"), idOf("mallory"))
            ],
        )
        self.assertIsNotNone(hidden.lost)
        self.assertEqual(self.server.registered, frozenset())

    def test_noClientCertificate(self) -> None:
        hidden = self.fakeHidden(options=CertificateOptions())
        hidden.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        (line,) = hidden.lines
        self.assertIn(
            "ERROR cannot register TubID %s: no client certificate" % idOf("hidden"), line
        )
        self.assertEqual(self.server.registered, frozenset())

    def test_controlGarbage(self) -> None:
        for sent, expected in [
            ("HELLO there", "ERROR unknown command 'HELLO'; the relay's control channel "
             "accepts 'REGISTER <tubid>', 'PING <n>' and 'REFUSED <token> <reason>'"),
            ("REGISTER me", "ERROR malformed REGISTER: 'me' is not a TubID"),
            ("PING x", "ERROR malformed or out-of-order PING line 'PING x'"),
            ("REFUSED %s no" % wire.new_token(), "ERROR malformed or out-of-order REFUSED"),
            ("X" * 2000, "ERROR line longer than 1024 bytes"),
        ]:
            hidden = self.fakeHidden()
            hidden.send(sent)
            pump(self.clock)
            self.assertEqual(len(hidden.lines), 1, hidden.lines)
            self.assertTrue(hidden.lines[0].startswith(expected), hidden.lines[0])
            self.assertIsNotNone(hidden.lost)

    def test_pingAndIdleTimeout(self) -> None:
        hidden = self.fakeHidden()
        hidden.send("PING 7")
        hidden.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        self.assertEqual(hidden.lines, ["PONG 7", "OK REGISTER " + idOf("hidden")])
        advance(self.clock, 90)
        hidden.send("PING 8")
        advance(self.clock, 90)
        self.assertEqual(self.server.registered, {idOf("hidden")})
        advance(self.clock, 10)
        self.assertEqual(self.server.registered, frozenset())
        self.assertIsNotNone(hidden.lost)

    def test_unreadAnswersHoldTheClientBack(self) -> None:
        """
        A control client that sends PINGs and never reads the PONGs fills
        its own socket: the relay stops reading it rather than buffering
        answers without bound, and catches up once it reads.
        """
        hidden = self.fakeHidden()
        hidden.transport.pauseProducing()  # it stops reading
        for batch in range(40):
            hidden.transport.write(
                b"".join(b"PING %d\r\n" % n for n in range(batch * 1000, (batch + 1) * 1000))
            )
            self.clock.advance(0)
        pump(self.clock)
        # What the relay wrote and the client has not read: one in-memory
        # socket buffer and a turn's answers, not 40000 PONGs (~480 KiB).
        self.assertLess(hidden.transport._inboundSize, 160 * 1024)
        hidden.transport.resumeProducing()
        pump(self.clock)
        pongs = [line for line in hidden.lines if line.startswith("PONG ")]
        self.assertEqual(pongs, ["PONG %d" % n for n in range(40000)])

    def test_registerTimeout(self) -> None:
        hidden = self.fakeHidden()
        advance(self.clock, 10)
        self.assertEqual(hidden.lines, ["ERROR no REGISTER within 10 s; the relay's control channel accepts 'REGISTER <tubid>', 'PING <n>' and 'REFUSED <token> <reason>' lines (ASCII, CRLF, at most 1024 bytes)"])

    def test_registrationLimit(self) -> None:
        first = self.fakeHidden("hidden")
        first.send("REGISTER " + idOf("hidden"))
        second = self.fakeHidden("other")
        second.send("REGISTER " + idOf("other"))
        pump(self.clock)
        self.assertEqual(second.lines, ["ERROR the relay has 1 registrations, its limit; try later"])
        self.assertEqual(self.server.registered, {idOf("hidden")})

    def test_newerRegistrationReplacesOlder(self) -> None:
        """The key holder reconnecting before the relay noticed its old
        connection died: the newest control connection wins."""
        old = self.fakeHidden()
        old.send("REGISTER " + idOf("hidden"))
        new = self.fakeHidden()
        new.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        self.assertEqual(
            old.lines[-1],
            "ERROR replaced: TubID %s registered again over a newer control connection"
            % idOf("hidden"),
        )
        self.assertIsNotNone(old.lost)
        self.assertEqual(new.lines, ["OK REGISTER " + idOf("hidden")])
        self.assertEqual(self.server.registered, {idOf("hidden")})
        dialer = self.dial(request(idOf("hidden")))
        self.assertTrue(new.lines[-1].startswith("CONNECT "))
        self.assertIsNone(dialer.lost)

    def test_allow(self) -> None:
        self.stopServer(self.server)
        self.server = self.makeServer(allow=lambda tubid: tubid == idOf("other"))
        hidden = self.fakeHidden("hidden")
        hidden.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        self.assertEqual(
            hidden.lines, ["ERROR TubID %s is not allowed to register at this relay" % idOf("hidden")]
        )


# -- the hidden Tub's side ----------------------------------------------------------------


class RelayListenerTests(RelayTestCase):
    limits = relay.RelayLimits(header_timeout=10, stream_timeout=20, control_idle_timeout=100)

    def test_reregistersWithBackoff(self) -> None:
        """
        When the relay goes away the listener retries after 1, 2, 4, 4 s
        (doubling up to retry_max), registers as soon as the relay is back,
        and after a success starts again from retry_initial.
        """
        counting = CountingEndpoint(self.net.client_endpoint(RELAY), self.clock)
        endpoint, port, factory = self.listenHidden(via=counting, retry_max=4)
        self.assertEqual(endpoint.state, relay.REGISTERED)
        self.stopServer(self.server)
        self.assertEqual(endpoint.state, relay.WAITING)
        start = self.clock.seconds()
        advance(self.clock, 11.5, step=0.25)
        self.assertEqual(
            [t - start for t in counting.attempts[1:]], [1.0, 3.0, 7.0, 11.0]
        )
        self.assertIsInstance(endpoint.last_error.value, error.ConnectionRefusedError)

        self.server = self.makeServer()
        registered = endpoint.when_registered()
        self.assertNoResult(registered)
        advance(self.clock, 4, step=0.25)
        self.successResultOf(registered)
        self.assertEqual(counting.attempts[-1] - start, 15.0)
        self.assertEqual(self.server.registered, {idOf("hidden")})
        self.assertEqual(port.registrations, 2)

        # A fresh loss starts from retry_initial again.
        self.stopServer(self.server)
        lost = self.clock.seconds()
        advance(self.clock, 1, step=0.25)
        self.assertEqual(counting.attempts[-1] - lost, 1.0)

    def test_keepaliveNoticesASilentRelay(self) -> None:
        endpoint, port, factory = self.listenHidden(keepalive=5)
        # The relay's end of the control connection stops reading: it is
        # wedged, and answers no PING.
        (relayEnd,) = relaySide(self.net, RELAY)
        relayEnd.pauseProducing()
        advance(self.clock, 9.5)
        self.assertEqual(endpoint.state, relay.REGISTERED)
        advance(self.clock, 1)
        self.assertNotEqual(endpoint.state, relay.REGISTERED)
        self.assertIsInstance(endpoint.last_error.value, relay.RelayTimeoutError)
        self.assertEqual(
            str(endpoint.last_error.value), "the relay did not answer PING within 5 s"
        )
        # Then it registers again over a new control connection.
        advance(self.clock, 1)
        self.assertEqual(endpoint.state, relay.REGISTERED)
        self.assertEqual(port.registrations, 2)

    def test_relayIdentityIsPinned(self) -> None:
        endpoint, port, factory = self.listenHidden(relay_id=idOf("someone-else"))
        self.assertEqual(endpoint.state, relay.WAITING)
        self.assertIsInstance(endpoint.last_error.value, relay.RelayIdentityError)
        self.assertIn(
            "presented the certificate of %s, not relay ID %s from its relay URL"
            % (idOf("relay"), idOf("someone-else")),
            str(endpoint.last_error.value),
        )
        self.assertEqual(self.server.registered, frozenset())

    def test_relayRefusalIsReported(self) -> None:
        endpoint, port, factory = self.listenHidden(tubid=idOf("victim"))
        self.assertEqual(endpoint.state, relay.WAITING)
        self.assertIsInstance(endpoint.last_error.value, relay.RelayRefusedError)
        self.assertIn(
            "the relay said: cannot register TubID %s: this connection's certificate "
            "is that of TubID %s" % (idOf("victim"), idOf("hidden")),
            str(endpoint.last_error.value),
        )

    def test_notARelay(self) -> None:
        # Something else listens there, and answers like a web server.
        web = Factory.forProtocol(lambda: Dialer(b"HTTP/1.1 404 Not Found\r\n\r\n"))
        self.successResultOf(self.net.server_endpoint("web").listen(web))
        endpoint, port, factory = self.listenHidden(via=self.net.client_endpoint("web"))
        self.assertEqual(endpoint.state, relay.WAITING)
        self.assertEqual(
            str(endpoint.last_error.value),
            "the relay refused the control connection: 'HTTP/1.1 404 Not Found'",
        )

    def test_stopListeningUnregisters(self) -> None:
        """
        stopListening ends the registration and the retries; a connection
        already relayed stays up, as accepted sockets outlive a TCP port.
        """
        counting = CountingEndpoint(self.net.client_endpoint(RELAY), self.clock)
        endpoint, port, factory = self.listenHidden(via=counting)
        dialer = self.dial(request(idOf("hidden")))
        (app,) = factory.made
        d = port.stopListening()
        pump(self.clock)
        self.successResultOf(d)
        self.assertEqual(self.server.registered, frozenset())
        self.assertEqual(endpoint.state, relay.STOPPED)
        attempts = len(counting.attempts)
        advance(self.clock, 60, step=5)
        self.assertEqual(len(counting.attempts), attempts)
        dialer.transport.write(b"still here")
        pump(self.clock)
        self.assertTrue(app.received.endswith(b"still here"))
        self.assertIsNone(app.lost)
        self.failureResultOf(endpoint.when_registered(), RuntimeError)

    def test_streamLimitOnTheHiddenSide(self) -> None:
        """A relay cannot make the hidden Tub open streams without bound:
        past max_pending_streams the dialer is refused with the reason."""
        endpoint, port, factory = self.listenHidden(max_pending_streams=1)
        first = Dialer(request(idOf("hidden")))
        second = Dialer(request(idOf("hidden")))
        for proto in (first, second):
            self.net.client_endpoint(RELAY).connect(Factory.forProtocol(lambda p=proto: p))
        pump(self.clock)
        self.assertEqual(len(factory.made), 1)
        self.assertIsNone(first.lost)
        self.assertIn(
            "503 Service Unavailable: the hidden Tub %s could not take this connection: "
            "1 streams are already being opened, this hidden Tub's limit" % idOf("hidden"),
            second.received.decode(),
        )

    def fakeTub(self) -> Any:
        """Just what relay.listener() reads from a Tub, with counted hints."""
        counted: list[str] = []
        inner = self.net.hint_handler()

        @implementer(IConnectionHintHandler)
        class Counting:
            def hint_to_endpoint(self, hint: str, reactor: Any, update: Any) -> Any:
                counted.append(hint)
                return inner.hint_to_endpoint(hint, reactor, update)

        class FakeTub:
            myCertificate = certificate("hidden")
            tubID = idOf("hidden")
            _connectionHandlers = {"memory": handler(Counting())}

        return FakeTub(), counted

    def test_hintsTriedInOrder(self) -> None:
        tub, counted = self.fakeTub()
        url = "relay://%s@memory:a,memory:b" % (idOf("relay"),)
        endpoint = relay.listener(url, tub, clock=self.clock, keepalive=None)
        port = self.successResultOf(endpoint.listen(AppFactory()))
        self.addCleanup(self.stopPort, port)
        pump(self.clock)
        self.assertEqual(counted, ["memory:a", "memory:b"])
        self.assertIsInstance(endpoint.last_error.value, relay.RelayError)
        message = str(endpoint.last_error.value)
        self.assertTrue(message.startswith("could not reach the relay at any of its hints: memory:a: "), message)
        self.assertIn("; memory:b: ", message)

        # The same Tub gets through when a later hint leads to the relay.
        endpoint = relay.listener(
            "relay://%s@memory:a,memory:%s" % (idOf("relay"), RELAY), tub, clock=self.clock
        )
        port = self.successResultOf(endpoint.listen(AppFactory()))
        self.addCleanup(self.stopPort, port)
        pump(self.clock)
        self.assertEqual(endpoint.state, relay.REGISTERED)

    def test_stopWhileDialingTriesNoFurtherHint(self) -> None:
        tub, counted = self.fakeTub()
        endpoint = relay.listener("memory:a,memory:b", tub, clock=self.clock)
        port = self.successResultOf(endpoint.listen(AppFactory()))
        registered = endpoint.when_registered()
        stopped = port.stopListening()
        pump(self.clock)
        self.successResultOf(stopped)
        advance(self.clock, 10)
        self.assertEqual(counted, ["memory:a"])
        failure = self.failureResultOf(registered, relay.RelayError)
        self.assertEqual(str(failure.value), "stopped listening before registering")

    def test_listenTwice(self) -> None:
        endpoint, port, factory = self.listenHidden()
        failure = self.failureResultOf(endpoint.listen(AppFactory()), RuntimeError)
        self.assertIn("is already listening", str(failure.value))

    def test_badArguments(self) -> None:
        exc = self.assertRaises(
            TypeError, relay.RelayListenerEndpoint, "tcp:h:1", certificate("hidden")
        )
        self.assertIn("expects an IStreamClientEndpoint", str(exc))
        exc = self.assertRaises(TypeError, relay.listener, "tcp:h:1", object())
        self.assertIn("expects a foolscap.api.Tub", str(exc))
        tub, _ = self.fakeTub()
        exc = self.assertRaises(ValueError, relay.listener, "tcp:h:65558", tub)
        self.assertIn("bad tcp hint 'tcp:h:65558' for the relay: ", str(exc))
        exc = self.assertRaises(ValueError, relay.listener, "tor:abc.onion:7000", tub)
        self.assertIn("no connection-hint handler for 'tor' hints", str(exc))
        exc = self.assertRaises(TypeError, relay.RelayServer, certificate="pem")
        self.assertIn("expects a twisted.internet.ssl.PrivateCertificate", str(exc))
        exc = self.assertRaises(TypeError, self.server.listen, "tcp:0")
        self.assertIn("expects an IStreamServerEndpoint", str(exc))
        exc = self.assertRaises(TypeError, relay.RelayServer, allow=["some-tubid"])
        self.assertEqual(
            str(exc),
            "RelayServer(allow=...) expects a callable taking a TubID and returning true "
            "to let it register, got ['some-tubid']",
        )


# -- per-source limits -------------------------------------------------------------------------


class SourceLimitTests(RelayTestCase):
    limits = relay.RelayLimits(
        max_connections=6,
        max_connections_per_source=2,
        max_registrations_per_source=1,
        header_timeout=10,
        control_idle_timeout=100,
    )

    def test_connectionsPerSource(self) -> None:
        self.sources.source = "10.0.0.1"
        first, second = self.dial(), self.dial()
        third = self.dial()
        self.assertEqual(
            third.received,
            b"HTTP/1.1 503 Service Unavailable: the relay is holding 2 connections from "
            b"10.0.0.1, its limit per source address; try later\r\n\r\n",
        )
        self.assertIsNotNone(third.lost)
        self.assertEqual((first.lost, second.lost), (None, None))
        self.assertEqual(self.server.connections, 2)
        # Another source is not held back by that one...
        self.sources.source = "10.0.0.2"
        other = [self.dial(), self.dial()]
        self.assertEqual([d.lost for d in other], [None, None])
        # ...and the first gets a place back when one of its own closes.
        first.transport.loseConnection()
        pump(self.clock)
        self.sources.source = "10.0.0.1"
        self.assertIsNone(self.dial().lost)
        self.assertEqual(self.server.connections, 4)

    def test_oneSourceCannotEvictPastItsOwnLimit(self) -> None:
        """
        Silent connections from one source take no more than its share,
        so they never make the relay drop another source's connections.
        """
        others = []
        for n in range(4):
            self.sources.source = "10.0.0.%d" % (10 + n,)
            others.append(self.dial())
        self.sources.source = "10.0.0.1"
        flood = [self.dial() for _ in range(10)]
        self.assertEqual([d.lost for d in others], [None] * 4)
        self.assertEqual([d.lost for d in flood[:2]], [None, None])
        for refused in flood[2:]:
            self.assertTrue(refused.received.startswith(b"HTTP/1.1 503 "), refused.received)
        self.assertEqual(self.server.connections, 6)

    def test_registrationsPerSource(self) -> None:
        """
        A fresh key costs nothing, so one address may hold
        max_registrations_per_source registrations: the next is refused,
        while that same Tub re-registering from there replaces its own.
        """
        self.sources.source = "10.0.0.1"
        first = self.fakeHidden("hidden")
        first.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        second = self.fakeHidden("other")
        second.send("REGISTER " + idOf("other"))
        pump(self.clock)
        self.assertEqual(
            second.lines,
            ["ERROR the relay has 1 registrations from 10.0.0.1, its limit per source "
             "address; try later"],
        )
        self.assertIsNotNone(second.lost)
        again = self.fakeHidden("hidden")
        again.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        self.assertEqual(again.lines, ["OK REGISTER " + idOf("hidden")])
        self.assertIsNotNone(first.lost)
        self.sources.source = "10.0.0.2"
        elsewhere = self.fakeHidden("other")
        elsewhere.send("REGISTER " + idOf("other"))
        pump(self.clock)
        self.assertEqual(elsewhere.lines, ["OK REGISTER " + idOf("other")])
        self.assertEqual(self.server.registered, {idOf("hidden"), idOf("other")})


# -- closes the relay started ------------------------------------------------------------------


class RelayCloseTimeoutTests(RelayTestCase):
    """
    A peer that stops reading cannot hold a connection the relay is
    closing: after close_timeout the relay aborts it.
    """

    limits = relay.RelayLimits(header_timeout=100, control_idle_timeout=1000, close_timeout=30)

    def test_refusedPeerThatDoesNotRead(self) -> None:
        dialer = self.dial()
        dialer.transport.pauseProducing()
        dialer.transport.write(b"HELLO\r\n\r\n")
        advance(self.clock, 29.5)
        self.assertIsNone(dialer.lost)
        self.assertEqual(self.server.connections, 1)
        advance(self.clock, 1)
        self.assertIsInstance(dialer.lost.value, error.ConnectionLost)
        self.assertEqual(self.server.connections, 0)

    def test_failedControlChannelThatDoesNotAnswer(self) -> None:
        """
        The relay's ERROR is followed by TLS's close_notify, and a clean
        close then waits for the hidden Tub's: it never comes from a peer
        that has stopped reading.
        """
        hidden = self.fakeHidden()
        hidden.transport.pauseProducing()
        hidden.send("HELLO there")
        advance(self.clock, 29.5)
        self.assertIsNone(hidden.lost)
        advance(self.clock, 1)
        self.assertIsInstance(hidden.lost.value, error.ConnectionLost)
        self.assertEqual(self.server.connections, 0)

    def test_splicedPeerThatDoesNotRead(self) -> None:
        """The dialer hangs up; the hidden Tub's side is not reading what it sent last."""
        endpoint, port, factory = self.listenHidden(factory=AppFactory(paused=True))
        dialer = self.dial(request(idOf("hidden")))
        (app,) = factory.made
        dialer.transport.write(b"last words")
        dialer.transport.loseConnection()
        advance(self.clock, 29.5)
        self.assertIsNone(app.lost)
        self.assertEqual(self.server.connections, 2)  # control channel and stream
        advance(self.clock, 1)
        self.assertIsInstance(app.lost.value, error.ConnectionLost)
        self.assertEqual(self.server.connections, 1)

    def test_stopDropsSplicedAndClosingConnections(self) -> None:
        """
        stop() drops every connection -- spliced pairs, a refused peer
        still being closed -- and fires once they are gone; the hidden Tub
        then waits to register again.
        """
        endpoint, port, factory = self.listenHidden()
        dialer = self.dial(request(idOf("hidden")))
        (app,) = factory.made
        refused = self.dial()
        refused.transport.pauseProducing()
        refused.transport.write(b"HELLO\r\n\r\n")
        pump(self.clock)
        self.assertEqual(self.server.connections, 4)
        d = self.server.stop()
        pump(self.clock)
        self.successResultOf(d)
        self.assertIsInstance(dialer.lost.value, error.ConnectionLost)
        self.assertIsInstance(app.lost.value, error.ConnectionLost)
        self.assertIsInstance(refused.lost.value, error.ConnectionLost)
        self.assertEqual(self.server.connections, 0)
        self.assertEqual(self.server.registered, frozenset())
        self.assertEqual(endpoint.state, relay.WAITING)


# -- the relay's buffering before a splice -------------------------------------------------------


class WaitingDialerTests(RelayTestCase):
    limits = relay.RelayLimits(header_timeout=10, stream_timeout=100, control_idle_timeout=1000)

    def registered(self) -> FakeHidden:
        hidden = self.fakeHidden()
        hidden.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        self.assertEqual(hidden.lines, ["OK REGISTER " + idOf("hidden")])
        return hidden

    def openStream(self, hidden: FakeHidden, after: bytes = b"") -> Dialer:
        command, token, host, port = hidden.lines[-1].split()
        self.assertEqual(command, "CONNECT")
        return self.dial(b"GET /relay/v1/stream/%s HTTP/1.1\r\n\r\n" % token.encode() + after)

    def test_talkingDialerIsPausedUntilSpliced(self) -> None:
        """
        A dialer that keeps writing while its hidden Tub has not opened the
        stream is held back after about a header block's worth -- the relay
        stops reading it -- and everything it wrote arrives once spliced.
        """
        hidden = self.registered()
        flood = Flood()
        d = self.net.client_endpoint(RELAY).connect(Factory.forProtocol(lambda: flood))
        pump(self.clock)
        self.successResultOf(d)
        self.assertTrue(flood.paused)
        held = flood.sent
        advance(self.clock, 5)
        # Still paused: the relay read no more, so the dialer wrote no more.
        self.assertEqual(flood.sent, held)
        self.assertLess(held, 512 * 1024)
        flood.stopFlood()
        stream = self.openStream(hidden)
        pump(self.clock)
        self.assertEqual(stream.received, wire.STREAM_ACCEPTED + flood.everything())
        self.assertIsNone(stream.lost)

    def test_streamEarlyData(self) -> None:
        """Bytes the stream sends with its request reach the dialer, first."""
        hidden = self.registered()
        dialer = self.dial(request(idOf("hidden")))
        stream = self.openStream(hidden, after=b"early bytes")
        pump(self.clock)
        self.assertEqual(dialer.received, b"early bytes")
        self.assertEqual(stream.received, wire.STREAM_ACCEPTED + request(idOf("hidden")))


# -- the relay's certificate file -------------------------------------------------------------


class CertificateFileTests(TestCase):
    def mktemp(self) -> str:
        """A fresh path in a directory removed after the test."""
        directory = tempfile.mkdtemp(prefix="relay-cert-test-")
        self.addCleanup(shutil.rmtree, directory)
        return os.path.join(directory, "relay.pem")

    def test_createdOnceThenLoaded(self) -> None:
        path = self.mktemp()
        directory = os.path.dirname(path)
        first = relay.RelayServer(cert_file=path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        # Written whole, under its own name: no temporary file is left.
        self.assertEqual(os.listdir(directory), ["relay.pem"])
        second = relay.RelayServer(cert_file=path)
        self.assertEqual(second.relay_id, first.relay_id)
        self.assertEqual(second.certificate.dumpPEM(), first.certificate.dumpPEM())

    def test_corruptFile(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        exc = self.assertRaises(relay.RelayError, relay.RelayServer, cert_file=path)
        message = str(exc)
        self.assertTrue(
            message.startswith(
                "the relay's certificate file %r does not hold a PEM certificate and "
                "private key, as RelayServer(cert_file=...) writes it (" % (path,)
            ),
            message,
        )
        self.assertTrue(
            message.endswith(
                "); restore it, or move it away to make a new relay identity (which "
                "changes the relay URL)"
            ),
            message,
        )
        with open(path, "rb") as f:
            self.assertIn(b"not base64", f.read())  # left as it was

    def test_unreadableFile(self) -> None:
        path = self.mktemp()
        os.mkdir(path)
        exc = self.assertRaises(relay.RelayError, relay.RelayServer, cert_file=path)
        self.assertEqual(
            str(exc), "cannot read the relay's certificate file %r: Is a directory" % (path,)
        )

    def test_certificateAndFile(self) -> None:
        exc = self.assertRaises(
            TypeError, relay.RelayServer, certificate("relay"), cert_file="relay.pem"
        )
        self.assertEqual(str(exc), "RelayServer takes certificate= or cert_file=, not both")


# -- the hidden Tub's side: how it reaches the relay, and how it stops -------------------------


@implementer(IConnectionHintHandler)
class RecordingTCP:
    """
    A Tub's tcp handler that is not the default one (as a Tor one is): it
    notes every hint and reactor it is asked with, and reaches the
    in-memory relay through a sidetls dialer, as foolscap_sidetls.tor's
    handlers return them.
    """

    def __init__(self, net: MemoryNetwork) -> None:
        self.net = net
        self.asked: list[tuple[str, Any]] = []

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> Any:
        self.asked.append((hint, reactor))
        return sidetlsDialer(self.net.client_endpoint(RELAY)), "relay"

    def describe(self) -> str:
        return "recording-tcp"


class RelayHintTests(RelayTestCase):
    limits = relay.RelayLimits(header_timeout=10, control_idle_timeout=100)

    def tub(self) -> Tub:
        tub = Tub(certData=certificate("hidden").dumpPEM())
        tub.removeAllConnectionHintHandlers()
        return tub

    def test_tcpHintsGoThroughTheTubsOwnHandler(self) -> None:
        """
        A Tub that routes tcp hints through something (Tor) reaches its
        relay through it too -- a direct connection would tell the relay
        its address -- with the reactor it was given; the role wrappers
        are taken off, so the relayed stream is not wrapped twice.
        """
        tub = self.tub()
        recording = RecordingTCP(self.net)
        tub.addConnectionHintHandler("tcp", handler(recording))
        url = "relay://%s@127.0.0.1:7000" % (idOf("relay"),)  # the legacy spelling
        endpoint = relay.listener(url, tub, reactor=self.clock, keepalive=None, random=None)
        factory = AppFactory()
        port = self.successResultOf(endpoint.listen(factory))
        self.addCleanup(self.stopPort, port)
        pump(self.clock)
        self.assertEqual(endpoint.state, relay.REGISTERED)
        self.assertEqual(recording.asked, [("tcp:127.0.0.1:7000", self.clock)])

        dialer = self.dial(request(idOf("hidden")))
        self.assertEqual(
            recording.asked, [("tcp:127.0.0.1:7000", self.clock)] * 2
        )
        (app,) = factory.made
        self.assertEqual(app.transport.role, "listener")
        self.assertIsInstance(app.transport.transport, MemoryTransport)
        self.assertEqual(app.received, request(idOf("hidden")))
        self.assertIsNone(dialer.lost)

    def test_noTcpHandlerNoTcp(self) -> None:
        """A Tub whose tcp handler was removed does not dial the relay's tcp hint."""
        tub = self.tub()
        tub.addConnectionHintHandler("memory", self.net.hint_handler())
        url = "relay://%s@tcp:127.0.0.1:7000" % (idOf("relay"),)
        exc = self.assertRaises(ValueError, relay.listener, url, tub)
        self.assertEqual(
            str(exc),
            "no connection-hint handler for 'tcp' hints on %r, so the relay hint "
            "'tcp:127.0.0.1:7000' cannot be dialed (the Tub would not dial such a hint "
            "either); add one with tub.addConnectionHintHandler('tcp', ...), give the "
            "relay a hint of a type the Tub has a handler for (it has: memory), or pass "
            "an IStreamClientEndpoint for the relay" % (tub,),
        )


class ListenerArgumentTests(TestCase):
    def check(self, kind: type, message: str, **kwargs: Any) -> None:
        endpoint = MemoryNetwork(clock=Clock()).client_endpoint(RELAY)
        exc = self.assertRaises(
            kind, relay.RelayListenerEndpoint, endpoint, certificate("hidden"), **kwargs
        )
        self.assertEqual(str(exc), message)

    def test_seconds(self) -> None:
        self.check(
            ValueError,
            "RelayListenerEndpoint: keepalive must be more than 0 seconds (None: no limit), got 0",
            keepalive=0,
        )
        self.check(
            TypeError,
            "RelayListenerEndpoint: keepalive must be a number of seconds or None, got True (bool)",
            keepalive=True,
        )
        self.check(
            ValueError,
            "RelayListenerEndpoint: answer_timeout must be more than 0 seconds, got -1",
            answer_timeout=-1,
        )
        self.check(
            TypeError,
            "RelayListenerEndpoint: answer_timeout must be a number of seconds, got '30' (str)",
            answer_timeout="30",
        )
        self.check(
            TypeError,
            "RelayListenerEndpoint: answer_timeout must be a number of seconds, got None (NoneType)",
            answer_timeout=None,
        )
        self.check(
            ValueError,
            "RelayListenerEndpoint: close_timeout must be more than 0 seconds (None: no limit), got 0",
            close_timeout=0,
        )
        self.check(
            TypeError,
            "RelayListenerEndpoint: retry_initial must be a number of seconds, got '1' (str)",
            retry_initial="1",
        )
        self.check(
            ValueError,
            "RelayListenerEndpoint: need retry_initial <= retry_max, got 5 and 1",
            retry_initial=5,
            retry_max=1,
        )

    def test_countsAndJitter(self) -> None:
        self.check(
            TypeError,
            "RelayListenerEndpoint: max_pending_streams must be a whole number, got True (bool)",
            max_pending_streams=True,
        )
        self.check(
            ValueError,
            "RelayListenerEndpoint: max_pending_streams must be at least 1, got 0",
            max_pending_streams=0,
        )
        self.check(
            ValueError,
            "RelayListenerEndpoint: jitter must be from 0 up to (not including) 1, got 1",
            jitter=1,
        )
        self.check(
            TypeError,
            "RelayListenerEndpoint: random must be a callable returning a float in [0, 1), got 0.5",
            random=0.5,
        )

    def test_listenerPassesThemOn(self) -> None:
        tub = Tub(certData=certificate("hidden").dumpPEM())
        exc = self.assertRaises(ValueError, relay.listener, "tcp:127.0.0.1:7000", tub, keepalive=0)
        self.assertEqual(
            str(exc),
            "RelayListenerEndpoint: keepalive must be more than 0 seconds (None: no limit), got 0",
        )

    def test_limits(self) -> None:
        """
        The relayed connections' limits come as one Limits (max_negotiating
        included: they are a listener's) or as handshake_timeout alone, not
        both; relay.listener() passes them on.
        """
        endpoint = MemoryNetwork(clock=Clock()).client_endpoint(RELAY)
        limits = Limits(handshake_timeout=5, negotiation_timeout=6, max_negotiating=4)
        made = relay.RelayListenerEndpoint(endpoint, certificate("hidden"), limits=limits)
        self.assertIs(made.limits, limits)
        made = relay.RelayListenerEndpoint(endpoint, certificate("hidden"), handshake_timeout=5)
        self.assertEqual(made.limits, Limits(handshake_timeout=5))
        self.check(
            TypeError,
            "RelayListenerEndpoint: got both limits=%r and handshake_timeout=5; give the limits one "
            "way: limits=Limits(...) or the separate keywords" % (limits,),
            limits=limits,
            handshake_timeout=5,
        )
        tub = Tub(certData=certificate("hidden").dumpPEM())
        self.assertIs(relay.listener("tcp:127.0.0.1:7000", tub, limits=limits).limits, limits)



class ListenerRetryTests(RelayTestCase):
    limits = relay.RelayLimits(header_timeout=10, control_idle_timeout=100)

    def test_backoffHasJitter(self) -> None:
        """Each wait is the backoff times a factor in [0.75, 1.25) drawn from random()."""
        draws = iter([0.0, 0.5, 0.75] + [0.5] * 10)
        counting = CountingEndpoint(self.net.client_endpoint(RELAY), self.clock)
        endpoint, port, factory = self.listenHidden(via=counting, random=lambda: next(draws))
        self.stopServer(self.server)
        start = self.clock.seconds()
        advance(self.clock, 7.25, step=0.25)
        self.assertEqual(
            [t - start for t in counting.attempts[1:]], [0.75, 0.75 + 2.0, 0.75 + 2.0 + 4.5]
        )

    def test_operatorErrorsAreLoggedOnceAndRetriedSlowly(self) -> None:
        """
        A relay that is not the pinned one will not become it by itself:
        that is logged once, at error level, and retried every retry_max
        (its operator may yet restore the right key), not at the fast
        rate and not logged loudly at every retry.
        """
        logs = LogEvents("foolscap_sidetls.relay.client").install(self)
        counting = CountingEndpoint(self.net.client_endpoint(RELAY), self.clock)
        endpoint, port, factory = self.listenHidden(
            via=counting, relay_id=idOf("someone-else"), retry_max=8
        )
        advance(self.clock, 24, step=1)
        self.assertEqual(counting.attempts, [0.0, 8.0, 16.0, 24.0])
        loud = logs.lines(LogLevel.warn)
        self.assertEqual(len(loud), 1, loud)
        self.assertTrue(
            loud[0].startswith(
                "relay test relay: the relay at MemoryAddress('relay', 0) presented the "
                "certificate of %s, not relay ID %s from its relay URL; not registering "
                "there; this will not clear up by itself" % (idOf("relay"), idOf("someone-else"))
            ),
            loud[0],
        )
        self.assertTrue(loud[0].endswith("still retrying every 8 s"), loud[0])
        self.assertEqual(endpoint.state, relay.WAITING)

    def test_stopListeningDoesNotWaitForAWedgedRelay(self) -> None:
        """
        stopListening closes the control channel with TLS's close_notify;
        a relay that stopped reading never answers it, and after
        close_timeout the connection is aborted, so tub.stopService()
        cannot hang on it.
        """
        endpoint, port, factory = self.listenHidden(close_timeout=30)
        (relayEnd,) = relaySide(self.net, RELAY)
        relayEnd.pauseProducing()
        d = port.stopListening()
        advance(self.clock, 29.5)
        self.assertNoResult(d)
        self.assertEqual(self.server.registered, {idOf("hidden")})
        advance(self.clock, 1)
        self.successResultOf(d)
        self.assertEqual(endpoint.state, relay.STOPPED)
        self.assertEqual(self.server.registered, frozenset())
        self.assertEqual(self.server.connections, 0)
