"""
Unit tests for foolscap_sidetls.i2p, without an I2P router: a fake SAM
bridge speaking enough of SAM v3.1 (HELLO, DEST GENERATE, SESSION CREATE,
NAMING LOOKUP, STREAM CONNECT/ACCEPT) over iosim connections, on a
MemoryReactorClock.  The real thing is in tests/integration/test_i2p.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import sys
import tempfile

from zope.interface import implementer
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.test import iosim
from twisted.trial.unittest import TestCase

from foolscap.api import Tub
from foolscap.ipb import InvalidHintError

import foolscap_sidetls
from foolscap_sidetls import i2p
from foolscap_sidetls._endpoints import DialerEndpoint, ListenerEndpoint

B32 = "a" * 52 + ".b32.i2p"


# -- a fake SAM bridge -----------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw, altchars=b"-~").decode("ascii")


def make_keypair() -> tuple[str, str]:
    """(public destination, private key) in I2P base64, null certificate."""
    public = os.urandom(384) + b"\x00\x00\x00"
    private = public + os.urandom(256) + os.urandom(20)
    return _b64(public), _b64(private)


def b32_of(public_b64: str) -> str:
    raw = base64.b64decode(public_b64, altchars=b"-~")
    return base64.b32encode(hashlib.sha256(raw).digest()).decode().lower().rstrip("=") + ".b32.i2p"


def _fields(words: list[str]) -> dict[str, str]:
    return dict(w.split("=", 1) for w in words if "=" in w)


class FakeSAM(LineReceiver):
    """The bridge's end of one SAM socket."""

    delimiter = b"\n"

    def __init__(self, bridge: "FakeSAMBridge") -> None:
        self.bridge = bridge
        self.greeted = False
        self.partner: FakeSAM | None = None
        self.session: str | None = None

    def send(self, line: str) -> None:
        self.sendLine(line.encode("utf-8"))

    def lineReceived(self, raw: bytes) -> None:
        line = raw.decode("utf-8")
        bridge = self.bridge
        bridge.commands.append(line)
        words = line.split(" ")
        verb = " ".join(words[:2])
        fields = _fields(words[2:])
        if not self.greeted:
            if bridge.hello is None:
                return
            self.greeted = True
            self.send(bridge.hello)
            return
        if verb in bridge.refuse:
            result, message = bridge.refuse[verb]
            topic = {
                "SESSION CREATE": "SESSION STATUS",
                "STREAM CONNECT": "STREAM STATUS",
                "STREAM ACCEPT": "STREAM STATUS",
                "NAMING LOOKUP": "NAMING REPLY",
                "DEST GENERATE": "DEST REPLY",
            }[verb]
            self.send('%s RESULT=%s MESSAGE="%s"' % (topic, result, message))
            return
        getattr(self, "do_" + verb.replace(" ", "_").lower())(fields)

    def do_dest_generate(self, fields: dict[str, str]) -> None:
        public, private = make_keypair()
        self.send("DEST REPLY PUB=%s PRIV=%s" % (public, private))

    def do_session_create(self, fields: dict[str, str]) -> None:
        nickname = fields["ID"]
        if nickname in self.bridge.sessions:
            self.send("SESSION STATUS RESULT=DUPLICATED_ID")
            return
        private = fields["DESTINATION"]
        if private == "TRANSIENT":
            _, private = make_keypair()
        public = _b64(base64.b64decode(private, altchars=b"-~")[:387])
        self.session = nickname
        self.bridge.sessions[nickname] = (self, public)
        self.bridge.created.append((nickname, fields))

        def answer() -> None:
            if self.bridge.sessions.get(nickname, (None,))[0] is self:
                self.send("SESSION STATUS RESULT=OK DESTINATION=%s" % (private,))

        if self.bridge.session_delay:
            self.bridge.clock.callLater(self.bridge.session_delay, answer)
        else:
            answer()

    def do_naming_lookup(self, fields: dict[str, str]) -> None:
        name = fields["NAME"]
        for _, public in self.bridge.sessions.values():
            if b32_of(public) == name.lower():
                self.send("NAMING REPLY RESULT=OK NAME=%s VALUE=%s" % (name, public))
                return
        self.send("NAMING REPLY RESULT=KEY_NOT_FOUND NAME=%s" % (name,))

    def do_stream_connect(self, fields: dict[str, str]) -> None:
        nickname = fields["ID"]
        if nickname not in self.bridge.sessions:
            self.send("STREAM STATUS RESULT=INVALID_ID")
            return
        target = fields["DESTINATION"]
        for name, (_, public) in self.bridge.sessions.items():
            if public == target and self.bridge.accepting.get(name):
                acceptor = self.bridge.accepting[name].pop(0)
                self.bridge.connect_fields.append(fields)
                self.send("STREAM STATUS RESULT=OK")
                own = self.bridge.sessions[nickname][1]
                acceptor.send("%s FROM_PORT=0 TO_PORT=%s" % (own, fields.get("TO_PORT", "0")))
                self.partner, acceptor.partner = acceptor, self
                self.setRawMode()
                acceptor.setRawMode()
                return
        self.send('STREAM STATUS RESULT=CANT_REACH_PEER MESSAGE="no route"')

    def do_stream_accept(self, fields: dict[str, str]) -> None:
        nickname = fields["ID"]
        if nickname not in self.bridge.sessions:
            self.send("STREAM STATUS RESULT=INVALID_ID")
            return
        self.bridge.accepting.setdefault(nickname, []).append(self)
        self.send("STREAM STATUS RESULT=OK")

    def rawDataReceived(self, data: bytes) -> None:
        assert self.partner is not None
        self.partner.transport.write(data)

    def connectionLost(self, reason: object = None) -> None:
        bridge = self.bridge
        if self.session is not None and bridge.sessions.get(self.session, (None,))[0] is self:
            del bridge.sessions[self.session]
            for acceptor in bridge.accepting.pop(self.session, []):
                acceptor.transport.loseConnection()
        for waiting in bridge.accepting.values():
            if self in waiting:
                waiting.remove(self)
        if self.partner is not None:
            self.partner.transport.loseConnection()


