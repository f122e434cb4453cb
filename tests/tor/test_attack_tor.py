"""
foolscap_sidetls.tor under attack and under a tor that is down, on a fake
clock and in-memory control ports:

- a C{tor:} hint whose C{.onion} is 56 base32 characters but not a valid
  v3 address (wrong version byte, wrong checksum, a mistyped character) is
  refused with L{InvalidHintError} saying which, by every tor handler and
  in C{tub.location}; nothing is contacted;
- opening the control connection (or launching tor) again after failures
  backs off, doubling from L{tor.RETRY_INITIAL} to at most
  L{tor.RETRY_MAX}, and logs each failed attempt once -- one line per
  backoff step, not one per dial -- whichever way it failed (refused,
  authentication rejected, tor exiting at launch, a control connection
  that closes as soon as it opened).
"""

from __future__ import annotations

import base64
import hashlib
import sys
from typing import Any, Callable

from zope.interface import implementer
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError, ProcessTerminated
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from foolscap.ipb import InvalidHintError

from foolscap_sidetls import config, tor

from .test_tor import ENABLE, FakeTor, ProcessReactor, Statuses

#: torproject.org's v3 address: valid.
ONION = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"


def _address(public: bytes, version: int, checksum_version: int = -1) -> str:
    """A 56-character address for C{public}, with its checksum computed (here, not by the code under test)."""
    checked = bytes([version if checksum_version < 0 else checksum_version])
    checksum = hashlib.sha3_256(b".onion checksum" + public + checked).digest()[:2]
    return base64.b32encode(public + checksum + bytes([version])).decode().lower() + ".onion"


PUBLIC = base64.b32decode(ONION[:56].upper())[:32]
#: Version byte 4, with the checksum a version-4 address would have.
WRONG_VERSION = _address(PUBLIC, 4)
#: Version 3, but the checksum is that of version 4.
WRONG_CHECKSUM = _address(PUBLIC, 3, checksum_version=4)
#: One character of the valid address mistyped (the checksum catches it).
MISTYPED = ONION[:10] + ("b" if ONION[10] != "b" else "c") + ONION[11:]

ACCEPTED = (
    "an onion host must be a v3 onion address: 56 base32 characters (a-z, 2-7) before '.onion', "
    "ending in tor's checksum and the version byte 3 (expected 'tor:HOST:PORT' or 'tcp:HOST:PORT', HOST "
    "being a DNS name such as an .onion address, or a public IPv4 address)"
)


def refusal(hint: str, host: str, why: str) -> str:
    return "unrecognized TCP/Tor hint %r: host %r is not a valid v3 onion address: %s; %s" % (
        hint, host, why, ACCEPTED,
    )


class OnionAddresses(SynchronousTestCase):
    """Before: each bad address below was accepted and handed to tor's SOCKS port."""

    BAD = [
        (WRONG_VERSION, "its version byte is 4, not 3"),
        (WRONG_CHECKSUM, "its checksum does not match the rest (a mistyped address?)"),
        (MISTYPED, "its checksum does not match the rest (a mistyped address?)"),
        (ONION[:55] + ".onion", "it has 55 characters before '.onion', not 56"),
        ("a" * 56 + ".onion", "its version byte is 0, not 3"),
        (ONION[:20] + "1" + ONION[21:], "'1' is not a base32 character (a-z and 2-7)"),
    ]

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        socks = TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9050)
        control = TCP4ClientEndpoint(self.reactor, "127.0.0.1", 9051)
        self.handlers = [tor.socks_endpoint(socks), tor.default_socks(), tor.control_endpoint(control)]

    def test_bad_addresses_refused_by_every_handler(self) -> None:
        for host, why in self.BAD:
            for kind in ("tor", "tcp"):
                hint = "%s:%s:3457" % (kind, host)
                for handler in self.handlers:
                    f = self.failureResultOf(
                        handler.hint_to_endpoint(hint, self.reactor, Statuses()), InvalidHintError
                    )
                    self.assertEqual(str(f.value), refusal(hint, host, why))
        self.assertEqual(self.reactor.tcpClients, [])

    def test_valid_ones_accepted_subdomains_checked(self) -> None:
        """Upper case, a subdomain and a trailing dot are tor's too; a subdomain of a mistyped one is not."""
        for host in (ONION, ONION.upper()[:-6] + ".onion", "www." + ONION, ONION + "."):
            for handler in self.handlers:
                _, got = self.successResultOf(
                    handler.hint_to_endpoint("tor:%s:3457" % (host,), self.reactor, Statuses())
                )
                self.assertEqual(got, host)
        # A name that is not an onion is not an onion's business.
        _, got = self.successResultOf(self.handlers[0].hint_to_endpoint("tor:onion:1", self.reactor, Statuses()))
        self.assertEqual(got, "onion")
        hint = "tor:www.%s:80" % (MISTYPED,)
        f = self.failureResultOf(self.handlers[0].hint_to_endpoint(hint, self.reactor, Statuses()))
        self.assertEqual(
            str(f.value),
            refusal(hint, "www." + MISTYPED, "its checksum does not match the rest (a mistyped address?)"),
        )

    def test_location_refuses_them_too(self) -> None:
        """Announcing a mistyped onion would make every dialer refuse it: refused when the file is checked."""
        text = "[node]\ntub.port = tcp:3457:interface=127.0.0.1\ntub.location = tor:%s:3457\n"
        e = self.assertRaises(config.ConfigError, config.from_string, text % (WRONG_CHECKSUM,), source="node.cfg")
        self.assertEqual(
            str(e),
            "'node.cfg' [node] tub.location = 'tor:%s:3457': 'tor:%s:3457': host %r is not a valid v3 onion "
            "address: its checksum does not match the rest (a mistyped address?); expected a v3 onion address: "
            "56 base32 characters (a-z, 2-7) before '.onion', ending in tor's checksum and the version byte 3"
            % (WRONG_CHECKSUM, WRONG_CHECKSUM, WRONG_CHECKSUM),
        )
        c = config.from_string(text % (ONION,), source="node.cfg")
        self.assertEqual(c.location, ("tor:%s:3457" % (ONION,),))


