"""
The negotiation limits are for Foolscap's negotiation only (issue 14).

Tahoe-LAFS 1.20 serves its HTTPS storage protocol on the Tub's own port:
C{allmydata.protocol_switch} replaces the Tub's C{negotiationClass} and,
on a first read that is not C{GET /id/}, turns itself into a TLS server
doing its own TLS above our wrapper.  Such a connection never calls
C{startTLS}; it used to count as "negotiating" for its whole life, so
C{negotiation_timeout} cut it, C{max_negotiating} counted and evicted it,
and its clean close was logged as a failed negotiation.

Here, in memory on a fake clock, with real TLS: Tahoe's real switch and
HTTPS storage server, a generic protocol that hands its connection to
another in each of the ways Twisted code does, and attackers sending
non-Foolscap bytes, who must stay under the limits.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from foolscap.negotiate import Negotiation

from foolscap_sidetls import Phase, listener
from foolscap_sidetls.testing import OUTBOUND

from .._support.hostile import Echo, certificate, makeTub, turn
from .._support.peers import NEGOTIATION, PeerCase
from .._support.tls import outerServerOptions
from .._support.waiting import coroutine

try:
    from allmydata.protocol_switch import create_tub_with_https_support
    from allmydata.storage.http_client import _StorageClientHTTPSPolicy
    from allmydata.storage.http_common import get_spki_hash, swissnum_auth_header
    from allmydata.storage.server import StorageServer
except ImportError as e:  # pragma: no cover - tahoe-lafs is the [tahoe] extra
    TAHOE: Optional[str] = "tahoe-lafs is not installed (the [tahoe] extra): %s" % (e,)
else:
    TAHOE = None

#: max_negotiating on the listeners here.
CAP = 2

SWISSNUM = b"s" * 32


class Collector(Protocol):
    """A client that writes what it is told to and keeps what comes back."""

    lost: Optional[Failure] = None

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason


class TakeoverCase(PeerCase):
    """Connections through the memory network, each end's wrapper found through its public accessor."""

    def setUp(self) -> None:
        PeerCase.setUp(self)
        # Connections no Tub owns (HTTPS, raw clients) end with the test.
        self.addCleanup(self.abortAll)

    def abortAll(self) -> None:
        for transport in self.net.transports:
            if not transport.disconnected:
                transport.abortConnection()
        for _ in range(5):
            self.clock.advance(0)

    def listening(self, tub: Any, name: str) -> str:
        tub.listenOn(
            listener(
                self.net.server_endpoint(name, socket=OUTBOUND),
                clock=self.clock,
                negotiation_timeout=NEGOTIATION,
                max_negotiating=CAP,
            )
        )
        tub.setLocation("memory:" + name)
        return tub.registerReference(Echo(), "echo")

    def connect(self, name: str, factory: Any) -> tuple[Any, Any]:
        """Connect C{factory}'s protocol to listener C{name}: (that protocol, our wrapper at the listener)."""
        connected: list[Any] = []
        self.net.client_endpoint(name).connect(factory).addBoth(connected.append)
        self.clock.advance(0)
        self.assertEqual(len(connected), 1)
        self.assertNotIsInstance(connected[0], Failure)
        return connected[0], self.net.connections[-1].listenerProtocol

    def raw(self, name: str, first: bytes = b"") -> tuple[Collector, Any]:
        """A plain connection to C{name} that sends C{first} and then nothing."""
        client, wrapper = self.connect(name, Factory.forProtocol(Collector))
        if first:
            client.transport.write(first)
            self.clock.advance(0)
        return client, wrapper

    async def flush(self) -> None:
        """Let zero-delay calls run, on the fake clock and the reactor (Foolscap's and Tahoe's use it)."""
        for _ in range(10):
            self.clock.advance(0)
            await turn()

    async def assertOutsideTheLimits(
        self, wrapper: Any, alive: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """
        C{wrapper}'s connection, taken over by its application: not
        negotiating, so not counted; it outlives C{negotiation_timeout}
        three times over, and CAP newer silent connections evict none but
        their own kind; C{alive()} proves it still works afterwards.
        """
        self.assertNotIn(wrapper, wrapper.factory.negotiating)
        silent = [self.raw(self.net.connections[-1].name)[1] for _ in range(CAP)]
        self.assertEqual([w.phase for w in silent], [Phase.PLAINTEXT] * CAP)
        # The taken-over connection was not the oldest to evict: both stay.
        self.assertEqual(list(wrapper.factory.negotiating), silent)
        self.clock.advance(NEGOTIATION * 3)
        await self.flush()
        self.assertFalse(wrapper.transport.disconnected)
        # The silent ones were Foolscap's business: cut at negotiation_timeout.
        self.assertEqual([w.phase for w in silent], [Phase.LOST] * CAP)
        await alive()
        self.assertIs(wrapper.phase, Phase.PASSTHROUGH)

    def linesFor(self, wrapper: Any) -> list[str]:
        """What was logged about C{wrapper}'s connection, at any level."""
        peer = wrapper.transport.getPeer()
        return self.logs.lines(role=wrapper.role, peer="%s:%s" % (peer.host, peer.port))

    def negotiationFailures(self, wrapper: Any) -> list[str]:
        return [line for line in self.linesFor(wrapper) if "negotiation failed" in line]


class TahoeProtocolSwitchTests(TakeoverCase):
    """Tahoe-LAFS's real protocol switch and HTTPS storage server, on our listener."""

    if TAHOE is not None:
        skip = TAHOE

    def tahoe(self) -> tuple[Any, str]:
        """A started Tub as Tahoe builds it, with an HTTPS storage server, listening on "tahoe"."""
        tub = create_tub_with_https_support(certData=certificate(0))
        tub.setOption("expose-remote-exception-types", False)
        tub.startService()
        self.stoppers.append(lambda: tub.stopService() if tub.running else None)
        furl = self.listening(tub, "tahoe")
        storage = StorageServer(self.mktemp(), b"\x01" * 20)
        tub.negotiationClass.add_storage_server(storage, SWISSNUM)
        return tub, furl

    def https(self, tub: Any) -> tuple[Any, Collector, Any]:
        """An HTTPS storage client as Tahoe's: TLS client pinning the Tub's key."""
        spki = get_spki_hash(tub.myCertificate.original.to_cryptography())
        factory = TLSMemoryBIOFactory(
            _StorageClientHTTPSPolicy(expected_spki_hash=spki),
            True,
            Factory.forProtocol(Collector),
            clock=self.clock,
        )
        tls, wrapper = self.connect("tahoe", factory)
        return tls, tls.wrappedProtocol, wrapper

    async def version(self, client: Collector) -> None:
        """
        Ask the storage server its version over C{client}'s connection; it
        answers 200.  (Tahoe's TLS layer batches its writes on the global
        reactor, so the reactor turns too.)
        """
        before = client.received.count(b"HTTP/1.1 200 OK\r\n")
        client.transport.write(
            b"GET /storage/v1/version HTTP/1.1\r\nHost: storage\r\nAuthorization: "
            + swissnum_auth_header(SWISSNUM)
            + b"\r\nAccept: application/cbor\r\n\r\n"
        )
        await self.until(
            lambda: client.received.count(b"maximum-immutable-share-size") > before,
            "the storage server's answer",
        )
        self.assertEqual(client.received.count(b"HTTP/1.1 200 OK\r\n"), before + 1, client.received)

    @coroutine
    async def test_https_is_not_negotiating(self) -> None:
        """
        An HTTPS storage connection lives past C{negotiation_timeout}, is
        not counted or evicted by C{max_negotiating}, and its clean close
        logs no negotiation failure.
        """
        tub, _ = self.tahoe()
        tls, client, wrapper = self.https(tub)
        await self.version(client)
        # Tahoe's switch turned itself into its TLS server, above us.
        self.assertIsInstance(wrapper.wrappedProtocol, TLSMemoryBIOFactory.protocol)
        await self.assertOutsideTheLimits(wrapper, lambda: self.version(client))
        tls.loseConnection()
        await self.flush()
        self.assertIs(wrapper.phase, Phase.LOST)
        assert client.lost is not None
        self.assertEqual(client.lost.type, ConnectionDone)
        # Not a failure of any kind: nothing logged about it, at any level.
        self.assertEqual(self.linesFor(wrapper), [])

    @coroutine
    async def test_foolscap_through_the_switch(self) -> None:
        """
        Foolscap through the same switch still negotiates, and while it does
        it is subject to the limits: a dialer that sends half a request is
        cut at C{negotiation_timeout}, and one that sends nothing is counted
        and evicted by C{max_negotiating} -- while the older HTTPS
        connection, which is no negotiation, is neither.
        """
        tub, furl = self.tahoe()
        # An HTTPS storage connection is open all along, the oldest of all.
        _, client, https = self.https(tub)
        await self.version(client)
        await self.call(self.honestDialer(), furl, b"through the switch")
        honest = self.net.connections[-1].listenerProtocol
        self.assertIsInstance(honest.wrappedProtocol, Negotiation)
        self.assertIs(honest.phase, Phase.ESTABLISHED)
        # More than the switch's 8 bytes, so it has become Foolscap's Negotiation.
        _, stalled = self.raw("tahoe", b"GET /id/" + b"x" * 20)
        self.assertIsInstance(stalled.wrappedProtocol, Negotiation)
        _, silent = self.raw("tahoe")
        self.assertEqual(list(stalled.factory.negotiating), [stalled, silent])
        # One more: the oldest of the CAP negotiating is dropped for it.
        _, third = self.raw("tahoe")
        self.assertEqual(list(stalled.factory.negotiating), [silent, third])
        await self.flush()
        self.assertIs(stalled.phase, Phase.LOST)
        took = await self.advanceUntil(lambda: silent.phase is Phase.LOST, NEGOTIATION)
        self.assertEqual(took, NEGOTIATION)
        self.assertIs(third.phase, Phase.LOST)
        await self.version(client)
        self.assertIs(https.phase, Phase.PASSTHROUGH)
        self.assertEqual(len(self.negotiationFailures(stalled)), 1)
        self.assertIn("max_negotiating=2", self.negotiationFailures(stalled)[0])
        self.assertEqual(
            self.negotiationFailures(silent),
            [
                "sidetls listener, connection from %s:%s: negotiation failed before the peer sent "
                "anything: it did not complete within %g s (negotiation_timeout)"
                % (silent.transport.getPeer().host, silent.transport.getPeer().port, NEGOTIATION)
            ],
        )

    @coroutine
    async def test_undecided_is_negotiating(self) -> None:
        """
        Before Tahoe's switch has its 8 bytes it has decided nothing: a peer
        that sends fewer (here the start of an HTTP request) is still
        negotiating, and is cut -- while an HTTPS connection, older, is not.
        """
        tub, _ = self.tahoe()
        _, client, https = self.https(tub)
        await self.version(client)
        _, wrapper = self.raw("tahoe", b"POST /s")
        self.assertEqual(list(wrapper.factory.negotiating), [wrapper])
        took = await self.advanceUntil(lambda: wrapper.phase is Phase.LOST, NEGOTIATION)
        self.assertEqual(took, NEGOTIATION)
        self.assertEqual(
            self.negotiationFailures(wrapper),
            [
                "sidetls listener, connection from %s:%s: negotiation failed in the plaintext "
                "header exchange: it did not complete within %g s (negotiation_timeout)"
                % (wrapper.transport.getPeer().host, wrapper.transport.getPeer().port, NEGOTIATION)
            ],
        )
        await self.version(client)
        self.assertIs(https.phase, Phase.PASSTHROUGH)


class Handover(Protocol):
    """
    Hands its connection, on its first read, to a new L{Collector} that
    echoes: by assigning C{transport.protocol} (a socket transport's
    idiom, C{twisted.conch.telnet}), C{transport.wrappedProtocol} (over a
    wrapper, autobahn's WebSocket upgrade) or its own class (Tahoe's).
    """

    def __init__(self, how: str) -> None:
        self.how = how

    def dataReceived(self, data: bytes) -> None:
        new = Echoing()
        new.makeConnection(self.transport)
        if self.how == "class":
            self.__class__ = Echoing
            self.__dict__ = new.__dict__
            new = self
        else:
            setattr(self.transport, self.how, new)
        new.dataReceived(data)


class Echoing(Collector):
    def dataReceived(self, data: bytes) -> None:
        Collector.dataReceived(self, data)
        self.transport.write(data)


class HandoverFactory(Factory):
    def __init__(self, how: str) -> None:
        self.how = how

    def buildProtocol(self, addr: Any) -> Handover:
        return Handover(self.how)


class GenericHandoverTests(TakeoverCase):
    """A protocol that swaps itself out, in each of the ways Twisted code does."""

    async def handover(self, how: str) -> None:
        listener(
            self.net.server_endpoint("app", socket=OUTBOUND),
            clock=self.clock,
            negotiation_timeout=NEGOTIATION,
            max_negotiating=CAP,
        ).listen(HandoverFactory(how))
        client, wrapper = self.raw("app", b"not foolscap\r\n\r\nmore")
        await self.flush()
        self.assertEqual(client.received, b"not foolscap\r\n\r\nmore")
        self.assertIsInstance(wrapper.wrappedProtocol, Echoing)

        async def alive() -> None:
            client.transport.write(b"still there")
            await self.flush()
            self.assertEqual(client.received, b"not foolscap\r\n\r\nmorestill there")
            self.assertEqual(wrapper.wrappedProtocol.received, client.received)

        await self.assertOutsideTheLimits(wrapper, alive)
        client.transport.loseConnection()
        await self.flush()
        self.assertIs(wrapper.phase, Phase.LOST)
        self.assertEqual(wrapper.wrappedProtocol.lost.type, ConnectionDone)
        # Not a failure of any kind: nothing logged about it, at any level.
        self.assertEqual(self.linesFor(wrapper), [])

    @coroutine
    async def test_transport_protocol(self) -> None:
        """C{transport.protocol = new}, as over a socket."""
        await self.handover("protocol")

    @coroutine
    async def test_wrapped_protocol(self) -> None:
        """C{transport.wrappedProtocol = new}, as over a wrapper."""
        await self.handover("wrappedProtocol")

    @coroutine
    async def test_class(self) -> None:
        """The protocol turns itself into another class, as Tahoe's switch does."""
        await self.handover("class")

    @coroutine
    async def test_closing_on_the_handover(self) -> None:
        """
        An application that takes over and closes in the same read: after
        this end closes, nothing more reaches it, and no negotiation
        failure is reported.
        """

        class Refusing(Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.received = getattr(self, "received", b"") + data
                self.transport.loseConnection()

        class Switch(Protocol):
            def dataReceived(self, data: bytes) -> None:
                new = Refusing()
                new.makeConnection(self.transport)
                self.transport.protocol = new
                new.dataReceived(data)

        listener(
            self.net.server_endpoint("app", socket=OUTBOUND), clock=self.clock, negotiation_timeout=NEGOTIATION
        ).listen(Factory.forProtocol(Switch))
        client, wrapper = self.raw("app", b"first\r\n\r\nsecond")
        await self.flush()
        self.assertIs(wrapper.phase, Phase.LOST)
        self.assertEqual(wrapper.wrappedProtocol.received, b"first\r\n\r\n")
        self.assertEqual(self.linesFor(wrapper), [])

    def test_startTLS_after_handover_is_refused(self) -> None:
        """The TLS of a protocol that took over is its own: ours is not offered."""

        class Late(Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.startTLS(outerServerOptions())

        class Switch(Protocol):
            def dataReceived(self, data: bytes) -> None:
                late = Late()
                late.makeConnection(self.transport)
                self.transport.protocol = late

        listener(self.net.server_endpoint("app", socket=OUTBOUND), clock=self.clock).listen(
            Factory.forProtocol(Switch)
        )
        client, wrapper = self.raw("app", b"x")
        self.assertIs(wrapper.phase, Phase.PASSTHROUGH)
        e = self.assertRaises(RuntimeError, wrapper.wrappedProtocol.dataReceived, b"y")
        self.assertIn("startTLS called after the application took the connection over", str(e))
        self.assertIsNone(wrapper.tlsSide)


class AttackerTests(TakeoverCase):
    """
    Non-Foolscap bytes are not a way out of the limits: only the
    application can take a connection over, and a stock Tub's never does.
    """

    @coroutine
    async def test_http_to_a_stock_listener_is_cut(self) -> None:
        """
        A peer that sends the start of an HTTPS storage request (or a TLS
        ClientHello) to a stock Tub and stalls stays in the plaintext phase:
        counted, evicted by C{max_negotiating}, cut at C{negotiation_timeout},
        and reported as a failed negotiation.
        """
        tub = makeTub(self, 0, self.stoppers)
        self.listening(tub, "stock")
        starts = [
            b"GET /storage/v1/version HTTP/1.1\r\nHost: storage\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ]
        wrappers = [self.raw("stock", start)[1] for start in starts]
        # Every phase either went through, on every second of the fake clock.
        phases: set[Phase] = set()
        self.assertEqual(list(wrappers[0].factory.negotiating), wrappers)
        self.assertEqual([w.phase for w in wrappers], [Phase.PLAINTEXT] * 2)
        self.assertEqual([type(w.wrappedProtocol) for w in wrappers], [Negotiation] * 2)
        took = await self.advanceUntil(
            lambda: phases.update(w.phase for w in wrappers) or all(w.phase is Phase.LOST for w in wrappers),
            NEGOTIATION,
        )
        self.assertEqual(took, NEGOTIATION)
        self.assertNotIn(Phase.PASSTHROUGH, phases)
        for w in wrappers:
            self.assertEqual(len(self.negotiationFailures(w)), 1)
            self.assertIn(
                "negotiation failed in the plaintext header exchange: it did not complete within 30 s",
                self.negotiationFailures(w)[0],
            )
        # And the cap: CAP + 1 of them, the oldest is dropped.
        more = [self.raw("stock", starts[0])[1] for _ in range(CAP + 1)]
        await self.flush()
        self.assertEqual([w.phase for w in more], [Phase.LOST, Phase.PLAINTEXT, Phase.PLAINTEXT])
        self.assertIn("max_negotiating=2", self.negotiationFailures(more[0])[0])