@implementer(IStreamClientEndpoint)
class FakeSAMEndpoint:
    def __init__(self, bridge: "FakeSAMBridge") -> None:
        self.bridge = bridge
        self._host = "127.0.0.1"
        self._port = 7656

    def connect(self, factory):
        bridge = self.bridge
        if bridge.down:
            return defer.fail(error.ConnectionRefusedError())
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7656))
        server = FakeSAM(bridge)
        bridge.servers.append(server)
        pump = iosim.connect(
            server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client),
            greet=False, clock=bridge.clock,
        )
        bridge.pumps.append(pump)
        return defer.succeed(client)


class FakeSAMBridge:
    def __init__(self) -> None:
        self.clock = MemoryReactorClock()
        self.pumps: list[iosim.IOPump] = []
        self.servers: list[FakeSAM] = []
        self.commands: list[str] = []
        self.sessions: dict[str, tuple[FakeSAM, str]] = {}
        self.created: list[tuple[str, dict[str, str]]] = []
        self.accepting: dict[str, list[FakeSAM]] = {}
        self.connect_fields: list[dict[str, str]] = []
        self.refuse: dict[str, tuple[str, str]] = {}
        self.hello: str | None = "HELLO REPLY RESULT=OK VERSION=3.1"
        self.session_delay = 0.0
        self.down = False
        self.endpoint = FakeSAMEndpoint(self)

    def flush(self) -> None:
        for _ in range(200):
            moved = False
            for pump in list(self.pumps):
                if pump.flush(advanceClock=False):
                    moved = True
            if not moved:
                return
        raise AssertionError("the fake SAM bridge never went quiet")

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.flush()

    def open_sockets(self) -> list[FakeSAM]:
        return [s for s in self.servers if not s.transport.disconnected]

    def verbs(self) -> list[str]:
        return [" ".join(c.split(" ")[:2]) for c in self.commands]

    def drop_session(self, nickname: str) -> None:
        """The router forgets a session: its control socket closes."""
        self.sessions[nickname][0].transport.loseConnection()
        self.flush()


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost = reason


