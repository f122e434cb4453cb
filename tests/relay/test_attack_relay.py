"""
Attacks on the relay, and the relay's share of the close and backoff rules.

  - One source address cannot cut a hidden Tub off (security hole 2): over
    real loopback TCP an attacker on 127.0.0.2 holds every relayed
    connection of the hidden Tub the relay lets it -- each a valid
    C{GET /id/<tubid>} that stalls after the hidden Tub's C{101} -- and a
    stock Foolscap dialer on 127.0.0.3 still calls the hidden Tub.  In
    memory: the per-source shares exactly, the hidden Tub's own streams not
    counted against its address, IPv6 sources counted by /64.
  - Nothing is passed on after this end closed (hole 1's class): the
    relay's splices, and the relay client's control channel and streams.
  - Every failure of the relay client's registration loop backs off and
    is logged once per backoff step (hole 3's class), against a fake relay
    on a fake clock.

Run as a program, it measures the attack with the default limits:

    .venv/bin/python -m tests.relay.test_attack_relay
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from zope.interface import implementer
from twisted.internet import defer, error, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from foolscap.api import Referenceable, Tub
from foolscap.ipb import IConnectionHintHandler

from foolscap_sidetls import _hints, relay
from foolscap_sidetls.relay import _wire as wire
from foolscap_sidetls.testing import MemoryNetwork

from ._helpers import LogEvents, SourcedEndpoint, advance, pump, within
from .._support.tls import certificate
from .._support import waiting
from .._support.waiting import coroutine
from .test_relay import AppFactory, CountingEndpoint, Dialer, RelayTestCase, idOf, request

RELAY = "relay"
ATTACKER = "127.0.0.2"
HONEST = "127.0.0.3"


# -- the attack over loopback TCP ------------------------------------------------------------


class Echo(Referenceable):
    def __init__(self) -> None:
        self.calls = 0

    def remote_echo(self, data: bytes) -> bytes:
        self.calls += 1
        return data


class StallingDialer(Protocol):
    """
    Sends a valid Foolscap request for C{tubid} and then nothing, whatever
    it is answered: after the hidden Tub's C{101} it never starts TLS.
    C{answered} fires with the first answer line (b"" if closed unanswered).
    """

    transport: Any
    lost: Optional[Failure] = None
    #: When the answer came (time.monotonic()).
    answeredAt = 0.0

    def __init__(self, tubid: str) -> None:
        self.tubid = tubid
        self.received = b""
        self.answered: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(request(self.tubid))

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if wire.END_OF_BLOCK in self.received and not self.answered.called:
            self.answeredAt = time.monotonic()
            self.answered.callback(self.received.split(b"\r\n", 1)[0])

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason
        if not self.answered.called:
            self.answered.callback(b"")

    @property
    def held(self) -> bool:
        """A relayed connection of the hidden Tub, held open and stalled."""
        return self.lost is None and self.received.startswith(b"HTTP/1.1 101 ")


async def flood(
    port: int, tubid: str, source: str, batch: int, rounds: int, settle: float
) -> list[StallingDialer]:
    """
    From C{source}, open C{batch} stalling dialers at a time to the relay
    on 127.0.0.1:C{port} until a round gets no new C{101}: as many relayed
    connections of C{tubid} as the relay lets that source hold.  A round
    is over when every dialer has its answer or C{settle} seconds have
    passed (a dialer the relay keeps waiting is not held).
    """
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5, bindAddress=(source, 0))
    everyone: list[StallingDialer] = []
    for _ in range(rounds):
        dialers = [StallingDialer(tubid) for _ in range(batch)]
        everyone += dialers
        await within(
            defer.gatherResults(
                [endpoint.connect(Factory.forProtocol(lambda d=d: d)) for d in dialers],
                consumeErrors=True,
            ),
            10,
        )
        await waiting.settle(lambda: all(d.answered.called for d in dialers), settle, interval=0.02)
        if not any(d.held for d in dialers):
            break
    return everyone


@implementer(IConnectionHintHandler)
class BoundTCP:
    """
    Foolscap's tcp hints as its DefaultTCP dials them, from a chosen source
    address: the only way to give a stock Tub a source of its own on
    loopback.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> tuple[Any, str]:
        host, port = _hints.parse_tcp_hint(hint)
        return HostnameEndpoint(reactor, host, port, bindAddress=(self.source, 0)), host

    def describe(self) -> str:
        return "tcp from %s" % (self.source,)


