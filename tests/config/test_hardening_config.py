"""
Hardening: foolscap_sidetls.config fed generated configuration files --
random sections, keys and values, several encodings, key files and
directories that do not exist.

A configuration file is written by a person, so anything may be in it.  For
each generated file, L{config.load} either returns a configuration, which
C{check} can describe and L{config.create_tub} can start, or raises
L{config.ConfigError} whose message starts with the file's name; nothing
else.  Loading never launches a process, opens a descriptor that stays
open, or writes a file, and an invalid file stops L{config.create_tub}
before it binds, spawns or writes anything (it is given an in-memory
reactor that records each attempt).
"""

from __future__ import annotations

import os
import string
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from foolscap_sidetls import config

from .test_config import BusyReactor, Node, addresses, listing

#: Sections a file may have: ours, two of Tahoe-LAFS's (accepted and
#: ignored), and names that are neither.
SECTIONS = sorted(config._KEYS) + ["client", "storage", "Node", "tor ", "i2pd", ""]

#: Values near what each key accepts, and just past it.
NEAR = [
    "", "true", "false", "yes", "off", "1", "0", "-1", "2", "tru", "TRUE",
    "AUTO", "auto", "disabled", "none",
    "listen:tor", "listen:i2p", "listen:", "listen:tcp",
    "3457", "0", "65535", "65536", "99999999999999999999", "٣٤٥٧", "3457 ",
    "tcp:0", "tcp:3457", "tcp:127.0.0.1:9051", "tcp:port=3457:interface=127.0.0.1",
    "tcp:host=127.0.0.1:port=9051", "unix:/nonexistent/control", "nosuch:1", "tcp:",
    "tcp:example.net:3457", "tor:%s:3457" % ("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion",), "i2p:%s" % ("b" * 52 + ".b32.i2p",),
    "tcp:example.net:3457,AUTO", "AUTO,AUTO", ",", "tcp:[::1]:3457",
    "tcp", "tor", "i2p", "toor",
    "private/tor.key", "private/i2p.key", "private/bad.key", "private/missing.key",
    "/nonexistent/key", "bin/tor", "bin/i2pd", "bin/missing", "/nonexistent/i2pd",
    "i2pd", "other-i2pd", "i2pd-nosam", "missing-dir", "/",
    "inbound.length=1", "inbound.length=1, outbound.length=1", "=1", "STYLE=RAW", "a=b=c", "a b=c",
    "600", "0.5", "1e3",
]

values = st.one_of(
    st.sampled_from(NEAR),
    st.lists(st.sampled_from(NEAR), min_size=2, max_size=4).map(",".join),
    st.text(max_size=40),
    st.integers().map(str),
    st.text(alphabet=string.printable, max_size=40),
)


@st.composite
def keys(draw: Any, section: str) -> str:
    known = sorted(config._KEYS.get(section, {}))
    return draw(
        st.one_of(
            st.sampled_from(known) if known else st.nothing(),
            st.sampled_from(known).map(str.upper) if known else st.nothing(),
            st.sampled_from(["onion.bogus", "reveal-IP-address", "Tub.Port", "web.port", "nickname"]),
            st.text(alphabet=string.ascii_letters + string.digits + ".-_", min_size=1, max_size=20),
        )
    )


@st.composite
def sections(draw: Any) -> str:
    name = draw(st.one_of(st.sampled_from(SECTIONS), st.text(max_size=12)))
    lines = ["[%s]" % (name,)]
    for _ in range(draw(st.integers(0, 6))):
        lines.append("%s = %s" % (draw(keys(name)), draw(values)))
    return "\n".join(lines)


@st.composite
def files(draw: Any) -> str:
    parts = draw(st.lists(sections(), max_size=5))
    if draw(st.booleans()):
        # A stray line: a header-less key, a continuation, garbage.
        stray = draw(st.one_of(st.text(max_size=30), st.sampled_from(["key = value", "  indented", "[unclosed", "="])))
        parts.insert(draw(st.integers(0, len(parts))), stray)
    return "\n".join(parts) + "\n"


ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]


def descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def children() -> set[str]:
    """Processes whose parent is this one (any of its threads)."""
    found: set[str] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/children" % (task,)) as f:
                found.update(f.read().split())
        except OSError:  # the thread ended meanwhile
            continue
    return found


class ConfigFuzzTests(SynchronousTestCase):
    def setUp(self) -> None:
        # One node directory for every example: each must leave it as it was.
        self.node = Node(self)
        self.loaded = self.refused = 0

    def try_file(self, data: bytes) -> None:
        path = self.node.path("node.cfg")
        with open(path, "wb") as f:
            f.write(data)
        before = (listing(self.node.dir), descriptors(), children())
        try:
            c = config.load(path, local_addresses=addresses)
        except config.ConfigError as e:
            self.refused += 1
            self.assertTrue(str(e).startswith(repr(path) + ":") or str(e).startswith(repr(path) + " ["), str(e))
            self.assertEqual(e.source, path)
            self.assertTrue(e.problem.strip(), "a ConfigError without a problem: %r" % (str(e),))
            self.assertEqual((listing(self.node.dir), descriptors(), children()), before)
            return
        self.loaded += 1
        self.assertEqual((listing(self.node.dir), descriptors(), children()), before)
        # What `check` prints must be printable for every file that loads.
        for line in c.describe():
            self.assertIsInstance(line, str)

    def test_generated_files(self) -> None:
        """
        1,000 generated files, in five encodings.  The generators reach past
        the parser -- a run in which every file is refused at its first line
        would prove little -- so some of the files load.
        """

        @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
        @given(files(), st.sampled_from(ENCODINGS))
        def run(text: str, encoding: str) -> None:
            self.try_file(text.encode(encoding, errors="replace"))

        run()
        self.assertGreater(self.loaded, 10)
        self.assertGreater(self.refused, 200)

    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=300))
    def test_random_bytes(self, data: bytes) -> None:
        self.try_file(data)

    def test_missing_and_unreadable_files(self) -> None:
        for path in (self.node.path("nonexistent.cfg"), self.node.path("private"), self.node.path("bin/tor/x")):
            before = listing(self.node.dir)
            e = self.assertRaises(config.ConfigError, config.load, path)
            self.assertTrue(str(e).startswith("%r: cannot read it (" % (path,)), str(e))
            self.assertEqual(listing(self.node.dir), before)


class InvalidStartsNothing(SynchronousTestCase):
    """
    A file that loads, whose key files are then removed or replaced, is
    refused by create_tub before anything binds, spawns or is written.
    """

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["tor", "i2p"]), st.sampled_from(["remove", "garbage", "empty", "directory"]))
    def test_key_file_gone_bad(self, network: str, how: str) -> None:
        node = Node(self)
        if network == "tor":
            text = (
                "[node]\ntub.port = listen:tor\ntub.location = tor:%s:3457\n[tor]\nlaunch = true\n"
                "tor.executable = bin/tor\nonion = true\nonion.local_port = 7000\n"
                "onion.external_port = 3457\nonion.private_key_file = private/tor.key\n" % (node.onion,)
            )
            key = "private/tor.key"
        else:
            text = (
                "[node]\ntub.port = listen:i2p\ntub.location = i2p:%s:3457\n[i2p]\nlaunch = true\n"
                "i2p.executable = bin/i2pd\ndest = true\ndest.port = 3457\n"
                "dest.private_key_file = private/i2p.key\n" % (node.b32,)
            )
            key = "private/i2p.key"
        c = config.load(node.cfg(text), local_addresses=addresses)
        os.remove(node.path(key))
        if how == "garbage":
            node.write(key, "garbage\n")
        elif how == "empty":
            node.write(key, "")
        elif how == "directory":
            os.makedirs(node.path(key))
        reactor = BusyReactor()
        before = listing(node.dir)
        self.assertRaises(config.ConfigError, config.create_tub, c, reactor)
        self.assertEqual(listing(node.dir), before)
        self.assertEqual(
            (reactor.tcpServers, reactor.tcpClients, reactor.unixClients, reactor.spawned), ([], [], [], [])
        )
