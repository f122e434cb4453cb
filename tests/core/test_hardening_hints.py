"""
Hardening: every connection-hint handler this project ships, fed generated
hints -- random text, near-valid hints, huge ports, Unicode, empty parts.

A FURL's hints come from whoever handed it out, so they are untrusted text.
For each one, every handler either accepts it, giving back a role-based
dialer for exactly the host and port it names, or raises
L{InvalidHintError} with a message naming the hint and what is wrong with
it; nothing else, and nothing is contacted.  Each handler's verdict is
compared with an independent statement of its grammar (the "oracles"
below), so a hint accepted by mistake fails as surely as a crash.

The five strategies together feed each handler 10,000 distinct hints
(each test checks its own share).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import idna
import importlib
import inspect
import ipaddress
import pkgutil
import re
from typing import Any, Callable, Optional

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from foolscap.api import Tub
from foolscap.connections.tcp import DefaultTCP
from foolscap.ipb import IConnectionHintHandler, InvalidHintError

import foolscap_sidetls
from foolscap_sidetls import handler, i2p, install, tor
from foolscap_sidetls._endpoints import DialerEndpoint
from foolscap_sidetls._handler import SideTLSHandler
from foolscap_sidetls.testing import MemoryNetwork

# -- the grammars, stated independently of the code under test ----------------

_PORT = r"(?P<port>[0-9]{1,5})"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS = r"(?:%s\.)*%s\.?" % (_LABEL, _LABEL)
#: A valid v3 onion address (torproject.org's); mutated ones mostly are not.
_ONION = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
_B32 = "b" * 52 + ".b32.i2p"


def _port_ok(text: Optional[str]) -> bool:
    return text is None or 1 <= int(text) <= 65535


def _dns_ok(host: str) -> bool:
    """RFC 1123 letters-digits-hyphen labels; '--' in places 3-4 only for valid IDNA labels."""
    if len(host) > 253 or re.fullmatch(_DNS, host) is None:
        return False
    for label in host.rstrip(".").split("."):
        if label[2:4] == "--":
            try:
                idna.decode(label)
            except idna.IDNAError:
                return False
            if not label.lower().startswith("xn--"):
                return False
    return True


def oracle_tcp(hint: str) -> Optional[tuple[str, int]]:
    """tcp:HOST:PORT; HOST a DNS name/IPv4 address or a bracketed IPv6 address."""
    m = re.fullmatch(r"tcp:(?P<host>\[[^\]]*\]|[^:]+):" + _PORT, hint)
    if m is None or not _port_ok(m["port"]):
        return None
    host = m["host"]
    if host.startswith("["):
        inner = host[1:-1]
        if not re.fullmatch(r"[0-9A-Fa-f:.]+(%[A-Za-z0-9.]+)?", inner):
            return None
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return None
        return inner, int(m["port"])
    return (host, int(m["port"])) if _dns_ok(host) else None


def _v3_onion_ok(host: str) -> bool:
    """rend-spec-v3 section 6: base32(PUBKEY | CHECKSUM | VERSION) before '.onion', VERSION 3,
    CHECKSUM = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2]; a subdomain before it is allowed."""
    labels = host.rstrip(".").split(".")
    if len(labels) < 2 or labels[-1].lower() != "onion":
        return True  # not an onion name
    label = labels[-2]
    if not re.fullmatch(r"[A-Za-z2-7]{56}", label):
        return False
    raw = base64.b32decode(label.upper())
    return raw[34] == 3 and hashlib.sha3_256(b".onion checksum" + raw[:32] + raw[34:]).digest()[:2] == raw[32:34]


def oracle_tor(hint: str) -> Optional[tuple[str, int]]:
    """TYPE:HOST:PORT, HOST a DNS name (a valid v3 address if it is an onion) or a public IPv4 address (no exit reaches others)."""
    m = re.fullmatch(r"[\x21-\x39\x3b-\x7e]*:(?P<host>[^:]+):" + _PORT, hint)
    if m is None or not _port_ok(m["port"]) or not _dns_ok(m["host"]) or not _v3_onion_ok(m["host"]):
        return None
    try:
        address = ipaddress.ip_address(m["host"])
    except ValueError:
        return m["host"], int(m["port"])
    if address.is_private or address.is_loopback or address.is_reserved or address.is_multicast or address.is_unspecified:
        return None
    return m["host"], int(m["port"])


def oracle_i2p(hint: str) -> Optional[tuple[str, Optional[int]]]:
    """i2p:NAME.i2p or i2p:NAME.i2p:PORT; a .b32.i2p name has 52+ base32 characters."""
    m = re.fullmatch(
        r"i2p:(?P<host>(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+i2p)(?::%s)?" % (_PORT,), hint
    )
    if m is None or not _port_ok(m["port"]):
        return None
    host = m["host"]
    if host.lower().endswith(".b32.i2p") and not re.fullmatch(r"[a-z2-7]{52,}", host.lower()[:-8]):
        return None
    return host, int(m["port"]) if m["port"] else None


def oracle_memory(hint: str) -> Optional[tuple[str, None]]:
    m = re.fullmatch(r"memory:(?P<name>[A-Za-z0-9._-]+)", hint)
    return (m["name"], None) if m else None


def _endpoint_target(endpoint: Any) -> tuple[str, Optional[int]]:
    """Where the endpoint under a dialer will connect."""
    inner = endpoint._endpoint
    assert not getattr(inner, "_badHostname", False), inner  # HostnameEndpoint's own verdict
    for attribute in ("_hostText", "_host", "_name"):
        host = getattr(inner, attribute, None)
        if host is not None:
            return host, getattr(inner, "_port", None)
    raise AssertionError("no host in %r" % (inner,))


# -- the handlers ---------------------------------------------------------------


def make_handlers(reactor: Any) -> list[tuple[str, Any, Callable[[str], Any]]]:
    """(name, handler, oracle) for every hint handler the project ships."""
    socks = TCP4ClientEndpoint(reactor, "127.0.0.1", 9050)
    control = TCP4ClientEndpoint(reactor, "127.0.0.1", 9051)
    sam = TCP4ClientEndpoint(reactor, "127.0.0.1", 7656)
    return [
        ("tcp", handler(DefaultTCP()), oracle_tcp),
        ("tor.socks_endpoint", tor.socks_endpoint(socks), oracle_tor),
        ("tor.default_socks", tor.default_socks(), oracle_tor),
        ("tor.control_endpoint", tor.control_endpoint(control), oracle_tor),
        ("i2p.sam_endpoint", i2p.sam_endpoint(sam, reactor=reactor), oracle_i2p),
        ("testing.MemoryNetwork", handler(MemoryNetwork(clock=Clock()).hint_handler()), oracle_memory),
    ]


def covered(handlers: list[tuple[str, Any, Callable[[str], Any]]]) -> set[type]:
    """The handler classes C{handlers} exercise: each handler's, and its inner handler's."""
    classes = set()
    for _, h, _ in handlers:
        classes.add(type(h))
        inner = getattr(h, "inner", None)
        if inner is not None:
            classes.add(type(inner))
    return classes


#: Reasons that are about the hint as a whole -- its shape, or its type --
#: so that the whole hint is the offending part.
_WHOLE_HINT_REASONS = (
    "it is empty",
    "its port is empty",
    "it has no host",
    "it does not start with 'tcp:'",
    "it is not TYPE:HOST:PORT",
    "it has no ':PORT' after the host",
    "Foolscap's tor handler does not accept it",
    "not an I2P hint",
    "has no address",
    "unrecognized memory hint",  # one form only, and it says which
)
#: Reasons a well-formed hint is refused all the same: no format to show.
_UNUSABLE_REASONS = ("no Tor exit can reach a private, loopback or reserved address",)

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')


class HintFuzzCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.handlers = make_handlers(self.reactor)
        self.statuses: list[str] = []
        self.seen: set[str] = set()

    def feed(self, hint: str) -> None:
        self.seen.add(hint)
        for name, h, oracle in self.handlers:
            expected = oracle(hint)
            try:
                result = h.hint_to_endpoint(hint, self.reactor, self.statuses.append)
            except InvalidHintError as e:
                self.refused(name, hint, e, expected)
                continue
            if isinstance(result, Deferred):
                outcome: list[Any] = []
                result.addBoth(outcome.append)
                self.assertEqual(len(outcome), 1, "%s answered %r later, not at once" % (name, hint))
                if isinstance(outcome[0], Failure):
                    if not outcome[0].check(InvalidHintError):
                        outcome[0].raiseException()
                    self.refused(name, hint, outcome[0].value, expected)
                    continue
                result = outcome[0]
            self.accepted(name, hint, result, expected)
        # Parsing a hint contacts nothing and reports nothing.
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.statuses, [])

    def refused(self, name: str, hint: str, e: BaseException, expected: Any) -> None:
        self.assertIsNone(expected, "%s refused %r, which is a valid hint: %s" % (name, hint, e))
        message = str(e)
        # It names the hint...
        self.assertIn(repr(hint), message, name)
        rest = message.replace(repr(hint), "<hint>", 1)
        # ...says what was wrong: quotes the offending part, or says what is
        # wrong with the hint as a whole...
        parts = [ast.literal_eval(token) for token in _QUOTED.findall(rest)]
        offending = [part for part in parts if part and part in hint]
        whole = [reason for reason in _WHOLE_HINT_REASONS + _UNUSABLE_REASONS if reason in rest]
        self.assertTrue(offending or whole, "%s: %r does not say what is wrong with %r" % (name, message, hint))
        # ...and what is accepted (unless the form was right).
        if not any(reason in rest for reason in _UNUSABLE_REASONS):
            self.assertRegex(rest, r"expected '?[a-z0-9]+:[A-Z]", (name, message))

    def accepted(self, name: str, hint: str, result: Any, expected: Any) -> None:
        self.assertIsNotNone(expected, "%s accepted %r, which is not a valid hint" % (name, hint))
        endpoint, host = result
        self.assertIsInstance(endpoint, DialerEndpoint, name)
        self.assertEqual(host, expected[0], (name, hint))
        target = _endpoint_target(endpoint)
        self.assertEqual(target[0].strip("[]"), expected[0], (name, hint))
        if expected[1] is not None:
            self.assertEqual(target[1], expected[1], (name, hint))

    def check_share(self, share: int) -> None:
        self.assertGreaterEqual(len(self.seen), share)


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_TYPES = st.sampled_from(["tcp", "tor", "i2p", "memory", "TCP", "tcp ", " tcp", "", "unix", "tcp:tcp"])
_HOSTS = st.sampled_from(
    [
        "127.0.0.1",
        "8.8.8.8",
        "example.org",
        "example.org.",
        _ONION,
        _B32,
        "name.i2p",
        "[::1]",
        "[fe80::1%en0]",
        "[::ffff:1.2.3.4]",
        "10.0.0.1",
        "a-b.c",
        "x" * 63 + ".org",
    ]
)
_PORTS = st.one_of(st.integers(min_value=1, max_value=65535).map(str), st.sampled_from(["1", "65535", "00080"]))


@st.composite
def _valid_hint(draw: Any) -> str:
    kind = draw(st.sampled_from(["tcp", "tor", "i2p", "memory"]))
    if kind == "i2p":
        host = draw(st.sampled_from([_B32, "name.i2p", "a-1.b.i2p"]))
        port = draw(st.none() | _PORTS)
        return "i2p:%s" % host + ("" if port is None else ":" + port)
    if kind == "memory":
        return "memory:" + draw(st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True))
    return "%s:%s:%s" % (kind, draw(_HOSTS), draw(_PORTS))


_EDIT_CHARACTERS = st.sampled_from(list(":.[]-_%0123456789aZ/@ \t\n")) | st.characters()


@st.composite
def _mutated(draw: Any) -> str:
    """A valid hint with one to three characters inserted, deleted or replaced."""
    hint = draw(_valid_hint())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        i = draw(st.integers(min_value=0, max_value=len(hint)))
        how = draw(st.sampled_from(["insert", "delete", "replace"]))
        if how == "insert":
            hint = hint[:i] + draw(_EDIT_CHARACTERS) + hint[i:]
        elif how == "delete":
            hint = hint[:i] + hint[i + 1 :]
        else:
            hint = hint[:i] + draw(_EDIT_CHARACTERS) + hint[i + 1 :]
    return hint



class HintFuzzTests(HintFuzzCase):
    """
    Each test runs its strategy and then counts the distinct hints it fed:
    the shares add up to 10,000 per handler.
    """

    def test_random_text(self) -> None:
        @settings(max_examples=2500, **_SETTINGS)
        @given(st.text(max_size=80))
        def run(hint: str) -> None:
            self.feed(hint)

        run()
        self.check_share(2500)

    def test_near_valid(self) -> None:
        @settings(max_examples=3300, **_SETTINGS)
        @given(
            st.one_of(_valid_hint(), _mutated())
        )
        def run(hint: str) -> None:
            self.feed(hint)

        run()
        self.check_share(3000)

    def test_huge_ports(self) -> None:
        @settings(max_examples=1500, **_SETTINGS)
        @given(
            _TYPES,
            _HOSTS,
            st.one_of(
                st.integers(min_value=65536, max_value=10**40).map(str),
                st.integers(min_value=-(10**9), max_value=0).map(str),
                st.integers(min_value=6, max_value=6000).map(lambda n: "1" * n),
                st.integers(min_value=0, max_value=65535).map(lambda p: "0" * 6 + str(p)),
            ),
        )
        def run(kind: str, host: str, port: str) -> None:
            hint = "%s:%s:%s" % (kind, host, port)
            self.feed(hint)
            # The handlers for that hint type say it is the port (tor reads tcp: hints
            # too; i2p first checks that the address is an I2P one).
            owners = {"tcp": ("tcp", "tor"), "tor": ("tor",), "i2p": ("i2p",)}.get(kind, ())
            for name, h, _ in self.handlers:
                if name.split(".")[0] in owners and (kind != "i2p" or host.endswith(".i2p")):
                    message = self.message(h, hint)
                    self.assertIn("port %r is not a number from 1 to 65535" % (port,), message)

        run()
        self.check_share(1500)

    def test_unicode(self) -> None:
        @settings(max_examples=1650, **_SETTINGS)
        @given(
            _valid_hint(),
            st.integers(min_value=0, max_value=200),
            st.one_of(
                st.characters(min_codepoint=0x80),
                st.characters(categories=["Nd"]).filter(lambda c: not c.isascii()),
                st.sampled_from(
                    ["\u00b2", "\u0663", "\uff11", "\u2028", "\x00", "\n", "\r", "\t", " ", "\u200b", "\u0430"]
                ),
            ),
            st.booleans(),
        )
        def run(hint: str, where: int, char: str, replace: bool) -> None:
            i = where % (len(hint) + 1)
            self.feed(hint[:i] + char + hint[i + (1 if replace else 0) :])

        run()
        self.check_share(1500)

    def test_empty_parts(self) -> None:
        @settings(max_examples=1800, **_SETTINGS)
        @given(
            st.lists(
                st.one_of(
                    st.just(""), _TYPES, _HOSTS, _PORTS, st.sampled_from(["[", "]", "[]", ".", ".."])
                ),
                min_size=0,
                max_size=6,
            ),
            st.sampled_from([":", "::", ""]),
        )
        def run(parts: list[str], glue: str) -> None:
            self.feed(glue.join(parts))

        run()
        self.check_share(1500)

    def message(self, h: Any, hint: str) -> str:
        try:
            result = h.hint_to_endpoint(hint, self.reactor, self.statuses.append)
        except InvalidHintError as e:
            return str(e)
        return str(self.failureResultOf(result, InvalidHintError).value)


class RegressionTests(HintFuzzCase):
    """The hints the fuzzing found, one by one, with the message each now gets."""

    def verdict(self, name: str, hint: str) -> str:
        h = dict((n, h) for n, h, _ in self.handlers)[name]
        try:
            result = h.hint_to_endpoint(hint, self.reactor, self.statuses.append)
        except InvalidHintError as e:
            return str(e)
        if isinstance(result, Deferred):
            outcome: list[Any] = []
            result.addBoth(outcome.append)
            if isinstance(outcome[0], Failure):
                outcome[0].trap(InvalidHintError)
                return str(outcome[0].value)
            result = outcome[0]
        return "accepted %r" % (_endpoint_target(result[0]),)

    def test_tcp_port_beyond_65535(self) -> None:
        """
        Foolscap's tcp handler took C{tcp:127.0.0.1:65558}, and the resolver
        kept the low 16 bits: it dialed port 22.
        """
        self.assertIn("port '65558' is not a number from 1 to 65535", self.verdict("tcp", "tcp:127.0.0.1:65558"))
        self.assertIn("port '0' is not", self.verdict("tcp", "tcp:127.0.0.1:0"))

    def test_tcp_unicode_digits(self) -> None:
        """C{\\d} matched Arabic-Indic digits: C{tcp:host:٨٠} dialed port 80."""
        self.assertIn("it contains '\u0668', which is not printable ASCII", self.verdict("tcp", "tcp:host:\u0668\u0660"))

    def test_tcp_thousands_of_digits(self) -> None:
        """C{int()} of more than 4,300 digits raises ValueError in Python 3.11."""
        self.assertIn("is not a number from 1 to 65535", self.verdict("tcp", "tcp:host:" + "1" * 5000))
        self.assertIn("is not a number from 1 to 65535", self.verdict("tor.socks_endpoint", "tor:host:" + "1" * 5000))

    def test_tcp_empty_label(self) -> None:
        self.assertIn("host 'a..b' has an empty label", self.verdict("tcp", "tcp:a..b:80"))

    def test_tcp_hyphen_at_label_edge(self) -> None:
        """Twisted's HostnameEndpoint refuses such names only when it connects."""
        self.assertIn("label '-b', which starts or ends with '-'", self.verdict("tcp", "tcp:-b.c:1"))
        self.assertIn("'--' in third and fourth place", self.verdict("tcp", "tcp:ab--cd.org:1"))
        self.assertIn("accepted", self.verdict("tcp", "tcp:xn--bcher-kva.example:1"))

    def test_tor_port_range_and_newline(self) -> None:
        """Tor took port 0, ports beyond 65535 and a trailing newline."""
        for hint, words in [
            ("tor:%s:0" % _ONION, "port '0' is not a number from 1 to 65535"),
            ("tor:%s:99999999" % _ONION, "port '99999999' is not a number from 1 to 65535"),
            ("tor:%s:80\n" % _ONION, "it contains '\\n', which is not printable ASCII"),
            ("tcp:\u0661.\u0662.\u0663.\u0664:80", "it contains '\u0661'"),
        ]:
            self.assertIn(words, self.verdict("tor.socks_endpoint", hint), hint)
        self.assertIn("accepted", self.verdict("tor.socks_endpoint", "tor:%s:3457" % _ONION))

    def test_i2p_superscript_port(self) -> None:
        """C{'²'.isdigit()} is true and C{int('²')} raises ValueError: not an InvalidHintError."""
        self.assertIn("not printable ASCII", self.verdict("i2p.sam_endpoint", "i2p:%s:\u00b2" % _B32))
        self.assertIn("not printable ASCII", self.verdict("i2p.sam_endpoint", "i2p:%s:\u0663" % _B32))

    def test_i2p_newline_stays_out_of_sam_commands(self) -> None:
        """C{$} matched before a trailing newline, which went into NAMING LOOKUP."""
        self.assertIn("not printable ASCII", self.verdict("i2p.sam_endpoint", "i2p:name.i2p\n"))

    def test_memory_trailing_newline(self) -> None:
        self.assertIn("unrecognized memory hint", self.verdict("testing.MemoryNetwork", "memory:x\n"))


