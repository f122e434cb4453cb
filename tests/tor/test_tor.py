"""
foolscap_sidetls.tor without a tor: argument checking, descriptions, hint
parsing, status reports and error messages, against an in-memory tor
control port (L{FakeTor}) reached through a L{MemoryReactorClock}.

The real thing is exercised by tests/integration/test_tor.py.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from typing import Any, Optional

from zope.interface import implementer
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError, ProcessTerminated
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from foolscap.api import Tub
from foolscap.connections import tor as foolscap_tor
from foolscap.ipb import InvalidHintError

import foolscap_sidetls
from foolscap_sidetls import Limits, tor
from foolscap_sidetls._process import OWN_GROUP_CODE
from foolscap_sidetls._endpoints import DialerEndpoint, ListenerEndpoint

#: A valid v3 onion address (torproject.org's): hints with a mistyped one are refused.
ONION = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
SERVICE_ID = "b" * 56
KEY = "ED25519-V3:" + "A" * 86 + "=="  # 64 bytes of base64
ENABLE = (
    "Is tor running with a control port? Put 'ControlPort 9051' and "
    "'CookieAuthentication 1' in /etc/tor/torrc and restart tor, or let "
    "foolscap_sidetls.tor.launch() start a tor of its own"
)


# -- an in-memory tor control port ---------------------------------------------


@implementer(ITransport)
class _End:
    """One end of an in-memory, synchronous byte pipe."""

    disconnecting = False

    def __init__(self, host: IPv4Address, peer_address: IPv4Address) -> None:
        self.protocol: Any = None
        self.peer: Optional["_End"] = None
        self.connected = True
        self._host = host
        self._peer_address = peer_address

    def write(self, data: bytes) -> None:
        if self.connected:
            assert self.peer is not None
            self.peer.protocol.dataReceived(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if not self.connected:
            return
        assert self.peer is not None
        self.connected = self.peer.connected = False
        self.disconnecting = True
        for end in (self, self.peer):
            end.protocol.connectionLost(Failure(ConnectionDone()))

    abortConnection = loseConnection

    def getPeer(self) -> IPv4Address:
        return self._peer_address

    def getHost(self) -> IPv4Address:
        return self._host


class _ControlServer(LineOnlyReceiver):
    def __init__(self, tor: "FakeTor") -> None:
        self.tor = tor

    def connectionLost(self, reason: Failure = None) -> None:
        if self in self.tor.connections:
            self.tor.connections.remove(self)

    def reply(self, *lines: str) -> None:
        for line in lines[:-1]:
            self.sendLine(("250-" + line).encode())
        self.sendLine(("250 " + lines[-1]).encode())

    def lineReceived(self, line: bytes) -> None:
        text = line.decode()
        self.tor.commands.append(text)
        verb, _, rest = text.partition(" ")
        answers = {
            "signal/names": "signal/names=RELOAD SHUTDOWN",
            "version": "version=0.4.9.11",
            "events/names": "events/names=STATUS_CLIENT HS_DESC",
            "net/listeners/socks": "net/listeners/socks=" + self.tor.socks,
            "status/bootstrap-phase": "status/bootstrap-phase=" + self.tor.bootstrap,
        }
        if verb == "PROTOCOLINFO":
            self.reply(
                "PROTOCOLINFO 1",
                "AUTH METHODS=%s" % self.tor.auth_methods,
                'VERSION Tor="0.4.9.11"',
                "OK",
            )
        elif verb == "GETINFO" and rest in answers:
            self.reply(answers[rest], "OK")
        elif verb == "ADD_ONION":
            if self.tor.add_onion_error:
                self.sendLine(self.tor.add_onion_error.encode())
            elif rest.startswith("NEW:"):
                self.reply("ServiceID=" + SERVICE_ID, "PrivateKey=" + KEY, "OK")
            else:
                self.reply("ServiceID=" + SERVICE_ID, "OK")
        elif verb in (
            "AUTHENTICATE",
            "USEFEATURE",
            "SETEVENTS",
            "TAKEOWNERSHIP",
            "DEL_ONION",
            "QUIT",
        ):
            self.reply("OK")
        else:
            self.sendLine(b'510 Unrecognized command "' + verb.encode() + b'"')

    def event(self, text: str) -> None:
        self.sendLine(("650 " + text).encode())


class FakeTor:
    """
    Answers what foolscap_sidetls.tor asks a tor's control port, records the
    commands, and lets a test send events.  Connects the pending TCP
    connections of a L{MemoryReactorClock} to itself.
    """

    def __init__(self, reactor: MemoryReactorClock, port: int = 9051) -> None:
        self.reactor = reactor
        self.port = port
        self.commands: list[str] = []
        self.connections: list[_ControlServer] = []
        self.socks = '"127.0.0.1:9050"'
        self.bootstrap = 'NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"'
        self.auth_methods = "NULL"
        self.add_onion_error: Optional[str] = None
        self._accepted = 0

    def endpoint(self) -> TCP4ClientEndpoint:
        return TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port)

    def pending(self) -> list[Any]:
        return [c for c in self.reactor.tcpClients if c[1] == self.port][self._accepted :]

    def accept(self) -> _ControlServer:
        """Connect the oldest pending connection to the control port."""
        host, port, factory = self.pending()[0][:3]
        self._accepted += 1
        client_end = _End(IPv4Address("TCP", "127.0.0.1", 40000), IPv4Address("TCP", host, port))
        server_end = _End(IPv4Address("TCP", host, port), IPv4Address("TCP", "127.0.0.1", 40000))
        client_end.peer, server_end.peer = server_end, client_end
        server = _ControlServer(self)
        server_end.protocol = server
        self.connections.append(server)
        client = factory.buildProtocol(client_end.getPeer())
        client_end.protocol = client
        server.makeConnection(server_end)
        client.makeConnection(client_end)
        return server

    def refuse(self) -> None:
        """Fail the oldest pending connection to the control port."""
        factory = self.pending()[0][2]
        self._accepted += 1
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))

    def event(self, text: str) -> None:
        for server in self.connections:
            server.event(text)


def socks_connections(reactor: MemoryReactorClock, port: int = 9050) -> list[Any]:
    return [c for c in reactor.tcpClients if c[1] == port]


class Statuses(list):
    def __call__(self, status: str) -> None:
        self.append(status)


def scratch(case: Any) -> str:
    """A fresh directory, removed after the test (trial's mktemp writes into the cwd under pytest)."""
    path = tempfile.mkdtemp(prefix="sidetls-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def makeTub() -> Tub:
    tub = Tub()
    tub.startService()
    return tub


# -- argument checking ----------------------------------------------------------


class Arguments(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.control = TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9051)

    def assertMessage(
        self, exception: type, message: str, f: Any, *args: Any, **kwargs: Any
    ) -> None:
        e = self.assertRaises(exception, f, *args, **kwargs)
        self.assertEqual(str(e), message)

    def test_socks_endpoint_needs_an_endpoint(self) -> None:
        self.assertMessage(
            TypeError,
            "foolscap_sidetls.tor.socks_endpoint() expects an IStreamClientEndpoint, such as "
            "clientFromString(reactor, 'tcp:127.0.0.1:9050'), got 'tcp:127.0.0.1:9050' (str)",
            tor.socks_endpoint,
            "tcp:127.0.0.1:9050",
        )

    def test_control_endpoint_needs_an_endpoint(self) -> None:
        self.assertMessage(
            TypeError,
            "foolscap_sidetls.tor.control_endpoint() expects an IStreamClientEndpoint, such as "
            "clientFromString(reactor, 'tcp:127.0.0.1:9051'), got 9051 (int)",
            tor.control_endpoint,
            9051,
        )

    def test_control_endpoint_maker_needs_a_callable(self) -> None:
        self.assertMessage(
            TypeError,
            "foolscap_sidetls.tor.control_endpoint_maker() expects a callable returning an "
            "IStreamClientEndpoint (or a Deferred firing with one), got None (NoneType)",
            tor.control_endpoint_maker,
            None,
        )

    def test_launch_arguments(self) -> None:
        self.assertMessage(
            TypeError,
            "launch() expects data_directory to be a path (str) or None, got 5 (int)",
            tor.launch,
            data_directory=5,
        )
        self.assertMessage(
            TypeError,
            "launch() expects tor_binary to be a path (str) or None, got b'tor' (bytes)",
            tor.launch,
            tor_binary=b"tor",
        )
        self.assertMessage(
            TypeError,
            "launch() expects extra_config to be a dict of torrc options, such as "
            "{'SocksPort': '9055'}, got ['SocksPort 9055'] (list)",
            tor.launch,
            extra_config=["SocksPort 9055"],
        )

    def test_extra_config_contents(self) -> None:
        binary = sys.executable
        self.assertMessage(
            ValueError,
            "extra_config may not set 'ControlPort': launch() sets it itself (use "
            "data_directory= for the DataDirectory)",
            tor.launch,
            tor_binary=binary,
            extra_config={"controlport": "9051"},
        )
        self.assertMessage(
            ValueError,
            "extra_config key 'Socks Port' is not a torrc option name",
            tor.launch,
            tor_binary=binary,
            extra_config={"Socks Port": "1"},
        )
        self.assertMessage(
            ValueError,
            "extra_config['ExitRelay'] contains a line break: '0\\nControlPort 1'",
            tor.launch,
            tor_binary=binary,
            extra_config={"ExitRelay": "0\nControlPort 1"},
        )
        self.assertMessage(
            TypeError,
            "extra_config['ExitRelay'] must be a str, an int or a list of those, got True (bool)",
            tor.launch,
            tor_binary=binary,
            extra_config={"ExitRelay": True},
        )
        self.assertMessage(
            ValueError,
            "extra_config['DirAuthority'] is an empty list",
            tor.launch,
            tor_binary=binary,
            extra_config={"DirAuthority": []},
        )

    def test_limits(self) -> None:
        """
        Every handler maker, and listen(), checks the sidetls limits where
        they are given, naming itself, before anything is contacted.
        """
        socks = TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9050)
        makers = [
            ("socks_endpoint", lambda **kw: tor.socks_endpoint(socks, **kw)),
            ("default_socks", tor.default_socks),
            ("control_endpoint", lambda **kw: tor.control_endpoint(self.control, **kw)),
            ("control_endpoint_maker", lambda **kw: tor.control_endpoint_maker(lambda r: self.control, **kw)),
            ("listen", lambda **kw: tor.listen(Tub(), self.control, reactor=self.reactor, **kw)),
        ]
        for name, make in makers:
            for kwargs, error, words in [
                ({"handshake_timeout": 0}, ValueError, "handshake_timeout must be more than 0 seconds (None: no limit), got 0"),
                ({"negotiation_timeout": -5}, ValueError, "negotiation_timeout must be more than 0"),
                ({"close_timeout": "10"}, TypeError, "close_timeout must be a number of seconds or None, got '10' (str)"),
            ]:
                e = self.assertRaises(error, make, **kwargs)
                self.assertIn("foolscap_sidetls.tor.%s(): %s" % (name, words), str(e))
        e = self.assertRaises(
            ValueError, tor.listen, Tub(), self.control, reactor=self.reactor, max_negotiating=0
        )
        self.assertIn(
            "foolscap_sidetls.tor.listen(): max_negotiating must be at least 1 (None: no limit), got 0",
            str(e),
        )
        # launch() checks them before it looks for a tor executable.
        e = self.assertRaises(ValueError, tor.launch, tor_binary="/nonexistent/tor", handshake_timeout=0)
        self.assertIn("foolscap_sidetls.tor.launch(): handshake_timeout must be more than 0", str(e))
        self.assertEqual(self.reactor.tcpClients, [])

    def test_listen_needs_a_tub(self) -> None:
        self.assertMessage(
            TypeError,
            "foolscap_sidetls.tor.listen() expects a foolscap.api.Tub, got 'tub' (str)",
            tor.listen,
            "tub",
            self.control,
        )

    def test_listen_needs_a_control_port(self) -> None:
        tub = Tub()
        self.assertMessage(
            TypeError,
            "foolscap_sidetls.tor.listen() needs tor's control port to publish an onion "
            "service, but sidetls+tor (SOCKS 127.0.0.1:9050) only knows a SOCKS port; pass "
            "control_endpoint(...), launch(...) or an endpoint to the control port",
            tor.listen,
            tub,
            tor.socks_endpoint(TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9050)),
        )
        self.assertMessage(
            TypeError,
            "foolscap_sidetls.tor.listen() expects tor to be a handler from "
            "control_endpoint(...) or launch(...), or an IStreamClientEndpoint to tor's "
            "control port, got 'tcp:127.0.0.1:9051' (str)",
            tor.listen,
            tub,
            "tcp:127.0.0.1:9051",
        )

    def test_listen_ports(self) -> None:
        tub = Tub()
        self.assertMessage(
            ValueError,
            "listen() expects local_port between 1 and 65535, got 0",
            tor.listen,
            tub,
            self.control,
            local_port=0,
        )
        self.assertMessage(
            TypeError,
            "listen() expects local_port to be an int port number or None, got '80' (str)",
            tor.listen,
            tub,
            self.control,
            local_port="80",
        )
        self.assertMessage(
            TypeError,
            "listen() expects external_port to be an int port number, got True (bool)",
            tor.listen,
            tub,
            self.control,
            external_port=True,
        )
        self.assertMessage(
            ValueError,
            "listen() expects external_port between 1 and 65535, got 65536",
            tor.listen,
            tub,
            self.control,
            external_port=65536,
        )
        self.assertMessage(
            ValueError,
            "listen() expects timeout to be a positive number of seconds or None, got 0",
            tor.listen,
            tub,
            self.control,
            timeout=0,
        )
        # Nothing was started by any of these.
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(tub.getListeners(), [])

    def test_listen_key_file(self) -> None:
        tub = Tub()
        path = os.path.join(scratch(self), "key")
        with open(path, "w") as f:
            f.write("RSA1024:abc\n")
        self.assertMessage(
            ValueError,
            "private_key_file %r does not hold a tor onion service key (expected one line "
            "'ED25519-V3:<base64>', as foolscap_sidetls.tor.listen() writes); move it away to "
            "create a new key (and a new .onion address)" % (path,),
            tor.listen,
            tub,
            self.control,
            private_key_file=path,
        )
        missing = os.path.join(path + ".d", "key")
        self.assertMessage(
            ValueError,
            "private_key_file %r: directory %r does not exist" % (missing, path + ".d"),
            tor.listen,
            tub,
            self.control,
            private_key_file=missing,
        )
        self.assertMessage(
            TypeError,
            "listen() expects private_key_file to be a path (str) or None, got 42 (int)",
            tor.listen,
            tub,
            self.control,
            private_key_file=42,
        )


