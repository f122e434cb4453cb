"""
The I2P hint handler, without a router: hints, arguments, dialing through
the fake SAM bridge of tests/i2p/_fakes.py.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.defer import CancelledError
from twisted.internet.testing import MemoryReactorClock

from foolscap.api import Tub
from foolscap.ipb import InvalidHintError

import foolscap_sidetls
from foolscap_sidetls import i2p
from foolscap_sidetls.i2p.sam import parse_reply
from foolscap_sidetls._endpoints import DialerEndpoint
from foolscap_sidetls._foolscap import tubHandlers

from ._fakes import B32, BridgeTestCase


class HintTests(BridgeTestCase):
    def test_good_hints(self) -> None:
        h = self.handler()
        for hint, host, port in [
            ("i2p:" + B32, B32, None),
            ("i2p:%s:3457" % B32, B32, 3457),
            ("i2p:example.i2p", "example.i2p", None),
            ("i2p:my-node.example.i2p:1", "my-node.example.i2p", 1),
            ("i2p:" + "b" * 56 + ".b32.i2p:65535", "b" * 56 + ".b32.i2p", 65535),
        ]:
            ep, got = h.hint_to_endpoint(hint, self.clock, lambda s: None)
            self.assertEqual(got, host)
            self.assertIsInstance(ep, DialerEndpoint)
            self.assertEqual(ep._endpoint._port, port)

    def test_bad_hints(self) -> None:
        h = self.handler()
        for hint, words in [
            ("tcp:example.org:1234", "not an I2P hint"),
            ("i2p:", "no address"),
            ("i2p:example.org", "not an I2P address"),
            ("i2p:%s:1:2" % B32, "too many ':'"),
            ("i2p:%s:0" % B32, "port '0' is not a number from 1 to 65535"),
            ("i2p:%s:65536" % B32, "from 1 to 65535"),
            ("i2p:%s:http" % B32, "port 'http'"),
            ("i2p:short.b32.i2p", "has at least 52 characters"),
            ("i2p:" + "1" * 52 + ".b32.i2p", "has at least 52 characters"),
            ("i2p:bad_name.i2p", "not an I2P address"),
        ]:
            e = self.assertRaises(InvalidHintError, h.hint_to_endpoint, hint, self.clock, lambda s: None)
            self.assertIn(words, str(e), hint)
            self.assertIn("i2p:ADDRESS:PORT", str(e))

    def test_role_based_and_idempotent(self) -> None:
        """It is a sidetls handler already: handler()/install() leave it alone."""
        h = self.handler()
        self.assertIs(foolscap_sidetls.handler(h), h)
        tub = Tub()
        tub.addConnectionHintHandler("i2p", h)
        foolscap_sidetls.install(tub)
        self.assertIs(tubHandlers(tub)["i2p"], h)
        self.assertEqual(h.describe(), "sidetls+i2p (SAM at tcp:127.0.0.1:7656)")

    def test_default(self) -> None:
        h = i2p.default(MemoryReactorClock())
        self.assertEqual(h.sam_where, "tcp:127.0.0.1:7656")
        self.assertEqual((h.sam_endpoint._host, h.sam_endpoint._port), ("127.0.0.1", 7656))

    def test_two_handlers_two_nicknames(self) -> None:
        a, b = self.handler(), self.handler()
        self.assertNotEqual(a.dial_nickname, b.dial_nickname)
        self.assertTrue(a.dial_nickname.startswith("sidetls-dial-"))
        self.assertEqual(self.handler(nickname="mine").dial_nickname, "mine")


# -- bad arguments -----------------------------------------------------------------------


class ArgumentTests(BridgeTestCase):
    def test_sam_endpoint_needs_endpoint(self) -> None:
        e = self.assertRaises(TypeError, i2p.sam_endpoint, "tcp:127.0.0.1:7656")
        self.assertIn("IStreamClientEndpoint", str(e))
        self.assertIn("clientFromString", str(e))

    def test_options(self) -> None:
        ep = self.bridge.endpoint
        self.assertRaises(TypeError, i2p.sam_endpoint, ep, options=[("a", "b")])
        e = self.assertRaises(ValueError, i2p.sam_endpoint, ep, options={"inbound length": "1"})
        self.assertIn("inbound length", str(e))
        e = self.assertRaises(ValueError, i2p.sam_endpoint, ep, options={"ID": "x"})
        self.assertIn("set by foolscap_sidetls.i2p itself", str(e))
        e = self.assertRaises(ValueError, i2p.sam_endpoint, ep, options={"a": "b c"})
        self.assertIn("spaces", str(e))
        self.assertRaises(TypeError, i2p.sam_endpoint, ep, options={"a": 1.5})
        self.assertRaises(ValueError, i2p.sam_endpoint, ep, nickname="has space")
        h = self.handler(options={"inbound.length": 0, "i2cp.dontPublishLeaseSet": True})
        self.assertEqual(h.options, {"inbound.length": "0", "i2cp.dontPublishLeaseSet": "true"})

    def test_listen_arguments(self) -> None:
        tub = Tub()
        key = self.mktemp()
        ep = self.bridge.endpoint
        e = self.assertRaises(TypeError, i2p.listen, "tub", ep, key)
        self.assertIn("foolscap.api.Tub", str(e))
        e = self.assertRaises(TypeError, i2p.listen, tub, "tcp:127.0.0.1:7656", key)
        self.assertIn("IStreamClientEndpoint", str(e))
        self.assertRaises(TypeError, i2p.listen, tub, ep, 42)
        e = self.assertRaises(ValueError, i2p.listen, tub, ep, "/no/such/dir/key")
        self.assertIn("does not exist", str(e))
        self.assertRaises(ValueError, i2p.listen, tub, ep, key, port=0)
        self.assertRaises(TypeError, i2p.listen, tub, ep, key, port=True)
        self.assertRaises(TypeError, i2p.listen, tub, ep, key, port="80")
        self.assertRaises(ValueError, i2p.listen, tub, ep, key, options={"STYLE": "RAW"})
        self.assertEqual(self.bridge.commands, [])

    def test_limits(self) -> None:
        """
        Every handler maker, and listen(), checks the sidetls limits where
        they are given, naming itself; nothing is sent to SAM.
        """
        ep = self.bridge.endpoint
        for kwargs, error, words in [
            ({"handshake_timeout": 0}, ValueError, "handshake_timeout must be more than 0 seconds (None: no limit), got 0"),
            ({"negotiation_timeout": -1}, ValueError, "negotiation_timeout must be more than 0"),
            ({"close_timeout": "30"}, TypeError, "close_timeout must be a number of seconds or None"),
        ]:
            e = self.assertRaises(error, i2p.sam_endpoint, ep, **kwargs)
            self.assertIn("foolscap_sidetls.i2p.sam_endpoint(): " + words, str(e))
            e = self.assertRaises(error, i2p.default, self.clock, **kwargs)
            self.assertIn("foolscap_sidetls.i2p.default(): " + words, str(e))
            e = self.assertRaises(error, i2p.listen, Tub(), ep, self.mktemp(), **kwargs)
            self.assertIn("foolscap_sidetls.i2p.listen(): " + words, str(e))
        for value, error, words in [
            (0, ValueError, "max_negotiating must be at least 1 (None: no limit), got 0"),
            (2.5, TypeError, "max_negotiating must be a whole number of connections or None"),
        ]:
            e = self.assertRaises(error, i2p.listen, Tub(), ep, self.mktemp(), max_negotiating=value)
            self.assertIn("foolscap_sidetls.i2p.listen(): " + words, str(e))
        self.assertEqual(self.bridge.commands, [])

    def test_dialer_limits(self) -> None:
        """The handler's limits are those of every dialer it makes."""
        h = self.handler(handshake_timeout=5, negotiation_timeout=6, close_timeout=7)
        ep, _ = h.hint_to_endpoint("i2p:" + B32, self.clock, lambda s: None)
        self.assertEqual(ep.limits, foolscap_sidetls.Limits(handshake_timeout=5, negotiation_timeout=6, close_timeout=7))

    def test_parse_reply(self) -> None:
        self.assertEqual(
            parse_reply('SESSION STATUS RESULT=I2P_ERROR MESSAGE="bad \\"thing\\" here"'),
            ("SESSION STATUS", {"RESULT": "I2P_ERROR", "MESSAGE": 'bad "thing" here'}),
        )
        self.assertEqual(parse_reply("HELLO REPLY RESULT=OK VERSION=3.1"),
                         ("HELLO REPLY", {"RESULT": "OK", "VERSION": "3.1"}))