class Scene:
    """A relay on 127.0.0.1, a hidden Tub registered through it, and dialers."""

    def __init__(self, limits: relay.RelayLimits) -> None:
        self.limits = limits
        self.server = relay.RelayServer(certificate("relay"), limits=limits)
        self.tubs: list[Tub] = []
        self.attackers: list[StallingDialer] = []

    def makeTub(self, name: str) -> Tub:
        tub = Tub(certData=certificate(name).dumpPEM())
        tub.setOption("expose-remote-exception-types", False)
        tub.startService()
        self.tubs.append(tub)
        return tub

    async def start(self) -> None:
        self.port = await within(
            self.server.listen(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")), 10
        )
        url = self.server.url("tcp:127.0.0.1:%d" % (self.port.getHost().port,))
        self.hidden = self.makeTub("hidden")
        endpoint = relay.listener(url, self.hidden)
        self.hidden.listenOn(endpoint)
        self.hidden.setLocation(*relay.location_hints(url))
        self.echo = Echo()
        self.furl = self.hidden.registerReference(self.echo)
        await within(endpoint.when_registered(), 10)

    async def attack(self, batch: int, rounds: int, settle: float) -> float:
        """Fill the attacker's allowance; the seconds until it held all it got."""
        started = time.monotonic()
        self.attackers = await flood(
            self.port.getHost().port, self.hidden.tubID, ATTACKER, batch, rounds, settle
        )
        return max([a.answeredAt for a in self.attackers if a.held] or [started]) - started

    async def honestCall(self, wait: float) -> tuple[float, bytes]:
        """A stock Tub on 127.0.0.3 connects and calls: the seconds it took, the answer."""
        dialer = self.makeTub("dialer")
        dialer.removeAllConnectionHintHandlers()
        dialer.addConnectionHintHandler("tcp", BoundTCP(HONEST))
        started = time.monotonic()
        rref = await within(dialer.getReference(self.furl), wait)
        answer = await within(rref.callRemote("echo", b"honest"), wait)
        return time.monotonic() - started, answer

    async def stop(self) -> None:
        for attacker in self.attackers:
            if attacker.lost is None:
                attacker.transport.abortConnection()
        for tub in reversed(self.tubs):
            await within(tub.stopService(), 30)
        await within(self.server.stop(), 30)


class SingleSourceAttackTests(TestCase):
    """The issue's attack, over loopback TCP, with bounded waits."""

    #: Smaller than the defaults to keep the test fast; the shape is the
    #: same: the attacker's share is an eighth, as by default.
    limits = relay.RelayLimits(max_streams_per_registration=40)

    @coroutine
    async def test_oneSourceCannotCutAHiddenTubOff(self) -> None:
        """
        From 127.0.0.2, the attacker opens relayed connections to the
        hidden Tub until the relay refuses every one of a round, each
        stalling after the hidden Tub's 101: it holds its share, 5 of the
        hidden Tub's 40, and a stock dialer from 127.0.0.3 then connects
        and calls within 5 s.  (Before the share, it held all 40 and the
        honest dialer was answered 503.)
        """
        scene = Scene(self.limits)
        self.addCleanup(lambda: Deferred.fromCoroutine(scene.stop()))
        await scene.start()
        await scene.attack(batch=8, rounds=12, settle=10)

        elapsed, answer = await scene.honestCall(wait=20)
        self.assertEqual(answer, b"honest")
        self.assertLess(elapsed, 5.0)
        self.assertEqual(scene.echo.calls, 1)

        share = self.limits.max_streams_per_dialer_source
        self.assertEqual(share, 5)
        held = [a for a in scene.attackers if a.held]
        self.assertEqual(len(held), share)
        self.assertEqual(scene.server.streams(scene.hidden.tubID, ATTACKER), share)
        # It did try for more, and was told why.
        refused = [a for a in scene.attackers if not a.held]
        self.assertGreater(len(refused), 0)
        for attacker in refused:
            self.assertTrue(
                attacker.received.startswith(b"HTTP/1.1 503 Service Unavailable: "),
                attacker.received,
            )
        self.assertIn(
            "HTTP/1.1 503 Service Unavailable: %s already has %d relayed connections to "
            "TubID %s, the relay's limit per source address and hidden Tub; try later\r\n\r\n"
            % (ATTACKER, share, scene.hidden.tubID),
            [a.received.decode() for a in refused],
        )


# -- the shares, in memory -------------------------------------------------------------------


class ShareLimitTests(TestCase):
    def test_defaultsAndChecks(self) -> None:
        limits = relay.RelayLimits()
        self.assertEqual(
            (limits.max_streams_per_dialer_source, limits.max_pending_per_dialer_source), (64, 4)
        )
        small = relay.RelayLimits(max_streams_per_registration=3, max_pending_per_registration=2)
        self.assertEqual(
            (small.max_streams_per_dialer_source, small.max_pending_per_dialer_source), (1, 1)
        )
        exc = self.assertRaises(
            ValueError,
            relay.RelayLimits,
            max_streams_per_registration=40,
            max_streams_per_dialer_source=40,
        )
        self.assertEqual(
            str(exc),
            "RelayLimits: max_streams_per_dialer_source must be less than "
            "max_streams_per_registration (40), got 40: otherwise one dialer address can "
            "take them all and cut the hidden Tub off from every other dialer; leave it "
            "out for an eighth (5)",
        )
        exc = self.assertRaises(TypeError, relay.RelayLimits, max_pending_per_dialer_source="4")
        self.assertEqual(
            str(exc),
            "RelayLimits: max_pending_per_dialer_source must be a whole number, got '4' (str)",
        )


class SourceShareTests(RelayTestCase):
    limits = relay.RelayLimits(
        max_connections_per_source=4,
        max_streams_per_registration=16,
        header_timeout=10,
        stream_timeout=20,
        control_idle_timeout=100,
    )

    def hiddenBehind(self, source: str, **kwargs: Any) -> tuple[Any, AppFactory]:
        """
        A hidden Tub whose every connection to the relay comes from
        C{source}, whatever source the dialers are given.
        """
        door = SourcedEndpoint(self.net.server_endpoint("relay-door"))
        door.source = source
        self.successResultOf(self.server.listen(door))
        endpoint, port, factory = self.listenHidden(
            via=self.net.client_endpoint("relay-door"), **kwargs
        )
        self.assertEqual(endpoint.state, relay.REGISTERED)
        return endpoint, factory

    def test_oneSourceHoldsItsShare(self) -> None:
        """
        Dialers from one address get 2 of the hidden Tub's 16 relayed
        connections; the third is told why, and another address is still
        served.
        """
        endpoint, factory = self.hiddenBehind("10.0.0.1")
        self.sources.source = "10.0.0.2"
        dialers = [self.dial(request(idOf("hidden"))) for _ in range(3)]
        self.assertEqual(len(factory.made), 2)
        self.assertEqual([d.lost for d in dialers[:2]], [None, None])
        self.assertEqual(
            dialers[2].received,
            b"HTTP/1.1 503 Service Unavailable: 10.0.0.2 already has 2 relayed connections "
            b"to TubID %s, the relay's limit per source address and hidden Tub; try "
            b"later\r\n\r\n" % idOf("hidden").encode(),
        )
        self.assertEqual(self.server.streams(idOf("hidden"), "10.0.0.2"), 2)
        self.sources.source = "10.0.0.3"
        other = self.dial(request(idOf("hidden")))
        self.assertIsNone(other.lost)
        self.assertEqual(len(factory.made), 3)
        # One of the first address's connections ends: it gets a place back.
        dialers[0].transport.loseConnection()
        pump(self.clock)
        self.sources.source = "10.0.0.2"
        self.assertIsNone(self.dial(request(idOf("hidden"))).lost)
        self.assertEqual(len(factory.made), 4)
        self.assertEqual(
            (self.server.streams(idOf("hidden"), "10.0.0.2"), self.server.streams(idOf("hidden"))),
            (2, 3),
        )



    def test_hiddenTubsStreamsAreNotCountedAgainstItsAddress(self) -> None:
        """
        Eight dialers from eight addresses reach a hidden Tub whose address
        may hold 4 connections: its streams serve dialers counted at their
        own addresses, so they do not use up its own (with them counted,
        its fourth stream was refused and the dialer waited for a 504).
        """
        endpoint, factory = self.hiddenBehind("10.0.0.1")
        dialers = []
        for n in range(8):
            self.sources.source = "10.0.1.%d" % (n,)
            dialers.append(self.dial(request(idOf("hidden"))))
        self.assertEqual(len(factory.made), 8)
        self.assertEqual([d.lost for d in dialers], [None] * 8)
        self.assertEqual([d.received for d in dialers], [b""] * 8)
        # The control channel is still its address's only connection: it
        # may open three more.
        self.sources.source = "10.0.0.1"
        more = [self.dial() for _ in range(4)]
        self.assertEqual([d.lost for d in more[:3]], [None] * 3)
        self.assertTrue(more[3].received.startswith(
            b"HTTP/1.1 503 Service Unavailable: the relay is holding 4 connections from "
            b"10.0.0.1,"
        ))

    def test_ipv6SourcesAreCountedBySlash64(self) -> None:
        """
        One host has a whole /64 to pick addresses from: connections from
        one /64 are one source, another /64 is another, and an IPv4-mapped
        address is its IPv4 address.
        """
        admitted = []
        for host in ("2001:db8::1", "2001:db8::ffff:2", "2001:db8::3", "2001:db8::4"):
            self.sources.source = host
            admitted.append(self.dial())
        self.sources.source = "2001:db8::5"
        refused = self.dial()
        self.assertEqual([d.lost for d in admitted], [None] * 4)
        self.assertEqual(
            refused.received,
            b"HTTP/1.1 503 Service Unavailable: the relay is holding 4 connections from "
            b"2001:db8::/64, its limit per source address; try later\r\n\r\n",
        )
        self.sources.source = "2001:db8:0:1::1"
        self.assertIsNone(self.dial().lost)
        for n in range(4):
            self.sources.source = "10.0.0.9" if n % 2 else "::ffff:10.0.0.9"
            self.dial()
        self.sources.source = "::ffff:10.0.0.9"
        self.assertTrue(self.dial().received.startswith(
            b"HTTP/1.1 503 Service Unavailable: the relay is holding 4 connections from "
            b"10.0.0.9,"
        ))
        self.assertEqual(self.server.connections, 9)


class PendingShareTests(RelayTestCase):
    limits = relay.RelayLimits(
        max_pending_per_registration=8,
        header_timeout=10,
        stream_timeout=20,
        control_idle_timeout=100,
    )

    def test_oneSourceWaitsForItsShare(self) -> None:
        """
        While the hidden Tub has not opened their streams, one address may
        have at most an eighth of the waiting dialers (here 1 of 8): it
        cannot fill the queue and keep other addresses out.
        """
        hidden = self.fakeHidden()  # registers, never opens a stream
        hidden.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        self.sources.source = "10.0.0.2"
        first, second = self.dial(request(idOf("hidden"))), self.dial(request(idOf("hidden")))
        self.assertIsNone(first.lost)
        self.assertEqual(
            second.received,
            b"HTTP/1.1 503 Service Unavailable: 1 connections from 10.0.0.2 to TubID %s are "
            b"already waiting for the hidden Tub to answer, the relay's limit per source "
            b"address; try later\r\n\r\n" % idOf("hidden").encode(),
        )
        self.sources.source = "10.0.0.3"
        self.assertIsNone(self.dial(request(idOf("hidden"))).lost)
        self.assertEqual([line.split()[0] for line in hidden.lines[1:]], ["CONNECT"] * 2)


# -- nothing is passed on after this end closed: the relay ----------------------------------


class RelayClosedTests(RelayTestCase):
    """
    The relay's splices, driven through string transports so that what the
    relay writes is seen whatever a transport would do with it.
    """

    limits = relay.RelayLimits(header_timeout=10, stream_timeout=20, control_idle_timeout=100)

    def spliced(self) -> tuple[Any, StringTransport, Any, StringTransport]:
        """A dialer spliced to its stream, both on string transports."""
        hidden = self.fakeHidden()
        hidden.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        factory = self.server.factory()
        dialer = factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 1000))
        dialerT = StringTransport()
        dialer.makeConnection(dialerT)
        dialer.dataReceived(request(idOf("hidden")))
        pump(self.clock)
        token = hidden.lines[-1].split()[1]
        stream = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1001))
        streamT = StringTransport()
        stream.makeConnection(streamT)
        stream.dataReceived(b"GET /relay/v1/stream/%s HTTP/1.1\r\n\r\n" % token.encode())
        self.assertEqual(streamT.value(), wire.STREAM_ACCEPTED + request(idOf("hidden")))
        stream.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        self.assertEqual(dialerT.value(), b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        dialerT.clear()
        streamT.clear()
        self.addCleanup(self._lose, dialer, stream)
        return dialer, dialerT, stream, streamT

    def _lose(self, *connections: Any) -> None:
        for connection in connections:
            if connection in self.server._open:
                connection.connectionLost(Failure(error.ConnectionDone()))

    def test_survivorOfASpliceRelaysNothingMore(self) -> None:
        """
        The dialer's connection is lost and the relay closes the stream:
        the 1000 bytes the stream's transport still hands over go nowhere
        (they were written to the dialer's dead transport).
        """
        dialer, dialerT, stream, streamT = self.spliced()
        dialer.connectionLost(Failure(error.ConnectionDone()))
        self.assertTrue(streamT.disconnecting)
        stream.dataReceived(b"x" * 1000)
        self.assertEqual(len(dialerT.value()), 0)
        self.assertEqual(stream.discarded, 1000)

    def test_stoppedRelayRelaysNothingMore(self) -> None:
        """
        stop() aborts both ends of a splice: bytes either transport still
        hands over are not written to the other (before, all 2000 were).
        """
        dialer, dialerT, stream, streamT = self.spliced()
        self.server.stop()
        stream.dataReceived(b"y" * 1000)
        dialer.dataReceived(b"z" * 1000)
        self.assertEqual((len(dialerT.value()), len(streamT.value())), (0, 0))
        self.assertEqual((stream.discarded, dialer.discarded), (1000, 1000))

    def test_noSpliceToAClosingDialer(self) -> None:
        """
        A waiting dialer the relay is dropping (here by stop()) is no longer
        waiting: its stream, arriving meanwhile, is told so and spliced to
        nothing, and the 1000 bytes the dialer's transport still hands over
        go nowhere (before, the stream was spliced to it and they were
        relayed).
        """
        hidden = self.fakeHidden()
        hidden.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        factory = self.server.factory()
        dialer = factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 1000))
        dialer.makeConnection(StringTransport())
        dialer.dataReceived(request(idOf("hidden")))
        pump(self.clock)
        token = hidden.lines[-1].split()[1]
        self.server.stop()
        stream = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1001))
        streamT = StringTransport()
        stream.makeConnection(streamT)
        self.addCleanup(self._lose, dialer, stream)
        stream.dataReceived(b"GET /relay/v1/stream/%s HTTP/1.1\r\n\r\n" % token.encode())
        dialer.dataReceived(b"x" * 1000)
        self.assertEqual(
            streamT.value(),
            b"HTTP/1.1 404 Not Found: no dialer is waiting for stream token %s: it was "
            b"already used, timed out after 20 s, its dialer hung up, or it was never "
            b"issued\r\n\r\n" % token.encode(),
        )
        self.assertEqual(dialer.discarded, 1000)

    def test_closingControlChannelTakesNoDialers(self) -> None:
        """
        Once the relay has failed a control channel, the registration is
        gone at once: a dialer arriving while the close finishes is told
        404, not queued for a CONNECT that would never be sent (and answered
        504 after stream_timeout).
        """
        hidden = self.fakeHidden()
        hidden.send("REGISTER " + idOf("hidden"))
        pump(self.clock)
        hidden.transport.pauseProducing()  # so the close cannot finish
        hidden.send("NONSENSE")
        pump(self.clock)
        self.assertEqual(self.server.registered, frozenset())
        dialer = self.dial(request(idOf("hidden")))
        self.assertTrue(
            dialer.received.startswith(b"HTTP/1.1 404 Not Found: no Tub with TubID "),
            dialer.received,
        )