class TempTestCase(TestCase):
    def mktemp(self) -> str:
        """A fresh path in a temporary directory (trial's mktemp writes under the cwd)."""
        directory = tempfile.mkdtemp(prefix="sidetls-i2p-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        return os.path.join(directory, "temp")


class BridgeTestCase(TempTestCase):
    def setUp(self) -> None:
        self.bridge = FakeSAMBridge()
        self.clock = self.bridge.clock

    def handler(self, **kwargs):
        h = i2p.sam_endpoint(self.bridge.endpoint, reactor=self.clock, **kwargs)
        self.addCleanup(self.stop, h)
        return h

    def stop(self, h) -> None:
        h.stop()
        self.bridge.flush()

    def dial(self, h, hint=None, statuses=None):
        """Connect a Recorder through C{h}; returns (Deferred, statuses)."""
        statuses = [] if statuses is None else statuses
        ep, host = h.hint_to_endpoint(hint or "i2p:" + self.listening_b32, self.clock, statuses.append)
        return ep.connect(Factory.forProtocol(Recorder)), statuses

    def open_listener(self, nickname="srv", port=None):
        """A listening session on the fake bridge, through sidetls.listener; returns (b32, factory, port)."""
        public, private = make_keypair()
        bridge = i2p._Bridge(self.bridge.endpoint, "fake SAM", self.clock)
        session = i2p._Session(bridge, "listen", nickname, private, {})
        endpoint = foolscap_sidetls.listener(i2p._SAMServerEndpoint(session, port), clock=self.clock)
        factory = Factory.forProtocol(Recorder)
        accepted: list[Recorder] = []
        original = factory.buildProtocol

        def build(addr):
            p = original(addr)
            p.addr = addr
            accepted.append(p)
            return p

        factory.buildProtocol = build  # type: ignore[method-assign]
        d = endpoint.listen(factory)
        self.bridge.flush()
        listening = self.successResultOf(d)
        self.addCleanup(self._stop_listening, listening)
        self.listening_b32 = b32_of(public)
        return b32_of(public), accepted, listening

    def _stop_listening(self, port) -> None:
        port.stopListening()
        self.bridge.flush()


# -- hints ---------------------------------------------------------------------------


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
        self.assertIs(tub._connectionHandlers["i2p"], h)
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
        self.assertEqual((ep._handshakeTimeout, ep._negotiationTimeout, ep._closeTimeout), (5, 6, 7))

    def test_parse_reply(self) -> None:
        self.assertEqual(
            i2p._parse_reply('SESSION STATUS RESULT=I2P_ERROR MESSAGE="bad \\"thing\\" here"'),
            ("SESSION STATUS", {"RESULT": "I2P_ERROR", "MESSAGE": 'bad "thing" here'}),
        )
        self.assertEqual(i2p._parse_reply("HELLO REPLY RESULT=OK VERSION=3.1"),
                         ("HELLO REPLY", {"RESULT": "OK", "VERSION": "3.1"}))


# -- one SAM socket -------------------------------------------------------------------------


class SAMConnectionTests(TestCase):
    def connected(self):
        clock = MemoryReactorClock()
        connection = i2p._SAMConnection("tcp:127.0.0.1:7656", clock)
        transport = StringTransport()
        connection.makeConnection(transport)
        self.assertEqual(transport.value(), b"HELLO VERSION MIN=3.1 MAX=3.3\n")
        transport.clear()
        connection.dataReceived(b"HELLO REPLY RESULT=OK VERSION=3.1\n")
        self.assertIs(self.successResultOf(connection.hello), connection)
        self.assertEqual(connection.version, "3.1")
        return connection, transport, clock

    def test_stream_bytes_in_the_same_read(self) -> None:
        """Bytes that follow the peer line in one read reach the application, in order."""
        connection, transport, clock = self.connected()
        d = connection.request("STREAM ACCEPT ID=a SILENT=false", "STREAM ACCEPT", "STREAM STATUS", 30)
        connection.dataReceived(b"STREAM STATUS RESULT=OK\n")
        self.successResultOf(d)
        line = connection.next_line()
        public, _ = make_keypair()
        connection.dataReceived(public.encode() + b" FROM_PORT=0 TO_PORT=0\nfirst, ")
        self.assertEqual(self.successResultOf(line), public + " FROM_PORT=0 TO_PORT=0")
        connection.dataReceived(b"then more")
        app = Recorder()
        here = i2p.I2PAddress(B32)
        connection.attach(app, here, here)
        connection.dataReceived(b", and after")
        self.assertEqual(app.received, b"first, then more, and after")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_ping_and_split_lines(self) -> None:
        connection, transport, clock = self.connected()
        d = connection.request("NAMING LOOKUP NAME=ME", "NAMING LOOKUP", "NAMING REPLY", 30)
        connection.dataReceived(b"PING 123\nNAMING RE")
        self.assertEqual(transport.value(), b"NAMING LOOKUP NAME=ME\nPONG 123\n")
        self.assertNoResult(d)
        connection.dataReceived(b"PLY RESULT=OK NAME=ME VALUE=abc\r\n")
        self.assertEqual(self.successResultOf(d)["VALUE"], "abc")

    def test_lost_while_waiting(self) -> None:
        connection, transport, clock = self.connected()
        d = connection.request("SESSION CREATE STYLE=STREAM ID=x DESTINATION=TRANSIENT", "SESSION CREATE", "SESSION STATUS", 300)
        connection.connectionLost(None)
        f = self.failureResultOf(d, i2p.SAMConnectionLost)
        self.assertIn("closed the connection while we waited for the answer to SESSION CREATE", str(f.value))
        self.assertIn("did the I2P router stop?", str(f.value))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        connection, transport, clock = self.connected()
        d = connection.request("SESSION CREATE STYLE=STREAM ID=x DESTINATION=TRANSIENT", "SESSION CREATE", "SESSION STATUS", 300)
        clock.advance(300)
        f = self.failureResultOf(d, i2p.SAMTimeout)
        self.assertIn("did not answer SESSION CREATE within 300 s", str(f.value))
        self.assertTrue(transport.disconnecting)


# -- dialing -----------------------------------------------------------------------------


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


# -- listening -------------------------------------------------------------------------


class ListenTests(BridgeTestCase):
    def listen(self, tub, key, **kwargs):
        d = i2p.listen(tub, self.bridge.endpoint, key, reactor=self.clock, **kwargs)
        self.bridge.flush()
        return d

    def cleanup_tub(self, tub) -> None:
        """A Tub that never started: stop what listen() attached to it."""
        for service in list(tub):
            if isinstance(service, i2p.I2PHandler):
                service.stop()
        self.bridge.flush()

    def test_key_file_created_then_reused(self) -> None:
        key = self.mktemp()
        tub = Tub()
        self.addCleanup(self.cleanup_tub, tub)
        hint = self.successResultOf(self.listen(tub, key))
        self.assertEqual(self.bridge.verbs().count("DEST GENERATE"), 1)
        self.assertEqual(hint, "i2p:" + i2p.address_of(key))
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        # The session was created with that key, not a transient one.
        with open(key) as f:
            self.assertEqual(self.bridge.created[-1][1]["DESTINATION"], f.read())
        self.assertEqual(len(tub.getListeners()), 1)
        self.cleanup_tub(tub)

        # A restart: same file, same address, no new key.
        tub2 = Tub()
        self.addCleanup(self.cleanup_tub, tub2)
        hint2 = self.successResultOf(self.listen(tub2, key, port=3457))
        self.assertEqual(hint2, hint + ":3457")
        self.assertEqual(self.bridge.verbs().count("DEST GENERATE"), 1)

    def test_listener_limits(self) -> None:
        """listen() gives its limits to the Tub's sidetls listener."""
        tub = Tub()
        self.addCleanup(self.cleanup_tub, tub)
        self.successResultOf(
            self.listen(
                tub,
                self.mktemp(),
                handshake_timeout=15,
                negotiation_timeout=20,
                close_timeout=5,
                max_negotiating=64,
            )
        )
        (listening,) = tub.getListeners()
        ep = listening._ep
        self.assertIsInstance(ep, ListenerEndpoint)
        self.assertEqual(
            (ep._handshakeTimeout, ep._negotiationTimeout, ep._closeTimeout, ep._maxNegotiating),
            (15, 20, 5, 64),
        )

    def test_txi2p_style_key_file(self) -> None:
        """A key file as SAM (and txi2p) write it: I2P base64, maybe a newline."""
        public, private = make_keypair()
        key = self.mktemp()
        with open(key, "w") as f:
            f.write(private + "\n")
        self.assertEqual(i2p.address_of(key), b32_of(public))
        tub = Tub()
        self.addCleanup(self.cleanup_tub, tub)
        self.assertEqual(self.successResultOf(self.listen(tub, key)), "i2p:" + b32_of(public))
        self.assertNotIn("DEST GENERATE", self.bridge.verbs())

    def test_bad_key_file(self) -> None:
        key = self.mktemp()
        with open(key, "w") as f:
            f.write("this is not a key")
        e = self.assertRaises(ValueError, i2p.listen, Tub(), self.bridge.endpoint, key)
        self.assertIn("does not hold an I2P private key", str(e))
        public, _ = make_keypair()
        with open(key, "w") as f:
            f.write(public)
        e = self.assertRaises(ValueError, i2p.address_of, key)
        self.assertIn("public destination, not a private key", str(e))
        e = self.assertRaises(ValueError, i2p.address_of, self.mktemp())
        self.assertIn("does not exist", str(e))

    def test_refused_leaves_nothing(self) -> None:
        """SESSION CREATE refused: RESULT and MESSAGE reach the caller; no listener, no socket."""
        self.bridge.refuse["SESSION CREATE"] = ("I2P_ERROR", "Invalid option")
        tub = Tub()
        key = self.mktemp()
        f = self.failureResultOf(self.listen(tub, key), i2p.SAMRefused)
        self.assertEqual((f.value.result, f.value.message), ("I2P_ERROR", "Invalid option"))
        self.assertIn("refused SESSION CREATE: RESULT=I2P_ERROR MESSAGE=Invalid option", str(f.value))
        self.assertEqual(tub.getListeners(), [])
        self.assertEqual(list(tub), [])
        self.assertEqual(self.bridge.open_sockets(), [])
        # The key it made is kept (the address), and the next try can use it.
        del self.bridge.refuse["SESSION CREATE"]
        self.addCleanup(self.cleanup_tub, tub)
        self.assertEqual(self.successResultOf(self.listen(tub, key)), "i2p:" + i2p.address_of(key))

    def test_accept_refused_leaves_nothing(self) -> None:
        """With the Tub running, listen() waits for a STREAM ACCEPT; refused, it undoes everything."""
        self.bridge.refuse["STREAM ACCEPT"] = ("I2P_ERROR", "no accepting today")
        tub = Tub()
        tub.startService()
        f = self.failureResultOf(self.listen(tub, self.mktemp()), i2p.SAMRefused)
        self.assertEqual(f.value.command, "STREAM ACCEPT")
        self.assertIn("MESSAGE=no accepting today", str(f.value))
        self.bridge.flush()
        self.assertEqual(tub.getListeners(), [])
        self.assertEqual(list(tub), [])
        self.assertEqual(self.bridge.open_sockets(), [])
        return tub.stopService()

    def test_sam_not_answering(self) -> None:
        self.bridge.down = True
        tub = Tub()
        f = self.failureResultOf(self.listen(tub, self.mktemp()), i2p.SAMUnreachable)
        self.assertIn("tcp:127.0.0.1:7656", str(f.value))
        self.assertEqual(tub.getListeners(), [])

    def test_one_session_per_key(self) -> None:
        key = self.mktemp()
        tub = Tub()
        self.addCleanup(self.cleanup_tub, tub)
        self.successResultOf(self.listen(tub, key))
        e = self.assertRaises(ValueError, i2p.listen, Tub(), self.bridge.endpoint, key, reactor=self.clock)
        self.assertIn("already listens on", str(e))

    def test_handler_attached_to_tub(self) -> None:
        """listen() with a handler: its sessions and the handler stop with the Tub."""
        h = i2p.sam_endpoint(self.bridge.endpoint, reactor=self.clock, options={"inbound.length": "1"})
        tub = Tub()
        d = i2p.listen(tub, h, self.mktemp())
        self.bridge.flush()
        self.successResultOf(d)
        self.assertIs(h.parent, tub)
        self.assertEqual(self.bridge.created[-1][1]["inbound.length"], "1")
        self.assertEqual(h.sessions_created, 1)
        tub.startService()
        self.bridge.flush()
        self.assertEqual(len(self.bridge.accepting[self.bridge.created[-1][0]]), 2)
        d = tub.stopService()
        self.bridge.flush()
        self.assertEqual(self.bridge.open_sockets(), [])
        self.assertEqual(self.bridge.sessions, {})
        self.assertTrue(h._stopped)
        return d


class ListeningPortTests(BridgeTestCase):
    def test_accepts_replenished(self) -> None:
        b32, accepted, port = self.open_listener()
        self.assertEqual(len(self.bridge.accepting["srv"]), 2)
        h = self.handler()
        for _ in range(3):
            d, _ = self.dial(h)
            self.bridge.flush()
            self.successResultOf(d)
        self.assertEqual(len(accepted), 3)
        self.assertEqual(len(self.bridge.accepting["srv"]), 2)

    def test_session_lost_and_reopened(self) -> None:
        """The router drops the session: the listener reopens it with the same key."""
        b32, accepted, port = self.open_listener()
        self.bridge.drop_session("srv")
        self.assertNotIn("srv", self.bridge.sessions)
        self.bridge.down = True
        self.bridge.advance(0.5)
        self.bridge.advance(1.0)
        self.assertNotIn("srv", self.bridge.sessions)
        self.bridge.down = False
        self.bridge.advance(2.0)
        self.assertIn("srv", self.bridge.sessions)
        self.assertEqual(b32_of(self.bridge.sessions["srv"][1]), b32)
        self.assertEqual(len(self.bridge.accepting["srv"]), 2)
        h = self.handler()
        d, _ = self.dial(h)
        self.bridge.flush()
        self.successResultOf(d)
        self.assertEqual(len(accepted), 1)

    def test_stop_listening(self) -> None:
        b32, accepted, port = self.open_listener()
        d = port.stopListening()
        self.bridge.flush()
        self.successResultOf(d)
        self.assertEqual(self.bridge.open_sockets(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


# -- an existing i2pd ----------------------------------------------------------------------


class LocalI2PTests(TempTestCase):
    def conf(self, text: str) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "i2pd.conf"), "w") as f:
            f.write(text)
        return directory

    def test_enabled(self) -> None:
        d = self.conf("log = file\n[http]\nport = 7070\n[sam]\nenabled = true\naddress = 127.0.0.1\nport = 17656 # mine\n")
        h = i2p.local_i2p(d, reactor=MemoryReactorClock())
        self.assertEqual(h.sam_where, "tcp:127.0.0.1:17656 (from %s/i2pd.conf)" % (d,))
        self.assertEqual((h.sam_endpoint._host, h.sam_endpoint._port), ("127.0.0.1", 17656))
        self.assertIn("SAM at tcp:127.0.0.1:17656", h.describe())

    def test_defaults_and_wildcards(self) -> None:
        h = i2p.local_i2p(self.conf("[sam]\nenabled = yes\n"), reactor=MemoryReactorClock())
        self.assertEqual((h.sam_endpoint._host, h.sam_endpoint._port), ("127.0.0.1", 7656))
        h = i2p.local_i2p(self.conf("[sam]\naddress = 0.0.0.0\nport = 7000\n"), reactor=MemoryReactorClock())
        self.assertEqual((h.sam_endpoint._host, h.sam_endpoint._port), ("127.0.0.1", 7000))
        h = i2p.local_i2p(self.conf("[sam]\naddress = ::\n"), reactor=MemoryReactorClock())
        self.assertEqual(h.sam_endpoint._host, "::1")

    def test_config_file_path(self) -> None:
        d = self.conf("[sam]\nenabled = true\n")
        h = i2p.local_i2p(os.path.join(d, "i2pd.conf"), reactor=MemoryReactorClock())
        self.assertEqual(h.sam_endpoint._port, 7656)

    def test_disabled(self) -> None:
        d = self.conf("[sam]\nenabled = false\n")
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, d)
        self.assertIn("disables the SAM bridge ([sam] enabled = false)", str(e))
        self.assertIn("set 'enabled = true'", str(e))
        self.assertIsInstance(e, ValueError)

    def test_missing_section(self) -> None:
        d = self.conf("ipv4 = true\n[http]\nenabled = true\n")
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, d)
        self.assertIn("has no [sam] section", str(e))
        self.assertIn("enabled = true", str(e))

    def test_bad_values(self) -> None:
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, self.conf("[sam]\nport = http\n"))
        self.assertIn("port = 'http' is not a port number", str(e))
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, self.conf("[sam]\nenabled = maybe\n"))
        self.assertIn("neither true nor false", str(e))
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, self.conf("[sam\nport = 1\n"))
        self.assertIn("cannot parse", str(e))

    def test_missing_file(self) -> None:
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, self.mktemp())
        self.assertIn("does not exist", str(e))
        self.assertRaises(TypeError, i2p.local_i2p, 7656)

    def test_search(self) -> None:
        first, second = self.mktemp(), self.conf("[sam]\nport = 7001\n")
        self.patch(i2p, "I2PD_CONFIG_DIRS", (first, second))
        h = i2p.local_i2p(reactor=MemoryReactorClock())
        self.assertEqual(h.sam_endpoint._port, 7001)
        self.patch(i2p, "I2PD_CONFIG_DIRS", (first,))
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p)
        self.assertIn("no i2pd.conf found (looked for %s/i2pd.conf)" % (first,), str(e))
        self.assertIn("'i2pd'", str(e))