# -- one SAM socket -------------------------------------------------------------------------


class DialTests(BridgeTestCase):
    def test_bytes_both_ways_and_addresses(self) -> None:
        b32, accepted, port = self.open_listener()
        h = self.handler()
        d, statuses = self.dial(h, "i2p:%s:3457" % b32)
        self.bridge.flush()
        dialer = self.successResultOf(d)
        self.assertEqual(statuses, [
            "opening SAM session (can take ~20 s)",
            "connecting to %s over I2P" % b32,
        ])
        [server] = accepted
        dialer.transport.write(b"hello")
        server.transport.write(b"world")
        self.bridge.flush()
        self.assertEqual((server.received, dialer.received), (b"hello", b"world"))
        # What each end sees: I2P addresses, and the role-based wrapper.
        self.assertEqual(dialer.transport.role, "dialer")
        self.assertEqual(server.transport.role, "listener")
        self.assertEqual(dialer.transport.getPeer(), i2p.I2PAddress(b32, 3457))
        self.assertEqual(server.addr.host, dialer.transport.getHost().host)
        self.assertEqual(self.bridge.connect_fields[0]["TO_PORT"], "3457")
        self.assertEqual(port.getHost().host, b32)
        # The SAM socket under a stream has no startTLS of its own.
        self.assertFalse(hasattr(dialer.transport.transport, "startTLS"))

    def test_one_session_for_every_connection(self) -> None:
        """Dials before and after the session is open share it: one SESSION CREATE."""
        b32, accepted, _ = self.open_listener()
        self.bridge.session_delay = 20
        h = self.handler(options={"inbound.length": "0"})
        d1, _ = self.dial(h)
        d2, statuses2 = self.dial(h)
        self.bridge.flush()
        self.assertNoResult(d1)
        self.assertEqual(statuses2, ["opening SAM session (can take ~20 s)"])
        self.bridge.advance(20)
        self.successResultOf(d1)
        self.successResultOf(d2)
        d3, statuses3 = self.dial(h)
        self.bridge.flush()
        self.successResultOf(d3)
        self.assertEqual(statuses3, ["connecting to %s over I2P" % b32])
        dial_sessions = [n for n, _ in self.bridge.created if n == h.dial_nickname]
        self.assertEqual(dial_sessions, [h.dial_nickname])
        self.assertEqual(h.sessions_created, 1)
        self.assertEqual(self.bridge.created[-1][1]["inbound.length"], "0")
        self.assertEqual(self.bridge.created[-1][1]["SIGNATURE_TYPE"], "EdDSA_SHA512_Ed25519")
        # The b32 lookup is cached: one NAMING LOOKUP for three streams.
        self.assertEqual(self.bridge.verbs().count("NAMING LOOKUP"), 1)
        self.assertEqual(len(accepted), 3)

    def test_lost_session_reopened(self) -> None:
        self.open_listener()
        h = self.handler()
        d, _ = self.dial(h)
        self.bridge.flush()
        self.successResultOf(d)
        self.bridge.drop_session(h.dial_nickname)
        d, statuses = self.dial(h)
        self.bridge.flush()
        self.successResultOf(d)
        self.assertEqual(statuses[0], "opening SAM session (can take ~20 s)")
        self.assertEqual(h.sessions_created, 2)

    def test_prepare(self) -> None:
        self.open_listener()
        h = self.handler()
        d = h.prepare()
        self.bridge.flush()
        self.assertIsNone(self.successResultOf(d))
        d, statuses = self.dial(h)
        self.bridge.flush()
        self.successResultOf(d)
        self.assertEqual(h.sessions_created, 1)
        self.assertNotIn("opening SAM session (can take ~20 s)", statuses)

    def test_peer_unreachable(self) -> None:
        """STREAM CONNECT refused: the error carries RESULT and MESSAGE."""
        b32, accepted, port = self.open_listener()
        self.bridge.refuse["STREAM CONNECT"] = ("CANT_REACH_PEER", "no route")
        h = self.handler()
        d, _ = self.dial(h)
        self.bridge.flush()
        f = self.failureResultOf(d, i2p.SAMRefused)
        self.assertEqual((f.value.result, f.value.message), ("CANT_REACH_PEER", "no route"))
        self.assertIn("RESULT=CANT_REACH_PEER MESSAGE=no route", str(f.value))
        self.assertIn("STREAM CONNECT to %s" % b32, str(f.value))
        self.assertIn("running and listening on I2P", str(f.value))
        self.assertEqual(accepted, [])

    def test_unknown_address(self) -> None:
        self.open_listener()
        h = self.handler()
        d, _ = self.dial(h, "i2p:" + B32)
        self.bridge.flush()
        f = self.failureResultOf(d, i2p.SAMRefused)
        self.assertEqual(f.value.result, "KEY_NOT_FOUND")
        self.assertIn("NAMING LOOKUP of " + B32, str(f.value))

    def test_sam_not_answering(self) -> None:
        self.bridge.down = True
        h = self.handler()
        d, _ = self.dial(h, "i2p:" + B32)
        f = self.failureResultOf(d, i2p.SAMUnreachable)
        self.assertIn("no SAM bridge answering at tcp:127.0.0.1:7656 (connection refused)", str(f.value))
        self.assertIn("'enabled = true'", str(f.value))
        self.assertIn("[sam]", str(f.value))
        # Once the bridge is back, the same handler works.
        self.bridge.down = False
        self.open_listener()
        d, _ = self.dial(h)
        self.bridge.flush()
        self.successResultOf(d)

    def test_sam_silent(self) -> None:
        """Something that accepts the connection but never answers HELLO."""
        self.bridge.hello = None
        h = self.handler()
        d, _ = self.dial(h, "i2p:" + B32)
        self.bridge.flush()
        self.assertNoResult(d)
        self.bridge.advance(i2p.HELLO_TIMEOUT)
        f = self.failureResultOf(d, i2p.SAMUnreachable)
        self.assertIn("did not answer HELLO within 30 s", str(f.value))
        self.assertEqual(self.bridge.open_sockets(), [])

    def test_old_sam(self) -> None:
        self.bridge.hello = "HELLO REPLY RESULT=NOVERSION"
        h = self.handler()
        d, _ = self.dial(h, "i2p:" + B32)
        self.bridge.flush()
        f = self.failureResultOf(d, i2p.SAMRefused)
        self.assertIn("needs SAM 3.1 or newer", str(f.value))

    def test_session_refused(self) -> None:
        self.bridge.refuse["SESSION CREATE"] = ("I2P_ERROR", "Invalid option inbound.length")
        h = self.handler()
        d, _ = self.dial(h, "i2p:" + B32)
        self.bridge.flush()
        f = self.failureResultOf(d, i2p.SAMRefused)
        self.assertEqual(f.value.command, "SESSION CREATE")
        self.assertIn("RESULT=I2P_ERROR MESSAGE=Invalid option inbound.length", str(f.value))
        self.assertEqual(self.bridge.open_sockets(), [])

    def test_cancel_while_session_opens(self) -> None:
        """A cancelled dial leaves the session opening for the next one."""
        self.open_listener()
        self.bridge.session_delay = 20
        h = self.handler()
        d, _ = self.dial(h)
        self.bridge.flush()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.bridge.advance(20)
        d, statuses = self.dial(h)
        self.bridge.flush()
        self.successResultOf(d)
        self.assertEqual(h.sessions_created, 1)

    def test_cancel_during_stream_connect(self) -> None:
        self.open_listener()
        h = self.handler()
        self.successResultOf(self._prepared(h))
        d, _ = self.dial(h)
        # Not flushed: the STREAM CONNECT socket is waiting for HELLO's reply.
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.bridge.flush()
        self.assertEqual(len(self.bridge.open_sockets()), 1 + 2 + 1)  # listener control + accepts + dial session

    def _prepared(self, h):
        d = h.prepare()
        self.bridge.flush()
        return d

    def test_stop(self) -> None:
        self.open_listener()
        h = i2p.sam_endpoint(self.bridge.endpoint, reactor=self.clock)
        self.successResultOf(self._prepared(h))
        before = len(self.bridge.open_sockets())
        d = h.stop()
        self.bridge.flush()
        self.successResultOf(d)
        self.assertEqual(len(self.bridge.open_sockets()), before - 1)
        d, _ = self.dial(h)
        f = self.failureResultOf(d, i2p.I2PError)
        self.assertIn("was stopped", str(f.value))

    def test_service_of_tub(self) -> None:
        """As a service of the Tub, the handler closes its session when the Tub stops."""
        self.open_listener()
        h = i2p.sam_endpoint(self.bridge.endpoint, reactor=self.clock)
        tub = Tub()
        h.setServiceParent(tub)
        self.successResultOf(self._prepared(h))
        self.assertIn(h.dial_nickname, self.bridge.sessions)
        tub.startService()
        d = tub.stopService()
        self.bridge.flush()
        self.assertNotIn(h.dial_nickname, self.bridge.sessions)
        self.assertTrue(h._stopped)
        return d  # the Tub's own shutdown runs on the global reactor
