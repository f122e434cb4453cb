"""
The role-based TLS wrapper, in memory with real TLS: which side each end
takes, how the byte stream may be cut, flow control, layering, and the
explanations given when a peer picks the wrong side.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import given, settings, strategies as st
from twisted.internet import error
from twisted.internet.address import UNIXAddress
from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.test.iosim import FakeTransport, connectedServerAndClient
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from foolscap.api import Tub
from foolscap.negotiate import Negotiation
from foolscap.pb import Listener

from foolscap_sidetls import ISideTLSTransport, TLSHandshakeTimeout, TLSSideError, handler, listener
from foolscap_sidetls import Phase
from foolscap_sidetls._foolscap import negotiating as _foolscapNegotiating
from foolscap_sidetls._endpoints import DialerEndpoint
from foolscap_sidetls._phase import checkTransition
from foolscap_sidetls._protocol import SideTLSFactory
from foolscap_sidetls.testing import INBOUND, OUTBOUND, MemoryNetwork

from .._support.hostile import Echo, LogCapture, makeTub
from .._support.waiting import coroutine
from .._support.peers import PeerCase

from .._support.tls import (
    SpeakerFactory,
    certificate,
    foolscapOptions,
    outerClientOptions,
    outerServerOptions,
)


class BoobyTrappedTransport(FakeTransport):
    """
    An iosim transport that records what goes on the wire and refuses
    C{startTLS}: the wrapper must never hand TLS down to the socket.
    """

    def __init__(self, protocol, isServer):
        FakeTransport.__init__(self, protocol, isServer)
        self.wire = []

    def write(self, data):
        self.wire.append(data)
        FakeTransport.write(self, data)

    def startTLS(self, contextFactory, beNormal=True):
        raise AssertionError("the underlying transport's startTLS was called")

    # Keep TCP options, as a socket does, so passing them on can be seen.
    noDelay = keepAlive = False

    def setTcpNoDelay(self, enabled):
        self.noDelay = enabled

    def getTcpNoDelay(self):
        return self.noDelay

    def setTcpKeepAlive(self, enabled):
        self.keepAlive = enabled

    def getTcpKeepAlive(self):
        return self.keepAlive


def connectPair(listenerSocket, dialerSocket, outer=False, pipeline=False, roles=(False, True)):
    """
    Connect a listener Speaker and a dialer Speaker through role wrappers
    over iosim transports whose socket directions are given, optionally
    inside an outer TLS session (as a TLS endpoint would add, TLS client on
    the dialer's end).

    @param roles: C{isClient} for the wrapper at the listener's end and at
        the dialer's end; (False, True) is the correct assignment.
    """
    clock = Clock()
    listenerApps = SpeakerFactory("listener", dialer=False, pipeline=pipeline)
    dialerApps = SpeakerFactory("dialer", dialer=True, pipeline=pipeline)
    listenerFactory = SideTLSFactory(listenerApps, roles[0], clock=clock)
    dialerFactory = SideTLSFactory(dialerApps, roles[1], clock=clock)
    if outer:
        listenerFactory = TLSMemoryBIOFactory(
            outerServerOptions(), False, listenerFactory, clock=clock
        )
        dialerFactory = TLSMemoryBIOFactory(
            outerClientOptions(), True, dialerFactory, clock=clock
        )
    dialerTop, listenerTop, pump = connectedServerAndClient(
        lambda: listenerFactory.buildProtocol(None),
        lambda: dialerFactory.buildProtocol(None),
        clientTransportFactory=lambda p: BoobyTrappedTransport(p, dialerSocket == INBOUND),
        serverTransportFactory=lambda p: BoobyTrappedTransport(p, listenerSocket == INBOUND),
        clock=clock,
        greet=False,
    )
    for _ in range(20):
        pump.flush()
    return listenerApps.built[0], dialerApps.built[0], listenerTop, dialerTop, pump


def certDigest(x509):
    return x509.digest("sha256")


class SideMatrixTests(SynchronousTestCase):
    """
    Socket direction x logical role x layering: a listener and a dialer
    always complete the handshake and exchange data.
    """

    def check(self, listenerSocket, dialerSocket, outer):
        listener, dialer, listenerTop, dialerTop, pump = connectPair(
            listenerSocket, dialerSocket, outer
        )
        self.assertEqual(listener.transport.role, "listener")
        self.assertEqual(dialer.transport.role, "dialer")
        self.assertEqual(listener.transport.tlsSide, "server")
        self.assertEqual(dialer.transport.tlsSide, "client")
        self.assertEqual(listener.received, dialer.secret)
        self.assertEqual(dialer.received, listener.secret)
        self.assertIsNone(listener.lostReason)
        self.assertIsNone(dialer.lostReason)
        # Each end sees the other's Foolscap certificate, not the outer
        # layer's: Foolscap's TubID check reads exactly this.
        self.assertEqual(
            certDigest(listener.transport.getPeerCertificate()),
            certificate("dialer").original.digest("sha256"),
        )
        self.assertEqual(
            certDigest(dialer.transport.getPeerCertificate()),
            certificate("listener").original.digest("sha256"),
        )
        self.assertTrue(ISSLTransport.providedBy(listener.transport))
        verifyObject(ISideTLSTransport, dialer.transport)
        # Nothing after the header went over the wire in the clear.
        for top in (listenerTop, dialerTop):
            wire = b"".join(top.transport.wire)
            self.assertNotIn(b"secret from", wire)

    def test_listenerOutboundDialerOutbound(self):
        """Both ends dialed out (to a relay): the I2P and relay shape."""
        self.check(OUTBOUND, OUTBOUND, outer=False)

    def test_listenerOutboundDialerInbound(self):
        """Every socket points the wrong way: a reverse tunnel at each end."""
        self.check(OUTBOUND, INBOUND, outer=False)

    def test_listenerInboundDialerOutbound(self):
        """Plain TCP."""
        self.check(INBOUND, OUTBOUND, outer=False)

    def test_listenerInboundDialerInbound(self):
        self.check(INBOUND, INBOUND, outer=False)

    def test_outerTLSListenerOutbound(self):
        """Foolscap's TLS inside another TLS session, I2P-shaped sockets."""
        self.check(OUTBOUND, OUTBOUND, outer=True)

    def test_outerTLSListenerInbound(self):
        self.check(INBOUND, OUTBOUND, outer=True)

    def test_outerTLSReverse(self):
        self.check(OUTBOUND, INBOUND, outer=True)

    def test_outerTLSBothInbound(self):
        self.check(INBOUND, INBOUND, outer=True)

    def test_normalFalseSwapsSides(self):
        """
        C{startTLS(ctx, normal=False)} keeps Twisted's meaning: the
        opposite of the normal side, which here is the role's side.
        """
        clock = Clock()
        factory = SideTLSFactory(SpeakerFactory("listener", dialer=False), False, clock=clock)
        proto = factory.buildProtocol(None)
        proto.makeConnection(BoobyTrappedTransport(proto, isServer=False))
        proto.startTLS(outerClientOptions(), normal=False)
        self.assertEqual(proto.tlsSide, "client")
        # A ClientHello went out.
        wire = b"".join(proto.transport.wire)
        self.assertEqual(wire[0], 0x16)
        self.assertEqual(wire[5], 0x01)

    def test_startTLSTwice(self):
        listener, dialer, _, _, _ = connectPair(INBOUND, OUTBOUND)
        exc = self.assertRaises(
            RuntimeError, dialer.transport.startTLS, outerClientOptions()
        )
        self.assertIn("startTLS called twice", str(exc))


class TeardownTests(SynchronousTestCase):
    """
    Closing a connection closes every layer in order and tells each
    application exactly once.
    """

    def check(self, outer, closer):
        listener, dialer, listenerTop, dialerTop, pump = connectPair(
            OUTBOUND, OUTBOUND, outer=outer
        )
        apps = {"listener": listener, "dialer": dialer}
        apps[closer].transport.loseConnection()
        for _ in range(20):
            pump.flush()
        for app in (listener, dialer):
            self.assertIsNotNone(app.lostReason)
            app.lostReason.trap(error.ConnectionDone)
        for top in (listenerTop, dialerTop):
            self.assertTrue(top.transport.disconnecting)

    def test_plainDialerCloses(self):
        self.check(False, "dialer")

    def test_plainListenerCloses(self):
        self.check(False, "listener")

    def test_outerDialerCloses(self):
        self.check(True, "dialer")

    def test_outerListenerCloses(self):
        self.check(True, "listener")

    def test_writesAfterLossAreDropped(self):
        """
        Once the connection is gone, writes are dropped quietly, as Twisted's
        own transports drop them, and nothing reaches the torn-down TLS
        layer.
        """
        listener, dialer, listenerTop, dialerTop, pump = connectPair(OUTBOUND, OUTBOUND)
        dialer.transport.loseConnection()
        for _ in range(20):
            pump.flush()
        self.assertIsNotNone(dialer.lostReason)
        wire = len(dialerTop.transport.wire)
        dialer.transport.write(b"too late")
        dialer.transport.writeSequence([b"much ", b"too late"])
        pump.flush()
        self.assertEqual(len(dialerTop.transport.wire), wire)
        self.assertEqual(pump.clock.getDelayedCalls(), [])

    def test_abortBeforeHandshakeOverPipeWithoutAbort(self):
        """
        Closing during the handshake aborts the TLS layer; over a transport
        with no C{abortConnection} (process pipes) it closes it instead of
        raising.
        """

        class PipeLike:
            def __init__(self):
                self.closed = False
                self.written = []

            def write(self, data):
                self.written.append(data)

            def writeSequence(self, seq):
                self.written.extend(seq)

            def loseConnection(self):
                self.closed = True

            def getPeer(self):
                return None

            def getHost(self):
                return None

        factory = SideTLSFactory(SpeakerFactory("dialer", dialer=True), True, clock=Clock())
        proto = factory.buildProtocol(None)
        pipe = PipeLike()
        proto.makeConnection(pipe)
        proto.startTLS(outerClientOptions())
        proto.loseConnection()
        self.assertTrue(pipe.closed)


class ChunkingTests(SynchronousTestCase):
    """
    The byte stream may arrive cut anywhere, including a read that holds the
    end of the plaintext header and the first TLS bytes.
    """

    def run_exchange(self, cuts, pipeline):
        clock = Clock()

        def splitter(data):
            chunks, i = [], 0
            for n in cuts:
                if i >= len(data):
                    break
                chunks.append(data[i : i + n])
                i += n
            if i < len(data):
                chunks.append(data[i:])
            return chunks

        net = MemoryNetwork(clock=clock, splitter=splitter)
        listenerApps = SpeakerFactory("listener", dialer=False, pipeline=pipeline)
        dialerApps = SpeakerFactory("dialer", dialer=True, pipeline=pipeline)
        from foolscap_sidetls import dialer, listener

        listener(net.server_endpoint("x", socket=OUTBOUND), clock=clock).listen(listenerApps)
        d = dialer(net.client_endpoint("x", socket=OUTBOUND), clock=clock).connect(dialerApps)
        for _ in range(200):
            clock.advance(0)
            if listenerApps.built and listenerApps.built[0].received and dialerApps.built[0].received:
                break
        self.successResultOf(d)
        return listenerApps.built[0], dialerApps.built[0]

    @settings(max_examples=60, deadline=None)
    @given(
        cuts=st.lists(st.integers(min_value=1, max_value=64), max_size=60),
        pipeline=st.booleans(),
    )
    def test_anyCuts(self, cuts, pipeline):
        listener, dialer = self.run_exchange(cuts, pipeline)
        self.assertEqual(listener.received, dialer.secret)
        self.assertEqual(dialer.received, listener.secret)
        self.assertTrue(listener.plaintext.startswith(b"GET /id/dialer"))

    def test_headerAndClientHelloInOneRead(self):
        """
        The case the header-block splitting exists for, without hypothesis:
        the listener's first read holds the whole header and the ClientHello.
        """
        listener, dialer = self.run_exchange([], pipeline=True)
        self.assertEqual(listener.plaintext, b"GET /id/dialer HTTP/1.1\r\n\r\n")
        self.assertEqual(listener.received, dialer.secret)


class SlowReader:
    """
    A streaming producer writing a large payload through a wrapper, counting
    how far ahead of the reader it ever gets.
    """

    def __init__(self, transport, total, chunk):
        self.transport = transport
        self.total = total
        self.chunk = chunk
        self.sent = 0
        self.paused = False
        self.pauses = 0
        self.digest = hashlib.sha256()

    def resumeProducing(self):
        self.paused = False
        while not self.paused and self.sent < self.total:
            block = bytes([self.sent // self.chunk % 251]) * self.chunk
            self.digest.update(block)
            self.sent += len(block)
            self.transport.write(block)
        if self.sent >= self.total:
            self.transport.unregisterProducer()

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def stopProducing(self):
        self.paused = True


class FlowControlTests(SynchronousTestCase):
    def test_slowReaderPausesWriter(self):
        """
        50 MiB to a reader that reads one delivery per tick: the writer is
        paused through the TLS layer, and what is buffered between them
        (all that was written and not yet read: in either TLS layer or on
        the wire) stays bounded; every byte arrives, in order.
        """
        clock = Clock()
        net = MemoryNetwork(clock=clock)
        listenerApps = SpeakerFactory("listener", dialer=False)
        dialerApps = SpeakerFactory("dialer", dialer=True)
        from foolscap_sidetls import dialer, listener

        listener(net.server_endpoint("x", socket=OUTBOUND), clock=clock).listen(listenerApps)
        dialer(net.client_endpoint("x", socket=OUTBOUND), clock=clock).connect(dialerApps)
        for _ in range(50):
            clock.advance(0)
        sender = dialerApps.built[0]
        reader = listenerApps.built[0]
        self.assertEqual(reader.received, sender.secret)
        reader.received = b""
        received = hashlib.sha256()
        count = [0]

        def consume(data, original=reader.dataReceived):
            received.update(data)
            count[0] += len(data)

        reader.dataReceived = consume
        readerTransport = net.transports[1]
        writerTransport = net.transports[0]
        total = 50 * 1024 * 1024
        producer = SlowReader(sender.transport, total, 64 * 1024)
        sender.transport.registerProducer(producer, True)
        readerTransport.pauseProducing()
        producer.resumeProducing()
        worst = 0
        for _ in range(20000):
            pending = producer.sent - count[0]
            worst = max(worst, pending)
            if count[0] >= total:
                break
            # The slow reader takes one delivery, then stops reading again.
            readerTransport.resumeProducing()
            clock.advance(0)
            readerTransport.pauseProducing()
            clock.advance(0)
        self.assertEqual(count[0], total)
        self.assertEqual(received.hexdigest(), producer.digest.hexdigest())
        self.assertGreater(producer.pauses, 10)
        self.assertLess(worst, 512 * 1024)
        self.assertIs(writerTransport.producer, None)


class DiagnosisTests(SynchronousTestCase):
    """
    When the peer picked the same side, the failure says so in words.
    """

    def test_bothClients(self):
        """
        A peer that also sends a ClientHello (stock Foolscap whose socket
        is outbound) is named as such.
        """
        listener, dialer, _, _, _ = connectPair(OUTBOUND, OUTBOUND, roles=(True, True))
        for app in (listener, dialer):
            self.assertIsNotNone(app.lostReason)
            app.lostReason.trap(TLSSideError)
            message = str(app.lostReason.value)
            self.assertIn("TLS handshake failed", message)
            self.assertIn("the peer also acted as TLS client (it sent a ClientHello)", message)
            self.assertIn("socket direction", message)

    def test_bothServers(self):
        """
        Two ends that both wait as TLS servers would sit silent until
        Foolscap's 120 s connection timeout; the wrapper gives up after its
        handshake wait and says why.
        """
        clock = Clock()
        listenerApps = SpeakerFactory("listener", dialer=False)
        dialerApps = SpeakerFactory("dialer", dialer=True)
        a = SideTLSFactory(listenerApps, False, clock=clock, handshakeTimeout=30)
        b = SideTLSFactory(dialerApps, False, clock=clock, handshakeTimeout=30)
        _, _, pump = connectedServerAndClient(
            lambda: a.buildProtocol(None),
            lambda: b.buildProtocol(None),
            clock=clock,
            greet=False,
        )
        for _ in range(20):
            pump.flush(advanceClock=False)
        listener = listenerApps.built[0]
        self.assertIsNone(listener.lostReason)
        clock.advance(29)
        pump.flush(advanceClock=False)
        self.assertIsNone(listener.lostReason)
        clock.advance(1)
        for _ in range(5):
            pump.flush(advanceClock=False)
        for app in (listener, dialerApps.built[0]):
            app.lostReason.trap(TLSHandshakeTimeout)
            message = str(app.lostReason.value)
            self.assertIn("no ClientHello arrived within 30 s", message)
            self.assertIn("the peer also acted as TLS server", message)
            # Silence is also what a stalled peer gives: the message says so,
            # and it is not reported as a side error, which it may not be.
            self.assertIn("the peer sent nothing after the switch to TLS", message)
            self.assertIn("either it stalled, or", message)
            self.assertFalse(app.lostReason.check(TLSSideError))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_handshakeTimerCancelled(self):
        """A completed handshake leaves no timer behind."""
        listener, dialer, _, _, pump = connectPair(INBOUND, OUTBOUND)
        # Past the handshake, and the timers run on this clock: none is left.
        self.assertIs(listener.transport.phase, Phase.ESTABLISHED)
        self.assertIs(dialer.transport.phase, Phase.ESTABLISHED)
        self.assertEqual(pump.clock.getDelayedCalls(), [])

    def test_garbageIsNotExplainedAway(self):
        """
        Bytes that are not TLS at all are not blamed on the side choice:
        OpenSSL's own error is the honest report.
        """
        from OpenSSL.SSL import Error as SSLError

        clock = Clock()
        apps = SpeakerFactory("dialer", dialer=True)
        proto = SideTLSFactory(apps, True, clock=clock).buildProtocol(None)
        transport = BoobyTrappedTransport(proto, isServer=False)
        proto.makeConnection(transport)
        proto.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        proto.dataReceived(b"this is not TLS at all, just garbage.......")
        proto.connectionLost(error.ConnectionDone())
        apps.built[0].lostReason.trap(SSLError)


class AddressTests(SynchronousTestCase):
    """
    Foolscap's Listener logs C{addr.host} and C{addr.port}; connections over
    pipes, UNIX sockets or I2P have addresses with neither.
    """

    def setUp(self):
        self.tub = Tub()
        self.listener = Listener(self.tub, "tcp:0")

    def test_stockCrashes(self):
        """The problem exists: stock buildProtocol raises."""
        self.assertRaises(AttributeError, self.listener.buildProtocol, UNIXAddress(b"/tmp/sock"))

    def test_unixAddress(self):
        factory = SideTLSFactory(self.listener, False, clock=Clock())
        proto = factory.buildProtocol(UNIXAddress(b"/tmp/sock"))
        self.assertIsNotNone(proto)
        self.assertIsInstance(proto.wrappedProtocol, self.tub.negotiationClass)

    def test_addressWithNothing(self):
        from twisted.internet.address import _ProcessAddress  # what pipes report

        factory = SideTLSFactory(self.listener, False, clock=Clock())
        proto = factory.buildProtocol(_ProcessAddress())
        self.assertIsNotNone(proto)

    def test_tcpAddressPassedUnchanged(self):
        from twisted.internet.address import IPv4Address

        seen = []

        class Recorder:
            def buildProtocol(self, addr):
                seen.append(addr)
                return None

            def doStart(self):
                pass

            def doStop(self):
                pass

        addr = IPv4Address("TCP", "127.0.0.1", 1234)
        factory = SideTLSFactory(Recorder(), False, clock=Clock())
        self.assertIsNone(factory.buildProtocol(addr))
        self.assertIs(seen[0], addr)


class TCPOptionTests(SynchronousTestCase):
    """
    Banana sets TCP_NODELAY on anything that claims ITCPTransport, which
    ITLSTransport (and so the wrapper) does.
    """

    def test_passedToTCPLikeTransport(self):
        listener, dialer, _, _, _ = connectPair(INBOUND, OUTBOUND)
        self.assertTrue(ITCPTransport.providedBy(dialer.transport))
        dialer.transport.setTcpNoDelay(True)
        dialer.transport.setTcpKeepAlive(True)
        self.assertTrue(dialer.transport.getTcpNoDelay())
        self.assertTrue(dialer.transport.getTcpKeepAlive())
        self.assertTrue(dialer.transport.transport.noDelay)

    def test_absentOnPipes(self):
        factory = SideTLSFactory(SpeakerFactory("dialer", dialer=True), True, clock=Clock())
        proto = factory.buildProtocol(None)

        class Pipe:
            def write(self, data):
                pass

        proto.makeConnection(Pipe())
        proto.setTcpNoDelay(True)
        self.assertFalse(proto.getTcpNoDelay())
        self.assertFalse(proto.getTcpKeepAlive())


class FoolscapSwitchTests(PeerCase):
    """
    The wrapper learns that Foolscap's negotiation is over from Foolscap's
    internals: C{switchToBanana} rebinds the negotiation's C{dataReceived}
    to the new Broker's.  Checked here against the installed Foolscap, at
    both ends, so that an upgrade that changes this fails here -- instead
    of silently losing the negotiation timeout and the cap for the
    encrypted hello (or timing out live connections).
    """

    @coroutine
    async def test_negotiating_until_switchToBanana(self) -> None:
        seen: list[tuple[str, str, bool]] = []

        class Recording(Negotiation):
            def switchToBanana(self, params: Any) -> None:
                side = "dialer" if self.isClient else "listener"
                seen.append((side, "before", _foolscapNegotiating(self)))
                Negotiation.switchToBanana(self, params)
                seen.append((side, "after", _foolscapNegotiating(self)))

        server = makeTub(self, 0, self.stoppers)
        server.negotiationClass = Recording
        server.listenOn(listener(self.net.server_endpoint("srv", socket=OUTBOUND), clock=self.clock))
        server.setLocation("memory:srv")
        furl = server.registerReference(Echo(), "echo")
        client = makeTub(self, 1, self.stoppers)
        client.negotiationClass = Recording
        client.removeAllConnectionHintHandlers()
        client.addConnectionHintHandler("memory", handler(self.net.hint_handler(), clock=self.clock))
        await self.call(client, furl, b"switched")
        self.assertEqual(
            sorted(seen),
            [
                ("dialer", "after", False),
                ("dialer", "before", True),
                ("listener", "after", False),
                ("listener", "before", True),
            ],
        )
        connection = self.net.connections[0]
        for wrapper in (connection.dialerProtocol, connection.listenerProtocol):
            # Each wrapper saw the switch (and stopped checking for it).
            self.assertIs(wrapper.phase, Phase.ESTABLISHED, wrapper)
            # The hot-path shortcuts: ciphertext goes straight from the
            # transport to the TLS layer, which hands plaintext straight to
            # the application.
            tls = wrapper.dataReceived.__self__
            self.assertIsInstance(tls, TLSMemoryBIOProtocol)
            self.assertIs(tls.wrappedProtocol, wrapper.wrappedProtocol)

    def test_anything_else_is_done(self) -> None:
        """
        What is not a Foolscap negotiation, or whose C{dataReceived} is no
        method bound to it, counts as done negotiating: wrongly done loses
        a timeout, wrongly negotiating would time out a live connection.
        """

        self.assertFalse(_foolscapNegotiating(Protocol()))
        self.assertFalse(_foolscapNegotiating(object()))
        negotiation = Negotiation()
        self.assertTrue(_foolscapNegotiating(negotiation))
        negotiation.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.assertFalse(_foolscapNegotiating(negotiation))
        negotiation.dataReceived = Protocol().dataReceived  # type: ignore[method-assign]
        self.assertFalse(_foolscapNegotiating(negotiation))


class _LateEndpoint:
    """A client endpoint whose C{connect} fires only after its connection was already lost."""

    def connect(self, factory):
        from twisted.internet.defer import succeed
        from twisted.internet.testing import StringTransport

        wrapper = factory.buildProtocol(None)
        wrapper.makeConnection(StringTransport())
        wrapper.connectionLost(Failure(error.ConnectionLost()))
        self.wrapper = wrapper
        return succeed(wrapper)


class PhaseTests(SynchronousTestCase):
    """The connection's phase, read through the public C{phase} accessor."""

    def wrapper(self):
        from twisted.internet.testing import StringTransport

        app = Protocol()
        wrapper = SideTLSFactory(Factory.forProtocol(lambda: app), False, clock=Clock()).buildProtocol(None)
        wrapper.makeConnection(StringTransport())
        return wrapper, app

    def test_live_phases_then_closing_then_lost(self):
        listenerApp, dialerApp, listenerTop, dialerTop, pump = connectPair(OUTBOUND, OUTBOUND)
        self.assertEqual((listenerTop.phase, dialerTop.phase), (Phase.ESTABLISHED, Phase.ESTABLISHED))
        dialerTop.loseConnection()
        self.assertEqual((listenerTop.phase, dialerTop.phase), (Phase.ESTABLISHED, Phase.CLOSING))
        for _ in range(20):
            pump.flush()
        self.assertEqual((listenerTop.phase, dialerTop.phase), (Phase.LOST, Phase.LOST))

    def test_plaintext_handshaking_closing_lost(self):
        wrapper, app = self.wrapper()
        self.assertIs(wrapper.phase, Phase.PLAINTEXT)
        wrapper.startTLS(foolscapOptions("listener"))
        self.assertEqual((wrapper.phase, wrapper.tlsSide), (Phase.HANDSHAKING, "server"))
        wrapper.loseConnection()
        self.assertIs(wrapper.phase, Phase.CLOSING)
        wrapper.connectionLost(Failure(error.ConnectionDone()))
        self.assertIs(wrapper.phase, Phase.LOST)
        # A second report of the loss changes nothing and tells nobody twice.
        wrapper.connectionLost(Failure(error.ConnectionDone()))
        self.assertIs(wrapper.phase, Phase.LOST)

    def test_the_table_refuses_what_cannot_happen(self):
        error_ = self.assertRaises(RuntimeError, checkTransition, Phase.LOST, Phase.PLAINTEXT)
        self.assertEqual(
            str(error_),
            "a sidetls connection cannot go from phase lost to phase plaintext; "
            "from lost it can go to: nothing",
        )
        error_ = self.assertRaises(RuntimeError, checkTransition, Phase.ESTABLISHED, Phase.HANDSHAKING)
        self.assertIn("from established it can go to: closing, lost", str(error_))

    def test_log_lines_carry_the_phase(self):
        logs = LogCapture().install(self)
        wrapper, app = self.wrapper()
        wrapper.startTLS(foolscapOptions("listener"))
        wrapper.connectionLost(Failure(error.ConnectionLost()))
        lines = logs.lines(phase="lost", role="listener")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("negotiation failed in the TLS handshake", lines[0])

    def test_dialer_endpoint_hands_back_the_application_after_loss(self):
        """
        Like Twisted's wrapping endpoints, C{connect} fires with the
        wrapper's C{wrappedProtocol}; the wrapper keeps naming its
        application after the loss, so an endpoint that fires late still
        hands back the application rather than L{None}.
        """
        app = Protocol()
        inner = _LateEndpoint()
        connected = self.successResultOf(
            DialerEndpoint(inner, clock=Clock()).connect(Factory.forProtocol(lambda: app))
        )
        self.assertIs(connected, app)
        self.assertIs(inner.wrapper.phase, Phase.LOST)
        self.assertIs(inner.wrapper.wrappedProtocol, app)