# -- launching ------------------------------------------------------------------------------


class LaunchTests(TempTestCase):
    def test_not_found(self) -> None:
        e = self.assertRaises(i2p.I2PDNotFound, i2p.launch, "/nonexistent/i2pd")
        self.assertIn("install the Debian/Ubuntu package 'i2pd'", str(e))
        self.patch(i2p, "I2PD_SEARCH_DIRS", ())
        self.patch(os, "environ", {"PATH": self.mktemp()})
        e = self.assertRaises(i2p.I2PDNotFound, i2p.launch)
        self.assertIn("i2pd executable not found on PATH", str(e))
        self.assertIn("install the Debian/Ubuntu package 'i2pd'", str(e))
        e = self.assertRaises(i2p.I2PDNotFound, i2p.launch, "no-such-i2pd")
        self.assertIn("'no-such-i2pd' not found on PATH", str(e))

    def test_not_executable(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("")
        e = self.assertRaises(i2p.I2PDNotFound, i2p.launch, path)
        self.assertIn("not an executable file", str(e))

    def fake_i2pd(self, script: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + script)
        os.chmod(path, 0o755)
        return path

    def test_config_checked(self) -> None:
        exe = self.fake_i2pd("exit 0\n")
        self.assertRaises(TypeError, i2p.launch, exe, config=["netid=99"])
        self.assertRaises(TypeError, i2p.launch, exe, data_directory=3)
        e = self.assertRaises(ValueError, i2p.launch, exe, config={"sam.enabled": False})
        self.assertIn("must be true", str(e))
        e = self.assertRaises(ValueError, i2p.launch, exe, config={"datadir": "/tmp"})
        self.assertIn("data_directory argument", str(e))
        e = self.assertRaises(ValueError, i2p.launch, exe, config={"--netid": "99"})
        self.assertIn("without '--'", str(e))
        self.assertRaises(TypeError, i2p.launch, exe, config={"netid": 9.9})
        self.assertRaises(ValueError, i2p.launch, exe, config={"netid": "9\n[x]"})
        self.assertRaises(ValueError, i2p.launch, exe, config={"sam.port": "0x10"})

    def test_conf_text(self) -> None:
        text = i2p._i2pd_conf({"netid": "99", "sam.port": "1", "httpproxy.i2cp.leaseSetType": "1", "log": "file"})
        self.assertEqual(
            text,
            "# written by foolscap_sidetls.i2p.launch()\nnetid = 99\nlog = file\n\n"
            "[sam]\nport = 1\n\n[httpproxy]\ni2cp.leaseSetType = 1\n",
        )

    def test_sam_port_from_config(self) -> None:
        h = i2p.launch(self.fake_i2pd("exit 0\n"), config={"sam.port": 17001}, reactor=MemoryReactorClock())
        self.assertEqual(h.sam_where, "tcp:127.0.0.1:17001")
        self.assertIn("launched i2pd", h.describe())

    def test_exits_at_once(self) -> None:
        """An i2pd that dies before SAM answers: I2PDFailed with its output; nothing left."""
        exe = self.fake_i2pd("echo 'unrecognised option --bogus' >&2\nexit 3\n")
        datadir = self.mktemp()
        h = i2p.launch(exe, data_directory=datadir)
        statuses: list[str] = []
        ep, _ = h.hint_to_endpoint("i2p:" + B32, None, statuses.append)
        d = ep.connect(Factory.forProtocol(Recorder))

        def failed(f):
            f.trap(i2p.I2PDFailed)
            self.assertIn("exited with status 3", str(f.value))
            self.assertIn("unrecognised option --bogus", str(f.value))
            self.assertEqual(statuses, ["launching i2pd"])
            self.assertIsNone(h.launched_pid)
            with open(os.path.join(datadir, "i2pd.conf")) as conf:
                text = conf.read()
            self.assertIn("[sam]\nenabled = true\naddress = 127.0.0.1\nport = %d" % h._bridge.launcher.sam_port, text)
            self.assertIn("[http]\nenabled = false", text)
            return h.stop()

        d.addCallbacks(lambda _: self.fail("connected?"), failed)
        return d

    if not sys.platform.startswith("linux"):
        test_exits_at_once.skip = "needs /bin/sh"  # type: ignore[attr-defined]