class RelayHintTests(HintFuzzCase):
    """
    The relay has no hint handler of its own: it dials its hints through
    the Tub's handlers (fuzzed above), after checking tcp ones with
    C{_relay_wire.parse_tcp_hint} -- which must agree with the tcp grammar
    and say why it refuses, as the handlers do.
    """

    def test_relay_tcp_hints(self) -> None:
        from foolscap_sidetls.relay import _url as wire

        @settings(max_examples=600, **_SETTINGS)
        @given(
            st.one_of(
                _valid_hint().filter(lambda h: h.startswith("tcp:")),
                _mutated().filter(lambda h: h.startswith("tcp:")),
                st.text(max_size=40).map(lambda t: "tcp:" + t),
            )
        )
        def run(hint: str) -> None:
            self.seen.add(hint)
            expected = oracle_tcp(hint)
            try:
                host, port = wire.parse_tcp_hint(hint)
            except ValueError as e:
                self.refused("relay", hint, e, expected)
            else:
                self.assertIsNotNone(expected, "the relay accepted %r, which is not a valid hint" % (hint,))
                self.assertEqual((host, port), expected, hint)

        run()
        self.check_share(300)


class CoverageTests(SynchronousTestCase):
    def test_every_handler_is_fuzzed(self) -> None:
        """
        Every IConnectionHintHandler class in foolscap_sidetls is one that
        L{make_handlers} builds (as a handler or as the inner handler of
        one); a handler added later fails here until it is added there.
        (The relay dials its hints with the Tub's own handlers, and checks
        tcp ones with the same parser as the tcp handler: see
        L{RelayHintTests}.)
        """
        found = set()
        package = foolscap_sidetls
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module("%s.%s" % (package.__name__, info.name))
            for value in vars(module).values():
                if (
                    inspect.isclass(value)
                    and value.__module__ == module.__name__
                    and IConnectionHintHandler.implementedBy(value)
                ):
                    found.add(value)
        self.assertNotEqual(found, set())
        built = covered(make_handlers(MemoryReactorClock()))
        self.assertEqual(
            sorted("%s.%s" % (c.__module__, c.__qualname__) for c in found - built), [], "hint handlers not fuzzed"
        )


