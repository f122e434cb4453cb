"""
Whole Tubs over the in-memory network: Foolscap's real Negotiation, Broker
and TubConnector, with the socket direction of each end chosen.

Foolscap schedules its work on the global reactor, so these tests return
Deferreds and let trial spin it; nothing here opens a socket.
"""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.internet.endpoints import wrapClientTLS
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from twisted.internet.interfaces import IStreamServerEndpoint

from foolscap.api import Referenceable, Tub
from foolscap.ipb import IConnectionHintHandler, InvalidHintError
from foolscap.connections.tcp import DefaultTCP
from foolscap.negotiate import Negotiation

from foolscap_sidetls import TLSHandshakeTimeout, TLSSideError, handler, install, listener
from foolscap_sidetls._foolscap import tubHandlers
from foolscap_sidetls.testing import INBOUND, OUTBOUND, MemoryNetwork

from .._support.tls import outerClientOptions, outerServerOptions


class Echo(Referenceable):
    def remote_echo(self, data):
        return data


@implementer(IStreamServerEndpoint)
class _TLSWrappedServerEndpoint:
    """Runs every connection inside an outer TLS session (server side)."""

    def __init__(self, inner):
        self._inner = inner

    def listen(self, factory):
        return self._inner.listen(TLSMemoryBIOFactory(outerServerOptions(), False, factory))


class TubTestCase(TestCase):
    def setUp(self):
        self.net = MemoryNetwork()
        self.tubs = []

    def makeTub(self, **kwargs):
        tub = Tub(**kwargs)
        tub.setOption("expose-remote-exception-types", False)
        tub._test_options = dict(tub._test_options, connect_timeout=10)
        tub.startService()
        self.tubs.append(tub)
        self.addCleanup(tub.stopService)
        return tub

    def echo(self, rref, payload):
        """Call echo and check the payload came back; fires with C{rref}."""
        d = rref.callRemote("echo", payload)
        d.addCallback(self.assertEqual, payload)
        return d.addCallback(lambda _: rref)

    def serve(self, socket, sidetls=True, wrap=None, name="srv"):
        server = self.makeTub()
        self.net.listen(server, name, socket=socket, sidetls=sidetls, wrap=wrap)
        furl = server.registerReference(Echo(), "echo")
        return server, furl

    def client(self, sidetls=True, socket=OUTBOUND, outer=False):
        tub = self.makeTub()
        inner = self.net.hint_handler(socket=socket)
        if outer:
            inner = _OuterTLSHandler(inner)
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("memory", handler(inner) if sidetls else inner)
        return tub


@implementer(IConnectionHintHandler)
class _OuterTLSHandler:
    """Dials through an outer TLS session (client side)."""

    def __init__(self, inner):
        self._inner = inner

    def hint_to_endpoint(self, hint, reactor, update_status):
        ep, host = self._inner.hint_to_endpoint(hint, reactor, update_status)
        return wrapClientTLS(outerClientOptions(), ep), host

    def describe(self):
        return "outer-tls+" + self._inner.describe()


class SideMatrixTubTests(TubTestCase):
    """
    Real Tubs make a call whatever way the listener's socket points, plain
    or inside an outer TLS session.
    """

    def check(self, socket, outer):
        server, furl = self.serve(
            socket, wrap=_TLSWrappedServerEndpoint if outer else None
        )
        client = self.client(outer=outer)

        def connected(rref):
            transport = rref.tracker.broker.transport
            self.assertEqual(transport.role, "dialer")
            self.assertEqual(transport.tlsSide, "client")
            return self.echo(rref, os.urandom(200000))

        return client.getReference(furl).addCallback(connected)

    def test_listenerOutbound(self):
        return self.check(OUTBOUND, outer=False)

    def test_listenerInbound(self):
        return self.check(INBOUND, outer=False)

    def test_listenerOutboundInsideTLS(self):
        return self.check(OUTBOUND, outer=True)

    def test_listenerInboundInsideTLS(self):
        return self.check(INBOUND, outer=True)


