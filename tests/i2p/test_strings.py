"""
C{sidetls:i2p:...} endpoint descriptions: built on this package's SAM
client (not txi2p's C{i2p:} plugin), in txi2p's syntax, through the fake
SAM bridge of tests/i2p/_fakes.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase

from foolscap_sidetls import Limits, i2p
from foolscap_sidetls._endpoints import DialerEndpoint, ListenerEndpoint

from ._fakes import FakeSAMBridge, Recorder, TempTestCase, routed

SAM = "api=SAM:apiEndpoint=tcp\\:127.0.0.1\\:7656"


class Strings(TempTestCase):
    def test_listen_and_dial(self) -> None:
        """
        A server description makes its key file (0600) through SAM, opens a
        session with the given nickname and options, and accepts; a client
        description dials it with the port, and reuses its session.
        """
        bridge = FakeSAMBridge()
        reactor = routed(bridge)
        key = self.mktemp()
        ep = serverFromString(
            reactor,
            "sidetls:i2p:%s:3457:%s:nickname=srv:options=inbound.length\\:1,outbound.length\\:2:maxNegotiating=7"
            % (key, SAM),
        )
        self.assertIsInstance(ep, ListenerEndpoint)
        self.assertEqual(ep.limits, Limits(max_negotiating=7))
        d = ep.listen(Factory.forProtocol(Recorder))
        bridge.flush()
        port = self.successResultOf(d)
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        address = i2p.address_of(key)
        self.assertEqual(port.getHost(), i2p.I2PAddress(address, 3457))
        self.assertEqual([(nick, fields["inbound.length"], fields["outbound.length"]) for nick, fields in bridge.created],
                         [("srv", "1", "2")])

        dial = clientFromString(reactor, "sidetls:i2p:%s:3457:handshakeTimeout=9" % (address,))
        self.assertIsInstance(dial, DialerEndpoint)
        self.assertEqual(dial.limits, Limits(handshake_timeout=9))
        for _ in range(2):
            d = dial.connect(Factory.forProtocol(Recorder))
            bridge.flush()
            self.assertIsInstance(self.successResultOf(d), Recorder)
        self.assertEqual([fields["TO_PORT"] for fields in bridge.connect_fields], ["3457", "3457"])
        self.assertEqual(len(bridge.created), 2)  # the listener's, and one for dialing

        # Stopping closes the session and gives the destination back.
        port.stopListening()
        bridge.flush()
        self.assertNotIn("srv", bridge.sessions)
        again = serverFromString(reactor, "sidetls:i2p:%s:%s:nickname=srv2" % (key, SAM))
        d = again.listen(Factory.forProtocol(Recorder))
        bridge.flush()
        second = self.successResultOf(d)
        self.assertEqual(second.getHost().host, address)
        stopped = second.stopListening()
        bridge.flush()
        self.assertIsNone(self.successResultOf(stopped))

    def test_bad_descriptions(self) -> None:
        reactor = FakeSAMBridge().clock
        key = self.mktemp()
        for description, words in [
            ("sidetls:i2p:%s:api=BOB" % (key,), "api='BOB' is not supported; only api=SAM"),
            ("sidetls:i2p:%s:autoClose=true" % (key,),
             "option 'autoClose' is not supported; the options are api, apiEndpoint, nickname, options, sigType"),
            ("sidetls:i2p:%s:options=inbound.length" % (key,), "'inbound.length' is not NAME:VALUE"),
            ("sidetls:i2p:%s:options=ID\\:x" % (key,), "session option 'ID' is set by foolscap_sidetls.i2p itself"),
            ("sidetls:i2p:%s:99999" % (key,), "port '99999' is not a number from 1 to 65535"),
            ("sidetls:i2p:%s:sigType=DSA_SHA1" % (key,), "sigType='DSA_SHA1' is not supported"),
            ("sidetls:i2p:%s:nickname=a b" % (key,), "nickname (the SAM session ID) must be letters"),
            ("sidetls:i2p", "expects 'sidetls:i2p:KEYFILE[:PORT]"),
        ]:
            e = self.assertRaises(ValueError, serverFromString, reactor, description)
            self.assertIn(words, str(e), description)
        e = self.assertRaises(ValueError, clientFromString, reactor, "sidetls:i2p:example.org:1")
        self.assertIn("sidetls:i2p: (client): I2P hint 'i2p:example.org:1': 'example.org' is not an I2P address", str(e))


#: Parses a server and a client description in a fresh process and says
#: whether txi2p (its Parsley grammars: seconds of CPU) was imported.
PROBE = """
import json, sys
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.testing import MemoryReactor
server = serverFromString(MemoryReactor(), "sidetls:i2p:/nonexistent/key:%(sam)s")
client = clientFromString(MemoryReactor(), "sidetls:i2p:%(b32)s:%(sam)s")
from foolscap_sidetls._parser import inner_server  # what a config file's tub.port is built with
inner = inner_server(MemoryReactor(), "i2p:/nonexistent/key:%(sam)s")
print(json.dumps({"txi2p": sorted(m for m in sys.modules if m.split(".")[0] == "txi2p"),
                  "server": type(server._endpoint).__module__, "client": type(client._endpoint).__module__,
                  "inner": type(inner).__module__}))
"""


class NoTxI2P(SynchronousTestCase):
    def test_parsing_imports_no_txi2p(self) -> None:
        code = PROBE % {"sam": SAM.replace("\\", "\\\\"), "b32": "a" * 52 + ".b32.i2p"}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        self.assertEqual(
            json.loads(done.stdout.splitlines()[-1]),
            {"txi2p": [], "server": "foolscap_sidetls.i2p._strings", "client": "foolscap_sidetls.i2p.sam._client",
             "inner": "foolscap_sidetls.i2p._strings"},
        )