class TorExecutable(SynchronousTestCase):
    def test_given_binary_missing(self) -> None:
        e = self.assertRaises(tor.TorNotFound, tor.launch, tor_binary="/nonexistent/tor")
        self.assertEqual(
            str(e),
            "tor_binary '/nonexistent/tor' does not exist; install the Debian/Ubuntu "
            "package 'tor' (apt-get install tor) or pass the path of a tor executable",
        )

    def test_given_binary_not_executable(self) -> None:
        directory = scratch(self)
        e = self.assertRaises(tor.TorNotFound, tor.launch, tor_binary=directory)
        self.assertEqual(str(e), "tor_binary %r is not an executable file" % (directory,))

    def test_not_found_anywhere(self) -> None:
        empty = scratch(self)
        self.patch(tor._launch, "_search_path", lambda: empty)
        self.patch(tor, "TOR_SEARCH_DIRS", (empty,))
        e = self.assertRaises(tor.TorNotFound, tor.launch)
        self.assertEqual(
            str(e),
            "tor executable not found on PATH or in %s; install the Debian/Ubuntu package "
            "'tor' (apt-get install tor), or pass tor_binary='/path/to/tor'" % (empty,),
        )
        self.assertIsInstance(e, tor.TorError)

    def test_found_outside_path(self) -> None:
        """Debian's tor is in /usr/sbin, which ordinary users do not have on PATH."""
        empty, sbin = scratch(self), scratch(self)
        binary = os.path.join(sbin, "tor")
        with open(binary, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(binary, 0o755)
        self.patch(tor._launch, "_search_path", lambda: empty)
        self.patch(tor, "TOR_SEARCH_DIRS", (sbin,))
        self.assertEqual(tor.launch().describe(), "sidetls+tor (launched tor)")


# -- descriptions and hints -------------------------------------------------------


class Describe(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def test_descriptions(self) -> None:
        self.assertEqual(
            tor.socks_endpoint(TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9050)).describe(),
            "sidetls+tor (SOCKS 127.0.0.1:9050)",
        )
        self.assertEqual(
            tor.default_socks().describe(), "sidetls+tor (SOCKS 127.0.0.1:9050 or 127.0.0.1:9150)"
        )
        self.assertEqual(
            tor.control_endpoint(TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9051)).describe(),
            "sidetls+tor (control port 127.0.0.1:9051)",
        )
        self.assertEqual(
            tor.control_endpoint(UNIXClientEndpoint(self.reactor, "/run/tor/control")).describe(),
            "sidetls+tor (control port unix:/run/tor/control)",
        )

        def find_tor(reactor: Any) -> Any:
            return None

        self.assertEqual(
            tor.control_endpoint_maker(find_tor).describe(),
            "sidetls+tor (control port from find_tor())",
        )
        self.assertEqual(
            tor.launch(tor_binary=sys.executable).describe(), "sidetls+tor (launched tor)"
        )

    def test_describe_after_connecting(self) -> None:
        fake = FakeTor(self.reactor)
        handler = tor.control_endpoint(fake.endpoint())
        ep, _ = self.successResultOf(
            handler.hint_to_endpoint("tor:%s:3457" % ONION, self.reactor, Statuses())
        )
        ep.connect(Factory.forProtocol(Protocol))
        fake.accept()
        self.assertEqual(
            handler.describe(), "sidetls+tor (control port 127.0.0.1:9051, SOCKS 127.0.0.1:9050)"
        )


