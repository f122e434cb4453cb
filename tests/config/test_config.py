"""
foolscap_sidetls.config: Tahoe-LAFS-style files, checked before anything
starts, and the Tub they describe -- built on in-memory reactors (no
sockets, no processes), with an in-memory tor control port for the onion.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import stat
import tempfile
from typing import Any, NamedTuple, Optional

import psutil

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError, ProcessTerminated
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from foolscap_sidetls import ISideTLSTransport, _onion, config
from foolscap_sidetls._protocol import SideTLSFactory

from ..i2p._fakes import make_keypair
from ..tor.test_tor import SERVICE_ID, FakeTor, ProcessReactor

#: The checkout: where the example configurations are.
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADDRESSES = ["192.0.2.7", "127.0.0.1"]


def addresses() -> list[str]:
    return list(ADDRESSES)


def scratch(case: Any) -> str:
    path = tempfile.mkdtemp(prefix="sidetls-config-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def listing(top: str) -> list[tuple[str, int]]:
    """Every file and directory under C{top}, with its size: to prove nothing was written."""
    found = []
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(root, name)
            found.append((os.path.relpath(path, top), os.stat(path).st_size if name in files else -1))
    return sorted(found)


class Node:
    """A node directory with the key files and executables the configurations below name."""

    def __init__(self, case: Any) -> None:
        self.dir = scratch(case)
        os.makedirs(os.path.join(self.dir, "private"))
        os.makedirs(os.path.join(self.dir, "bin"))
        self.tor_key, self.onion = _onion.new_key()
        self.write("private/tor.key", self.tor_key + "\n")
        public, private = make_keypair()
        self.i2p_public = public
        self.write("private/i2p.key", private)
        raw = base64.b64decode(public, altchars=b"-~")
        self.b32 = base64.b32encode(hashlib.sha256(raw).digest()).decode().lower().rstrip("=") + ".b32.i2p"
        self.write("private/bad.key", "garbage\n")
        self.write("i2pd/i2pd.conf", "[sam]\nenabled = true\naddress = 127.0.0.1\nport = 7999\n")
        self.write("other-i2pd/i2pd.conf", "# the system i2pd's\n[sam]\nenabled = true\n")
        self.write("i2pd-nosam/i2pd.conf", "log = stdout\n")
        for name in ("tor", "i2pd"):
            self.write("bin/" + name, "#!/bin/sh\nexit 1\n")
            os.chmod(self.path("bin/" + name), 0o755)

    def path(self, relative: str) -> str:
        return os.path.join(self.dir, relative)

    def write(self, relative: str, text: str) -> str:
        path = self.path(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def parse(self, text: str) -> config.NodeConfig:
        return config.from_string(text, source="node.cfg", basedir=self.dir, local_addresses=addresses)

    def cfg(self, text: str, name: str = "node.cfg") -> str:
        return self.write(name, text)


#: A valid v3 onion address (torproject.org's) that no key here publishes.
OTHER_ONION = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
ONION = "[tor]\ncontrol.port = tcp:127.0.0.1:9051\nonion = true\nonion.local_port = 7000\n" \
        "onion.external_port = 3457\nonion.private_key_file = private/tor.key\n"
DEST = "[i2p]\nsam.port = tcp:127.0.0.1:7656\ndest = true\ndest.port = 3457\n" \
       "dest.private_key_file = private/i2p.key\n"
EXPECT_BOOL = "expected true or false (or yes/no, on/off, 1/0)"
EXPECT_PORT = "expected a port number from 1 to 65535"
EXPECT_I2CP = "expected NAME=VALUE pairs separated by commas, e.g. inbound.length=1, outbound.length=1"
EXPECT_ENDPOINTS = (
    "expected descriptions such as tcp:3457 or tcp:3457:interface=127.0.0.1, listen:tor, listen:i2p"
)
EXPECT_HINT = (
    "expected hints such as tcp:example.net:3457, tor:ADDRESS.onion:3457, i2p:ADDRESS.b32.i2p, or AUTO"
)

#: Every key with a bad value (and every missing piece a setting needs), and
#: the exact message.  {d} is the node directory.
BAD: list[tuple[str, str]] = [
    # -- [node] tub.port
    ("[node]\ntub.port =\n",
     "'node.cfg' [node] tub.port = '': empty; expected endpoint descriptions separated by commas, or disabled"),
    # port 0 in any form, as Tahoe-LAFS refuses it (PortAssignmentRequired)
    ("[node]\ntub.port = 0\n",
     "'node.cfg' [node] tub.port = '0': '0' listens on port 0, which is not allowed: you must choose (the "
     "announced location must stay valid); expected a fixed port such as tcp:3457"),
    ("[node]\ntub.port = tcp:0\n",
     "'node.cfg' [node] tub.port = 'tcp:0': 'tcp:0' listens on port 0, which is not allowed: you must choose "
     "(the announced location must stay valid); expected a fixed port such as tcp:3457"),
    ("[node]\ntub.port = tcp:port=0\n",
     "'node.cfg' [node] tub.port = 'tcp:port=0': 'tcp:port=0' listens on port 0, which is not allowed: you "
     "must choose (the announced location must stay valid); expected a fixed port such as tcp:3457"),
    ("[node]\ntub.port = tcp:0:interface=127.0.0.1\n",
     "'node.cfg' [node] tub.port = 'tcp:0:interface=127.0.0.1': 'tcp:0:interface=127.0.0.1' listens on port "
     "0, which is not allowed: you must choose (the announced location must stay valid); expected a fixed "
     "port such as tcp:3457"),
    ("[node]\ntub.port = tcp:3457,sidetls:tcp:00:backlog=5\ntub.location = tcp:example.net:3457\n",
     "'node.cfg' [node] tub.port = 'tcp:3457,sidetls:tcp:00:backlog=5': 'sidetls:tcp:00:backlog=5' listens on "
     "port 0, which is not allowed: you must choose (the announced location must stay valid); expected a "
     "fixed port such as tcp:3457"),
    ("[node]\ntub.port = sidetls:tcp:3457:maxNegotiating=0\ntub.location = tcp:example.net:3457\n",
     "'node.cfg' [node] tub.port = 'sidetls:tcp:3457:maxNegotiating=0': sidetls: option maxNegotiating='0': "
     "expected a whole number of connections, at least 1, in digits (such as 100), or 'none' for no limit"),
    ("[node]\ntub.port = sidetls:tcp:3457:negotiationtimeout=30\ntub.location = tcp:example.net:3457\n",
     "'node.cfg' [node] tub.port = 'sidetls:tcp:3457:negotiationtimeout=30': sidetls: option "
     "'negotiationtimeout' is spelled 'negotiationTimeout' (options are case-sensitive)"),
    ("[node]\ntub.port = tcp6:0\ntub.location = tcp:example.net:3457\n",
     "'node.cfg' [node] tub.port = 'tcp6:0': 'tcp6:0' listens on port 0, which is not allowed: you must "
     "choose (the announced location must stay valid); expected a fixed port such as tcp:3457"),
    ("[node]\ntub.port = listen:foo\n",
     "'node.cfg' [node] tub.port = 'listen:foo': 'listen:foo' is not a listener this module knows; "
     "expected listen:tor or listen:i2p"),
    ("[node]\ntub.port = tcp:3457,,tcp:3458\n",
     "'node.cfg' [node] tub.port = 'tcp:3457,,tcp:3458': has an empty entry; expected endpoint "
     "descriptions separated by commas"),
    ("[node]\ntub.port = tcp:notaport\n",
     "'node.cfg' [node] tub.port = 'tcp:notaport': 'tcp:notaport' is not a server endpoint description "
     "(its port 'notaport' is not a number); " + EXPECT_ENDPOINTS),
    ("[node]\ntub.port = tcp:127.0.0.1:3457\n",
     "'node.cfg' [node] tub.port = 'tcp:127.0.0.1:3457': 'tcp:127.0.0.1:3457' is not a server endpoint "
     "description (its port '127.0.0.1' is not a number); " + EXPECT_ENDPOINTS),
    ("[node]\ntub.port = tcp:99999\n",
     "'node.cfg' [node] tub.port = 'tcp:99999': 'tcp:99999' is not a server endpoint description (its port "
     "99999 is not from 1 to 65535); " + EXPECT_ENDPOINTS),
    ("[node]\ntub.port = tcp\n",
     "'node.cfg' [node] tub.port = 'tcp': 'tcp' is not a server endpoint description (it has no port); "
     + EXPECT_ENDPOINTS),
    ("[node]\ntub.port = tcp:3457:backlog=many\n",
     "'node.cfg' [node] tub.port = 'tcp:3457:backlog=many': 'tcp:3457:backlog=many' is not a server endpoint "
     "description ('many' is not a number); " + EXPECT_ENDPOINTS),
    ("[node]\ntub.port = tcp:3457:colour=blue\n",
     "'node.cfg' [node] tub.port = 'tcp:3457:colour=blue': 'tcp:3457:colour=blue' is not a server endpoint "
     "description (colour= is not an option of tcp: endpoints); " + EXPECT_ENDPOINTS),
    ("[node]\ntub.port = tcp:3457:interface=::1\n",
     "'node.cfg' [node] tub.port = 'tcp:3457:interface=::1': 'tcp:3457:interface=::1' is not a server "
     "endpoint description (it gives interface twice (write an IPv6 address's colons as \\:)); "
     + EXPECT_ENDPOINTS),
    ("[node]\ntub.port = nosuch:3457\n",
     "'node.cfg' [node] tub.port = 'nosuch:3457': 'nosuch:3457' is not a server endpoint description "
     "(unknown endpoint type 'nosuch'); " + EXPECT_ENDPOINTS),
    ("[node]\ntub.port = listen:tor\n",
     "'node.cfg' [node] tub.port = 'listen:tor': listen:tor needs [tor] onion = true (with "
     "onion.local_port, onion.external_port and onion.private_key_file)"),
    ("[node]\ntub.port = listen:i2p\n",
     "'node.cfg' [node] tub.port = 'listen:i2p': listen:i2p needs [i2p] dest = true (with dest.port and "
     "dest.private_key_file)"),
    ("[node]\ntub.port = disabled\n",
     "'node.cfg' [node] tub.location is not set: announced, but [node] tub.port = 'disabled' listens "
     "nowhere; expected tub.location = disabled too (a Tub that only dials)"),
    # -- [node] tub.location
    ("[node]\ntub.location = disabled\n",
     "'node.cfg' [node] tub.port is not set: listens, but [node] tub.location = 'disabled' announces "
     "nothing; expected tub.port = disabled too (a Tub that only dials)"),
    ("[node]\ntub.port = tcp:3457\ntub.location =\n",
     "'node.cfg' [node] tub.location = '': empty; expected hints separated by commas, AUTO, or disabled"),
    ("[node]\ntub.port = tcp:3457\ntub.location = tcp:example.net:http\n",
     "'node.cfg' [node] tub.location = 'tcp:example.net:http': 'tcp:example.net:http' is not a "
     "tcp:HOST:PORT hint; " + EXPECT_HINT),
    ("[node]\ntub.port = tcp:3457\ntub.location = tcp:example.net:0\n",
     "'node.cfg' [node] tub.location = 'tcp:example.net:0': 'tcp:example.net:0' has port 0; " + EXPECT_PORT),
    ("[node]\ntub.port = tcp:3457\ntub.location = tcp:example.net:\u0663\u0664\u0665\u0667\n",
     "'node.cfg' [node] tub.location = 'tcp:example.net:\u0663\u0664\u0665\u0667': 'tcp:example.net:"
     "\u0663\u0664\u0665\u0667' has port \u0663\u0664\u0665\u0667; " + EXPECT_PORT),
    ("[node]\ntub.port = tcp:3457\ntub.location = tor:x\n",
     "'node.cfg' [node] tub.location = 'tor:x': 'tor:x' is not a tor:HOST:PORT hint; " + EXPECT_HINT),
    ("[node]\ntub.port = tcp:3457\ntub.location = i2p:bad\n",
     "'node.cfg' [node] tub.location = 'i2p:bad': I2P hint 'i2p:bad': 'bad' is not an I2P address "
     "(expected 'i2p:ADDRESS' or 'i2p:ADDRESS:PORT', ADDRESS being NAME.i2p or <52 characters>.b32.i2p); "
     + EXPECT_HINT),
    ("[node]\ntub.port = tcp:3457\ntub.location = tcp:example.net:1,\n",
     "'node.cfg' [node] tub.location = 'tcp:example.net:1,': has an empty entry; expected hints "
     "separated by commas"),
    ("[node]\ntub.port = tcp:3457\ntub.location = pb://x@y/z\n",
     "'node.cfg' [node] tub.location = 'pb://x@y/z': 'pb://x@y/z' is not a connection hint; " + EXPECT_HINT),
    ("[node]\ntub.port = listen:tor\ntub.location = AUTO\n" + ONION,
     "'node.cfg' [node] tub.location = 'AUTO': AUTO announces tcp:ADDRESS:PORT, but [node] tub.port "
     "has no tcp: listener to take the PORT from; expected a tcp:PORT entry in tub.port, or explicit hints"),
    # -- [node] others
    ("[node]\nreveal-IP-address = maybe\n",
     "'node.cfg' [node] reveal-IP-address = 'maybe': not a boolean; " + EXPECT_BOOL),
    ("[node]\ntimeout.keepalive = soon\n",
     "'node.cfg' [node] timeout.keepalive = 'soon': not a number of seconds; expected a whole number of "
     "seconds, e.g. 600"),
    ("[node]\ntimeout.disconnect = -1\n",
     "'node.cfg' [node] timeout.disconnect = '-1': not a number of seconds; expected a whole number of "
     "seconds, e.g. 600"),
    ("[node]\ntub.prot = tcp:3457\n",
     "'node.cfg' [node] tub.prot = 'tcp:3457': unknown key (did you mean tub.port?); expected one of "
     "tub.port, tub.location, reveal-IP-address, timeout.keepalive, timeout.disconnect"),
    # -- [connections]
    ("[connections]\ntcp = toor\n",
     "'node.cfg' [connections] tcp = 'toor': unknown handler; expected one of tcp, tor, i2p, disabled"),
    ("[connections]\ntcp =\n",  # Tahoe-LAFS: unknown handler '', not tcp
     "'node.cfg' [connections] tcp = '': empty; expected one of tcp, tor, i2p, disabled"),
    ("[connections]\ntcp = tor\n[tor]\nenabled = false\n",
     "'node.cfg' [connections] tcp = 'tor': the tor handler is not available ([tor] enabled = false); "
     "expected a handler that is enabled, or disabled"),
    ("[connections]\ntcp = i2p\n[i2p]\nenabled = no\n",
     "'node.cfg' [connections] tcp = 'i2p': the i2p handler is not available ([i2p] enabled = false); "
     "expected a handler that is enabled, or disabled"),
    ("[connections]\nudp = tcp\n",
     "'node.cfg' [connections] udp = 'tcp': unknown key; expected one of tcp"),
    # -- [tor]
    ("[tor]\nenabled = perhaps\n", "'node.cfg' [tor] enabled = 'perhaps': not a boolean; " + EXPECT_BOOL),
    ("[tor]\nlaunch = 2\n", "'node.cfg' [tor] launch = '2': not a boolean; " + EXPECT_BOOL),
    ("[tor]\nonion = sure\n", "'node.cfg' [tor] onion = 'sure': not a boolean; " + EXPECT_BOOL),
    ("[tor]\ncontrol.port =\n",
     "'node.cfg' [tor] control.port = '': empty; expected a client endpoint description such as "
     "'tcp:127.0.0.1:9051'"),
    ("[tor]\ncontrol.port = tcp:127.0.0.1:notaport\n",
     "'node.cfg' [tor] control.port = 'tcp:127.0.0.1:notaport': not a client endpoint description "
     "(its port 'notaport' is not a number); expected one such as 'tcp:127.0.0.1:9051'"),
    ("[tor]\ncontrol.port = tcp:9051\n",
     "'node.cfg' [tor] control.port = 'tcp:9051': not a client endpoint description (it has no port); "
     "expected one such as 'tcp:127.0.0.1:9051'"),
    ("[tor]\ncontrol.port = tcp:127.0.0.1:0\n",
     "'node.cfg' [tor] control.port = 'tcp:127.0.0.1:0': not a client endpoint description (its port 0 is "
     "not from 1 to 65535); expected one such as 'tcp:127.0.0.1:9051'"),
    ("[tor]\ncontrol.port = tcp:127.0.0.1:9051:timeout=soon\n",
     "'node.cfg' [tor] control.port = 'tcp:127.0.0.1:9051:timeout=soon': not a client endpoint description "
     "('soon' is not a number); expected one such as 'tcp:127.0.0.1:9051'"),
    ("[tor]\ncontrol.port = unix\n",
     "'node.cfg' [tor] control.port = 'unix': not a client endpoint description (it has no path); "
     "expected one such as 'tcp:127.0.0.1:9051'"),
    ("[tor]\nsocks.port = tcp:127.0.0.1:x\n",
     "'node.cfg' [tor] socks.port = 'tcp:127.0.0.1:x': not a client endpoint description (its port 'x' is "
     "not a number); expected one such as 'tcp:127.0.0.1:9050'"),
    ("[tor]\nlaunch = true\ntor.executable = bin/missing\n",
     "'node.cfg' [tor] tor.executable = 'bin/missing': {d}/bin/missing is not an executable file; "
     "expected the path of a tor executable (relative paths start at {d})"),
    ("[tor]\nlaunch = true\ntor.executable = no-such-tor\n",
     "'node.cfg' [tor] tor.executable = 'no-such-tor': not found on PATH or in /usr/sbin, /usr/local/sbin, "
     "/usr/bin, /usr/local/bin; expected the name or path of a tor executable"),
    ("[tor]\nonion = true\n",
     "'node.cfg' [tor] onion = 'true': needs [tor] launch = true or [tor] control.port: only tor's control "
     "port can publish an onion service"),
    ("[tor]\nonion = true\nsocks.port = tcp:127.0.0.1:9050\n",
     "'node.cfg' [tor] onion = 'true': needs [tor] launch = true or [tor] control.port: only tor's control "
     "port can publish an onion service"),
    ("[tor]\nonion = true\ncontrol.port = tcp:127.0.0.1:9051\n",
     "'node.cfg' [tor] onion = 'true': needs [tor] onion.local_port; expected a port number from 1 to "
     "65535: the 127.0.0.1 port the onion service forwards to"),
    ("[tor]\nonion = true\ncontrol.port = tcp:127.0.0.1:9051\nonion.local_port = 7000\n",
     "'node.cfg' [tor] onion = 'true': needs [tor] onion.external_port; expected a port number from 1 to "
     "65535: the onion service's port, e.g. 3457"),
    ("[tor]\nonion = true\ncontrol.port = tcp:127.0.0.1:9051\nonion.local_port = 7000\n"
     "onion.external_port = 3457\n",
     "'node.cfg' [tor] onion = 'true': needs [tor] onion.private_key_file; expected the path of the onion "
     "service's key file"),
    ("[node]\ntub.port = listen:tor\n" + ONION.replace("private/tor.key", "private/missing.key"),
     "'node.cfg' [tor] onion.private_key_file = 'private/missing.key': {d}/private/missing.key does not "
     "exist (relative paths start at {d}); expected a key file, as 'foolscap-sidetls create-node "
     "--listen=tor' writes"),
    ("[node]\ntub.port = listen:tor\n" + ONION.replace("private/tor.key", "private/bad.key"),
     "'node.cfg' [tor] onion.private_key_file = 'private/bad.key': {d}/private/bad.key does not hold a tor "
     "onion service key (it does not start with 'ED25519-V3:'); expected one line 'ED25519-V3:<base64>', as "
     "tor and Tahoe-LAFS write it"),
    ("[tor]\nonion.private_key_file =\n",
     "'node.cfg' [tor] onion.private_key_file = '': empty; expected the path of the onion service's key "
     "file"),
    ("[node]\ntub.port = tcp:3457\n" + ONION,
     "'node.cfg' [tor] onion = 'true': the onion service forwards to 127.0.0.1:7000, but [node] tub.port "
     "does not listen there; expected listen:tor (or tcp:7000:interface=127.0.0.1) in [node] tub.port"),
    # Accepted (with a warning) as in Tahoe-LAFS, but not when the IP address must stay hidden.
    ("[node]\ntub.port = tcp:7000\ntub.location = tor:abc.onion:3457\nreveal-IP-address = false\n"
     "[connections]\ntcp = tor\n" + ONION,
     "'node.cfg' [node] tub.port = 'tcp:7000': 'tcp:7000' listens on every interface, which reveals this "
     "machine's IP address to whoever connects there, but [node] reveal-IP-address = false; expected "
     "tcp:7000:interface=127.0.0.1 or listen:tor (reachable only through the onion service)"),
    ("[node]\ntub.port = tcp:7000:interface=192.0.2.7\ntub.location = tor:abc.onion:3457\n"
     "reveal-IP-address = false\n[connections]\ntcp = tor\n" + ONION,
     "'node.cfg' [node] tub.port = 'tcp:7000:interface=192.0.2.7': 'tcp:7000:interface=192.0.2.7' listens on "
     "192.0.2.7, which reveals this machine's IP address to whoever connects there, but [node] "
     "reveal-IP-address = false; expected tcp:7000:interface=127.0.0.1 or listen:tor (reachable only through "
     "the onion service)"),
    # Paths start at the node directory, and ~ is not $HOME (Tahoe-LAFS's get_config_path()).
    ("[node]\ntub.port = listen:tor\n" + ONION.replace("private/tor.key", "~/tor.key"),
     "'node.cfg' [tor] onion.private_key_file = '~/tor.key': {d}/~/tor.key does not exist (relative paths "
     "start at {d}; ~ is not expanded, as in Tahoe-LAFS); expected a key file, as 'foolscap-sidetls "
     "create-node --listen=tor' writes"),
    ("[tor]\nlaunch = true\ntor.executable = ~/bin/tor\n",
     "'node.cfg' [tor] tor.executable = '~/bin/tor': {d}/~/bin/tor is not an executable file; expected the "
     "path of a tor executable (relative paths start at {d}; ~ is not expanded, as in Tahoe-LAFS)"),
    ("[tor]\nonion.local_port = 0\n", "'node.cfg' [tor] onion.local_port = '0': not a port number; " + EXPECT_PORT),
    ("[tor]\nonion.local_port = \u0667\u0660\u0660\u0660\n",  # Arabic-Indic digits: int() reads them
     "'node.cfg' [tor] onion.local_port = '\u0667\u0660\u0660\u0660': not a port number; " + EXPECT_PORT),
    ("[tor]\nonion.external_port = 65536\n",
     "'node.cfg' [tor] onion.external_port = '65536': not a port number; " + EXPECT_PORT),
    ("[tor]\nhidden_service_dir = x\n",
     "'node.cfg' [tor] hidden_service_dir = 'x': unknown key; expected one of enabled, launch, "
     "tor.executable, control.port, socks.port, bootstrap.timeout, onion, onion.local_port, onion.external_port, "
     "onion.private_key_file"),
    # -- [i2p]
    ("[i2p]\nenabled = maybe\n", "'node.cfg' [i2p] enabled = 'maybe': not a boolean; " + EXPECT_BOOL),
    ("[i2p]\nlaunch = often\n", "'node.cfg' [i2p] launch = 'often': not a boolean; " + EXPECT_BOOL),
    ("[i2p]\ndest = y\n", "'node.cfg' [i2p] dest = 'y': not a boolean; " + EXPECT_BOOL),
    ("[i2p]\nsam.port = tcp:127.0.0.1:sam\n",
     "'node.cfg' [i2p] sam.port = 'tcp:127.0.0.1:sam': not a client endpoint description (its port 'sam' "
     "is not a number); expected one such as 'tcp:127.0.0.1:7656'"),
    ("[i2p]\nsam.port = tcp:127.0.0.1:7656\nlaunch = true\n",
     "'node.cfg' [i2p] launch = 'true': conflicts with [i2p] sam.port = 'tcp:127.0.0.1:7656': a launched "
     "i2pd has a SAM port of its own; expected one of them"),
    ("[i2p]\nlaunch = true\ni2p.executable = ./nothere\n",
     "'node.cfg' [i2p] i2p.executable = './nothere': {d}/nothere is not an executable file; expected the "
     "path of an i2pd executable (relative paths start at {d})"),
    ("[i2p]\ni2p.configdir = nowhere\n",
     "'node.cfg' [i2p] i2p.configdir = 'nowhere': {d}/nowhere does not exist; is i2pd configured there?; "
     "expected the configuration directory of a running i2pd with its SAM bridge enabled"),
    ("[i2p]\ni2p.configdir = i2pd-nosam\n",
     "'node.cfg' [i2p] i2p.configdir = 'i2pd-nosam': {d}/i2pd-nosam/i2pd.conf has no [sam] section, so its "
     "SAM bridge's address is unknown; add\n  [sam]\n  enabled = true\n  address = 127.0.0.1\n  port = "
     "7656\nto it and restart i2pd; expected the configuration directory of a running i2pd with its SAM "
     "bridge enabled"),
    ("[i2p]\nlaunch = true\ni2p.executable = bin/i2pd\ni2p.configdir = other-i2pd\n",
     "'node.cfg' [i2p] i2p.configdir = 'other-i2pd': with [i2p] launch = true the launched i2pd keeps its "
     "data there, but {d}/other-i2pd/i2pd.conf belongs to another i2pd; expected a directory of its own for "
     "the launched i2pd (or launch = false to use that i2pd)"),
    ("[i2p]\ndest = true\n",
     "'node.cfg' [i2p] dest = 'true': needs a SAM bridge to listen through: [i2p] sam.port, launch = true "
     "or i2p.configdir"),
    ("[i2p]\ndest = true\nsam.port = tcp:127.0.0.1:7656\n",
     "'node.cfg' [i2p] dest = 'true': needs [i2p] dest.port; expected a port number from 1 to 65535: the "
     "I2P port announced in the hint, e.g. 3457"),
    ("[i2p]\ndest = true\nsam.port = tcp:127.0.0.1:7656\ndest.port = 3457\n",
     "'node.cfg' [i2p] dest = 'true': needs [i2p] dest.private_key_file; expected the path of the "
     "destination's key file"),
    (DEST.replace("private/i2p.key", "private/nokey"),
     "'node.cfg' [i2p] dest.private_key_file = 'private/nokey': {d}/private/nokey does not exist (relative "
     "paths start at {d}); expected an I2P private key file, as 'foolscap-sidetls create-node "
     "--listen=i2p' writes"),
    (DEST.replace("private/i2p.key", "private/bad.key"),
     "'node.cfg' [i2p] dest.private_key_file = 'private/bad.key': {d}/private/bad.key does not hold an I2P "
     "private key; expected an I2P private key file, as 'foolscap-sidetls create-node --listen=i2p' writes"),
    ("[i2p]\ndest.port = 99999\n", "'node.cfg' [i2p] dest.port = '99999': not a port number; " + EXPECT_PORT),
    ("[i2p]\ni2cp.options = inbound.length\n",
     "'node.cfg' [i2p] i2cp.options = 'inbound.length': 'inbound.length' is not NAME=VALUE; " + EXPECT_I2CP),
    ("[i2p]\ni2cp.options = ID=x\n",
     "'node.cfg' [i2p] i2cp.options = 'ID=x': 'ID' is set by foolscap-sidetls itself; " + EXPECT_I2CP),
    ("[i2p]\ni2cp.options = a=\"b\"\n",
     "'node.cfg' [i2p] i2cp.options = 'a=\"b\"': the value of 'a' has a quote or '='; " + EXPECT_I2CP),
    ("[i2p]\ni2cp.options = in@bound=1\n",
     "'node.cfg' [i2p] i2cp.options = 'in@bound=1': option name 'in@bound' has characters other than "
     "letters, digits, '.', '_', '-'; " + EXPECT_I2CP),
    ("[i2p]\ni2cp.options = ,\n", "'node.cfg' [i2p] i2cp.options = ',': empty; " + EXPECT_I2CP),
    # -- the file as a whole
    ("[tahoe]\n",
     "'node.cfg' [tahoe]: unknown section; expected one of [node], [connections], [tor], [i2p] (and "
     "Tahoe-LAFS's [client], [storage], [helper], [sftpd], [ftpd], [magic_folder], [grid_managers], "
     "[grid_manager_certificates], which are ignored)"),
    ("[nodes]\n",
     "'node.cfg' [nodes]: unknown section (did you mean node?); expected one of [node], [connections], "
     "[tor], [i2p] (and Tahoe-LAFS's [client], [storage], [helper], [sftpd], [ftpd], [magic_folder], "
     "[grid_managers], [grid_manager_certificates], which are ignored)"),
    ("tub.port = tcp:3457\n",
     "'node.cfg': line 1 ('tub.port = tcp:3457') comes before any [section] header; expected [node], "
     "[connections], [tor] or [i2p] first"),
    ("[node]\nthis is not a setting\n",
     "'node.cfg': line 2 ('this is not a setting') is neither 'key = value' nor a [section] header"),
]

#: reveal-IP-address = false vetoes each way of revealing it (and allows the rest).
PRIVATE = "[node]\nreveal-IP-address = false\n"
VETOED: list[tuple[str, str]] = [
    (PRIVATE + "tub.port = tcp:3457\ntub.location = tor:abc.onion:3457\n",
     "'node.cfg' [connections] tcp is not set (so tcp): dials tcp: hints directly, which reveals this "
     "machine's IP address, but [node] reveal-IP-address = false; expected tor or disabled (or i2p)"),
    (PRIVATE + "tub.port = tcp:3457\ntub.location = tor:abc.onion:3457\n[connections]\ntcp = tcp\n",
     "'node.cfg' [connections] tcp = 'tcp': dials tcp: hints directly, which reveals this machine's IP "
     "address, but [node] reveal-IP-address = false; expected tor or disabled (or i2p)"),
    (PRIVATE + "tub.port = tcp:3457\n[connections]\ntcp = tor\n",
     "'node.cfg' [node] tub.location is not set (so AUTO): AUTO announces this machine's IP addresses, but "
     "[node] reveal-IP-address = false; expected tor: or i2p: hints only"),
    (PRIVATE + "tub.port = tcp:3457\ntub.location = tor:%s:3457,AUTO\n[connections]\ntcp = tor\n" % (OTHER_ONION,),
     "'node.cfg' [node] tub.location = 'tor:%s:3457,AUTO': AUTO announces this machine's IP " % (OTHER_ONION,) +
     "addresses, but [node] reveal-IP-address = false; expected tor: or i2p: hints only"),
    (PRIVATE + "tub.port = tcp:3457\ntub.location = tcp:example.net:3457\n[connections]\ntcp = disabled\n",
     "'node.cfg' [node] tub.location = 'tcp:example.net:3457': the hint 'tcp:example.net:3457' reveals this "
     "machine's IP address, but [node] reveal-IP-address = false; expected tor: or i2p: hints only"),
    (PRIVATE + "tub.port = tcp:3457\ntub.location = example.net:3457\n[connections]\ntcp = disabled\n",
     "'node.cfg' [node] tub.location = 'example.net:3457': the hint 'example.net:3457' reveals this "
     "machine's IP address, but [node] reveal-IP-address = false; expected tor: or i2p: hints only"),
]


class Errors(SynchronousTestCase):
    """Each bad value, and each missing piece, is refused with an exact message."""

    def setUp(self) -> None:
        self.node = Node(self)

    def check(self, table: list[tuple[str, str]]) -> None:
        before = listing(self.node.dir)
        for text, expected in table:
            with self.subTest(text=text):
                e = self.assertRaises(config.ConfigError, self.node.parse, text)
                self.assertEqual(str(e), expected.format(d=self.node.dir))
        self.assertEqual(listing(self.node.dir), before)

    def test_bad_values(self) -> None:
        self.check(BAD)

    def test_reveal_ip_false_vetoes_each_case(self) -> None:
        self.check(VETOED)

    def test_error_attributes(self) -> None:
        e = self.assertRaises(config.ConfigError, self.node.parse, "[connections]\ntcp = toor\n")
        self.assertEqual(
            (e.source, e.section, e.key, e.value, e.problem),
            ("node.cfg", "connections", "tcp", "toor",
             "unknown handler; expected one of tcp, tor, i2p, disabled"),
        )
        self.assertIsInstance(e, ValueError)

    def test_unreadable_file(self) -> None:
        path = self.node.path("missing.cfg")
        e = self.assertRaises(config.ConfigError, config.load, path)
        self.assertEqual(str(e), "%r: cannot read it (No such file or directory)" % (path,))

    def test_tor_launch_without_tor_anywhere(self) -> None:
        self.patch(os, "environ", dict(os.environ, PATH=self.node.path("empty")))
        from foolscap_sidetls import tor

        self.patch(tor, "TOR_SEARCH_DIRS", (self.node.path("nothing"),))
        e = self.assertRaises(config.ConfigError, self.node.parse, "[tor]\nlaunch = true\n")
        self.assertEqual(
            str(e),
            "'node.cfg' [tor] launch = 'true': no tor executable found on PATH or in %s; expected tor "
            "installed (apt-get install tor) or [tor] tor.executable set to its path" % (self.node.path("nothing"),),
        )


class Values(SynchronousTestCase):
    """Good values, and what they mean."""

    def setUp(self) -> None:
        self.node = Node(self)

    def test_defaults_are_tahoes(self) -> None:
        c = self.node.parse("")
        self.assertEqual(dict(c.handlers), {"tcp": "tcp", "tor": "tor", "i2p": "i2p"})
        self.assertTrue(c.listening)
        self.assertTrue(c.reveal_ip)
        self.assertEqual(c.tub_port, ())  # chosen at the first start
        self.assertEqual(c.location, ("tcp:192.0.2.7:<port>", "tcp:127.0.0.1:<port>"))
        self.assertEqual(dict(c.timeouts), {})
        self.assertEqual(c.warnings, ())

    def test_tub_port_and_location(self) -> None:
        c = self.node.parse(
            "[node]\ntub.port = 3457, tcp:3458:interface=127.0.0.1,sidetls:tcp:3459\n"
            "tub.location = AUTO,example.net:3457,tcp:[2001:db8::1]:3457\n"
        )
        self.assertEqual(c.tub_port, ("tcp:3457", "tcp:3458:interface=127.0.0.1", "sidetls:tcp:3459"))
        self.assertEqual(
            c.location,
            ("tcp:192.0.2.7:3457", "tcp:127.0.0.1:3457", "example.net:3457", "tcp:[2001:db8::1]:3457"),
        )

    def test_disabled(self) -> None:
        c = self.node.parse("[node]\ntub.port = disabled\ntub.location = disabled\n[connections]\ntcp = disabled\n")
        self.assertFalse(c.listening)
        self.assertEqual((c.tub_port, c.location), ((), ()))
        self.assertEqual(dict(c.handlers), {"tcp": None, "tor": "tor", "i2p": "i2p"})
        self.assertIn("  none (tub.location = disabled): this Tub only dials", c.describe())

    def test_booleans_and_timeouts(self) -> None:
        c = self.node.parse(
            "[node]\ntub.port = disabled\ntub.location = disabled\nREVEAL-IP-ADDRESS = No\n"
            "timeout.keepalive = 240\ntimeout.disconnect = \n"
            "[connections]\ntcp = TOR\n[tor]\nenabled = YES\n[i2p]\nenabled = off\n"
        )
        self.assertFalse(c.reveal_ip)
        self.assertEqual(dict(c.timeouts), {"timeout.keepalive": 240})  # empty: unset, as in Tahoe
        self.assertEqual(dict(c.handlers), {"tcp": "tor", "tor": "tor", "i2p": None})

    def test_tor_handlers_in_tahoes_order(self) -> None:
        def tor_of(text: str) -> str:
            return self.node.parse("[node]\ntub.port = disabled\ntub.location = disabled\n[tor]\n" + text).describe_handler("tor")

        self.assertEqual(tor_of(""), "sidetls+tor (SOCKS 127.0.0.1:9050 or 127.0.0.1:9150, the default)")
        self.assertEqual(tor_of("control.port = tcp:127.0.0.1:9051\n"), "sidetls+tor (control port tcp:127.0.0.1:9051)")
        self.assertEqual(
            tor_of("control.port = tcp:127.0.0.1:9051\nsocks.port = unix:/run/tor/socks\n"),
            "sidetls+tor (SOCKS port unix:/run/tor/socks)",
        )
        self.assertEqual(
            tor_of("launch = true\ntor.executable = bin/tor\nsocks.port = tcp:127.0.0.1:9050\n"),
            "sidetls+tor (a tor launched here (%s, data in %s))"
            % (self.node.path("bin/tor"), self.node.path("private/tor-statedir")),
        )
        c = self.node.parse("[tor]\nlaunch = true\ntor.executable = bin/tor\nsocks.port = tcp:127.0.0.1:9050\n"
                            "[node]\ntub.port = disabled\ntub.location = disabled\n")
        self.assertEqual(
            c.warnings,
            ("[tor] socks.port is not used: [tor] launch = true dials and publishes through the launched tor",),
        )

    def test_i2p_handlers(self) -> None:
        def i2p_of(text: str) -> str:
            return self.node.parse("[node]\ntub.port = disabled\ntub.location = disabled\n[i2p]\n" + text).describe_handler("i2p")

        self.assertEqual(i2p_of(""), "sidetls+i2p (SAM at tcp:127.0.0.1:7656, the default)")
        self.assertEqual(i2p_of("sam.port = tcp:127.0.0.1:7000\n"), "sidetls+i2p (SAM at tcp:127.0.0.1:7000)")
        self.assertEqual(
            i2p_of("i2p.configdir = i2pd\n"),
            "sidetls+i2p (SAM at tcp:127.0.0.1:7999 (from %s))" % (self.node.path("i2pd/i2pd.conf"),),
        )
        self.assertEqual(
            i2p_of("launch = true\ni2p.executable = bin/i2pd\ni2cp.options = inbound.length=0, outbound.length=0 i2cp.leaseSetType=1\n"),
            "sidetls+i2p (an i2pd launched here (%s, data in %s), options inbound.length=0, "
            "outbound.length=0, i2cp.leaseSetType=1)" % (self.node.path("bin/i2pd"), self.node.path("private/i2p-statedir")),
        )
        # A directory of its own (empty, or with the file launch() wrote) is the launched i2pd's.
        self.node.write("mine/i2pd.conf", "# written by foolscap_sidetls.i2p.launch()\n")
        self.assertEqual(
            i2p_of("launch = true\ni2p.configdir = mine\n"),
            "sidetls+i2p (an i2pd launched here (i2pd from PATH, data in %s))" % (self.node.path("mine"),),
        )

    def test_onion(self) -> None:
        for port in ("listen:tor", "tcp:7000:interface=127.0.0.1"):
            c = self.node.parse("[node]\ntub.port = %s\ntub.location = tor:%s:3457\n" % (port, self.node.onion) + ONION)
            self.assertEqual(c.tub_port, (port,))
            self.assertEqual(c.warnings, ())
            self.assertEqual(
                c.describe_listeners(),
                ["onion service %s:3457 -> 127.0.0.1:7000 (key %s; published through control port "
                 "tcp:127.0.0.1:9051)" % (self.node.onion, self.node.path("private/tor.key"))],
            )

    def test_onion_with_a_listener_on_every_interface(self) -> None:
        """Tahoe-LAFS accepts it; said in check's output, since the Tub is also reachable without tor."""
        for port, where, at in [
            ("tcp:7000", "every interface", "this machine's IP addresses"),
            ("tcp:7000:interface=192.0.2.7", "192.0.2.7", "192.0.2.7"),
        ]:
            c = self.node.parse("[node]\ntub.port = %s\ntub.location = tor:%s:3457\n" % (port, self.node.onion) + ONION)
            self.assertEqual(c.tub_port, (port,))
            warning = (
                "[node] tub.port %r listens on %s, not only on 127.0.0.1 where [tor] onion.local_port = 7000 "
                "points: this Tub is also reachable without tor, at %s, and the onion service forwards to a free "
                "127.0.0.1 port of its own; tcp:7000:interface=127.0.0.1 (or listen:tor) would make it reachable "
                "only through the onion service" % (port, where, at)
            )
            self.assertEqual(c.warnings, (warning,))
            self.assertEqual(
                c.describe_listeners(),
                ["%s (role-based: each connection is the TLS server)" % (port,),
                 "onion service %s:3457 -> 127.0.0.1:<a free port> (key %s; published through control port "
                 "tcp:127.0.0.1:9051)" % (self.node.onion, self.node.path("private/tor.key"))],
            )
            self.assertEqual(c.describe()[-1], "warning: " + warning)

    def test_location_not_announcing_the_onion(self) -> None:
        c = self.node.parse("[node]\ntub.port = listen:tor\ntub.location = tor:%s:3457\n" % (OTHER_ONION,) + ONION)
        self.assertEqual(
            c.warnings,
            ("[tor] onion.private_key_file publishes tor:%s:3457, but [node] tub.location announces "
             "tor:%s:3457; dialers will not find this onion service" % (self.node.onion, OTHER_ONION),),
        )

    def test_dest(self) -> None:
        c = self.node.parse("[node]\ntub.port = listen:i2p\ntub.location = i2p:%s:3457\n" % (self.node.b32,) + DEST)
        self.assertEqual(c.warnings, ())
        self.assertEqual(
            c.describe_listeners(),
            ["I2P destination %s:3457 (key %s; through SAM at tcp:127.0.0.1:7656)"
             % (self.node.b32, self.node.path("private/i2p.key"))],
        )
        # dest = true without listen:i2p listens nowhere, as in Tahoe-LAFS: said, not refused.
        c = self.node.parse("[node]\ntub.port = tcp:3457\ntub.location = tcp:example.net:3457\n" + DEST)
        self.assertEqual(
            c.warnings,
            ("[i2p] dest = true is not used: [node] tub.port has no listen:i2p (as in Tahoe-LAFS, the "
             "destination is listened on only through listen:i2p)",),
        )

    def test_reveal_ip_false_allows_the_rest(self) -> None:
        for tcp in ("tor", "disabled", "i2p"):
            c = self.node.parse(
                PRIVATE + "tub.port = listen:tor\ntub.location = tor:%s:3457\n[connections]\ntcp = %s\n"
                % (self.node.onion, tcp) + ONION
            )
            self.assertFalse(c.reveal_ip)
            self.assertEqual(c.handlers["tcp"], None if tcp == "disabled" else tcp)

    def test_relative_paths_start_at_the_files_directory(self) -> None:
        path = self.node.cfg("[node]\ntub.port = listen:tor\ntub.location = tor:%s:3457\n" % (self.node.onion,) + ONION,
                             name="etc/node.cfg")
        self.node.write("etc/private/tor.key", self.node.tor_key)
        c = config.load(path, local_addresses=addresses)
        self.assertEqual(c.basedir, self.node.path("etc"))
        self.assertIn(self.node.path("etc/private/tor.key"), c.describe_listeners()[0])

    def test_tahoe_lafs_file_unchanged(self) -> None:
        """A tahoe.cfg as Tahoe-LAFS 1.20's create-client writes it (plus its usual sections) loads."""
        c = self.node.parse(
            "# -*- mode: conf; coding: utf-8 -*-\n\n"
            "[node]\nnickname = alice\nweb.port = tcp:3456:interface=127.0.0.1\nweb.static = public_html\n"
            "#log_gatherer.furl =\n#timeout.keepalive =\n#timeout.disconnect =\n"
            "tub.port = tcp:40617\ntub.location = tcp:alice.example.net:40617\n\n"
            "[client]\nintroducer.furl = pb://x@tcp:intro.example.net:1/y\nshares.needed = 3\n\n"
            "[storage]\nenabled = true\nreserved_space = 1G\n\n[helper]\nenabled = false\n\n"
            "[storageclient.plugins.example]\nkey = value\n"
        )
        self.assertEqual(c.tub_port, ("tcp:40617",))
        self.assertEqual(c.location, ("tcp:alice.example.net:40617",))
        self.assertEqual(c.ignored, ("client", "storage", "helper", "storageclient.plugins.example"))

    def test_check_describes_everything(self) -> None:
        c = self.node.parse(
            "[node]\ntub.port = tcp:3457:interface=127.0.0.1,listen:tor,listen:i2p\n"
            "tub.location = tcp:127.0.0.1:3457,tor:%s:3457,i2p:%s:3457\ntimeout.keepalive = 60\n"
            % (self.node.onion, self.node.b32) + ONION + DEST + "i2cp.options = inbound.length=0\n"
            "[connections]\ntcp = tcp\n[client]\nnickname = x\n"
        )
        self.assertEqual(
            c.describe(),
            [
                "handlers (this end dials, and is the TLS client):",
                "  tcp: hints -> sidetls+tcp (direct TCP connections)",
                "  tor: hints -> sidetls+tor (control port tcp:127.0.0.1:9051)",
                "  i2p: hints -> sidetls+i2p (SAM at tcp:127.0.0.1:7656, options inbound.length=0)",
                "listeners (the other end dials, this end is the TLS server):",
                "  tcp:3457:interface=127.0.0.1 (role-based: each connection is the TLS server)",
                "  onion service %s:3457 -> 127.0.0.1:7000 (key %s; published through control port "
                "tcp:127.0.0.1:9051)" % (self.node.onion, self.node.path("private/tor.key")),
                "  I2P destination %s:3457 (key %s; through SAM at tcp:127.0.0.1:7656, options "
                "inbound.length=0)" % (self.node.b32, self.node.path("private/i2p.key")),
                "location (the hints FURLs announce):",
                "  tcp:127.0.0.1:3457",
                "  tor:%s:3457" % (self.node.onion,),
                "  i2p:%s:3457" % (self.node.b32,),
                "timeouts: timeout.keepalive 60 s",
                "ignored: [client] (Tahoe-LAFS settings foolscap-sidetls does not use)",
            ],
        )


