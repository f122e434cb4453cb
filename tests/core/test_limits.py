"""
L{foolscap_sidetls.Limits}: the one value that carries a connection's
limits, its checks, and how every public entry point takes it.
"""

from __future__ import annotations

import dataclasses

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from foolscap.api import Tub

from foolscap_sidetls import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    Limits,
    dialer,
    handler,
    install,
    listener,
)
from foolscap_sidetls._foolscap import tubHandlers
from foolscap_sidetls._protocol import SideTLSFactory
from foolscap_sidetls.testing import MemoryNetwork


class LimitsValueTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        self.assertEqual(
            dataclasses.astuple(Limits()), (DEFAULT_HANDSHAKE_TIMEOUT, None, DEFAULT_CLOSE_TIMEOUT, None)
        )
        self.assertEqual((DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_CLOSE_TIMEOUT), (60.0, 30.0))

    def test_frozen(self) -> None:
        limits = Limits()
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, limits, "handshake_timeout", 5)
        self.assertEqual(limits.handshake_timeout, 60.0)

    def test_equality(self) -> None:
        """Equal fields, equal values (and hashes): usable as a dict key or in a set."""
        self.assertEqual(Limits(negotiation_timeout=30), Limits(60.0, 30.0, 30.0, None))
        self.assertNotEqual(Limits(max_negotiating=5), Limits(max_negotiating=6))
        self.assertEqual(len({Limits(), Limits(), Limits(close_timeout=None)}), 2)

    def test_accepted(self) -> None:
        for kwargs in [
            {"handshake_timeout": None},
            {"handshake_timeout": 1},
            {"negotiation_timeout": 0.001},
            {"close_timeout": 1e9},
            {"max_negotiating": 1},
            {"max_negotiating": None},
        ]:
            limits = Limits(**kwargs)
            [(name, value)] = kwargs.items()
            self.assertEqual(getattr(limits, name), value)

    def test_refused(self) -> None:
        """One check per kind; the message names the field, the value and what is accepted."""
        for kwargs, error, message in [
            ({"handshake_timeout": 0}, ValueError,
             "Limits: handshake_timeout must be more than 0 seconds (None: no limit), got 0"),
            ({"negotiation_timeout": -1.5}, ValueError,
             "Limits: negotiation_timeout must be more than 0 seconds (None: no limit), got -1.5"),
            ({"close_timeout": float("nan")}, ValueError,
             "Limits: close_timeout must be more than 0 seconds (None: no limit), got nan"),
            ({"close_timeout": float("inf")}, ValueError,
             "Limits: close_timeout must be a finite number of seconds (None: no limit), got inf"),
            ({"handshake_timeout": "30"}, TypeError,
             "Limits: handshake_timeout must be a number of seconds or None, got '30' (str)"),
            ({"negotiation_timeout": True}, TypeError,
             "Limits: negotiation_timeout must be a number of seconds or None, got True (bool)"),
            ({"max_negotiating": 0}, ValueError,
             "Limits: max_negotiating must be at least 1 (None: no limit), got 0"),
            ({"max_negotiating": 2.5}, TypeError,
             "Limits: max_negotiating must be a whole number of connections or None, got 2.5 (float)"),
            ({"max_negotiating": True}, TypeError,
             "Limits: max_negotiating must be a whole number of connections or None, got True (bool)"),
        ]:
            e = self.assertRaises(error, Limits, **kwargs)
            self.assertEqual(str(e), message)

    def test_checked_names_the_caller(self) -> None:
        e = self.assertRaises(ValueError, Limits.checked, "foolscap_sidetls.listener()", close_timeout=0)
        self.assertEqual(
            str(e), "foolscap_sidetls.listener(): close_timeout must be more than 0 seconds (None: no limit), got 0"
        )
        e = self.assertRaises(TypeError, Limits.checked, "x()", handshake_timout=5)
        self.assertEqual(
            str(e),
            "x(): 'handshake_timout' is not a limit; the limits are handshake_timeout, "
            "negotiation_timeout, close_timeout, max_negotiating",
        )

    def test_for_dialer(self) -> None:
        limits = Limits(close_timeout=5)
        self.assertIs(limits.for_dialer("d()"), limits)
        e = self.assertRaises(ValueError, Limits(max_negotiating=3).for_dialer, "d()")
        self.assertEqual(
            str(e),
            "d(): max_negotiating applies to listeners only (the cap is a listener's defence), got "
            "Limits(max_negotiating=3); a dialer takes handshake_timeout, negotiation_timeout and close_timeout",
        )


class FromStringsTests(SynchronousTestCase):
    def test_parsed(self) -> None:
        self.assertEqual(
            Limits.from_strings(
                {"handshakeTimeout": "20", "negotiationTimeout": "2.5", "closeTimeout": "none", "maxNegotiating": "100"}
            ),
            Limits(handshake_timeout=20.0, negotiation_timeout=2.5, close_timeout=None, max_negotiating=100),
        )
        self.assertEqual(Limits.from_strings({}), Limits())
        self.assertEqual(Limits.from_strings({"closeTimeout": "7"}, server=False), Limits(close_timeout=7.0))

    def test_refused(self) -> None:
        for options, server, message in [
            ({"closeTimeout": "0"}, True,
             "sidetls: option closeTimeout='0': expected a number of seconds more than 0, in digits with an "
             "optional decimal point (such as 30 or 2.5), or 'none' for no limit"),
            ({"maxNegotiating": "1.5"}, True,
             "sidetls: option maxNegotiating='1.5': expected a whole number of connections, at least 1, in "
             "digits (such as 100), or 'none' for no limit"),
            ({"maxnegotiating": "5"}, True,
             "sidetls: option 'maxnegotiating' is spelled 'maxNegotiating' (options are case-sensitive)"),
            ({"maxNegotiating": "5"}, False,
             "sidetls: option maxNegotiating applies to listeners (server endpoints) only; a client endpoint "
             "takes handshakeTimeout, negotiationTimeout, closeTimeout"),
            ({"backlog": "5"}, True,
             "sidetls: option 'backlog' is not a limit; the limits are handshakeTimeout, negotiationTimeout, "
             "closeTimeout, maxNegotiating"),
        ]:
            e = self.assertRaises(ValueError, Limits.from_strings, options, server=server)
            self.assertEqual(str(e), message)