class Hints(TestCase):
    """Hint parsing is Foolscap's: the same hints are accepted and refused."""

    HINTS = [
        "tor:%s:3457" % ONION,
        "tcp:example.org:443",
        "tor:example.org:80",
        "tcp:8.8.8.8:80",
        "tor:%s" % ONION,
        "tcp:10.0.0.1:80",
        "tcp:127.0.0.1:80",
        "tcp:[::1]:80",
        "tor:a b:80",
    ]

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.socks = TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9050)

    @staticmethod
    def outcome(d: Deferred) -> Deferred:
        def accepted(result: Any) -> str:
            return "accepted: " + result[1]

        def refused(f: Failure) -> str:
            f.trap(InvalidHintError)
            return "refused: " + str(f.value)

        return d.addCallbacks(accepted, refused)

    def test_same_as_foolscap(self) -> Deferred:
        """
        The same verdicts as Foolscap's own handler, with messages that say
        what is wrong (Foolscap's first words, then the details).

        Foolscap's own handler answers through its eventual-send queue, so
        this test lets the reactor turn; ours answers at once.
        """
        ours = tor.socks_endpoint(self.socks)
        mine = [
            self.successResultOf(
                self.outcome(ours.hint_to_endpoint(hint, self.reactor, Statuses()))
            )
            for hint in self.HINTS
        ]
        expected = " (expected 'tor:HOST:PORT' or 'tcp:HOST:PORT', HOST being a DNS name such as an .onion address, or a public IPv4 address)"
        unreachable = ": no Tor exit can reach a private, loopback or reserved address"
        for m in mine:
            if m.startswith("refused"):
                self.assertTrue(m.endswith(expected) or m.endswith(unreachable), m)
        self.assertEqual(
            [m.replace(expected, "").replace(unreachable, "") for m in mine],
            [
                "accepted: " + ONION,
                "accepted: example.org",
                "accepted: example.org",
                "accepted: 8.8.8.8",
                "refused: unrecognized TCP/Tor hint 'tor:%s': it is not TYPE:HOST:PORT" % ONION,
                "refused: ignoring non-Tor-able ipaddr 10.0.0.1 in hint 'tcp:10.0.0.1:80'",
                "refused: ignoring non-Tor-able ipaddr 127.0.0.1 in hint 'tcp:127.0.0.1:80'",
                "refused: unrecognized TCP/Tor hint 'tcp:[::1]:80': host '[::1]' is not a DNS "
                "name or IPv4 address (letters, digits, '-' and '.')",
                "refused: unrecognized TCP/Tor hint 'tor:a b:80': it contains ' ', which is not "
                "printable ASCII (hints have no spaces, control or non-ASCII characters)",
            ],
        )
        theirs = foolscap_tor.socks_endpoint(self.socks)
        d = defer.gatherResults(
            [
                self.outcome(theirs.hint_to_endpoint(hint, self.reactor, Statuses()))
                for hint in self.HINTS
            ]
        )

        def compare(foolscaps: list[str]) -> None:
            # Accepted alike; refused alike, ours starting with Foolscap's words.
            self.assertEqual(
                [m if m.startswith("accepted") else m[: len(f)] for m, f in zip(mine, foolscaps)],
                foolscaps,
            )

        return d.addCallback(compare)

    def test_endpoint_is_a_dialer(self) -> None:
        handler = tor.socks_endpoint(self.socks)
        ep, host = self.successResultOf(
            handler.hint_to_endpoint("tor:%s:3457" % ONION, self.reactor, Statuses())
        )
        self.assertIsInstance(ep, DialerEndpoint)
        self.assertEqual(host, ONION)
        # Nothing is contacted until Foolscap connects.
        self.assertEqual(self.reactor.tcpClients, [])

    def test_dialer_limits_as_one_value(self) -> None:
        """
        Every handler maker takes the dialers' limits as one Limits, which
        the handler and each dialer it makes carry as given; a Limits with
        a listener's max_negotiating, or limits given both ways, is refused
        naming the function.
        """
        limits = Limits(handshake_timeout=5, negotiation_timeout=6, close_timeout=7)
        handler = tor.socks_endpoint(self.socks, limits=limits)
        self.assertIs(handler.limits, limits)
        ep, _ = self.successResultOf(
            handler.hint_to_endpoint("tor:%s:3457" % ONION, self.reactor, Statuses())
        )
        self.assertIs(ep.limits, limits)
        self.assertIs(tor.default_socks(limits=limits).limits, limits)
        e = self.assertRaises(ValueError, tor.default_socks, limits=Limits(max_negotiating=3))
        self.assertIn(
            "foolscap_sidetls.tor.default_socks(): max_negotiating applies to listeners only", str(e)
        )
        e = self.assertRaises(TypeError, tor.socks_endpoint, self.socks, limits=limits, handshake_timeout=5)
        self.assertIn(
            "foolscap_sidetls.tor.socks_endpoint(): got both limits=%r and handshake_timeout=5" % (limits,),
            str(e),
        )

    def test_dialer_limits(self) -> None:
        """
        The handler's limits are those of every dialer it makes; it is
        role-based already, so handler() and install() leave it as it is
        (wrapping it again stacked a second wrapper whose negotiation
        timer never saw the TLS handshake).
        """
        handler = tor.socks_endpoint(self.socks, handshake_timeout=5, negotiation_timeout=6, close_timeout=7)
        ep, _ = self.successResultOf(
            handler.hint_to_endpoint("tor:%s:3457" % ONION, self.reactor, Statuses())
        )
        self.assertEqual(ep.limits, Limits(handshake_timeout=5, negotiation_timeout=6, close_timeout=7))
        self.assertEqual(handler.limits, ep.limits)
        self.assertIsInstance(ep._endpoint, tor._TorClient)
        self.assertIs(foolscap_sidetls.handler(handler), handler)
        tub = Tub()
        tub.addConnectionHintHandler("tor", handler)
        foolscap_sidetls.install(tub)
        self.assertIs(tub._connectionHandlers["tor"], handler)

    def test_bad_hint_does_not_touch_tor(self) -> None:
        fake = FakeTor(self.reactor)
        handler = tor.control_endpoint(fake.endpoint())
        f = self.failureResultOf(
            handler.hint_to_endpoint("tor:nope", self.reactor, Statuses()), InvalidHintError
        )
        self.assertEqual(
            str(f.value),
            "unrecognized TCP/Tor hint 'tor:nope': it is not TYPE:HOST:PORT (expected "
            "'tor:HOST:PORT' or 'tcp:HOST:PORT', HOST being a DNS name such as an .onion "
            "address, or a public IPv4 address)",
        )
        self.assertEqual(self.reactor.tcpClients, [])