# -- nothing is passed on after this end closed: the relay client ---------------------------


@implementer(IStreamClientEndpoint)
class StringEndpoint:
    """
    A client endpoint for the hidden Tub's connections to the relay: the
    first C{inner} of them go to C{inner}, the rest are made at once on
    string transports the test drives by hand.
    """

    def __init__(self, inner: Any, passThrough: int) -> None:
        self.inner = inner
        self.passThrough = passThrough
        self.made: list[tuple[Any, StringTransport]] = []

    def connect(self, factory: Any) -> Any:
        if self.passThrough > 0:
            self.passThrough -= 1
            return self.inner.connect(factory)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.made.append((protocol, transport))
        return defer.succeed(protocol)


class ClientClosedTests(RelayTestCase):
    limits = relay.RelayLimits(header_timeout=10, stream_timeout=100, control_idle_timeout=1000)

    def test_noTLSAfterARefusal(self) -> None:
        """
        The relay refuses the control request, and a 101 arrives behind the
        refusal: the closing connection starts no TLS session (before, its
        ClientHello -- some 300 bytes -- was written after the abort).
        """
        via = StringEndpoint(self.net.client_endpoint(RELAY), passThrough=0)
        endpoint, port, factory = self.listenHidden(via=via)
        ((control, transport),) = via.made
        self.assertEqual(transport.value(), wire.CONTROL_REQUEST)
        control.dataReceived(b"HTTP/1.1 503 Service Unavailable: busy\r\n\r\n")
        control.dataReceived(wire.CONTROL_ACCEPTED)
        pump(self.clock)
        self.assertEqual(len(transport.value()) - len(wire.CONTROL_REQUEST), 0)
        self.assertIsNone(control._tls)
        control.connectionLost(Failure(error.ConnectionAborted()))
        self.assertEqual(endpoint.state, relay.WAITING)
        self.assertIn("the relay refused the control connection", str(endpoint.last_error.value))

    def test_noStreamAfterItClosed(self) -> None:
        """
        A stream refused by the relay, and one that timed out, are closing:
        a "200 Relayed" and bytes behind it build no connection for the Tub
        (before, each was handed to the Tub with its 4 bytes).
        """
        via = StringEndpoint(self.net.client_endpoint(RELAY), passThrough=1)
        endpoint, port, factory = self.listenHidden(via=via, answer_timeout=10)
        self.dial(request(idOf("hidden")))
        self.dial(request(idOf("hidden")))
        (refused, refusedT), (timedOut, timedOutT) = via.made
        refused.dataReceived(b"HTTP/1.1 404 Not Found: gone\r\n\r\n")
        self.assertTrue(refusedT.disconnecting)
        advance(self.clock, 10)
        self.assertTrue(timedOutT.disconnecting)
        for stream in (refused, timedOut):
            stream.dataReceived(wire.STREAM_ACCEPTED + b"DATA")
        self.assertEqual(sum(len(app.received) for app in factory.made), 0)
        self.assertEqual(factory.made, [])
        for stream in (refused, timedOut):
            stream.connectionLost(Failure(error.ConnectionDone()))

    def test_nothingStartsAfterStopListening(self) -> None:
        """
        stopListening while the relay's 101 is on its way: the 101, read
        while the close finishes, starts no TLS session and so no
        registration (before, the ClientHello was written on the closing
        connection, and a REGISTER would have followed it).
        """
        via = StringEndpoint(self.net.client_endpoint(RELAY), passThrough=0)
        endpoint, port, factory = self.listenHidden(via=via)
        ((control, transport),) = via.made
        stopped = port.stopListening()
        self.assertTrue(transport.disconnecting)
        written = len(transport.value())
        control.dataReceived(wire.CONTROL_ACCEPTED)
        pump(self.clock)
        self.assertEqual(len(transport.value()) - written, 0)
        self.assertIsNone(control._tls)
        control.connectionLost(Failure(error.ConnectionDone()))
        self.successResultOf(stopped)
        self.assertEqual((endpoint.state, port.registrations), (relay.STOPPED, 0))


