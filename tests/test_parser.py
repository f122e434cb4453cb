"""
The C{sidetls:} endpoint-string prefix.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.internet import reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    UNIXServerEndpoint,
    _parse,
    clientFromString,
    serverFromString,
)
from twisted.trial.unittest import SynchronousTestCase, TestCase

from foolscap.api import Referenceable, Tub

from foolscap_sidetls import install
from foolscap_sidetls._endpoints import DialerEndpoint, ListenerEndpoint
from foolscap_sidetls._parser import unparse


class ServerStringTests(SynchronousTestCase):
    def test_tcp(self):
        ep = serverFromString(reactor, "sidetls:tcp:0:interface=127.0.0.1")
        self.assertIsInstance(ep, ListenerEndpoint)
        self.assertIsInstance(ep._endpoint, TCP4ServerEndpoint)
        self.assertEqual(ep._endpoint._interface, "127.0.0.1")
        self.assertEqual(ep._endpoint._port, 0)

    def test_escapedColonReachesInnerParser(self):
        ep = serverFromString(reactor, r"sidetls:unix:/tmp/odd\:name")
        self.assertIsInstance(ep._endpoint, UNIXServerEndpoint)
        self.assertEqual(ep._endpoint._address, "/tmp/odd:name")

    def test_empty(self):
        exc = self.assertRaises(ValueError, serverFromString, reactor, "sidetls:")
        self.assertIn("needs an inner endpoint description", str(exc))

    def test_doublePrefix(self):
        exc = self.assertRaises(ValueError, serverFromString, reactor, "sidetls:sidetls:tcp:0")
        self.assertIn("one 'sidetls:' prefix", str(exc))


class ClientStringTests(SynchronousTestCase):
    def test_tcp(self):
        ep = clientFromString(reactor, "sidetls:tcp:host=127.0.0.1:port=1234")
        self.assertIsInstance(ep, DialerEndpoint)
        self.assertIsInstance(ep._endpoint, TCP4ClientEndpoint)
        self.assertEqual((ep._endpoint._host, ep._endpoint._port), ("127.0.0.1", 1234))

    def test_empty(self):
        exc = self.assertRaises(ValueError, clientFromString, reactor, "sidetls:")
        self.assertIn("needs an inner endpoint description", str(exc))


# Twisted parses endpoint descriptions as ASCII.
_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)


class UnparseTests(SynchronousTestCase):
    @given(
        args=st.lists(_text, min_size=1, max_size=4),
        kwargs=st.dictionaries(_text.filter(bool), _text, max_size=3),
    )
    def test_roundTrip(self, args, kwargs):
        """
        Whatever Twisted's parser split off, unparse rebuilds a description
        that parses back to the same pieces.
        """
        self.assertEqual(_parse(unparse(tuple(args), kwargs)), (args, kwargs))


class Echo(Referenceable):
    def remote_echo(self, data):
        return data


class RealTCPTests(TestCase):
    """
    The string form end to end over loopback TCP, the way a Tahoe-style
    C{tub.port} would use it.
    """

    def test_listenOnString(self):
        server = Tub()
        client = Tub()
        for tub in (server, client):
            tub.startService()
            self.addCleanup(tub.stopService)
        install(client)
        server.listenOn("sidetls:tcp:0:interface=127.0.0.1")
        d = server.getListeners()[0]._ep  # the wrapped endpoint
        self.assertIsInstance(d, ListenerEndpoint)

        def listening():
            port = server.getListeners()[0]._lp.getHost().port
            server.setLocation("tcp:127.0.0.1:%d" % port)
            furl = server.registerReference(Echo())
            return client.getReference(furl)

        def call(rref):
            transport = rref.tracker.broker.transport
            self.assertEqual((transport.role, transport.tlsSide), ("dialer", "client"))
            return rref.callRemote("echo", b"over tcp")

        from twisted.internet import task

        d = task.deferLater(reactor, 0, listening)
        d.addCallback(call)
        d.addCallback(self.assertEqual, b"over tcp")
        return d
