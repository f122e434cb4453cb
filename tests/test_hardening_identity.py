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

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from foolscap.api import Tub
from foolscap.negotiate import Negotiation
from foolscap.tokens import BananaError

from foolscap_sidetls import handler, install, listener
from foolscap_sidetls.testing import INBOUND, OUTBOUND, MemoryNetwork

from ._hostile import Echo, LogCapture, certificate

ATTEMPTS = 4  # per socket direction and TubID order: 16 impostor attempts in all


class IdentityCase(TestCase):
    def setUp(self) -> None:
        self.net = MemoryNetwork()
        self.serial = 10
        self.logs = LogCapture().install(self)

    def serve(self, tub: Tub, name: str = "srv", socket: str = OUTBOUND) -> str:
        tub.listenOn(listener(self.net.server_endpoint(name, socket=socket)))
        tub.setLocation("memory:" + name)
        return tub.registerReference(Echo(), "echo")

    def listenerSaw(self) -> list[str]:
        """Why our listener's connections failed, from its log lines."""
        return [line.split(": ", 2)[2] for line in self.logs.lines(role="listener")]

    def tub(self, cert: Any = None, negotiation: Any = None) -> Tub:
        if cert is None:
            self.serial += 1
            cert = self.serial
        tub = Tub(certData=certificate(cert))
        tub.setOption("expose-remote-exception-types", False)
        if negotiation is not None:
            tub.negotiationClass = negotiation
        tub.startService()
        self.addCleanup(tub.stopService)
        return tub

    def ordered(self, other: Tub, higher: bool) -> Tub:
        """A fresh Tub whose TubID sorts above (or below) C{other}'s."""
        while True:
            self.serial += 1
            if (Tub(certData=certificate(self.serial)).tubID > other.tubID) == higher:
                return self.tub(self.serial)

    def dialing(self, tub: Tub) -> Tub:
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("memory", handler(self.net.hint_handler()))
        return tub

    def refused(self, d: Deferred, *words: str) -> Deferred:
        def failed(f: Failure) -> str:
            message = str(f.value)
            if not words:
                return message
            for word in words:
                if word in message:
                    return message
            self.fail("refused for another reason: %r" % (message,))

        return d.addCallbacks(lambda r: self.fail("connected: %r" % (r,)), failed)


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
    def test_rejected_every_time(self) -> Deferred:
        """
        16 attempts: fresh dialers whose TubIDs sort above and below the
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
        outcomes: list[tuple[str, bool]] = []
        for i, socket in enumerate([OUTBOUND, OUTBOUND, INBOUND, INBOUND] * (ATTEMPTS // 2)):
            impostor = self.tub(1)
            impostor.negotiationClass = impostorOf(genuine, impostor)
            name = "evil%d" % i
            self.net.listen(impostor, name, socket=socket)
            client = self.dialing(self.ordered(genuine, higher=i % 2 == 0))
            higher = client.tubID > genuine.tubID
            d = self.refused(client.getReference(furl.replace("memory:offline", "memory:" + name)), "TubID mismatch")

            def checked(message: str, client: Tub = client, higher: bool = higher, socket: str = socket) -> None:
                self.assertEqual(client.brokers, {})
                outcomes.append((socket, higher))

            attempts.append(d.addCallback(checked))

        def all_refused(_: Any) -> None:
            # The impostor's own Broker chokes on the error block it gets after deciding.
            self.flushLoggedErrors(BananaError)
            self.assertEqual(len(outcomes), 2 * ATTEMPTS)
            self.assertEqual(set(outcomes), {(OUTBOUND, True), (OUTBOUND, False), (INBOUND, True), (INBOUND, False)})

        return defer.gatherResults(attempts).addCallback(all_refused)


class ImpostorDialerTests(IdentityCase):
    def test_claimed_tubid_rejected_and_genuine_kept(self) -> Deferred:
        """
        A dialer that claims the TubID of a Tub already connected (without
        its key) is turned away every time; the genuine connection stays.
        """
        server = self.tub(0)
        furl = self.serve(server)
        genuine = self.dialing(self.tub())
        state: dict[str, Any] = {}

        class ClaimsGenuine(Negotiation):
            def sendHello(self) -> Any:
                self.myTubID = genuine.tubID
                return Negotiation.sendHello(self)

        def connected(rref: Any) -> Deferred:
            state["rref"] = rref
            state["broker"] = rref.tracker.broker
            attempts = []
            for _ in range(2 * ATTEMPTS):
                impostor = self.dialing(self.tub(negotiation=ClaimsGenuine))
                # What the dialer hears depends on which end decides (the higher
                # TubID); why it was refused is on the listener's side.
                attempts.append(self.refused(impostor.getReference(furl)))
            return defer.gatherResults(attempts)

        def genuineStillThere(_: Any) -> Deferred:
            self.flushLoggedErrors(BananaError)  # a deciding impostor's Broker choking on the refusal
            self.assertEqual(self.listenerSaw(), ["BananaError: TubID mismatch"] * 2 * ATTEMPTS)
            brokers = list(server.brokers.values())
            self.assertEqual(len(brokers), 1)
            self.assertEqual(brokers[0].remote_tubref.getTubID(), genuine.tubID)
            self.assertFalse(state["broker"].disconnected)
            return state["rref"].callRemote("echo", b"still me").addCallback(self.assertEqual, b"still me")

        d = genuine.getReference(furl).addCallback(connected)
        return d.addCallback(genuineStillThere)


class NoCertificate(Negotiation):
    """Starts TLS without a certificate, and still claims its TubID."""

    def startTLS(self, cert: Any) -> Any:
        return Negotiation.startTLS(self, None)


class Anonymous(NoCertificate):
    """No certificate and no TubID claim: an old unauthenticated client."""

    def sendHello(self) -> Any:
        self.sendBlock(self.negotiationOffer.copy())


class NoCertificateTests(IdentityCase):
    def check_refused(self, negotiation: type, reason: str) -> Deferred:
        server = self.tub(0)
        furl = self.serve(server, socket=INBOUND)
        attempts = []
        for _ in range(ATTEMPTS):
            client = self.dialing(self.tub(negotiation=negotiation))
            attempts.append(self.refused(client.getReference(furl)))

        def checked(_: Any) -> None:
            self.flushLoggedErrors(BananaError)
            self.assertEqual(server.brokers, {})
            saw = self.listenerSaw()
            self.assertEqual(len(saw), ATTEMPTS)
            for line in saw:
                self.assertTrue(line.endswith(reason), line)

        return defer.gatherResults(attempts).addCallback(checked)

    def test_dialer_without_certificate_claiming_a_tubid(self) -> Deferred:
        """
        Foolscap asks Twisted for the peer's certificate as soon as the
        hellos arrive; with none, Twisted raises, and the listener hangs up
        (its own "you must use a certificate to claim a TubID" check is not
        even reached).
        """
        return self.check_refused(NoCertificate, "did not have peer certificate")

    def test_anonymous_dialer(self) -> Deferred:
        """No certificate and no claim: refused the same way."""
        return self.check_refused(Anonymous, "did not have peer certificate")

    def test_listener_without_certificate(self) -> Deferred:
        server = self.tub(0, negotiation=NoCertificate)
        self.net.listen(server, "srv", socket=OUTBOUND)
        furl = server.registerReference(Echo(), "echo")
        client = self.dialing(self.tub())
        install(client)
        d = self.refused(client.getReference(furl), "TLS", "handshake", "Connection lost", "lost")
        return d.addCallback(lambda _: self.assertEqual(client.brokers, {}))