class EntryPointTests(SynchronousTestCase):
    """
    listener(), dialer(), handler(), install() and SideTLSFactory take one
    L{Limits} as C{limits=}, or the older keywords, not both.
    """

    def setUp(self) -> None:
        self.net = MemoryNetwork(clock=Clock())

    def test_limits_reach_the_factory(self) -> None:
        limits = Limits(handshake_timeout=3, negotiation_timeout=4, close_timeout=5, max_negotiating=6)
        ep = listener(self.net.server_endpoint("a"), clock=Clock(), limits=limits)
        self.assertIs(ep.limits, limits)
        self.successResultOf(ep.listen(Factory.forProtocol(Protocol)))
        self.assertIs(ep.factory.limits, limits)
        self.assertEqual(ep.factory.maxNegotiating, 6)
        d = dialer(self.net.client_endpoint("a"), limits=Limits(close_timeout=None))
        self.assertEqual(d.limits, Limits(close_timeout=None))
        h = handler(self.net.hint_handler(), limits=Limits(handshake_timeout=9))
        self.assertEqual(h.limits, Limits(handshake_timeout=9))
        endpoint, _ = h.hint_to_endpoint("memory:a", Clock(), lambda s: None)
        self.assertEqual(endpoint.limits, Limits(handshake_timeout=9))

    def test_keywords_make_the_same_value(self) -> None:
        ep = listener(self.net.server_endpoint("a"), negotiation_timeout=30, max_negotiating=10)
        self.assertEqual(ep.limits, Limits(negotiation_timeout=30, max_negotiating=10))
        f = SideTLSFactory(Factory.forProtocol(Protocol), False, Clock(), handshakeTimeout=7, maxNegotiating=2)
        self.assertEqual(f.limits, Limits(handshake_timeout=7, max_negotiating=2))
        self.assertEqual((f.handshakeTimeout, f.negotiationTimeout, f.closeTimeout), (7, None, 30.0))

    def test_both_refused(self) -> None:
        cases = [
            ("foolscap_sidetls.listener()", lambda **kw: listener(self.net.server_endpoint("a"), **kw)),
            ("foolscap_sidetls.dialer()", lambda **kw: dialer(self.net.client_endpoint("a"), **kw)),
            ("foolscap_sidetls.handler()", lambda **kw: handler(self.net.hint_handler(), **kw)),
            ("foolscap_sidetls.install()", lambda **kw: install(Tub(), **kw)),
        ]
        for what, call in cases:
            e = self.assertRaises(TypeError, call, limits=Limits(), close_timeout=5)
            self.assertEqual(
                str(e),
                "%s: got both limits=Limits(handshake_timeout=60.0, negotiation_timeout=None, "
                "close_timeout=30.0, max_negotiating=None) and close_timeout=5; give the limits one way: "
                "limits=Limits(...) or the separate keywords" % (what,),
            )
            e = self.assertRaises(TypeError, call, limits={"close_timeout": 5})
            self.assertEqual(
                str(e), "%s: limits must be a foolscap_sidetls.Limits, got {'close_timeout': 5} (dict)" % (what,)
            )
        e = self.assertRaises(
            TypeError, SideTLSFactory, Factory.forProtocol(Protocol), False, None, 5, limits=Limits()
        )
        self.assertIn("SideTLSFactory: got both limits=", str(e))

    def test_dialers_take_no_cap(self) -> None:
        for what, call in [
            ("foolscap_sidetls.dialer()", lambda limits: dialer(self.net.client_endpoint("a"), limits=limits)),
            ("foolscap_sidetls.handler()", lambda limits: handler(self.net.hint_handler(), limits=limits)),
            ("foolscap_sidetls.install()", lambda limits: install(Tub(), limits=limits)),
        ]:
            e = self.assertRaises(ValueError, call, Limits(max_negotiating=4))
            self.assertTrue(str(e).startswith(what + ": max_negotiating applies to listeners only"), str(e))

    def test_install_uses_one_value(self) -> None:
        tub = Tub()
        install(tub, limits=Limits(negotiation_timeout=12))
        self.assertEqual(tubHandlers(tub)["tcp"].limits, Limits(negotiation_timeout=12))


class RelaySharesTheChecksTests(SynchronousTestCase):
    """The relay's own limits are checked by the same validators, in the same words."""

    def test_relay_limits(self) -> None:
        from foolscap_sidetls.relay import RelayLimits

        for kwargs, error, message in [
            ({"stream_timeout": float("inf")}, ValueError,
             "RelayLimits: stream_timeout must be a finite number of seconds, got inf"),
            ({"close_timeout": float("inf")}, ValueError,
             "RelayLimits: close_timeout must be a finite number of seconds (None: no limit), got inf"),
            ({"max_connections": 0}, ValueError, "RelayLimits: max_connections must be at least 1, got 0"),
        ]:
            e = self.assertRaises(error, RelayLimits, **kwargs)
            self.assertEqual(str(e), message)
