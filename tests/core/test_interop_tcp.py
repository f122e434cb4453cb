"""
foolscap-sidetls against stock Foolscap over real loopback TCP, where the
socket direction and the role agree: each side of the mix must still work.
Also Foolscap's multi-hint TubConnector bookkeeping with sidetls dialers,
and a clean, prompt Tub shutdown.
"""

from __future__ import annotations

import os
from typing import Any

from zope.interface import implementer
from twisted.internet import defer, reactor, task, tcp
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest
from foolscap.api import Referenceable, Tub
from foolscap.eventual import flushEventualQueue
from foolscap.referenceable import SturdyRef

import foolscap_sidetls
from foolscap_sidetls import ISideTLSTransport
from foolscap_sidetls._protocol import SideTLSProtocol

from .._support.waiting import coroutine, until


class Echo(Referenceable):
    def remote_echo(self, data: Any) -> Any:
        return data


@implementer(IStreamServerEndpoint)
class _PortRecorder:
    """Passes C{listen} through and keeps the port, for its number."""

    def __init__(self, inner: IStreamServerEndpoint) -> None:
        self._inner = inner
        self.listening: defer.Deferred[Any] = defer.Deferred()

    def listen(self, factory: IProtocolFactory) -> Any:
        d = self._inner.listen(factory)

        def got(port: Any) -> Any:
            self.listening.callback(port.getHost().port)
            return port

        return d.addCallback(got)


def _tcpSelectables() -> set[Any]:
    """TCP ports and connections the reactor is watching."""
    kinds = (tcp.Port, tcp.Connection)
    return {
        s
        for s in list(reactor.getReaders()) + list(reactor.getWriters())
        if isinstance(s, kinds)
    }