# -- the registration loop backs off on every failure ----------------------------------------


class FakeRelayConnection(Protocol):
    """
    A relay written from the wire protocol, misbehaving as its C{mode}
    says: C{garbage} (an answer that is not HTTP), C{malformed} (a
    malformed OK), C{refuse} (ERROR, a limit), C{flap} (OK, then closes at
    once).
    """

    transport: Any

    def __init__(self, relayFactory: "FakeRelay") -> None:
        self.relay = relayFactory
        self.buffer = b""
        self.tls = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.tls:
            if wire.END_OF_BLOCK not in self.buffer:
                return
            self.buffer = b""
            if self.relay.mode == "garbage":
                self.transport.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
                return
            self.transport.write(wire.CONTROL_ACCEPTED)
            self.tls = True
            self.transport.startTLS(wire.tls_options(certificate("relay")))
            return
        *lines, self.buffer = self.buffer.split(b"\r\n")
        for line in lines:
            if line.startswith(b"REGISTER "):
                self.relay.registers += 1
                self.register(line.decode().split()[1])

    def register(self, tubid: str) -> None:
        mode = self.relay.mode
        if mode == "malformed":
            self.sendLine("OK REGISTR " + tubid)
        elif mode == "refuse":
            self.sendLine("ERROR the relay has 1024 registrations, its limit; try later")
        elif mode == "flap":
            self.sendLine("OK REGISTER " + tubid)
            self.transport.loseConnection()

    def sendLine(self, line: str) -> None:
        self.transport.write(line.encode("ascii") + b"\r\n")


