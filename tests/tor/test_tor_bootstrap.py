"""
A tor that cannot bootstrap (no network, a firewall): dials and listens
through it fail once its bootstrap progress has stalled for
C{bootstrap_timeout} seconds, saying what tor reported (its last
C{STATUS_CLIENT} warning: which relay, which reason, in words), where its
log is and what to check -- instead of waiting forever.

In memory: the fake control port of tests/tor/test_tor.py, on a
L{MemoryReactorClock}; a launched tor is a fake process.  The real thing is
tests/integration/test_tor_offline.py.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessTerminated
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from foolscap_sidetls import config, tor

from .test_tor import ONION, FakeTor, _ControlServer, ProcessReactor, Statuses, makeTub, scratch

HINT = "tor:%s:3457" % (ONION,)

#: What tor 0.4.9 sends when a firewall closes its connections (the
#: issue's "14%: Handshaking with a relay; last problem: DONE").
DONE = (
    'STATUS_CLIENT WARN BOOTSTRAP PROGRESS=14 TAG=handshake SUMMARY="Handshaking with a relay" '
    'WARNING="DONE" REASON=DONE COUNT=12 RECOMMENDATION=warn HOSTID="%s" HOSTADDR="198.51.100.7:443"'
    % ("A" * 40,)
)
AT_14 = 'NOTICE BOOTSTRAP PROGRESS=14 TAG=handshake SUMMARY="Handshaking with a relay"'

CHECK = (
    "Check that this machine can reach the internet (is the network up?) and that no firewall or "
    "proxy blocks tor's outgoing connections (relays listen on ports such as 443 and 9001); where "
    "tor is blocked, it needs bridges (UseBridges 1 and Bridge lines, %s); %s. To keep waiting "
    "instead, set bootstrap_timeout=None (in a node's configuration: [tor] bootstrap.timeout = none)"
)
CHECK_CONTROL = CHECK % (
    "in that tor's torrc",
    "or compare with a tor launched here ([tor] launch = true, or launch())",
)
CHECK_LAUNCHED = CHECK % (
    "in launch()'s extra_config",
    "or try this machine's own tor instead of launching one ([tor] launch = false and "
    "[tor] control.port, or control_endpoint())",
)
SYSTEM_LOG = (
    "Tor's log is that tor's own, the one behind tor's control port at 127.0.0.1:9051 "
    "(Debian/Ubuntu's system tor: journalctl -u tor@default)"
)
DONE_WORDS = (
    "the connection to the relay at 198.51.100.7:443 was closed, by the relay or by a firewall "
    "or proxy in between (reason DONE, 12 times)"
)


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.fake = FakeTor(self.reactor)
        self.fake.bootstrap = AT_14
        self.statuses = Statuses()
        self.events: list[dict[str, Any]] = []
        self.patch(tor.log, "observer", self.events.append)  # type: ignore[arg-type]

    def dial(self, handler: tor.TorHandler) -> Deferred:
        ep, _ = self.successResultOf(handler.hint_to_endpoint(HINT, self.reactor, self.statuses))
        return ep.connect(Factory.forProtocol(Protocol))

    def logged(self) -> list[str]:
        return [formatEvent(e) for e in self.events]


class Stall(_Case):
    """Before: each of these waited forever, printing the same status."""

    def test_no_progress_fails_with_the_reason(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint(), bootstrap_timeout=60)
        d = self.dial(handler)
        self.fake.accept()
        self.reactor.advance(10)
        self.fake.event(DONE)
        self.reactor.advance(49.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        f = self.failureResultOf(d, tor.TorBootstrapError)
        self.assertEqual(
            str(f.value),
            "tor made no bootstrap progress for 60 s: it is at 14% (Handshaking with a relay). "
            "Its last warning: " + DONE_WORDS + ". " + SYSTEM_LOG + ". " + CHECK_CONTROL,
        )
        self.assertEqual(f.value.percent, 14)
        self.assertEqual(f.value.problem["HOSTADDR"], "198.51.100.7:443")
        self.assertEqual(
            self.statuses,
            [
                "connecting to tor control port 127.0.0.1:9051",
                "waiting for tor bootstrap (14%: Handshaking with a relay)",
                "waiting for tor bootstrap (14%: Handshaking with a relay; last problem: the "
                "connection to a relay was closed, by the relay or by a firewall or proxy in "
                "between (DONE))",
            ],
        )
        # The control connection is closed, nothing is left scheduled, and
        # what tor might still send reaches nobody.
        self.assertEqual(self.fake.connections, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.fake.event('STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"')
        self.assertEqual(len(self.statuses), 3)
        # Logged once, as every failure to open tor is.
        self.assertEqual(
            self.logged(),
            ["tor control port 127.0.0.1:9051: %s (trying again at the next use)" % (f.value,)],
        )

    def test_progress_starts_the_clock_again(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint(), bootstrap_timeout=60)
        d = self.dial(handler)
        self.fake.accept()
        self.reactor.advance(50)
        self.fake.event('STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=15 TAG=handshake_done SUMMARY="Handshake with a relay done"')
        self.reactor.advance(30)
        # Neither a warning nor the same or a lower percentage is progress.
        self.fake.event(DONE)
        self.fake.event('STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=15 TAG=handshake_done SUMMARY="Handshake with a relay done"')
        self.reactor.advance(29.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        f = self.failureResultOf(d, tor.TorBootstrapError)
        self.assertTrue(
            str(f.value).startswith(
                "tor made no bootstrap progress for 60 s: it is at 15% (Handshake with a relay done). "
                "Its last warning: " + DONE_WORDS + ". "
            ),
            str(f.value),
        )
        self.assertEqual(self.reactor.seconds(), 110.0)

    def test_bootstrapped_in_time(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint(), bootstrap_timeout=60)
        d = self.dial(handler)
        self.fake.accept()
        for percent in range(15, 100, 5):
            self.reactor.advance(59)
            self.fake.event("STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=%d TAG=x SUMMARY=\"step\"" % (percent,))
        self.assertNoResult(d)
        self.fake.event(DONE.replace("PROGRESS=14", "PROGRESS=95"))
        self.assertEqual(
            self.statuses[-1],
            "waiting for tor bootstrap (95%: step; last problem: the connection to a relay was closed, "
            "by the relay or by a firewall or proxy in between (DONE))",
        )
        self.fake.event('STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"')
        self.assertEqual(
            self.statuses[-1], "connecting to %s:3457 through tor (SOCKS 127.0.0.1:9050)" % (ONION,)
        )
        self.assertEqual(self.reactor.seconds(), 59.0 * 17)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_none_keeps_waiting(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint(), bootstrap_timeout=None)
        d = self.dial(handler)
        self.fake.accept()
        self.fake.event(DONE)
        self.reactor.advance(24 * 3600)
        self.assertNoResult(d)
        self.assertEqual(
            self.statuses[-1],
            "waiting for tor bootstrap (14%: Handshaking with a relay; last problem: the connection to a "
            "relay was closed, by the relay or by a firewall or proxy in between (DONE))",
        )
        self.fake.event('STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"')
        self.assertEqual(len(self.reactor.tcpClients), 2)  # the SOCKS connection is out

    def test_default_is_60_s(self) -> None:
        self.assertEqual(tor.BOOTSTRAP_TIMEOUT, 60.0)
        d = self.dial(tor.control_endpoint(self.fake.endpoint()))
        self.fake.accept()
        self.reactor.advance(59.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        f = self.failureResultOf(d, tor.TorBootstrapError)
        self.assertEqual(
            str(f.value),
            "tor made no bootstrap progress for 60 s: it is at 14% (Handshaking with a relay). Its "
            "last warning: tor reported no problem: its connections may be silently dropped (a "
            "firewall that drops packets, a network that is down). " + SYSTEM_LOG + ". " + CHECK_CONTROL,
        )

    def test_tor_never_answers_the_bootstrap_questions(self) -> None:
        """A control port that answers everything but SETEVENTS, or GETINFO status/bootstrap-phase, is bounded too."""
        original = _ControlServer.lineReceived
        for unanswered, last in (
            (b"SETEVENTS STATUS_CLIENT", "GETINFO net/listeners/socks"),
            (b"GETINFO status/bootstrap-phase", "SETEVENTS STATUS_CLIENT"),
        ):

            def silent(server: _ControlServer, line: bytes, unanswered: bytes = unanswered) -> None:
                if line != unanswered:
                    original(server, line)

            self.patch(_ControlServer, "lineReceived", silent)
            self.reactor = MemoryReactorClock()
            self.fake = FakeTor(self.reactor)
            handler = tor.control_endpoint(self.fake.endpoint(), bootstrap_timeout=30)
            d = self.dial(handler)
            self.fake.accept()
            self.assertEqual(self.fake.commands[-1], last)  # then the unanswered one
            self.reactor.advance(29.9)
            self.assertNoResult(d)
            self.reactor.advance(0.1)
            f = self.failureResultOf(d, tor.TorBootstrapError)
            self.assertEqual(
                str(f.value),
                "tor made no bootstrap progress for 30 s: it reported none at all. Its last warning: tor "
                "reported no problem: its connections may be silently dropped (a firewall that drops "
                "packets, a network that is down). " + SYSTEM_LOG + ". " + CHECK_CONTROL,
            )
            self.assertEqual(self.fake.connections, [])
            self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_listen_fails_too(self) -> None:
        handler = tor.control_endpoint(self.fake.endpoint(), bootstrap_timeout=45)
        tub = makeTub()
        self.addCleanup(tub.stopService)
        d = tor.listen(tub, handler, reactor=self.reactor, update_status=self.statuses)
        self.fake.accept()
        self.fake.event(DONE)
        self.reactor.advance(45)
        f = self.failureResultOf(d, tor.TorBootstrapError)
        self.assertIn("Its last warning: " + DONE_WORDS + ". ", str(f.value))
        self.assertEqual(tub.getListeners(), [])

    def test_arguments(self) -> None:
        endpoint = self.fake.endpoint()
        for bad in (0, -1, float("nan"), float("inf"), True, "60"):
            for name, make in (
                ("control_endpoint", lambda v: tor.control_endpoint(endpoint, bootstrap_timeout=v)),
                ("control_endpoint_maker", lambda v: tor.control_endpoint_maker(lambda r: endpoint, bootstrap_timeout=v)),
                ("launch", lambda v: tor.launch(tor_binary=sys.executable, bootstrap_timeout=v)),
            ):
                e = self.assertRaises(ValueError, make, bad)
                self.assertEqual(
                    str(e),
                    "foolscap_sidetls.tor.%s() expects bootstrap_timeout to be a number of seconds "
                    "more than 0 (how long tor may go without bootstrap progress), or None to wait "
                    "as long as it takes; got %r (%s)" % (name, bad, type(bad).__name__),
                )


class HostileEvents(_Case):
    """
    What tor sends is read as the control protocol defines it, bounded and
    made printable.  Before: C{PROGRESS=100} anywhere in an event (even in
    a quoted SUMMARY) counted as bootstrapped, as did C{PROGRESS=1000}, and
    a WARNING reached the status as sent (escape sequences, any length).
    """

    def open(self, timeout: float = 60) -> Deferred:
        d = self.dial(tor.control_endpoint(self.fake.endpoint(), bootstrap_timeout=timeout))
        self.fake.accept()
        return d

    def test_not_bootstrapped_by_lookalikes(self) -> None:
        d = self.open()
        for event in (
            'STATUS_CLIENT NOTICE BOOTSTRAP TAG=x SUMMARY="PROGRESS=100" PROGRESS=14',
            'STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=1000 TAG=done SUMMARY="Done"',
            'STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=-100 TAG=done SUMMARY="Done"',
            'STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=0x64 TAG=done SUMMARY="Done"',
            'STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=1e2 TAG=done SUMMARY="Done"',
            'STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=14 PROGRESS=100 TAG=done SUMMARY="Done"',
            'STATUS_CLIENT NOTICE CIRCUIT_ESTABLISHED PROGRESS=100',
            'STATUS_CLIENT NOTICE BOOTSTRAP TAG=x SUMMARY="unterminated PROGRESS=100',
            'STATUS_CLIENT NOTICE BOOTSTRAP SUMMARY="x"PROGRESS=100',
        ):
            self.fake.event(event)
        self.assertNoResult(d)
        self.assertEqual(len(self.reactor.tcpClients), 1)  # no SOCKS connection
        self.assertEqual(self.statuses[-1], "waiting for tor bootstrap (14%: Handshaking with a relay)")
        self.reactor.advance(60)
        self.failureResultOf(d, tor.TorBootstrapError)

    def test_values_are_printable_and_bounded(self) -> None:
        d = self.open()
        self.fake.event(
            'STATUS_CLIENT WARN BOOTSTRAP PROGRESS=15 TAG=handshake SUMMARY="%s" '
            'WARNING="\x1b[2J\x07no\x7froute \\"quoted\\"" REASON=NOROUTE\x1b COUNT=99999999999'
            % ("S" * 1000,)
        )
        self.assertEqual(
            self.statuses[-1],
            'waiting for tor bootstrap (15%%: %s...; last problem: ?[2J?no?route "quoted")' % ("S" * 160,),
        )
        self.reactor.advance(60)
        f = self.failureResultOf(d, tor.TorBootstrapError)
        self.assertIn(
            "it is at 15%% (%s...). Its last warning: the connection to a relay failed (tor says "
            '"?[2J?no?route "quoted"", reason NOROUTE?). ' % ("S" * 160,),
            str(f.value),
        )
        for character in "\x1b\x7f\x07":
            self.assertNotIn(character, str(f.value))
            self.assertNotIn(character, "".join(self.statuses))

    def test_only_the_start_of_an_event_is_read(self) -> None:
        """A SUMMARY still open after 4,096 characters: the WARNING after it is not taken."""
        d = self.open()
        self.fake.event(
            'STATUS_CLIENT WARN BOOTSTRAP PROGRESS=14 TAG=handshake SUMMARY="%s" WARNING="late" REASON=DONE'
            % ("S" * 100000,)
        )
        self.assertEqual(self.statuses[-1], "waiting for tor bootstrap (14%: Handshaking with a relay)")
        self.reactor.advance(60)
        f = self.failureResultOf(d, tor.TorBootstrapError)
        self.assertIn("it is at 14% (Handshaking with a relay). Its last warning: tor reported no problem", str(f.value))

    def test_warning_fields_are_checked(self) -> None:
        d = self.open()
        self.fake.event(
            'STATUS_CLIENT WARN BOOTSTRAP PROGRESS=14 TAG=handshake SUMMARY="Handshaking with a relay" '
            'WARNING="\x1b[31mrefused\x7f" REASON=not\x1bacode COUNT=2 HOSTADDR="%s"' % ("h" * 500,)
        )
        self.reactor.advance(60)
        f = self.failureResultOf(d, tor.TorBootstrapError)
        self.assertIn(
            "Its last warning: the connection to the relay at %s... failed (tor says "
            '"?[31mrefused?", reason not?acode, 2 times). ' % ("h" * 160,),
            str(f.value),
        )

    def test_reasons_in_words(self) -> None:
        expected = [
            ("Connection refused", "CONNECTREFUSED", "was refused"),
            ("Connection timed out", "TIMEOUT", "timed out"),
            ("No route to host", "NOROUTE", "could not be made: no route to the relay, is the network up?"),
            ("Broken pipe", "IOERROR", "failed with a read or write error"),
            ("CONNECTRESET", "CONNECTRESET", "was reset, by the relay or by a firewall or proxy in between"),
            ("unexpected eof while reading", "TLS_ERROR",
             "failed during the TLS handshake: something in between interfered, or it is not a tor relay"),
            ("something", "MISC", "failed"),
            ("new", "SOMETHING_NEW", "failed"),
        ]
        for warning, reason, words in expected:
            self.reactor = MemoryReactorClock()
            self.fake = FakeTor(self.reactor)
            self.fake.bootstrap = AT_14
            d = self.open()
            self.fake.event(
                'STATUS_CLIENT WARN BOOTSTRAP PROGRESS=14 TAG=handshake SUMMARY="Handshaking with a relay" '
                'WARNING="%s" REASON=%s COUNT=1 HOSTADDR="192.0.2.1:9001"' % (warning, reason)
            )
            self.reactor.advance(60)
            f = self.failureResultOf(d, tor.TorBootstrapError)
            said = "" if warning == reason else 'tor says "%s", ' % (warning,)
            self.assertIn(
                "Its last warning: the connection to the relay at 192.0.2.1:9001 %s (%sreason %s). "
                % (words, said, reason),
                str(f.value),
            )


class Launched(SynchronousTestCase):
    """A launched tor that cannot bootstrap: the message names its log, and it is stopped."""

    def setUp(self) -> None:
        self.reactor = ProcessReactor()

    def start(self, handler: tor.TorHandler) -> tuple[Deferred, Any, Any, list[str]]:
        ep, _ = self.successResultOf(handler.hint_to_endpoint(HINT, self.reactor, Statuses()))
        d = ep.connect(Factory.forProtocol(Protocol))
        protocol, _, args, _, path, transport = self.reactor.spawned[-1]
        with open(os.path.join(path, "sidetls-control-port"), "w") as f:
            f.write("PORT=127.0.0.1:9161\n")
        self.reactor.advance(0.05)
        fake = FakeTor(self.reactor, port=9161)
        fake.bootstrap = AT_14
        fake.accept()
        return d, protocol, transport, args

    def test_message_names_the_log(self) -> None:
        data = os.path.join(scratch(self), "tor-data")
        handler = tor.launch(data_directory=data, tor_binary=sys.executable, bootstrap_timeout=20)
        d, protocol, transport, args = self.start(handler)
        log_file = os.path.join(os.path.abspath(data), "sidetls-tor.log")
        self.assertEqual(args[5:], ["+Log", "notice file " + log_file])
        self.assertEqual(stat.S_IMODE(os.stat(log_file).st_mode), 0o600)
        self.reactor.advance(20)
        f = self.failureResultOf(d, tor.TorBootstrapError)
        self.assertEqual(
            str(f.value),
            "tor made no bootstrap progress for 20 s: it is at 14%% (Handshaking with a relay). Its "
            "last warning: tor reported no problem: its connections may be silently dropped (a "
            "firewall that drops packets, a network that is down). Tor's log: %s. %s"
            % (log_file, CHECK_LAUNCHED),
        )
        self.assertEqual(transport.signals, ["TERM"])
        protocol.processEnded(Failure(ProcessTerminated(signal=15)))
        self.assertTrue(os.path.exists(log_file))

    def test_temporary_log_outlives_a_failed_launch(self) -> None:
        handler = tor.launch(tor_binary=sys.executable, bootstrap_timeout=20)
        d, protocol, transport, args = self.start(handler)
        log_file = args[-1][len("notice file "):]
        datadir = self.reactor.spawned[-1][4]
        self.assertEqual(os.path.dirname(log_file), os.path.dirname(datadir))
        with open(log_file, "a") as f:
            f.write("[notice] Bootstrapped 14% (handshake): Handshaking with a relay\n")
        self.reactor.advance(20)
        f = self.failureResultOf(d, tor.TorBootstrapError)
        self.assertIn("Tor's log: %s. " % (log_file,), str(f.value))
        protocol.processEnded(Failure(ProcessTerminated(signal=15)))
        self.addCleanup(os.remove, log_file)
        self.assertFalse(os.path.exists(datadir))
        self.assertTrue(os.path.exists(log_file))


class ConfigKey(SynchronousTestCase):
    """C{[tor] bootstrap.timeout}: before, an unknown key (and serve waited forever)."""

    def timeout_of(self, text: str) -> tor.TorHandler:
        node = config.from_string("[node]\ntub.port = disabled\ntub.location = disabled\n" + text)
        return node._tor.bootstrap_timeout

    def test_values(self) -> None:
        launch = "[tor]\nlaunch = true\ntor.executable = %s\n" % (sys.executable,)
        self.assertEqual(self.timeout_of(launch), 60.0)
        self.assertEqual(self.timeout_of(launch + "bootstrap.timeout = 300\n"), 300.0)
        self.assertIsNone(self.timeout_of(launch + "bootstrap.timeout = none\n"))
        self.assertIsNone(self.timeout_of(launch + "bootstrap.timeout = 0\n"))
        for bad in ("1.5", "-1", "soon", "\u0663\u0660"):
            e = self.assertRaises(config.ConfigError, self.timeout_of, launch + "bootstrap.timeout = %s\n" % (bad,))
            self.assertEqual(
                str(e),
                "'<string>' [tor] bootstrap.timeout = %r: not a number of seconds; expected a whole number "
                "of seconds, e.g. 60, or 0 (or none) to wait for tor as long as it takes" % (bad,),
            )

    def test_handlers_get_it(self) -> None:
        reactor = MemoryReactorClock()
        launched = config.from_string(
            "[node]\ntub.port = disabled\ntub.location = disabled\n[tor]\nlaunch = true\n"
            "tor.executable = %s\nbootstrap.timeout = none\n" % (sys.executable,)
        )
        self.assertIsNone(config._Made(launched, reactor).tor_dialer()._launcher.bootstrap_timeout)
        fake = FakeTor(reactor)
        fake.bootstrap = AT_14
        control = config.from_string(
            "[node]\ntub.port = disabled\ntub.location = disabled\n[tor]\n"
            "control.port = tcp:127.0.0.1:9051\nbootstrap.timeout = 5\n"
        )
        handler = config._Made(control, reactor).tor_dialer()
        ep, _ = self.successResultOf(handler.hint_to_endpoint(HINT, reactor, Statuses()))
        d = ep.connect(Factory.forProtocol(Protocol))
        fake.accept()
        reactor.advance(5)
        self.assertTrue(str(self.failureResultOf(d, tor.TorBootstrapError).value).startswith(
            "tor made no bootstrap progress for 5 s: "
        ))

    def test_unused(self) -> None:
        node = config.from_string(
            "[node]\ntub.port = disabled\ntub.location = disabled\n[tor]\nbootstrap.timeout = 30\n"
        )
        self.assertEqual(
            list(node.warnings),
            ["[tor] bootstrap.timeout is not used: only a launched tor ([tor] launch = true) or one at "
             "[tor] control.port tells its bootstrap progress"],
        )