class InteropTCPTests(unittest.TestCase):
    timeout = 15

    def makeTub(self, sidetlsDialer: bool = False) -> Tub:
        tub = Tub(_test_options={"connect_timeout": 8})
        if sidetlsDialer:
            foolscap_sidetls.install(tub)
        tub.startService()
        self.addCleanup(self._stopTub, tub)
        return tub

    def _stopTub(self, tub: Tub) -> Any:
        if tub.running:
            return tub.stopService()
        return None

    async def listen(self, tub: Tub, endpoint: IStreamServerEndpoint) -> Any:
        recorder = _PortRecorder(endpoint)
        tub.listenOn(recorder)
        portnum = await recorder.listening
        return "tcp:127.0.0.1:%d" % (portnum,)

    async def refusedHint(self) -> Any:
        """A hint for a loopback port nobody listens on."""
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol)
        )
        portnum = port.getHost().port
        await port.stopListening()
        return "tcp:127.0.0.1:%d" % (portnum,)

    @coroutine
    async def test_stock_dialer_to_sidetls_listener(self) -> Any:
        """
        An accepted socket is already the TLS server, so a sidetls listener
        serves stock dialers.

        (Built with listener(), not the "sidetls:" string: the first
        serverFromString of a plugin prefix imports every endpoint plugin
        installed, and txi2p's take seconds.)
        """
        listenerTub = self.makeTub()
        hint = await self.listen(
            listenerTub,
            foolscap_sidetls.listener(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")),
        )
        listenerTub.setLocation(hint)
        furl = listenerTub.registerReference(Echo())

        rref = await self.makeTub().getReference(furl)
        payload = os.urandom(300 * 1024)
        self.assertEqual((await rref.callRemote("echo", payload)), payload)

        ours = rref.tracker.broker.transport
        self.assertFalse(ISideTLSTransport.providedBy(ours))
        self.assertIsInstance(ours, tcp.Client)
        (theirs,) = [b.transport for b in listenerTub.brokers.values()]
        self.assertIsInstance(theirs, SideTLSProtocol)
        self.assertEqual((theirs.role, theirs.tlsSide), ("listener", "server"))
        self.assertIsInstance(theirs.transport, tcp.Server)

    @coroutine
    async def test_sidetls_dialer_to_stock_listener(self) -> Any:
        listenerTub = self.makeTub()
        hint = await self.listen(
            listenerTub, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        )
        listenerTub.setLocation(hint)
        furl = listenerTub.registerReference(Echo())

        rref = await self.makeTub(sidetlsDialer=True).getReference(furl)
        payload = os.urandom(300 * 1024)
        self.assertEqual((await rref.callRemote("echo", payload)), payload)

        ours = rref.tracker.broker.transport
        self.assertIsInstance(ours, SideTLSProtocol)
        self.assertEqual((ours.role, ours.tlsSide), ("dialer", "client"))
        self.assertIsInstance(ours.transport, tcp.Client)
        (theirs,) = [b.transport for b in listenerTub.brokers.values()]
        self.assertIsInstance(theirs, tcp.Server)

    @coroutine
    async def test_several_hints_one_winner_stays_connected(self) -> Any:
        """
        Two good hints (two listeners of one Tub) and a refused one: the
        TubConnector races them, keeps one connection and abandons the
        rest; the winner is still usable afterwards and is the only broker.
        """
        listenerTub = self.makeTub()
        good1 = await self.listen(
            listenerTub,
            foolscap_sidetls.listener(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")),
        )
        good2 = await self.listen(
            listenerTub,
            foolscap_sidetls.listener(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")),
        )
        refused = await self.refusedHint()
        listenerTub.setLocation(good1, refused, good2)
        furl = listenerTub.registerReference(Echo())

        dialerTub = self.makeTub(sidetlsDialer=True)
        rref = await dialerTub.getReference(furl)
        self.assertEqual((await rref.callRemote("echo", b"first")), b"first")

        # The connector finishes once every losing attempt has resolved.
        await until(self, lambda: not dialerTub._activeConnectors, 5.0, "the connector to finish")
        info = dialerTub.getConnectionInfoForFURL(furl)
        winner = info.winningHint
        self.assertIn(winner, (good1, good2))
        statuses = info.connectorStatuses
        self.assertEqual(statuses[winner], "successful")
        self.assertEqual(set(statuses), {good1, good2, refused})
        # Foolscap's tcp handler resolves each hint in a thread, so the
        # refused attempt may still be pending when the winner wins.
        self.assertIn(statuses[refused], ("connection refused", "abandoned"))
        (loser,) = {good1, good2} - {winner}
        self.assertTrue(
            statuses[loser] == "abandoned"
            or statuses[loser].startswith("negotiation failed"),
            statuses[loser],
        )
        self.assertEqual(
            info.connectionHandlers[winner], "sidetls+tcp", "dialed without sidetls"
        )

        # A bit later, the winner is still up and still the only one.
        await task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual((await rref.callRemote("echo", b"second")), b"second")
        tubref = SturdyRef(furl).getTubRef()
        self.assertEqual(list(dialerTub.brokers), [tubref])
        self.assertIs(dialerTub.brokers[tubref], rref.tracker.broker)
        self.assertEqual(len(listenerTub.brokers), 1)
        (theirs,) = [b.transport for b in listenerTub.brokers.values()]
        self.assertEqual(
            theirs.transport.getHost().port,
            rref.tracker.broker.transport.transport.getPeer().port,
        )

    @coroutine
    async def test_stopService_leaves_nothing_behind(self) -> Any:
        """
        Stopping both Tubs after a call fires and leaves no listening port,
        no TCP connection and no timer of theirs in the reactor.
        """
        # After one turn, so trial's own timeout call is among the "before".
        await task.deferLater(reactor, 0, lambda: None)
        before = _tcpSelectables()
        timersBefore = set(reactor.getDelayedCalls())

        listenerTub = self.makeTub()
        hint = await self.listen(
            listenerTub,
            foolscap_sidetls.listener(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")),
        )
        listenerTub.setLocation(hint)
        furl = listenerTub.registerReference(Echo())
        dialerTub = self.makeTub(sidetlsDialer=True)
        rref = await dialerTub.getReference(furl)
        self.assertEqual((await rref.callRemote("echo", b"x")), b"x")
        self.assertGreaterEqual(len(_tcpSelectables() - before), 3)  # port + 2 ends

        await dialerTub.stopService()
        await listenerTub.stopService()
        await flushEventualQueue()

        self.assertEqual(_tcpSelectables() - before, set())
        leftover = [
            c for c in reactor.getDelayedCalls() if c not in timersBefore and c.active()
        ]
        self.assertEqual(leftover, [])
        self.assertEqual((dialerTub.brokers, listenerTub.brokers), ({}, {}))

    # A hang in stopService fails this test by timeout.
    test_stopService_leaves_nothing_behind.timeout = 5  # type: ignore[attr-defined]