class TubTests(TestCase):
    def test_bad_hints_in_a_furl(self) -> Deferred:
        """
        A FURL whose every hint is bad: C{getReference} fails at once with
        each hint's reason in the connection status, and nothing is dialed
        (before the fix, C{tcp:127.0.0.1:65558} dialed port 22).
        """
        tub = Tub()
        install(tub)
        tub.startService()
        self.addCleanup(tub.stopService)
        hints = ["tcp:127.0.0.1:65558", "tcp:-b.c:80", "tcp:a..b:80"]
        furl = "pb://%s@%s/swissnum" % ("a" * 32, ",".join(hints))

        def failed(f: Failure) -> None:
            statuses = f._connectionInfo.connectorStatuses
            self.assertEqual(sorted(statuses), sorted(hints))
            self.assertIn("bad hint: unrecognized TCP hint 'tcp:127.0.0.1:65558': port '65558' is not", statuses[hints[0]])
            self.assertIn("bad hint: unrecognized TCP hint 'tcp:-b.c:80': host '-b.c' has label '-b'", statuses[hints[1]])
            self.assertIn("bad hint: unrecognized TCP hint 'tcp:a..b:80': host 'a..b' has an empty label", statuses[hints[2]])

        d = tub.getReference(furl)
        return d.addCallbacks(lambda _: self.fail("connected"), failed)