class StockBaselineTests(TubTestCase):
    """
    The fake network reproduces the bug: stock Foolscap fails when the
    listener's connections are outbound sockets, and works otherwise.
    """

    def test_stockFailsOverOutboundListener(self):
        server, furl = self.serve(OUTBOUND, sidetls=False)
        client = self.client(sidetls=False)
        d = self.assertFailure(client.getReference(furl), Exception)
        return d.addCallback(lambda exc: self.assertIn("unexpected message", str(exc)))

    def test_stockWorksOverInboundListener(self):
        server, furl = self.serve(INBOUND, sidetls=False)
        client = self.client(sidetls=False)
        return client.getReference(furl).addCallback(self.echo, b"x")

    def test_interopStockDialer(self):
        """A stock dialer reaches a sidetls listener over an accepted socket."""
        server, furl = self.serve(INBOUND, sidetls=True)
        client = self.client(sidetls=False)
        return client.getReference(furl).addCallback(self.echo, b"y")

    def test_interopStockListener(self):
        """A sidetls dialer reaches a stock TCP-shaped listener."""
        server, furl = self.serve(INBOUND, sidetls=False)
        client = self.client(sidetls=True)
        return client.getReference(furl).addCallback(self.echo, b"z")


class DiagnosisTubTests(TubTestCase):
    def test_peerAlsoClient(self):
        """
        sidetls dialer, stock listener whose socket is outbound: the
        errback and the ConnectionInfo status say the peer also sent a
        ClientHello.
        """
        server, furl = self.serve(OUTBOUND, sidetls=False)
        client = self.client(sidetls=True)

        def failed(failure):
            failure.trap(TLSSideError)
            self.assertIn(
                "TLS handshake failed: the peer also acted as TLS client (it sent a "
                "ClientHello)",
                str(failure.value),
            )
            status = failure._connectionInfo.connectorStatuses["memory:srv"]
            self.assertTrue(
                status.startswith(
                    "negotiation failed: TLS handshake failed: the peer also acted as TLS client"
                ),
                status,
            )

        d = client.getReference(furl)
        return d.addCallbacks(lambda r: self.fail("connected"), failed)

    def test_peerAlsoServer(self):
        """
        sidetls listener, stock dialer whose socket was accepted: both wait
        as TLS servers; the listener gives up after its handshake wait and
        its negotiation failure names the cause.
        """
        server = self.makeTub()
        failures = []
        endpoint = listener(
            self.net.server_endpoint("srv", socket=OUTBOUND), handshake_timeout=0.5
        )
        server.listenOn(endpoint, _test_options={"debug_negotiationFailed_cb": failures.append})
        server.setLocation("memory:srv")
        furl = server.registerReference(Echo(), "echo")
        client = self.client(sidetls=False, socket=INBOUND)

        def explained(_):
            failures[0].trap(TLSHandshakeTimeout)
            self.assertIn("no ClientHello arrived within 0.5 s", str(failures[0].value))
            self.assertIn("the peer also acted as TLS server", str(failures[0].value))

        d = client.getReference(furl)
        d.addCallbacks(lambda r: self.fail("connected"), lambda f: None)
        d.addCallback(lambda _: _waitFor(lambda: failures))
        return d.addCallback(explained)


class ConnectorBookkeepingTests(TubTestCase):
    def test_winnerStaysConnected(self):
        """
        A FURL with several hints: one wins, the others are abandoned, and
        the winner is the connection that stays (Foolscap keys pending
        negotiations by the protocol the endpoint returned).
        """
        server = self.makeTub()
        for name in ("a", "b"):
            server.listenOn(listener(self.net.server_endpoint(name, socket=OUTBOUND)))
        server.setLocation("memory:a", "memory:b", "memory:nobody-listens")
        furl = server.registerReference(Echo(), "echo")
        client = self.client()

        def settled(rref):
            info = rref.getConnectionInfo()
            self.assertIn(
                info.connectorStatuses["memory:nobody-listens"],
                ("connection refused", "abandoned"),
            )
            self.assertIn(info.winningHint, ("memory:a", "memory:b"))
            self.assertTrue(info.connected)
            self.assertEqual(len(client.brokers), 1)
            # The winner still carries calls after the losers are gone.
            return self.echo(rref, b"2")

        d = client.getReference(furl)
        d.addCallback(lambda rref: self.echo(rref, b"1").addCallback(lambda _: rref))
        d.addCallback(
            lambda rref: _waitFor(lambda: not client._activeConnectors).addCallback(
                lambda _: rref
            )
        )
        return d.addCallback(settled)