# -- backing off -----------------------------------------------------------------------


@implementer(IStreamClientEndpoint)
class CountingRefusals:
    """A tor control port that is down: counts each connection attempt and its time, refuses it."""

    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor
        self.times: list[float] = []
        self._host = "127.0.0.1"
        self._port = 9051

    def connect(self, factory: Any) -> Deferred:
        self.times.append(self.reactor.seconds())
        return defer.fail(ConnectionRefusedError())


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


#: Attempt times for dials every second over 600 s, with the backoff:
#: at once, then 1, 2, 4, ... s after each failure, at most RETRY_MAX.
EXPECTED_GAPS = [1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0]


class Backoff(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        # One logger for the whole package: its observer sees every layer.
        self.patch(tor.log, "observer", self.events.append)
        self.failures: list[Failure] = []

    def logged(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def dial_every_second(
        self, reactor: MemoryReactorClock, handler: tor.TorHandler, seconds: int,
        each: Callable[[Deferred], None] = lambda d: None,
    ) -> None:
        """What a Tahoe-LAFS node with many servers does while tor is down: a dial every second."""
        for _ in range(seconds):
            ep, _ = self.successResultOf(
                handler.hint_to_endpoint("tor:%s:3457" % (ONION,), reactor, Statuses())
            )
            d = ep.connect(Factory.forProtocol(Protocol))
            each(d)
            d.addErrback(self.failures.append)
            reactor.advance(1)

    def test_control_port_down(self) -> None:
        """
        Before: 600 dials opened 600 control connections and logged nothing.
        Now: 16 attempts, the gaps doubling to 60 s, 16 log lines.
        """
        reactor = MemoryReactorClock()
        port = CountingRefusals(reactor)
        handler = tor.control_endpoint(port)
        self.dial_every_second(reactor, handler, 600)
        self.assertEqual(len(port.times), 16)
        self.assertEqual(gaps(port.times), EXPECTED_GAPS)
        self.assertEqual(max(gaps(port.times)), tor.RETRY_MAX)
        # Every dial failed, with tor's reason: the 16 attempts with it as
        # it is, the others at once with how long it still waits.
        self.assertEqual(len(self.failures), 600)
        refused = "could not connect to tor's control port at 127.0.0.1:9051 (connection refused). " + ENABLE
        self.assertTrue(all(f.check(tor.TorControlError) for f in self.failures))
        self.assertEqual(sum(str(f.value) == refused for f in self.failures), 16)
        self.assertEqual(
            str(self.failures[3].value),
            "tor control port 127.0.0.1:9051: not trying again for another 1.0 s after 3 failures in a row; "
            "the last: " + refused,
        )
        # One line per attempt, i.e. per backoff step.
        lines = self.logged()
        self.assertEqual(len(lines), 16)
        self.assertEqual(lines[0], "tor control port 127.0.0.1:9051: %s (trying again at the next use)" % (refused,))
        self.assertEqual(
            lines[-1],
            "tor control port 127.0.0.1:9051: %s (16 failures in a row; not trying again for 60 s)" % (refused,),
        )
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_many_dials_at_once_share_one_attempt(self) -> None:
        reactor = MemoryReactorClock()
        fake = FakeTor(reactor)
        handler = tor.control_endpoint(fake.endpoint())
        dials = []
        for _ in range(100):
            ep, _ = self.successResultOf(handler.hint_to_endpoint("tor:%s:3457" % (ONION,), reactor, Statuses()))
            dials.append(ep.connect(Factory.forProtocol(Protocol)))
        self.assertEqual(len(fake.pending()), 1)
        fake.refuse()
        for d in dials:
            self.failureResultOf(d, tor.TorControlError)
        self.assertEqual(len(self.logged()), 1)

    def test_back_after_the_outage(self) -> None:
        """The first attempt after the wait reaches the revived tor; a lasting session starts afresh."""
        reactor = MemoryReactorClock()
        fake = FakeTor(reactor)
        handler = tor.control_endpoint(fake.endpoint())

        def refuse(d: Deferred) -> None:
            if fake.pending():
                fake.refuse()

        self.dial_every_second(reactor, handler, 20, refuse)  # attempts at 0, 1, 2, 4, 8, 16
        self.assertEqual(fake._accepted, 6)
        # tor is back at t=20; the next attempt is due at t=32.
        statuses = Statuses()
        ep, _ = self.successResultOf(handler.hint_to_endpoint("tor:%s:3457" % (ONION,), reactor, statuses))
        early = ep.connect(Factory.forProtocol(Protocol))
        self.failureResultOf(early, tor.TorControlError)
        self.assertEqual(fake.pending(), [])
        reactor.advance(12)
        ep, _ = self.successResultOf(handler.hint_to_endpoint("tor:%s:3457" % (ONION,), reactor, statuses))
        ep.connect(Factory.forProtocol(Protocol))
        server = fake.accept()
        self.assertEqual(statuses[-1], "connecting to %s:3457 through tor (SOCKS 127.0.0.1:9050)" % (ONION,))
        # It lasts longer than STABLE_AFTER, then tor restarts: reopened at the next dial.
        reactor.advance(tor.STABLE_AFTER)
        server.transport.loseConnection()
        self.assertEqual(handler._shared.failures, 0)
        ep, _ = self.successResultOf(handler.hint_to_endpoint("tor:%s:3457" % (ONION,), reactor, Statuses()))
        ep.connect(Factory.forProtocol(Protocol))
        self.assertEqual(len(fake.pending()), 1)

    def test_session_closing_at_once_counts_as_a_failure(self) -> None:
        """A tor whose control connection closes right after it opened is not reopened at every dial."""
        reactor = MemoryReactorClock()
        fake = FakeTor(reactor)
        handler = tor.control_endpoint(fake.endpoint())

        def flap(d: Deferred) -> None:
            if fake.pending():
                fake.accept().transport.loseConnection()

        self.dial_every_second(reactor, handler, 600, flap)
        self.assertEqual(fake._accepted, 16)
        lines = self.logged()
        self.assertEqual(len(lines), 16)
        self.assertEqual(
            lines[1],
            "tor control port 127.0.0.1:9051: the control connection to tor's control port at 127.0.0.1:9051 "
            "closed 0.0 s after it opened (2 failures in a row; not trying again for 1 s)",
        )

    def test_authentication_rejected(self) -> None:
        reactor = MemoryReactorClock()
        fake = FakeTor(reactor)
        fake.auth_methods = "HASHEDPASSWORD"
        handler = tor.control_endpoint(fake.endpoint())

        def accept(d: Deferred) -> None:
            if fake.pending():
                fake.accept()

        self.dial_every_second(reactor, handler, 600, accept)
        self.assertEqual(fake._accepted, 16)
        self.assertEqual(len(self.logged()), 16)

    def test_launched_tor_exiting_at_once(self) -> None:
        """Before: a tor that exits at start was launched again at every dial (600 processes)."""
        reactor = ProcessReactor()
        handler = tor.launch(tor_binary=sys.executable)

        def exits(d: Deferred) -> None:
            if reactor.spawned and reactor.spawned[-1][0].ended is None:
                reactor.spawned[-1][0].processEnded(Failure(ProcessTerminated(exitCode=1)))
                reactor.advance(0.05)

        self.dial_every_second(reactor, handler, 600, exits)
        self.assertEqual(len(reactor.spawned), 16)
        self.assertEqual(len(self.logged()), 16)
        self.assertTrue(all(f.check(tor.TorError) for f in self.failures))