# -- dialing ----------------------------------------------------------------------


class Dialing(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.fake = FakeTor(self.reactor)
        self.statuses = Statuses()

    def dial(self, handler: Any, hint: str = "tor:%s:3457" % ONION) -> Deferred:
        ep, _ = self.successResultOf(handler.hint_to_endpoint(hint, self.reactor, self.statuses))
        return ep.connect(Factory.forProtocol(Protocol))

    def test_one_control_connection_shared_and_statuses(self) -> None:
        self.fake.bootstrap = 'NOTICE BOOTSTRAP PROGRESS=50 TAG=loading_descriptors SUMMARY="Loading relay descriptors"'
        handler = tor.control_endpoint(self.fake.endpoint())
        first = self.dial(handler)
        second_statuses = Statuses()
        ep, _ = self.successResultOf(
            handler.hint_to_endpoint("tcp:example.org:80", self.reactor, second_statuses)
        )
        second = ep.connect(Factory.forProtocol(Protocol))
        self.assertEqual(len(self.fake.pending()), 1)
        self.fake.accept()
        self.assertNoResult(first)
        self.fake.event(
            'STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=75 TAG=enough_dirinfo SUMMARY="Loaded enough directory info to build circuits"'
        )
        self.fake.event(
            'STATUS_CLIENT WARN BOOTSTRAP PROGRESS=75 TAG=enough_dirinfo SUMMARY="Loaded enough '
            'directory info to build circuits" WARNING="Connection refused" REASON=CONNECTREFUSED '
            "COUNT=1 RECOMMENDATION=ignore"
        )
        self.fake.event(
            'STATUS_CLIENT WARN BOOTSTRAP PROGRESS=75 TAG=enough_dirinfo SUMMARY="Loaded enough '
            'directory info to build circuits" WARNING="Connection refused" REASON=CONNECTREFUSED '
            "COUNT=2 RECOMMENDATION=ignore"
        )
        self.fake.event('STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"')
        self.assertEqual(
            self.statuses,
            [
                "connecting to tor control port 127.0.0.1:9051",
                "waiting for tor bootstrap (50%: Loading relay descriptors)",
                "waiting for tor bootstrap (75%: Loaded enough directory info to build circuits)",
                "waiting for tor bootstrap (75%: Loaded enough directory info to build circuits; "
                "last problem: Connection refused)",
                "connecting to %s:3457 through tor (SOCKS 127.0.0.1:9050)" % ONION,
            ],
        )
        self.assertEqual(
            second_statuses,
            [
                "connecting to tor control port 127.0.0.1:9051",
                "waiting for tor bootstrap (50%: Loading relay descriptors)",
                "waiting for tor bootstrap (75%: Loaded enough directory info to build circuits)",
                "waiting for tor bootstrap (75%: Loaded enough directory info to build circuits; "
                "last problem: Connection refused)",
                "connecting to example.org:80 through tor (SOCKS 127.0.0.1:9050)",
            ],
        )
        self.assertEqual(len(socks_connections(self.reactor)), 2)
        self.assertEqual(len(self.fake.connections), 1)
        self.assertNoResult(second)
        # A third dial reuses the ready connection at once.
        self.dial(handler)
        self.assertEqual(len(self.fake.pending()), 0)
        self.assertEqual(len(socks_connections(self.reactor)), 3)

    def test_control_port_refused(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint())
        d = self.dial(handler)
        self.fake.refuse()
        f = self.failureResultOf(d, tor.TorControlError)
        self.assertEqual(
            str(f.value),
            "could not connect to tor's control port at 127.0.0.1:9051 (connection refused). "
            + ENABLE,
        )
        # Nothing half-started: the next dial tries again from scratch.
        d = self.dial(handler)
        self.fake.accept()
        self.assertNoResult(d)
        self.assertEqual(len(socks_connections(self.reactor)), 1)

    def test_control_port_silent(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint())
        d = self.dial(handler)
        self.reactor.advance(tor.CONTROL_TIMEOUT)
        f = self.failureResultOf(d, tor.TorControlError)
        self.assertEqual(
            str(f.value),
            "could not connect to tor's control port at 127.0.0.1:9051 within 30 s. " + ENABLE,
        )

    def test_authentication_rejected(self) -> None:
        self.fake.auth_methods = "HASHEDPASSWORD"
        handler = tor.control_endpoint(self.fake.endpoint())
        d = self.dial(handler)
        server = self.fake.accept()
        f = self.failureResultOf(d, tor.TorControlError)
        self.assertEqual(
            str(f.value),
            "could not authenticate to tor's control port at 127.0.0.1:9051 (The Tor I "
            "connected to doesn't support SAFECOOKIE nor COOKIE authentication (or we can't "
            "read the cookie files) and I have no password_function specified.). "
            "foolscap-sidetls authenticates with tor's cookie: set 'CookieAuthentication 1' "
            "in torrc and let this user read the cookie file (on Debian/Ubuntu: add the user "
            "to the group 'debian-tor', then log in again)",
        )
        # and the connection it opened is closed
        self.assertFalse(server.transport.connected)

    def test_no_socks_port(self) -> None:
        self.fake.socks = ""
        handler = tor.control_endpoint(self.fake.endpoint())
        d = self.dial(handler)
        self.fake.accept()
        f = self.failureResultOf(d, tor.TorError)
        self.assertEqual(
            str(f.value),
            "tor's control port at 127.0.0.1:9051 has no SOCKS port (its SocksPort is 0); "
            "enable one ('SocksPort 9050' in torrc) to dial through it",
        )

    def test_reconnects_after_losing_control_connection(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint())
        self.dial(handler)
        server = self.fake.accept()
        server.transport.loseConnection()
        self.dial(handler)
        self.assertEqual(len(self.fake.pending()), 1)

    def test_socks_port_refused(self) -> None:
        handler = tor.socks_endpoint(TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9050))
        d = self.dial(handler)
        _, _, factory, _, _ = socks_connections(self.reactor)[0]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        f = self.failureResultOf(d, tor.TorError)
        self.assertEqual(
            str(f.value),
            "could not reach tor's SOCKS port at 127.0.0.1:9050 (connection refused); is tor running?",
        )
        self.assertEqual(self.statuses, [])

    def test_default_socks_tries_both_ports(self) -> None:
        d = self.dial(tor.default_socks())
        for port in (9050, 9150):
            _, _, factory, _, _ = socks_connections(self.reactor, port)[0]
            factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        f = self.failureResultOf(d, tor.TorError)
        self.assertEqual(
            str(f.value),
            "could not reach tor's SOCKS port at 127.0.0.1:9050 or 127.0.0.1:9150 "
            "(connection refused); is tor running?",
        )

    def socks_reply(self, code: int) -> Failure:
        handler = tor.socks_endpoint(TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9050))
        d = self.dial(handler)
        _, _, factory, _, _ = socks_connections(self.reactor)[0]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9050))
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"\x05\x00")
        protocol.dataReceived(b"\x05" + bytes([code]) + b"\x00\x01" + b"\x00" * 6)
        return self.failureResultOf(d, tor.TorError)

    def test_onion_not_found(self) -> None:
        self.assertEqual(
            str(self.socks_reply(0xF0).value),
            "tor could not connect to %s:3457: tor found no descriptor for this onion "
            "service (is the service running and published?)" % ONION,
        )

    def test_other_socks_error(self) -> None:
        self.assertEqual(
            str(self.socks_reply(0x06).value),
            "tor could not connect to %s:3457: TTL expired" % ONION,
        )

    def test_cancel_closes_socks_connection(self) -> None:
        """Foolscap cancels losing attempts; the SOCKS connection must not linger."""
        handler = tor.socks_endpoint(TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9050))
        d = self.dial(handler)
        _, _, factory, _, _ = socks_connections(self.reactor)[0]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9050))
        transport = StringTransport()
        protocol.makeConnection(transport)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(transport.disconnecting)

    def test_cancelled_waiter_does_not_stop_the_others(self) -> None:
        self.fake.bootstrap = 'NOTICE BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay"'
        handler = tor.control_endpoint(self.fake.endpoint())
        first = self.dial(handler)
        second = self.dial(handler)
        self.fake.accept()
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        self.fake.event('STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"')
        self.assertNoResult(second)
        self.assertEqual(len(socks_connections(self.reactor)), 1)

    def test_control_endpoint_maker(self) -> None:
        calls: list[Any] = []

        def maker(reactor: Any, update_status: Any) -> Deferred:
            calls.append(reactor)
            update_status("asking where tor is")
            return defer.succeed(self.fake.endpoint())

        handler = tor.control_endpoint_maker(maker, takes_status=True)
        self.dial(handler)
        server = self.fake.accept()
        self.assertEqual(
            self.statuses[:3],
            [
                "making tor control endpoint",
                "asking where tor is",
                "connecting to tor control port 127.0.0.1:9051",
            ],
        )
        server.transport.loseConnection()
        self.dial(handler)
        self.fake.accept()
        self.assertEqual(calls, [self.reactor])  # the endpoint it made is kept

    def test_maker_returning_junk(self) -> None:
        handler = tor.control_endpoint_maker(lambda reactor: "tcp:127.0.0.1:9051")
        f = self.failureResultOf(self.dial(handler), TypeError)
        self.assertIn(
            "returned 'tcp:127.0.0.1:9051' (str), not an IStreamClientEndpoint", str(f.value)
        )

    def test_stop(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint())
        self.dial(handler)
        server = self.fake.accept()
        self.successResultOf(handler.stop())
        self.assertFalse(server.transport.connected)
        f = self.failureResultOf(self.dial(handler), tor.TorError)
        self.assertEqual(str(f.value), "tor control port 127.0.0.1:9051 was stopped")

    def test_stopped_with_its_parent_service(self) -> None:
        """
        Like I2PHandler, a TorHandler is a service: the Tub (here any
        MultiService) it is attached to stops it, and an application's own
        stop() afterwards finishes too, closing nothing twice.
        """
        handler = tor.control_endpoint(self.fake.endpoint())
        parent = MultiService()
        handler.setServiceParent(parent)
        parent.startService()
        self.assertTrue(handler.running)
        self.dial(handler)
        server = self.fake.accept()
        self.assertEqual(self.successResultOf(parent.stopService()), [(True, None)])
        self.assertFalse(handler.running)
        self.assertFalse(server.transport.connected)
        self.assertIsNone(self.successResultOf(handler.stop()))
        f = self.failureResultOf(self.dial(handler), tor.TorError)
        self.assertEqual(str(f.value), "tor control port 127.0.0.1:9051 was stopped")