class Snicaddr(NamedTuple):
    """What psutil.net_if_addrs() lists for each address."""

    family: int
    address: str
    netmask: Optional[str] = None
    broadcast: Optional[str] = None
    ptp: Optional[str] = None


class LocalAddresses(SynchronousTestCase):
    """What tub.location = AUTO announces: every IPv4 address of every interface, as Tahoe-LAFS 1.20."""

    def test_every_ipv4_address_of_every_interface(self) -> None:
        interfaces = {
            "lo": [Snicaddr(socket.AF_INET, "127.0.0.1"), Snicaddr(socket.AF_INET6, "::1")],
            "eth0": [Snicaddr(socket.AF_INET, "192.0.2.7"), Snicaddr(socket.AF_INET, "192.0.2.8"),
                     Snicaddr(socket.AF_INET6, "2001:db8::7"), Snicaddr(psutil.AF_LINK, "52:54:00:12:34:56")],
            "wg0": [Snicaddr(socket.AF_INET, "198.51.100.1")],
            "docker0": [Snicaddr(socket.AF_INET, "127.0.0.1")],
        }
        found = config._ipv4_addresses(interfaces)
        self.assertEqual(found, ["127.0.0.1", "192.0.2.7", "192.0.2.8", "198.51.100.1", "127.0.0.1"])
        self.assertEqual(config._loopback_last(found + ["127.0.0.1"]),
                         ["192.0.2.7", "192.0.2.8", "198.51.100.1", "127.0.0.1"])

    def test_this_machine(self) -> None:
        expected = {a.address for entries in psutil.net_if_addrs().values() for a in entries
                    if a.family == socket.AF_INET} | {"127.0.0.1"}
        found = config.local_addresses()
        self.assertEqual(set(found), expected)
        self.assertEqual(len(found), len(expected))
        self.assertEqual(found[-1][:4], "127.")

    def test_without_psutil(self) -> None:
        """Where psutil cannot list interfaces, the host name's addresses stand in."""
        self.patch(psutil, "net_if_addrs", lambda: 1 / 0)
        try:
            resolved = {str(i[4][0]) for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
        except OSError:
            resolved = set()
        found = config.local_addresses()
        self.assertEqual(set(found), resolved | {"127.0.0.1"})
        self.assertIn("127.0.0.1", found)


class Examples(SynchronousTestCase):
    """examples/configs: each one loads once its key files exist (create-node makes them)."""

    def test_every_example_loads(self) -> None:
        from foolscap_sidetls import i2p, tor

        examples = os.path.join(TOP, "examples", "configs")
        names = sorted(n for n in os.listdir(examples) if n.endswith(".cfg"))
        self.assertEqual(
            names,
            ["client-only.cfg", "i2p-launch.cfg", "i2p.cfg", "tcp.cfg", "tor-launch-hide-ip.cfg", "tor.cfg"],
        )
        node = Node(self)
        # launch = true finds tor and i2pd on PATH: stand-ins, whether or not they are installed.
        self.patch(os, "environ", dict(os.environ, PATH=node.path("bin")))
        self.patch(tor, "TOR_SEARCH_DIRS", ())
        self.patch(i2p, "I2PD_SEARCH_DIRS", ())
        node.write("private/tor_onion.privkey", node.tor_key)
        node.write("private/i2p_dest.privkey", make_keypair()[1])
        for name in names:
            with open(os.path.join(examples, name)) as f:
                c = config.load(node.cfg(f.read(), name=name), local_addresses=addresses)
            # The examples announce placeholder addresses, not the fresh keys'.
            for warning in c.warnings:
                self.assertIn("dialers will not find", warning, name)
            expected = 0 if name in ("client-only.cfg", "tcp.cfg") else 1
            self.assertEqual(len(c.warnings), expected, (name, c.warnings))

    def test_each_header_says_what_check_needs(self) -> None:
        """Each key file an example names, and each daemon it launches, is in its header, with how to make it."""
        import configparser

        examples = os.path.join(TOP, "examples", "configs")
        for name in sorted(n for n in os.listdir(examples) if n.endswith(".cfg")):
            with open(os.path.join(examples, name)) as f:
                text = f.read()
            header = ""
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    break
                header += line[2:] + "\n"
            header = " ".join(header.split())
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(text)
            keys = [parser.get(s, k) for s in parser.sections() for k in parser.options(s)
                    if k.endswith("private_key_file")]
            if not keys:
                self.assertIn("Needs no key files: 'check' passes on this file as it is", header, name)
            for key in keys:
                self.assertIn("For 'check' to pass, ", header, name)
                self.assertIn("%s (relative to this file's directory) must hold" % (key,), header, name)
                # Each recipe makes a node directory of its own and copies
                # the example into it: nothing collides, nothing lands
                # under examples/.
                node = "/tmp/sidetls-%s" % (name[: -len(".cfg")],)
                self.assertIn("cp examples/configs/%s %s/node.cfg" % (name, node), header, name)
                self.assertIn("foolscap-sidetls check %s" % (node,), header, name)
                self.assertNotIn("/tmp/n ", header + " ", name)
                self.assertIn("foolscap-sidetls create-node --listen=%s" % ("tor" if "tor" in key else "i2p",),
                              header, name)
            for section, daemon in (("tor", "tor"), ("i2p", "i2pd")):
                if parser.has_option(section, "launch"):
                    self.assertIn("%s must be installed (on PATH, or set %s.executable)" % (daemon, section),
                                  header, name)


class OnionKeys(SynchronousTestCase):
    def test_rfc8032_vector(self) -> None:
        """The public key of RFC 8032's first test vector, from its expanded secret."""
        seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        digest = bytearray(hashlib.sha512(seed).digest())
        digest[0] &= 248
        digest[31] &= 127
        digest[31] |= 64
        self.assertEqual(
            _onion.public_key(bytes(digest)).hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        )

    def test_new_keys_publish_their_address(self) -> None:
        """new_key() takes its address from libsodium's key pair; address_of_key() from the scalar."""
        addresses = set()
        for _ in range(3):
            text, address = _onion.new_key()
            self.assertRegex(address, r"^[a-z2-7]{56}\.onion$")
            self.assertEqual(_onion.address_of_key(text), address)
            addresses.add(address)
        self.assertEqual(len(addresses), 3)

    def test_tor_spec_address(self) -> None:
        """rend-spec-v3's address encoding (checksum and version) for a known public key."""
        public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        checksum = hashlib.sha3_256(b".onion checksum" + public + b"\x03").digest()[:2]
        self.assertEqual(
            _onion.onion_address(public),
            base64.b32encode(public + checksum + b"\x03").decode().lower() + ".onion",
        )
        self.assertEqual(len(_onion.onion_address(public)), 62)

    def test_keys_tor_would_not_write(self) -> None:
        clamped = bytearray(hashlib.sha512(b"seed").digest())
        clamped[0] &= 248
        clamped[31] &= 127
        clamped[31] |= 64
        for raw, problem in [
            (bytes(64), "its secret scalar is not clamped as tor makes them"),
            (bytes([clamped[0] | 1]) + bytes(clamped[1:]), "its secret scalar is not clamped as tor makes them"),
            (bytes(clamped[:31]) + bytes([clamped[31] | 128]) + bytes(clamped[32:]),
             "its secret scalar is not clamped as tor makes them"),
            (bytes(clamped[:40]), "its key is 40 bytes, not 64"),
        ]:
            text = _onion.KEY_PREFIX + base64.b64encode(raw).decode()
            e = self.assertRaises(ValueError, _onion.address_of_key, text)
            self.assertEqual(str(e), problem)
        self.assertEqual(str(self.assertRaises(ValueError, _onion.address_of_key, "RSA1024:abc")),
                         "it does not start with 'ED25519-V3:'")
        self.assertEqual(str(self.assertRaises(ValueError, _onion.address_of_key, "ED25519-V3:!!")),
                         "its key is not base64")


# -- building the Tub ---------------------------------------------------------------------


@implementer(IListeningPort)
class Port:
    """A listening port that records whether it was stopped (MemoryReactor's forget nothing)."""

    def __init__(self, number: int, factory: Any, interface: str) -> None:
        self.number = number
        self.factory = factory
        self.interface = interface
        self.listening = True

    def startListening(self) -> None:
        pass

    def stopListening(self) -> "defer.Deferred[None]":
        self.listening = False
        return defer.succeed(None)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", self.interface or "0.0.0.0", self.number)


class BusyReactor(ProcessReactor):
    """
    A process-recording in-memory reactor whose TCP ports may be in use
    (C{busy}, or C{all_busy}; C{refused} lists the ports it refused), and
    whose listening ports say whether they were stopped (C{ports}); port 0
    gets a number of its own, as a real one would.
    """

    busy: set[int]

    def __init__(self) -> None:
        super().__init__()
        self.busy = set()
        self.all_busy = False
        self.refused: list[int] = []
        self.ports: list[Port] = []

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if self.all_busy or port in self.busy:
            self.refused.append(port)
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        super().listenTCP(port, factory, backlog, interface)
        made = Port(port or 40000 + len(self.ports), factory, interface)
        self.ports.append(made)
        return made

    def tub_of(self, port: Port) -> Any:
        """The Tub a port listens for (its Foolscap Listener is a service of the Tub)."""
        return port.factory.wrappedFactory.parent


class CreateTub(TestCase):
    """Real Tubs on in-memory reactors; stopping a Tub needs one turn of the global reactor."""

    def setUp(self) -> None:
        self.node = Node(self)
        self.reactor = BusyReactor()

    def stop(self, tub: Any) -> Any:
        return tub.stopService() if tub.running else None

    def start(self, text: str, **kwargs: Any) -> Any:
        c = config.load(self.node.cfg(text), local_addresses=addresses)
        d = config.create_tub(c, self.reactor, **kwargs)
        tub = self.successResultOf(d)
        self.addCleanup(self.stop, tub)
        return tub

    def test_tcp_listener_is_role_based(self) -> None:
        tub = self.start("[node]\ntub.port = tcp:3457:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:3457\n"
                         "timeout.disconnect = 1800\n")
        [(port, factory, _, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (3457, "127.0.0.1"))
        self.assertIsInstance(factory, SideTLSFactory)
        self.assertFalse(factory.isClient)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        self.assertTrue(ISideTLSTransport.providedBy(protocol))
        self.assertEqual(protocol.role, "listener")
        self.assertEqual(tub.locationHints, ["tcp:127.0.0.1:3457"])
        self.assertEqual(tub.disconnectTimeout, 1800)
        handlers = tub._connectionHandlers
        self.assertEqual(
            {k: h.describe() for k, h in handlers.items()},
            {"tcp": "sidetls+tcp", "tor": "sidetls+tor (SOCKS 127.0.0.1:9050 or 127.0.0.1:9150)",
             "i2p": "sidetls+i2p (SAM at tcp:127.0.0.1:7656)"},
        )
        cert = self.node.path(config.CERT_FILE)
        self.assertEqual(stat.S_IMODE(os.stat(cert).st_mode), 0o600)

    def test_sidetls_limits_reach_the_listener(self) -> None:
        """A C{sidetls:} entry's limit options are the listener's, as with tub.listenOn."""
        self.start("[node]\ntub.port = sidetls:tcp:3457:interface=127.0.0.1:maxNegotiating=100:"
                   "negotiationTimeout=30:closeTimeout=none\ntub.location = tcp:127.0.0.1:3457\n")
        [(port, factory, _, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (3457, "127.0.0.1"))
        self.assertIsInstance(factory, SideTLSFactory)
        self.assertEqual(
            (factory.maxNegotiating, factory.negotiationTimeout, factory.closeTimeout, factory.handshakeTimeout),
            (100, 30.0, None, 60.0),
        )

    def test_same_identity_every_start(self) -> None:
        text = "[node]\ntub.port = tcp:3457\ntub.location = tcp:127.0.0.1:3457\n"
        first = self.start(text)
        d = first.stopService()

        def again(_: Any) -> None:
            self.assertEqual(self.start(text).getTubID(), first.getTubID())

        return d.addCallback(again)

    def test_port_chosen_once(self) -> None:
        tub = self.start("[connections]\ntcp = disabled\n")
        with open(self.node.path(config.PORTNUM_FILE)) as f:
            chosen = f.read()
        port = int(chosen.strip().split(":")[1])
        self.assertEqual(chosen, "tcp:%d\n" % (port,))
        self.assertEqual(tub.locationHints, ["tcp:192.0.2.7:%d" % port, "tcp:127.0.0.1:%d" % port])
        self.assertEqual([s[0] for s in self.reactor.tcpServers], [port])
        c = config.load(self.node.path("node.cfg"), local_addresses=addresses)
        self.assertEqual(c.location, ("tcp:192.0.2.7:%d" % port, "tcp:127.0.0.1:%d" % port))
        self.assertEqual(
            c.describe_listeners(),
            ["tcp:%d (role-based: each connection is the TLS server; kept in %s)"
             % (port, self.node.path(config.PORTNUM_FILE))],
        )

    def test_port_in_use(self) -> Any:
        self.reactor.busy.add(3458)
        c = config.load(self.node.cfg("[node]\ntub.port = tcp:3457,tcp:3458\ntub.location = tcp:127.0.0.1:3457\n"))
        before = listing(self.node.dir)
        d = config.create_tub(c, self.reactor)

        def failed(e: config.StartError) -> None:
            self.assertEqual(
                str(e),
                "%r [node] tub.port: could not listen on 'tcp:3458' (Couldn't listen on any:3458: [Errno 98] "
                "Address already in use.)" % (self.node.path("node.cfg"),),
            )
            # tcp:3457 did listen, and was stopped with the Tub
            [port] = self.reactor.ports
            self.assertEqual((port.number, port.listening), (3457, False))
            self.assertFalse(self.reactor.tub_of(port).running)
            # the first start failed: no identity kept, nothing written
            self.assertEqual(listing(self.node.dir), before)

        return self.assertFailure(d, config.StartError).addCallback(failed)

    def test_chosen_port_not_kept_when_the_start_fails(self) -> Any:
        """A port chosen at the first start is kept only once it was listened on."""
        c = config.load(self.node.cfg("[connections]\ntcp = disabled\n"), local_addresses=addresses)
        before = listing(self.node.dir)
        self.reactor.all_busy = True
        d = config.create_tub(c, self.reactor)

        def failed(e: config.StartError) -> None:
            [refused] = self.reactor.refused
            self.assertEqual(
                str(e),
                "%r [node] tub.port: could not listen on 'tcp:%d' (Couldn't listen on any:%d: [Errno 98] "
                "Address already in use.)" % (self.node.path("node.cfg"), refused, refused),
            )
            self.assertEqual(listing(self.node.dir), before)
            self.assertFalse(os.path.exists(self.node.path(config.PORTNUM_FILE)))
            self.assertFalse(os.path.exists(self.node.path(config.CERT_FILE)))

        return self.assertFailure(d, config.StartError).addCallback(failed)

    def test_certificate_private_from_its_first_byte(self) -> None:
        """Written with mode 0600 from the start, whatever the umask; private/ made 0700."""
        shutil.rmtree(self.node.path("private"))
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        opened = []
        real_open = os.open

        def watch(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
            fd = real_open(path, flags, mode, *args, **kwargs)
            if flags & os.O_CREAT:
                opened.append((os.fspath(path), stat.S_IMODE(os.fstat(fd).st_mode)))
            return fd

        self.patch(os, "open", watch)
        tub = self.start("[node]\ntub.port = tcp:3457\ntub.location = tcp:127.0.0.1:3457\n")
        cert = self.node.path(config.CERT_FILE)
        with open(cert, "rb") as f:
            self.assertEqual(f.read(), tub.getCertData())
        self.assertEqual(stat.S_IMODE(os.stat(cert).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.node.path("private")).st_mode), 0o700)
        created = [(os.path.dirname(p), m) for p, m in opened if os.path.dirname(p) == os.path.dirname(cert)]
        self.assertEqual(created, [(os.path.dirname(cert), 0o600)])

    def test_damaged_certificate_is_not_replaced(self) -> Any:
        self.node.write(config.CERT_FILE, "not a certificate\n")
        c = config.load(self.node.cfg("[node]\ntub.port = tcp:3457\ntub.location = tcp:127.0.0.1:3457\n"))
        before = listing(self.node.dir)
        d = config.create_tub(c, self.reactor)

        def failed(e: config.StartError) -> None:
            self.assertTrue(str(e).startswith(
                "%r: %s does not hold a Tub certificate (" % (self.node.path("node.cfg"), self.node.path(config.CERT_FILE))
            ), str(e))
            self.assertTrue(str(e).endswith(
                "); it is this node's identity (its FURLs), so it is not replaced: move it away to make a new one"
            ), str(e))
            self.assertEqual(listing(self.node.dir), before)
            self.assertEqual((self.reactor.tcpServers, self.reactor.spawned), ([], []))

        return self.assertFailure(d, config.StartError).addCallback(failed)

    def test_dialing_only(self) -> None:
        before = listing(self.node.dir)
        c = config.load(self.node.cfg("[connections]\ntcp = tor\n[tor]\nsocks.port = tcp:127.0.0.1:9050\n"))
        before = listing(self.node.dir)
        tub = self.successResultOf(config.create_tub(c, self.reactor, listen=False))
        self.addCleanup(self.stop, tub)
        self.assertTrue(tub.running)
        self.assertEqual((self.reactor.tcpServers, tub.getListeners(), tub.locationHints), ([], [], []))
        self.assertEqual(listing(self.node.dir), before)
        self.assertEqual(
            {k: h.describe() for k, h in tub._connectionHandlers.items()},
            {"tcp": "sidetls+tor (SOCKS 127.0.0.1:9050)", "tor": "sidetls+tor (SOCKS 127.0.0.1:9050)",
             "i2p": "sidetls+i2p (SAM at tcp:127.0.0.1:7656)"},
        )

    def test_dialing_node_keeps_identity(self) -> None:
        tub = self.start("[node]\ntub.port = disabled\ntub.location = disabled\n")
        self.assertEqual((self.reactor.tcpServers, tub.getListeners(), tub.locationHints), ([], [], []))
        with open(self.node.path(config.CERT_FILE), "rb") as f:
            self.assertEqual(f.read(), tub.getCertData())

    def test_onion_published_through_control_port(self) -> None:
        fake = FakeTor(self.reactor)
        c = config.load(self.node.cfg(
            "[node]\ntub.port = tcp:7000:interface=127.0.0.1\ntub.location = tor:%s:3457\n" % (self.node.onion,)
            + ONION + "[connections]\ntcp = tor\n"
        ))
        statuses: list[str] = []
        d = config.create_tub(c, self.reactor, update_status=statuses.append)
        self.assertNoResult(d)
        fake.accept()
        self.assertNoResult(d)  # waiting for the descriptor upload
        fake.event("HS_DESC UPLOAD %s UNKNOWN $%s %s HSDIR_INDEX=00" % (SERVICE_ID, "E" * 40, "d" * 43))
        fake.event("HS_DESC UPLOADED %s UNKNOWN $%s" % (SERVICE_ID, "E" * 40))
        tub = self.successResultOf(d)
        self.addCleanup(self.stop, tub)
        [add] = [cmd for cmd in fake.commands if cmd.startswith("ADD_ONION")]
        self.assertEqual(add, "ADD_ONION %s Port=3457,127.0.0.1:7000 Flags=DiscardPK" % (self.node.tor_key,))
        self.assertEqual([(s[0], s[3]) for s in self.reactor.tcpServers], [(7000, "127.0.0.1")])
        self.assertEqual(tub.locationHints, ["tor:%s:3457" % (self.node.onion,)])
        self.assertEqual(
            statuses,
            [
                "tor: publishing the onion service %s:3457" % (self.node.onion,),
                "tor: connecting to tor control port 127.0.0.1:9051",
                "tor: waiting for the Tub to listen on 127.0.0.1 (is it running?)",
                "tor: adding the onion service",
                "tor: waiting for tor to publish the onion service descriptor",
                "tor: onion service tor:%s.onion:3457 published" % (SERVICE_ID,),
            ],
        )
        # dialing tcp: and tor: hints share the one control connection
        self.assertIs(tub._connectionHandlers["tcp"], tub._connectionHandlers["tor"])
        self.assertEqual(len(fake.connections), 1)

    def test_onion_failure_stops_everything(self) -> Any:
        fake = FakeTor(self.reactor)
        c = config.load(self.node.cfg("[node]\ntub.port = listen:tor,tcp:3457\ntub.location = tcp:127.0.0.1:3457\n" + ONION))
        d = config.create_tub(c, self.reactor)
        # tcp:3457 and the onion's local port listen at once, before tor
        # answers (Tahoe-LAFS checks that a node's Tub listens as it is built)
        port, local = sorted(self.reactor.ports, key=lambda p: p.number)
        self.assertEqual((port.number, port.listening), (3457, True))
        self.assertEqual((local.number, local.interface, local.listening), (7000, "127.0.0.1", True))
        tub = self.reactor.tub_of(port)
        self.assertTrue(tub.running)
        fake.refuse()

        def failed(e: config.StartError) -> None:
            self.assertEqual(
                str(e),
                "%r [tor] onion = 'true': could not publish the onion service: could not connect to tor's "
                "control port at 127.0.0.1:9051 (connection refused). Is tor running with a control port? Put "
                "'ControlPort 9051' and 'CookieAuthentication 1' in /etc/tor/torrc and restart tor, or let "
                "foolscap_sidetls.tor.launch() start a tor of its own" % (self.node.path("node.cfg"),),
            )
            self.assertEqual(sorted(self.reactor.ports, key=lambda p: p.number), [port, local])
            self.assertEqual((port.listening, local.listening), (False, False))
            self.assertFalse(tub.running)

        return self.assertFailure(d, config.StartError).addCallback(failed)

    def test_onion_with_a_listener_on_every_interface(self) -> None:
        """
        tub.port = tcp:7000 with onion.local_port = 7000, as Tahoe-LAFS
        accepts it: the Tub listens on every interface, and the onion
        service forwards to a 127.0.0.1 port of its own.
        """
        fake = FakeTor(self.reactor)
        c = config.load(self.node.cfg(
            "[node]\ntub.port = tcp:7000\ntub.location = tor:%s:3457\n" % (self.node.onion,) + ONION
        ))
        d = config.create_tub(c, self.reactor)
        fake.accept()
        fake.event("HS_DESC UPLOAD %s UNKNOWN $%s %s HSDIR_INDEX=00" % (SERVICE_ID, "E" * 40, "d" * 43))
        fake.event("HS_DESC UPLOADED %s UNKNOWN $%s" % (SERVICE_ID, "E" * 40))
        tub = self.successResultOf(d)
        self.addCleanup(self.stop, tub)
        every, onion = self.reactor.ports
        self.assertEqual([(p.number, p.interface) for p in (every, onion)], [(7000, ""), (40001, "127.0.0.1")])
        self.assertEqual({self.reactor.tub_of(every), self.reactor.tub_of(onion)}, {tub})
        [add] = [cmd for cmd in fake.commands if cmd.startswith("ADD_ONION")]
        self.assertEqual(add, "ADD_ONION %s Port=3457,127.0.0.1:40001 Flags=DiscardPK" % (self.node.tor_key,))
        self.assertEqual(tub.locationHints, ["tor:%s:3457" % (self.node.onion,)])

    def test_launched_tor_spawned_only_for_a_valid_config(self) -> Any:
        c = config.load(self.node.cfg(
            "[node]\ntub.port = listen:tor\ntub.location = tor:%s:3457\n" % (self.node.onion,)
            + ONION.replace("control.port = tcp:127.0.0.1:9051", "launch = true\ntor.executable = bin/tor")
        ))
        d = config.create_tub(c, self.reactor)
        [(protocol, executable, args, env, path, transport)] = self.reactor.spawned
        self.assertEqual(executable, self.node.path("bin/tor"))
        self.assertEqual(path, self.node.path("private/tor-statedir"))
        self.assertEqual(transport.signals, [])
        d.cancel()
        # Cancelling the start stops the tor it launched ...
        self.assertIn("TERM", transport.signals)
        protocol.processEnded(Failure(ProcessTerminated(signal=15)))
        # ... and fails with the cancellation once the Tub has stopped.
        return self.assertFailure(d, defer.CancelledError)


class NothingLeftBehind(TestCase):
    """An invalid configuration starts nothing: no process, no socket, no file."""

    def setUp(self) -> None:
        self.node = Node(self)
        self.reactor = BusyReactor()

    def assertNothingStarted(self, before: list[tuple[str, int]]) -> None:
        """For create_tub, which is given the reactor: nothing written, and nothing asked of the reactor."""
        self.assertEqual(listing(self.node.dir), before)
        self.assertEqual(
            (self.reactor.tcpServers, self.reactor.tcpClients, self.reactor.unixClients, self.reactor.spawned),
            ([], [], [], []),
        )

    def test_invalid_files_are_refused_before_anything_starts(self) -> None:
        # Each would launch tor or i2pd, or listen, if it were valid.  load()
        # has no reactor to ask: the stand-ins leave a file if they ever run.
        for name in ("tor", "i2pd"):
            self.node.write("bin/marking-" + name, "#!/bin/sh\ntouch %s\n" % (self.node.path("ran-" + name),))
            os.chmod(self.node.path("bin/marking-" + name), 0o755)
        texts = [
            "[node]\ntub.port = listen:tor\ntub.location = tor:%s:3457\n" % (self.node.onion,)
            + ONION.replace("control.port = tcp:127.0.0.1:9051", "launch = true\ntor.executable = bin/marking-tor")
            + "onion.bogus = 1\n",
            "[node]\ntub.port = listen:i2p\ntub.location = i2p:%s:3457\n" % (self.node.b32,)
            + DEST.replace("sam.port = tcp:127.0.0.1:7656", "launch = true\ni2p.executable = bin/marking-i2pd")
            + "dest.port = 0\n",
            "[node]\ntub.port = tcp:3457\nreveal-IP-address = false\n",
            "[node]\ntub.port = tcp:3457\n" + ONION,
        ]
        for text in texts:
            path = self.node.cfg(text)
            before = listing(self.node.dir)
            self.assertRaises(config.ConfigError, config.load, path)
            self.assertEqual(listing(self.node.dir), before)
        self.assertFalse(os.path.exists(self.node.path("ran-tor")))
        self.assertFalse(os.path.exists(self.node.path("ran-i2pd")))

    def test_key_file_changed_after_loading(self) -> None:
        c = config.load(self.node.cfg(
            "[node]\ntub.port = listen:tor\ntub.location = tor:%s:3457\n" % (self.node.onion,)
            + ONION.replace("control.port = tcp:127.0.0.1:9051", "launch = true\ntor.executable = bin/tor")
        ))
        other, _ = _onion.new_key()
        self.node.write("private/tor.key", other)
        before = listing(self.node.dir)
        e = self.assertRaises(config.ConfigError, config.create_tub, c, self.reactor)
        self.assertEqual(
            str(e),
            "%r [tor] onion.private_key_file = %r: %s changed since the configuration was checked; check it "
            "again" % (self.node.path("node.cfg"), self.node.path("private/tor.key"), self.node.path("private/tor.key")),
        )
        self.assertNothingStarted(before)

    def test_i2p_key_file_removed_after_loading(self) -> None:
        c = config.load(self.node.cfg(
            "[node]\ntub.port = listen:i2p\ntub.location = i2p:%s:3457\n" % (self.node.b32,) + DEST
        ))
        os.remove(self.node.path("private/i2p.key"))
        before = listing(self.node.dir)
        e = self.assertRaises(config.ConfigError, config.create_tub, c, self.reactor)
        self.assertEqual(
            str(e),
            "%r [i2p] dest.private_key_file = %r: %s does not exist (relative paths start at %s); expected an "
            "I2P private key file, as 'foolscap-sidetls create-node --listen=i2p' writes"
            % (self.node.path("node.cfg"), self.node.path("private/i2p.key"), self.node.path("private/i2p.key"),
               self.node.dir),
        )
        self.assertNothingStarted(before)


def sections_of(text: str) -> dict[str, dict[str, str]]:
    """The sections a file's text holds, as a program would have them in hand."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(text)
    return {name: dict(parser[name]) for name in parser.sections()}


#: What from_sections() says about a mapping that is not all strings.
NOT_STRINGS = "from_sections() takes {section: {key: value}} with every name, key and value a string"


class FromSections(SynchronousTestCase):
    """
    config.from_sections() checks {section: {key: value}} as from_string()
    checks the file those sections would be written as.
    """

    def setUp(self) -> None:
        self.node = Node(self)

    def read(self, sections: Any) -> config.NodeConfig:
        return config.from_sections(sections, source="node.cfg", basedir=self.node.dir, local_addresses=addresses)

    def test_same_config_as_the_file(self) -> None:
        texts = [
            "",
            "[node]\ntub.port = 3457, tcp:3458:interface=127.0.0.1,sidetls:tcp:3459:maxNegotiating=7\n",
            "[node]\ntub.port = listen:tor\ntub.location = tor:%s:3457\n%s" % (self.node.onion, ONION),
            "[node]\ntub.port = listen:i2p\ntub.location = i2p:%s:3457\n%s" % (self.node.b32, DEST),
            "[node]\nreveal-IP-address = false\ntub.port = disabled\ntub.location = disabled\n"
            "timeout.keepalive = 240\n[connections]\ntcp = tor\n[storage]\nenabled = true\n",
        ]
        for text in texts:
            with self.subTest(text=text):
                self.assertEqual(self.read(sections_of(text)), self.node.parse(text))

    def test_same_errors_as_the_file(self) -> None:
        checked = 0
        for text, expected in BAD + VETOED:
            if "[section] header" in expected:
                continue  # a mapping has no lines that could fail to parse
            with self.subTest(text=text):
                e = self.assertRaises(config.ConfigError, self.read, sections_of(text))
                self.assertEqual(str(e), expected.format(d=self.node.dir))
                checked += 1
        self.assertEqual(checked, len(BAD) + len(VETOED) - 2)

    def test_keys_are_case_insensitive(self) -> None:
        c = self.read({"node": {"reveal-IP-address": "false", "Tub.Port": "disabled", "tub.location": "disabled"},
                       "connections": {"tcp": "disabled"}})
        self.assertEqual((c.reveal_ip, c.listening, c.handlers["tcp"]), (False, False, None))

    def test_not_strings(self) -> None:
        cases = [
            ({"node": {"tub.port": 3457}},
             NOT_STRINGS + "; [node] tub.port = 3457 is a int (write it as a file would hold it, '3457')"),
            ({"node": {"tub.location": None}},
             NOT_STRINGS + "; [node] tub.location = None is a NoneType (leave the key out)"),
            ({"node": [("tub.port", "3457")]},
             NOT_STRINGS + "; [node] is [('tub.port', '3457')] (list), not a mapping of keys to values"),
            ({"node": {1: "x"}}, NOT_STRINGS + "; [node] has the key 1, a int"),
            ({None: {}}, NOT_STRINGS + "; the section name None is a NoneType"),
            ("[node]\n", NOT_STRINGS + ", got '[node]\\n' (str)"),
        ]
        for sections, expected in cases:
            with self.subTest(sections=sections):
                e = self.assertRaises(TypeError, self.read, sections)
                self.assertEqual(str(e), expected)

    def test_listener_limits_are_one_value(self) -> None:
        """A tub.port entry carries one Limits, checked by the same code as a sidetls: description's."""
        from foolscap_sidetls import Limits

        c = self.node.parse("[node]\ntub.port = sidetls:tcp:3457:maxNegotiating=100:negotiationTimeout=30:"
                            "closeTimeout=none,tcp:3458\ntub.location = tcp:127.0.0.1:3457\n")
        self.assertEqual(
            [entry.limits for entry in c._listens],
            [Limits(max_negotiating=100, negotiation_timeout=30.0, close_timeout=None), Limits()],
        )