class HandlerKeywordTests(SynchronousTestCase):
    """
    SideTLSHandler spells its limit keywords as the rest of the project
    does (snake_case); the camelCase ones of earlier releases still work,
    with a DeprecationWarning naming the new spelling.
    """

    def test_snake_case(self) -> None:
        h = SideTLSHandler(DefaultTCP(), handshake_timeout=5, close_timeout=7)
        self.assertEqual(h.limits, foolscap_sidetls.Limits(handshake_timeout=5, close_timeout=7))
        self.assertEqual(self.flushWarnings([self.test_snake_case]), [])

    def test_camel_case_deprecated(self) -> None:
        h = SideTLSHandler(DefaultTCP(), handshakeTimeout=5, negotiationTimeout=6)
        self.assertEqual(h.limits, foolscap_sidetls.Limits(handshake_timeout=5, negotiation_timeout=6))
        warned = self.flushWarnings([self.test_camel_case_deprecated])
        self.assertEqual(
            [(w["category"], w["message"]) for w in warned],
            [
                (DeprecationWarning, "SideTLSHandler: handshakeTimeout is deprecated; use handshake_timeout "
                 "(or limits=Limits(...))"),
                (DeprecationWarning, "SideTLSHandler: negotiationTimeout is deprecated; use negotiation_timeout "
                 "(or limits=Limits(...))"),
            ],
        )

    def test_both_spellings_refused(self) -> None:
        e = self.assertRaises(
            TypeError, SideTLSHandler, DefaultTCP(), handshake_timeout=5, handshakeTimeout=6
        )
        self.assertEqual(
            str(e), "SideTLSHandler got handshake_timeout and its older spelling handshakeTimeout; give "
            "handshake_timeout only"
        )
        e = self.assertRaises(TypeError, SideTLSHandler, DefaultTCP(), maxNegotiating=5)
        self.assertEqual(
            str(e), "SideTLSHandler got an unexpected keyword argument 'maxNegotiating'; it takes "
            "handshake_timeout, negotiation_timeout, close_timeout and limits"
        )
