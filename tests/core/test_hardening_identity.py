"""
Hardening: identity.  The role-based TLS must hand Foolscap the peer's real
certificate every time, so that Foolscap's checks keep working:

- a listener whose certificate does not match the TubID in the FURL is
  rejected, whichever way its socket points and whichever end's TubID
  sorts higher (Foolscap lets the higher one decide);
- a dialer claiming a TubID it holds no key for is turned away by the
  listener, and cannot displace the genuine holder's connection;
- a dialer that presents no certificate is refused, with or without a
  TubID claim; a listener without one cannot complete a handshake.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from OpenSSL.SSL import Error as SSLError

from foolscap.api import Tub
from foolscap.negotiate import Negotiation
from foolscap.tokens import BananaError

from foolscap_sidetls import handler, install, listener
from foolscap_sidetls.testing import INBOUND, OUTBOUND

from .._support.hostile import Echo, certificate, makeTub
from .._support.waiting import coroutine
from .._support.peers import PeerCase

ATTEMPTS = 4  # twice per socket direction and TubID order: 8 impostor attempts in all


class IdentityCase(PeerCase):
    """
    In memory on a fake clock, like the hostile-peer tests: every wait is a
    bounded number of clock turns (and zero-delay reactor turns for
    Foolscap's eventual-sends), never wall-clock time.
    """

    def setUp(self) -> None:
        PeerCase.setUp(self)
        self.serial = 10

    def serve(self, tub: Tub, name: str = "srv", socket: str = OUTBOUND) -> str:
        tub.listenOn(listener(self.net.server_endpoint(name, socket=socket), clock=self.clock))
        tub.setLocation("memory:" + name)
        return tub.registerReference(Echo(), "echo")

    def listenerSaw(self) -> list[str]:
        """Why our listener's connections failed, from its log lines."""
        return [line.split(": ", 2)[2] for line in self.logs.lines(role="listener")]

    def tub(self, cert: Any = None, negotiation: Any = None) -> Tub:
        if cert is None:
            self.serial += 1
            cert = self.serial
        tub = makeTub(self, cert, self.stoppers)
        if negotiation is not None:
            tub.negotiationClass = negotiation
        return tub

    def ordered(self, other: Tub, higher: bool) -> Tub:
        """A fresh Tub whose TubID sorts above (or below) C{other}'s."""
        while True:
            self.serial += 1
            if (Tub(certData=certificate(self.serial)).tubID > other.tubID) == higher:
                return self.tub(self.serial)

    def dialing(self, tub: Tub) -> Tub:
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("memory", handler(self.net.hint_handler(), clock=self.clock))
        return tub

    async def outcomes(self, attempts: list[Deferred]) -> list[Any]:
        """What each attempt ended with, once all have."""
        results: list[list[Any]] = [[] for _ in attempts]
        for d, result in zip(attempts, results):
            d.addBoth(result.append)
        await self.until(lambda: all(results), "every attempt to end")
        return [result[0] for result in results]

    def assertRefused(self, outcome: Any, words: str) -> str:
        """C{outcome} is a failure whose message contains C{words}; the message."""
        self.assertIsInstance(outcome, Failure, "connected: %r" % (outcome,))
        message = str(outcome.value)
        self.assertIn(words, message)
        return message


def impostorOf(genuine: Tub, impostor: Tub) -> type:
    class Impostor(Negotiation):
        """Answers for the genuine TubID, with its own certificate."""

        def handlePLAINTEXTServer(self, header: bytes) -> Any:
            return Negotiation.handlePLAINTEXTServer(
                self, header.replace(genuine.tubID.encode(), impostor.tubID.encode())
            )

        def sendHello(self) -> Any:
            self.myTubID = genuine.tubID
            return Negotiation.sendHello(self)

    return Impostor


class ImpostorListenerTests(IdentityCase):
    @coroutine
    async def test_rejected_every_time(self) -> None:
        """
        8 attempts: fresh dialers whose TubIDs sort above and below the
        genuine one, against impostors whose sockets point either way.
        Every one fails with Foolscap's "TubID mismatch" and leaves no
        broker.  (Whichever end decides; stock Foolscap reports "No valid
        banana-negotiation sequence seen" when the impostor's TubID sorts
        higher, having parsed the impostor's next block after closing --
        the wrapper stops delivering once the application has closed, as a
        TCP transport stops reading.)
        """
        genuine = self.tub(0)
        genuine.setLocation("memory:offline")
        furl = genuine.registerReference(Echo(), "echo")
        attempts: list[Deferred] = []
        cases: list[tuple[Tub, str, bool]] = []
        for i, socket in enumerate([OUTBOUND, OUTBOUND, INBOUND, INBOUND] * (ATTEMPTS // 2)):
            impostor = self.tub(1)
            impostor.negotiationClass = impostorOf(genuine, impostor)
            name = "evil%d" % i
            self.net.listen(impostor, name, socket=socket)
            client = self.dialing(self.ordered(genuine, higher=i % 2 == 0))
            cases.append((client, socket, client.tubID > genuine.tubID))
            attempts.append(client.getReference(furl.replace("memory:offline", "memory:" + name)))
        outcomes = await self.outcomes(attempts)
        for outcome, (client, socket, higher) in zip(outcomes, cases):
            self.assertRefused(outcome, "TubID mismatch")
            self.assertEqual(client.brokers, {})
        # The impostor's own Broker chokes on the error block it gets after deciding.
        self.flushLoggedErrors(BananaError)
        self.assertEqual(
            {(socket, higher) for _, socket, higher in cases},
            {(OUTBOUND, True), (OUTBOUND, False), (INBOUND, True), (INBOUND, False)},
        )


class ImpostorDialerTests(IdentityCase):
    @coroutine
    async def test_claimed_tubid_rejected_and_genuine_kept(self) -> None:
        """
        A dialer that claims the TubID of a Tub already connected (without
        its key) is turned away every time; the genuine connection stays.
        """
        server = self.tub(0)
        furl = self.serve(server)
        genuine = self.dialing(self.tub())

        class ClaimsGenuine(Negotiation):
            def sendHello(self) -> Any:
                self.myTubID = genuine.tubID
                return Negotiation.sendHello(self)

        (rref,) = await self.outcomes([genuine.getReference(furl)])
        self.assertNotIsInstance(rref, Failure)
        broker = rref.tracker.broker
        # What the dialer hears depends on which end decides (the higher
        # TubID); why it was refused is on the listener's side.
        impostors = [self.dialing(self.tub(negotiation=ClaimsGenuine)) for _ in range(2 * ATTEMPTS)]
        outcomes = await self.outcomes([impostor.getReference(furl) for impostor in impostors])
        for outcome in outcomes:
            self.assertIsInstance(outcome, Failure, "connected: %r" % (outcome,))
        self.flushLoggedErrors(BananaError)  # a deciding impostor's Broker choking on the refusal
        self.assertEqual(self.listenerSaw(), ["BananaError: TubID mismatch"] * 2 * ATTEMPTS)
        brokers = list(server.brokers.values())
        self.assertEqual(len(brokers), 1)
        self.assertEqual(brokers[0].remote_tubref.getTubID(), genuine.tubID)
        self.assertFalse(broker.disconnected)
        (echoed,) = await self.outcomes([rref.callRemote("echo", b"still me")])
        self.assertEqual(echoed, b"still me")


class NoCertificate(Negotiation):
    """Starts TLS without a certificate, and still claims its TubID."""

    def startTLS(self, cert: Any) -> Any:
        return Negotiation.startTLS(self, None)


class Anonymous(NoCertificate):
    """No certificate and no TubID claim: an old unauthenticated client."""

    def sendHello(self) -> Any:
        self.sendBlock(self.negotiationOffer.copy())


class NoCertificateTests(IdentityCase):
    async def check_refused(self, negotiation: type, reason: str) -> None:
        server = self.tub(0)
        furl = self.serve(server, socket=INBOUND)
        clients = [self.dialing(self.tub(negotiation=negotiation)) for _ in range(ATTEMPTS)]
        outcomes = await self.outcomes([client.getReference(furl) for client in clients])
        for outcome in outcomes:
            self.assertIsInstance(outcome, Failure, "connected: %r" % (outcome,))
        self.flushLoggedErrors(BananaError)
        self.assertEqual(server.brokers, {})
        saw = self.listenerSaw()
        self.assertEqual(len(saw), ATTEMPTS)
        for line in saw:
            self.assertTrue(line.endswith(reason), line)

    @coroutine
    async def test_dialer_without_certificate_claiming_a_tubid(self) -> None:
        """
        Foolscap asks Twisted for the peer's certificate as soon as the
        hellos arrive; with none, Twisted raises, and the listener hangs up
        (its own "you must use a certificate to claim a TubID" check is not
        even reached).
        """
        await self.check_refused(NoCertificate, "did not have peer certificate")

    @coroutine
    async def test_anonymous_dialer(self) -> None:
        """No certificate and no claim: refused the same way."""
        await self.check_refused(Anonymous, "did not have peer certificate")

    @coroutine
    async def test_listener_without_certificate(self) -> None:
        """
        A listener with no certificate cannot be a TLS server: it answers
        the dialer's ClientHello with a handshake-failure alert, which is
        what the dialer reports (OpenSSL's words; older versions say
        "sslv3 alert", newer "tls alert").
        """
        server = self.tub(0, negotiation=NoCertificate)
        self.net.listen(server, "srv", socket=OUTBOUND)
        furl = server.registerReference(Echo(), "echo")
        client = self.dialing(self.tub())
        install(client)
        (outcome,) = await self.outcomes([client.getReference(furl)])
        self.assertRefused(outcome, "alert handshake failure")
        self.assertTrue(outcome.check(SSLError), outcome)
        self.assertEqual(client.brokers, {})
        (line,) = self.logs.lines(role="dialer")
        self.assertRegex(
            line,
            r"^sidetls dialer, connection to srv:0: negotiation failed in the TLS handshake: "
            r"TLS error: (sslv3|tls) alert handshake failure\Z",
        )