class FakeRelay(Factory):
    registers = 0

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def buildProtocol(self, addr: Any) -> FakeRelayConnection:
        return FakeRelayConnection(self)

    @classmethod
    def listen(cls, case: RelayTestCase, name: str, mode: str) -> "FakeRelay":
        factory = cls(mode)
        case.successResultOf(case.net.server_endpoint(name).listen(factory))
        return factory


class BackoffTests(RelayTestCase):
    """
    Against a relay that fails the registration in each way it can, over
    120 s of fake clock: attempts at 0, 1, 3, 7 s and then every 8 s
    (retry_max), 18 in all, and one log line per backoff step -- none once
    the wait is the longest and the failure repeats.
    """

    limits = relay.RelayLimits(header_timeout=10, control_idle_timeout=1000)
    expectedAttempts = [0.0, 1.0, 3.0, 7.0] + [7.0 + 8 * n for n in range(1, 15)]

    def attempted(self, via: Any) -> tuple[Any, list[str]]:
        logs = LogEvents("foolscap_sidetls.relay.client").install(self)
        counting = CountingEndpoint(via, self.clock)
        endpoint, port, factory = self.listenHidden(via=counting, retry_max=8)
        advance(self.clock, 120, step=0.5)
        self.assertEqual(counting.attempts, self.expectedAttempts)
        self.assertLessEqual(len(counting.attempts) / 120.0, 0.15)  # per second of clock
        self.assertEqual(logs.lines(LogLevel.warn), [])
        return endpoint, logs.lines(LogLevel.info)

    def assertStepLines(self, lines: list[str], why: str) -> None:
        self.assertEqual(
            lines,
            [
                "relay test relay: %s; retrying in 1 s" % why,
                "relay test relay: %s; retrying in 2 s" % why,
                "relay test relay: %s; retrying in 4 s" % why,
                "relay test relay: %s; retrying in 8 s (the longest wait: this is not "
                "logged again while it repeats)" % why,
            ],
        )

    def test_unreachableRelay(self) -> None:
        endpoint, lines = self.attempted(self.net.client_endpoint("nowhere"))
        self.assertStepLines(lines, "Connection was refused by other side: no memory listener 'nowhere'.")

    def test_answerThatIsNotHTTP(self) -> None:
        FakeRelay.listen(self, "fake", mode="garbage")
        endpoint, lines = self.attempted(self.net.client_endpoint("fake"))
        self.assertStepLines(
            lines, "the relay refused the control connection: 'SSH-2.0-OpenSSH_9.6'"
        )

    def test_malformedLine(self) -> None:
        FakeRelay.listen(self, "fake", mode="malformed")
        endpoint, lines = self.attempted(self.net.client_endpoint("fake"))
        self.assertStepLines(
            lines, "the relay sent an unexpected control line 'OK REGISTR %s'" % idOf("hidden")
        )

    def test_refusedRegistration(self) -> None:
        fake = FakeRelay.listen(self, "fake", mode="refuse")
        endpoint, lines = self.attempted(self.net.client_endpoint("fake"))
        self.assertEqual(fake.registers, 18)
        self.assertStepLines(
            lines, "the relay said: the relay has 1024 registrations, its limit; try later"
        )

    def test_droppedRightAfterOK(self) -> None:
        """
        A relay that accepts and drops at once: each registration lost
        within retry_max of being made continues the backoff (before, every
        registration started it over: an attempt and two log lines every
        second, for ever).
        """
        fake = FakeRelay.listen(self, "fake", mode="flap")
        endpoint, lines = self.attempted(self.net.client_endpoint("fake"))
        self.assertEqual((fake.registers, endpoint.port.registrations), (18, 18))
        registered = "relay test relay: registered %s" % idOf("hidden")
        lost = "relay test relay: Connection was closed cleanly.; retrying in %s"
        self.assertEqual(
            lines,
            [
                registered, lost % "1 s",
                registered, lost % "2 s",
                registered, lost % "4 s",
                registered, lost % "8 s (the longest wait: this is not logged again while it repeats)",
                registered,
            ],
        )

    def test_twoProcessesWithOneKey(self) -> None:
        """
        Two listeners with one Tub's key take the registration from each
        other: each says so once, at error level, and retries every
        retry_max -- not every second, as each registration used to start
        the backoff over.
        """
        logs = LogEvents("foolscap_sidetls.relay.client").install(self)
        attempts = []
        for _ in range(2):
            counting = CountingEndpoint(self.net.client_endpoint(RELAY), self.clock)
            self.listenHidden(via=counting, retry_max=8)
            attempts.append(counting.attempts)
        advance(self.clock, 60, step=0.5)
        self.assertEqual(attempts, [[0.0, 8.0, 24.0, 40.0, 56.0], [0.0, 16.0, 32.0, 48.0]])
        loud = logs.lines(LogLevel.warn)
        self.assertEqual(len(loud), 2, loud)
        for line in loud:
            self.assertIn(
                "the relay said: replaced: TubID %s registered again over a newer control "
                "connection; this will not clear up by itself (another process with this "
                "Tub's key registered it at the relay: stop one of them); still retrying "
                "every 8 s" % idOf("hidden"),
                line,
            )


# -- the measurement -----------------------------------------------------------------------------


async def measure() -> None:
    """The attack with the default limits; prints the figures."""
    limits = relay.RelayLimits()
    scene = Scene(limits)
    try:
        await scene.start()
        seconds = await scene.attack(batch=32, rounds=40, settle=3)
        held = sum(a.held for a in scene.attackers)
        print(
            "attacker %s: %d connections opened, %d relayed connections of the hidden Tub "
            "held, in %.1f s" % (ATTACKER, len(scene.attackers), held, seconds)
        )
        try:
            elapsed, answer = await scene.honestCall(wait=45)
        except Exception as e:
            print("honest stock dialer %s: did not reach the hidden Tub: %s" % (HONEST, e))
        else:
            print(
                "honest stock dialer %s: connected and called in %.3f s (answer %r)"
                % (HONEST, elapsed, answer)
            )
    finally:
        await scene.stop()


if __name__ == "__main__":
    task.react(lambda _: Deferred.fromCoroutine(measure()))
    sys.exit(0)