# -- launching ----------------------------------------------------------------------


@implementer(ITransport)
class _ProcessTransport:
    pid = 4242

    def __init__(self) -> None:
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)

    def closeStdin(self) -> None:
        pass

    def loseConnection(self) -> None:
        pass


class ProcessReactor(MemoryReactorClock):
    """
    Records each spawn: C{spawned} holds what runs in the end -- the daemon
    a L{foolscap_sidetls._process} wrapper execs, not the wrapping Python
    -- and C{raw_spawned} the C{(executable, args)} spawnProcess was given.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, ...]] = []
        self.raw_spawned: list[tuple[str, list[str]]] = []

    def spawnProcess(
        self,
        protocol: Any,
        executable: str,
        args: list[str],
        env: Any = None,
        path: Any = None,
        **kw: Any,
    ) -> Any:
        transport = _ProcessTransport()
        self.raw_spawned.append((executable, list(args)))
        if list(args[:3]) == [sys.executable, "-c", OWN_GROUP_CODE]:
            executable, args = args[3], [args[3], *args[4:]]
        self.spawned.append((protocol, executable, args, env, path, transport))
        protocol.makeConnection(transport)
        return transport


class Launching(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ProcessReactor()
        self.binary = sys.executable

    def test_tor_exits_at_once(self) -> None:
        handler = tor.launch(
            tor_binary=self.binary, extra_config={"DirAuthority": ["a 1", "b 2"], "ExitRelay": 0}
        )
        statuses = Statuses()
        ep, _ = self.successResultOf(
            handler.hint_to_endpoint("tor:%s:3457" % ONION, self.reactor, statuses)
        )
        d = ep.connect(Factory.forProtocol(Protocol))
        protocol, executable, args, env, path, transport = self.reactor.spawned[0]
        self.assertEqual(executable, self.binary)
        self.assertEqual(args[1:4], ["--defaults-torrc", os.devnull, "-f"])
        # Started through Python's setpgid + execv (a process group of its own).
        self.assertEqual(
            self.reactor.raw_spawned[0],
            (sys.executable, [sys.executable, "-c", OWN_GROUP_CODE, self.binary, *args[1:]]),
        )
        with open(args[4]) as f:
            torrc = f.read().splitlines()
        self.assertEqual(
            [
                line
                for line in torrc
                if not line.startswith(("DataDirectory", "ControlPortWriteToFile"))
            ],
            [
                "ControlPort 127.0.0.1:auto",
                "CookieAuthentication 1",
                "__OwningControllerProcess %d" % os.getpid(),
                "SocksPort 127.0.0.1:auto ExtendedErrors",
                "Log notice stdout",
                "DirAuthority a 1",
                "DirAuthority b 2",
                "ExitRelay 0",
            ],
        )
        self.assertTrue(os.path.isdir(path))
        protocol.outReceived(b"[warn] Failed to parse/validate config: Unknown option 'Bogus'.\n")
        protocol.processEnded(Failure(ProcessTerminated(exitCode=1)))
        self.reactor.advance(0.05)
        f = self.failureResultOf(d, tor.TorError)
        self.assertEqual(
            str(f.value),
            "tor (%s) exited with status 1 before opening its control port; its output ends:\n"
            "[warn] Failed to parse/validate config: Unknown option 'Bogus'." % (self.binary,),
        )
        self.assertEqual(statuses, ["launching tor"])
        # the temporary DataDirectory is gone
        self.assertFalse(os.path.exists(path))

    def test_tor_never_opens_control_port(self) -> None:
        data = os.path.join(scratch(self), "tor-data")
        handler = tor.launch(data_directory=data, tor_binary=self.binary)
        ep, _ = self.successResultOf(
            handler.hint_to_endpoint("tor:%s:3457" % ONION, self.reactor, Statuses())
        )
        d = ep.connect(Factory.forProtocol(Protocol))
        protocol, _, _, _, path, transport = self.reactor.spawned[0]
        self.assertEqual(path, os.path.abspath(data))
        self.assertEqual(stat.S_IMODE(os.stat(data).st_mode), 0o700)
        self.reactor.pump([0.5] * int(tor.LAUNCH_TIMEOUT / 0.5 + 2))
        f = self.failureResultOf(d, tor.TorError)
        self.assertEqual(
            str(f.value),
            "tor (%s) did not open its control port within 60 s; its output ends:\n(no output)"
            % (self.binary,),
        )
        self.assertEqual(transport.signals, ["TERM"])
        protocol.processEnded(Failure(ProcessTerminated(signal=15)))
        # a DataDirectory we were given is kept
        self.assertTrue(os.path.isdir(data))


class OwnProcessGroup(TestCase):
    """
    A launched tor is in a process group of its own, so a terminal's Ctrl-C
    (SIGINT to our group) does not kill it before we stop it cleanly.  A
    real process: a stand-in "tor" that writes its pid and process group
    and exits.
    """

    timeout = 30

    def test_launched_tor_in_own_group(self) -> Deferred:
        from twisted.internet import reactor

        data = scratch(self)
        binary = os.path.join(data, "fake-tor")
        with open(binary, "w") as f:
            f.write(
                "#!%s\nimport os\nwith open('pgid', 'w') as f:\n"
                "    f.write('%%d %%d' %% (os.getpid(), os.getpgid(0)))\nraise SystemExit(3)\n"
                % (sys.executable,)
            )
        os.chmod(binary, 0o755)
        handler = tor.launch(data_directory=data, tor_binary=binary)
        ep, _ = self.successResultOf(handler.hint_to_endpoint("tor:%s:3457" % ONION, reactor, Statuses()))
        d = ep.connect(Factory.forProtocol(Protocol))
        launcher = handler._launcher
        assert launcher is not None and launcher.process is not None
        spawned = launcher.process
        pid = spawned.pid

        def check(e: tor.TorError) -> None:
            self.assertIn("exited with status 3 before opening its control port", str(e))
            with open(os.path.join(data, "pgid")) as f:
                child_pid, child_group = map(int, f.read().split())
            # The pid Twisted knows is tor's own (execv, not a child of the wrapper) ...
            self.assertEqual(child_pid, pid)
            # ... and it leads a process group that is not ours.
            self.assertEqual(child_group, child_pid)
            self.assertNotEqual(child_group, os.getpgrp())

        return self.assertFailure(d, tor.TorError).addCallback(check)


# -- listening ----------------------------------------------------------------------


class Listening(TestCase):
    """
    Uses a real (unstarted-network) Tub; its stopService needs the global
    reactor for one turn, so these tests return Deferreds.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.fake = FakeTor(self.reactor)
        self.tub = makeTub()

    def tearDown(self) -> Any:
        if self.tub.running:
            return self.tub.stopService()
        return None

    def listen(self, tor_arg: Any = None, **kwargs: Any) -> Deferred:
        kwargs.setdefault("local_port", 41000)
        return tor.listen(
            self.tub,
            tor_arg if tor_arg is not None else self.fake.endpoint(),
            reactor=self.reactor,
            **kwargs,
        )

    def publish(self) -> None:
        for hsdir in ("$" + "E" * 40, "$" + "F" * 40):
            self.fake.event(
                "HS_DESC UPLOAD %s UNKNOWN %s %s HSDIR_INDEX=00" % (SERVICE_ID, hsdir, "d" * 43)
            )
        self.fake.event("HS_DESC UPLOADED %s UNKNOWN $%s" % (SERVICE_ID, "E" * 40))
        self.fake.event(
            "HS_DESC FAILED %s UNKNOWN $%s REASON=UPLOAD_REJECTED" % (SERVICE_ID, "F" * 40)
        )

    def test_waits_for_every_upload(self) -> None:
        d = self.listen()
        self.fake.accept()
        other = "c" * 56
        upload = "HS_DESC UPLOAD %s UNKNOWN %s %s HSDIR_INDEX=00"
        self.fake.event(upload % (SERVICE_ID, "$" + "E" * 40, "d" * 43))
        self.fake.event(upload % (SERVICE_ID, "$" + "F" * 40, "d" * 43))
        self.fake.event(upload % (other, "$" + "F" * 40, "d" * 43))
        self.fake.event("HS_DESC UPLOADED %s UNKNOWN $%s" % (SERVICE_ID, "E" * 40))
        self.assertNoResult(d)
        self.fake.event("HS_DESC UPLOADED %s UNKNOWN $%s" % (SERVICE_ID, "F" * 40))
        self.assertEqual(self.successResultOf(d), "tor:%s.onion:3457" % SERVICE_ID)

    def test_every_upload_failed(self) -> None:
        d = self.listen(timeout=60)
        self.fake.accept()
        self.fake.event("HS_DESC UPLOAD %s UNKNOWN $%s %s" % (SERVICE_ID, "E" * 40, "d" * 43))
        self.fake.event(
            "HS_DESC FAILED %s UNKNOWN $%s REASON=UPLOAD_REJECTED" % (SERVICE_ID, "E" * 40)
        )
        self.assertNoResult(d)  # tor tries again later
        self.reactor.advance(60)
        self.failureResultOf(d, tor.TorError)

    def test_publish_and_remove(self) -> None:
        d = self.listen()
        self.fake.accept()
        self.assertIn("ADD_ONION NEW:ED25519-V3 Port=3457,127.0.0.1:41000", self.fake.commands)
        self.assertEqual(self.reactor.tcpServers[0][0], 41000)
        self.assertEqual(self.reactor.tcpServers[0][3], "127.0.0.1")
        self.assertNoResult(d)
        self.publish()
        self.assertEqual(self.successResultOf(d), "tor:%s.onion:3457" % SERVICE_ID)
        self.assertEqual(len(self.tub.getListeners()), 1)
        # The defaults of foolscap_sidetls.listener().
        ep = self.tub.getListeners()[0]._ep
        self.assertIsInstance(ep, ListenerEndpoint)
        self.assertEqual(
            (ep.limits.handshake_timeout, ep.limits.negotiation_timeout, ep.limits.close_timeout,
             ep.limits.max_negotiating),
            (foolscap_sidetls.DEFAULT_HANDSHAKE_TIMEOUT, None, foolscap_sidetls.DEFAULT_CLOSE_TIMEOUT, None),
        )
        stopped = self.tub.stopService()
        self.assertIn("DEL_ONION %s" % SERVICE_ID, self.fake.commands)
        # listen() opened this control connection, so it closes it
        self.assertEqual(self.fake.connections, [])
        return stopped

    def test_listener_limits(self) -> None:
        """listen() gives its limits to the Tub's sidetls listener."""
        d = self.listen(handshake_timeout=15, negotiation_timeout=20, close_timeout=5, max_negotiating=64)
        self.fake.accept()
        self.publish()
        self.successResultOf(d)
        ep = self.tub.getListeners()[0]._ep
        self.assertIsInstance(ep, ListenerEndpoint)
        self.assertEqual(
            ep.limits, Limits(handshake_timeout=15, negotiation_timeout=20, close_timeout=5, max_negotiating=64)
        )
        return self.tub.stopService()

    def test_listener_limits_as_one_value(self) -> None:
        """
        listen() takes its limits as one Limits too, handed to the Tub's
        listener as it is; given both ways, it refuses before contacting tor.
        """
        limits = Limits(handshake_timeout=15, negotiation_timeout=20, close_timeout=5, max_negotiating=64)
        d = self.listen(limits=limits)
        self.fake.accept()
        self.publish()
        self.successResultOf(d)
        self.assertIs(self.tub.getListeners()[0]._ep.limits, limits)
        e = self.assertRaises(TypeError, self.listen, limits=limits, close_timeout=9)
        self.assertIn(
            "foolscap_sidetls.tor.listen(): got both limits=%r and close_timeout=9" % (limits,), str(e)
        )
        return self.tub.stopService()

    def test_key_file_written_then_reused(self) -> None:
        path = os.path.join(scratch(self), "onion.key")
        d = self.listen(private_key_file=path, external_port=80)
        self.fake.accept()
        self.publish()
        self.assertEqual(self.successResultOf(d), "tor:%s.onion:80" % SERVICE_ID)
        with open(path) as f:
            self.assertEqual(f.read(), KEY + "\n")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

        d = self.listen(private_key_file=path, local_port=41001)
        self.fake.accept()
        self.publish()
        self.successResultOf(d)
        self.assertIn(
            "ADD_ONION %s Port=3457,127.0.0.1:41001 Flags=DiscardPK" % KEY, self.fake.commands
        )

    def test_shared_handler_keeps_its_connection(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint())
        d = self.listen(handler)
        self.fake.accept()
        self.publish()
        self.successResultOf(d)
        stopped = self.tub.stopService()
        self.assertIn("DEL_ONION %s" % SERVICE_ID, self.fake.commands)
        self.assertEqual(len(self.fake.connections), 1)
        self.addCleanup(handler.stop)
        return stopped

    def test_refused_onion_leaves_nothing(self) -> None:
        self.fake.add_onion_error = "550 Onion address collision"
        d = self.listen()
        self.fake.accept()
        f = self.failureResultOf(d, tor.TorError)
        self.assertEqual(
            str(f.value),
            "tor refused to add the onion service: 550 Onion address collision (is this "
            "private_key_file already in use by another listener on the same tor?)",
        )
        self.assertEqual(self.tub.getListeners(), [])
        self.assertEqual(self.fake.connections, [])

    def test_timeout_leaves_nothing(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint())
        self.addCleanup(handler.stop)
        d = self.listen(handler, timeout=5)
        self.fake.accept()
        self.reactor.advance(5)
        f = self.failureResultOf(d, tor.TorError)
        self.assertEqual(
            str(f.value),
            "the onion service was not ready within 5 s; it was waiting for tor to publish "
            "the onion service descriptor",
        )
        self.assertEqual(self.tub.getListeners(), [])
        self.assertIn("DEL_ONION %s" % SERVICE_ID, self.fake.commands)

    def test_control_port_refused(self) -> None:
        d = self.listen()
        self.fake.refuse()
        f = self.failureResultOf(d, tor.TorControlError)
        self.assertTrue(
            str(f.value).startswith("could not connect to tor's control port at 127.0.0.1:9051")
        )
        self.assertEqual(self.tub.getListeners(), [])
