"""
A fake SAM bridge speaking enough of SAM v3.1 (HELLO, DEST GENERATE,
SESSION CREATE, NAMING LOOKUP, STREAM CONNECT/ACCEPT) over iosim
connections on a MemoryReactorClock, and the test cases built on it: the
support of the I2P unit tests (and of the CLI and configuration tests that
need a SAM bridge).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile

from zope.interface import implementer
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.basic import LineReceiver
from twisted.test import iosim
from twisted.trial.unittest import TestCase

import foolscap_sidetls
from foolscap_sidetls import i2p
from foolscap_sidetls.i2p.sam import SAMBridge, SAMServerEndpoint, SAMSession


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
        self.held = b""

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
            if public == target and self.bridge.queue_incoming:
                # i2pd keeps a stream that finds no acceptor for 10 s and
                # hands it to the next STREAM ACCEPT.
                self.bridge.connect_fields.append(fields)
                self.bridge.incoming.setdefault(name, []).append((self, fields))
                self.bridge.queued += 1
                self.send("STREAM STATUS RESULT=OK")
                self.setRawMode()
                return
        self.send('STREAM STATUS RESULT=CANT_REACH_PEER MESSAGE="no route"')

    def do_stream_accept(self, fields: dict[str, str]) -> None:
        nickname = fields["ID"]
        if nickname not in self.bridge.sessions:
            self.send("STREAM STATUS RESULT=INVALID_ID")
            return
        waiting = self.bridge.incoming.get(nickname)
        if waiting:
            # The status, the peer line and the bytes the dialer already
            # sent, in one write, as i2pd does for a waiting stream.
            dialer, dial_fields = waiting.pop(0)
            own = self.bridge.sessions[dial_fields["ID"]][1]
            peer_line = "%s FROM_PORT=0 TO_PORT=%s" % (own, dial_fields.get("TO_PORT", "0"))
            held, dialer.held = dialer.held, b""
            self.transport.write(b"STREAM STATUS RESULT=OK\n" + peer_line.encode("utf-8") + b"\n" + held)
            self.partner, dialer.partner = dialer, self
            self.setRawMode()
            return
        self.bridge.accepting.setdefault(nickname, []).append(self)
        self.send("STREAM STATUS RESULT=OK")

    def rawDataReceived(self, data: bytes) -> None:
        if self.partner is None:
            # a dialer waiting for an acceptor (queue_incoming)
            self.held += data
            return
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
        server = bridge.server_class(bridge)
        bridge.servers.append(server)
        pump = iosim.connect(
            server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client),
            greet=False, clock=bridge.clock,
        )
        bridge.pumps.append(pump)
        return defer.succeed(client)


class FakeSAMBridge:
    #: what answers each SAM socket (a subclass for a hostile bridge)
    server_class: type[FakeSAM] = FakeSAM

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
        #: with queue_incoming, a dial that finds no STREAM ACCEPT waits
        #: for the next one (incoming), as in i2pd, instead of failing.
        self.queue_incoming = False
        self.incoming: dict[str, list[tuple[FakeSAM, dict[str, str]]]] = {}
        self.queued = 0
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


def routed(bridge: FakeSAMBridge) -> MemoryReactorClock:
    """The fake bridge's clock, every TCP connection made through it going to the fake bridge."""
    reactor = bridge.clock

    def connectTCP(host: str, port: int, factory: object, *args: object, **kwargs: object) -> None:
        bridge.endpoint.connect(factory)

    reactor.connectTCP = connectTCP  # type: ignore[method-assign,assignment]
    return reactor


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
        bridge = SAMBridge(self.bridge.endpoint, "fake SAM", self.clock)
        session = SAMSession(bridge, "listen", nickname, private, {})
        endpoint = foolscap_sidetls.listener(SAMServerEndpoint(session, port), clock=self.clock)
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
