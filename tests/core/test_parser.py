"""
The C{sidetls:} endpoint-string prefix.
"""

from __future__ import annotations

import re

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

from foolscap_sidetls import DEFAULT_CLOSE_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, Limits, install
from foolscap_sidetls._endpoints import DialerEndpoint, ListenerEndpoint
from foolscap_sidetls._twisted import parse_description, unparse_description


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


class LimitOptionTests(SynchronousTestCase):
    """
    The limits of listener() and dialer() as endpoint-string options, so
    that C{tub.listenOn("sidetls:...")} and Tahoe-style settings reach them.
    """

    def test_server(self):
        ep = serverFromString(
            reactor,
            "sidetls:tcp:0:handshakeTimeout=20:negotiationTimeout=30.5:closeTimeout=10"
            ":maxNegotiating=100:interface=127.0.0.1",
        )
        self.assertIsInstance(ep, ListenerEndpoint)
        self.assertEqual(
            ep.limits,
            Limits(handshake_timeout=20.0, negotiation_timeout=30.5, close_timeout=10.0, max_negotiating=100),
        )
        # The rest reached the inner endpoint, and only the rest.
        self.assertIsInstance(ep._endpoint, TCP4ServerEndpoint)
        self.assertEqual(ep._endpoint._interface, "127.0.0.1")

    def test_defaults(self):
        ep = serverFromString(reactor, "sidetls:tcp:0")
        self.assertEqual(
            (ep.limits.handshake_timeout, ep.limits.negotiation_timeout, ep.limits.close_timeout, ep.limits.max_negotiating),
            (DEFAULT_HANDSHAKE_TIMEOUT, None, DEFAULT_CLOSE_TIMEOUT, None),
        )

    def test_none(self):
        """'none' is how a description says no limit (0 is refused: it used to mean that silently)."""
        ep = serverFromString(reactor, "sidetls:handshakeTimeout=none:closeTimeout=none:maxNegotiating=none:tcp:0")
        self.assertEqual(ep.limits, Limits(handshake_timeout=None, close_timeout=None, max_negotiating=None))

    def test_client(self):
        ep = clientFromString(
            reactor, "sidetls:tcp:host=127.0.0.1:port=1234:handshakeTimeout=5:negotiationTimeout=7:closeTimeout=none"
        )
        self.assertIsInstance(ep, DialerEndpoint)
        self.assertEqual(ep.limits, Limits(handshake_timeout=5.0, negotiation_timeout=7.0, close_timeout=None))
        self.assertEqual((ep._endpoint._host, ep._endpoint._port), ("127.0.0.1", 1234))

    def test_client_has_no_cap(self):
        exc = self.assertRaises(
            ValueError, clientFromString, reactor, "sidetls:tcp:host=127.0.0.1:port=1:maxNegotiating=5"
        )
        self.assertEqual(
            str(exc),
            "sidetls: option maxNegotiating applies to listeners (server endpoints) only; a "
            "client endpoint takes handshakeTimeout, negotiationTimeout, closeTimeout",
        )

    def test_case(self):
        exc = self.assertRaises(ValueError, serverFromString, reactor, "sidetls:tcp:0:maxnegotiating=5")
        self.assertEqual(
            str(exc), "sidetls: option 'maxnegotiating' is spelled 'maxNegotiating' (options are case-sensitive)"
        )

    def test_bad_seconds(self):
        for text in ["0", "0.0", "-1", "abc", "1e3", "inf", "nan", " 30", "30 ", "", "+5", "\u0663", "1" * 10, "3."]:
            for name in ("handshakeTimeout", "negotiationTimeout", "closeTimeout"):
                for parse in (serverFromString, clientFromString):
                    inner = "tcp:0" if parse is serverFromString else "tcp:host=a:port=1"
                    exc = self.assertRaises(
                        ValueError, parse, reactor, "sidetls:%s:%s=%s" % (inner, name, text.replace(":", "\\:"))
                    )
                    self.assertEqual(
                        str(exc),
                        "sidetls: option %s=%r: expected a number of seconds more than 0, in "
                        "digits with an optional decimal point (such as 30 or 2.5), or 'none' "
                        "for no limit" % (name, text),
                    )

    def test_bad_count(self):
        for text in ["0", "-1", "1.5", "ten", "", "\u0663", "1" * 10, "None"]:
            exc = self.assertRaises(ValueError, serverFromString, reactor, "sidetls:tcp:0:maxNegotiating=" + text)
            self.assertEqual(
                str(exc),
                "sidetls: option maxNegotiating=%r: expected a whole number of connections, "
                "at least 1, in digits (such as 100), or 'none' for no limit" % (text,),
            )

    @given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E).filter(lambda c: c not in ":=\\"), max_size=12))
    def test_any_seconds(self, text):
        """Accepted exactly when it is plain digits with an optional fraction, more than 0."""
        valid = re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,9})?", text) is not None and float(text) > 0
        try:
            ep = serverFromString(reactor, "sidetls:tcp:0:negotiationTimeout=" + text)
        except ValueError as e:
            self.assertFalse(valid and text != "none", text)
            self.assertIn("option negotiationTimeout=%r" % (text,), str(e))
        else:
            self.assertTrue(valid or text == "none", text)
            self.assertEqual(ep.limits.negotiation_timeout, None if text == "none" else float(text))


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
        Whatever Twisted's parser split off, unparse_description rebuilds
        a description that parses back to the same pieces, through
        Twisted's own parser and through parse_description.
        """
        text = unparse_description(tuple(args), kwargs)
        self.assertEqual(_parse(text), (args, kwargs))
        self.assertEqual(parse_description(text), (args, kwargs))

    def test_escapes(self):
        """
        A positional field's "=" and ":" are escaped (Twisted's
        quoteStringArgument escapes only ":" and "\\"); an option's value
        keeps its "=" as it is, which Twisted's parser reads back.
        """
        self.assertEqual(
            unparse_description(("unix", "/tmp/a=b:c\\d"), {"mode": "x=y:z"}),
            "unix:/tmp/a\\=b\\:c\\\\d:mode=x=y\\:z",
        )

    def test_private_import_has_one_home(self):
        """
        Twisted's private description parser is imported by
        foolscap_sidetls._twisted alone, so a change in Twisted has one
        place to look.
        """
        import pathlib

        import foolscap_sidetls

        package = pathlib.Path(foolscap_sidetls.__file__).parent
        importers = sorted(
            str(path.relative_to(package))
            for path in package.rglob("*.py")
            if re.search(r"\bimport\b[^\n]*\b_parse\b", path.read_text())
        )
        self.assertEqual(importers, ["_twisted.py"])


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
        server.listenOn("sidetls:tcp:0:interface=127.0.0.1:maxNegotiating=5:negotiationTimeout=30")
        d = server.getListeners()[0]._ep  # the wrapped endpoint
        self.assertIsInstance(d, ListenerEndpoint)
        self.assertEqual(d.limits, Limits(max_negotiating=5, negotiation_timeout=30.0))

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