class SecurityTests(TubTestCase):
    def setUpImpostor(self):
        genuine = self.makeTub()
        genuine.setLocation("memory:genuine-is-offline")
        genuineFurl = genuine.registerReference(Echo(), "echo")
        impostor = self.makeTub()

        class Impostor(Negotiation):
            """Answers for the genuine TubID, with its own certificate."""

            def handlePLAINTEXTServer(self, header):
                return Negotiation.handlePLAINTEXTServer(
                    self, header.replace(genuine.tubID.encode(), impostor.tubID.encode())
                )

            def sendHello(self):
                self.myTubID = genuine.tubID
                return Negotiation.sendHello(self)

        impostor.negotiationClass = Impostor
        self.net.listen(impostor, "evil", socket=OUTBOUND)
        return genuine, impostor, genuineFurl.replace("memory:genuine-is-offline", "memory:evil")

    def clientOrdered(self, above):
        """A sidetls client Tub whose TubID sorts above (or below) C{above}:
        Foolscap's higher TubID decides the connection, which changes who
        notices the forgery first."""
        while True:
            client = self.client()
            if client.tubID > above:
                return client

    def test_impostorRejectedByDialer(self):
        """
        A listener that claims a TubID whose key it does not hold is
        rejected: the role-based TLS still hands Foolscap the peer's real
        certificate, and Foolscap's check of it still runs.
        """
        genuine, impostor, forged = self.setUpImpostor()
        # The dialer decides, so its own certificate check is what fails.
        client = self.clientOrdered(genuine.tubID)

        def rejected(exc):
            self.assertIn("TubID mismatch", str(exc))
            self.assertEqual(client.brokers, {})

        d = self.assertFailure(client.getReference(forged), Exception)
        return d.addCallback(rejected)


class HandlerTests(TestCase):
    def test_describe(self):
        self.assertEqual(handler(DefaultTCP()).describe(), "sidetls+tcp")

    def test_idempotent(self):
        h = handler(DefaultTCP())
        self.assertIs(handler(h), h)

    def test_invalidHintPassesThrough(self):
        exc = self.assertRaises(
            InvalidHintError, handler(DefaultTCP()).hint_to_endpoint, "tcp:nope", None, print
        )
        self.assertIn("unrecognized TCP hint", str(exc))

    def test_deferredInner(self):
        """An inner handler may return a Deferred; the result is wrapped."""

        @implementer(IConnectionHintHandler)
        class Later:
            def hint_to_endpoint(self, hint, reactor, update_status):
                update_status("thinking")
                return defer.succeed(DefaultTCP().hint_to_endpoint(hint, reactor, update_status))

            def describe(self):
                return "later"

        statuses = []
        from twisted.internet import reactor

        d = handler(Later()).hint_to_endpoint("tcp:127.0.0.1:9", reactor, statuses.append)
        ep, host = self.successResultOf(d)
        self.assertEqual(host, "127.0.0.1")
        self.assertIn("sidetls dialer", repr(ep))
        self.assertEqual(statuses, ["thinking"])

    def test_install(self):
        tub = Tub()
        net = MemoryNetwork()
        tub.addConnectionHintHandler("memory", net.hint_handler())
        install(tub)
        install(tub)
        described = {k: v.describe() for k, v in tubHandlers(tub).items()}
        self.assertEqual(described["tcp"], "sidetls+tcp")
        self.assertEqual(described["memory"], "sidetls+memory")

    def test_installKeepsRemovals(self):
        """A Tor-only Tub (handlers removed) gets no tcp handler back."""
        tub = Tub()
        tub.removeAllConnectionHintHandlers()
        install(tub)
        self.assertEqual(tubHandlers(tub), {})


class BadArgumentTests(TestCase):
    def test_listenerString(self):
        from foolscap_sidetls import listener as L

        exc = self.assertRaises(TypeError, L, "tcp:0")
        self.assertIn("expects IStreamServerEndpoint", str(exc))
        self.assertIn("'sidetls:'", str(exc))

    def test_dialerNotEndpoint(self):
        from foolscap_sidetls import dialer

        exc = self.assertRaises(TypeError, dialer, object())
        self.assertIn("expects IStreamClientEndpoint", str(exc))

    def test_handlerNotHandler(self):
        exc = self.assertRaises(TypeError, handler, "tcp")
        self.assertIn("expects an IConnectionHintHandler", str(exc))

    def test_installNotTub(self):
        exc = self.assertRaises(TypeError, install, object())
        self.assertIn("expects a foolscap.api.Tub", str(exc))


def _waitFor(condition, timeout=5.0, interval=0.01):
    """Poll C{condition} on the reactor until true, or fail after C{timeout}."""
    from twisted.internet import reactor, task

    d = defer.Deferred()
    elapsed = [0.0]

    def check():
        if condition():
            loop.stop()
            d.callback(None)
        elif elapsed[0] >= timeout:
            loop.stop()
            d.errback(AssertionError("condition not met within %s s" % timeout))
        elapsed[0] += interval

    loop = task.LoopingCall(check)
    loop.clock = reactor
    loop.start(interval)
    return d
