"""
One socket to a SAM bridge (L{foolscap_sidetls.i2p.sam.SAMConnection}), in memory.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase

from foolscap_sidetls import i2p
from foolscap_sidetls.i2p.sam import SAMConnection

from .._fakes import B32, Recorder, make_keypair


class SAMConnectionTests(TestCase):
    def connected(self):
        clock = MemoryReactorClock()
        connection = SAMConnection("tcp:127.0.0.1:7656", clock)
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

    def test_status_peer_line_and_bytes_in_one_read(self) -> None:
        """
        A peer already waiting when C{STREAM ACCEPT} is answered: i2pd sends
        the status, the peer line and the peer's first bytes in one read.
        (txi2p's accept loop ends on exactly this, "can't concat str to
        bytes", and its listener goes deaf: tests/integration/_tahoe_stock.py.)
        """
        connection, transport, clock = self.connected()
        d = connection.request("STREAM ACCEPT ID=a SILENT=false", "STREAM ACCEPT", "STREAM STATUS", 30, raw_after=True)
        public, _ = make_keypair()
        connection.dataReceived(b"STREAM STATUS RESULT=OK\n" + public.encode() + b" FROM_PORT=0 TO_PORT=0\nGET /id/")
        self.successResultOf(d)
        self.assertEqual(self.successResultOf(connection.next_line()), public + " FROM_PORT=0 TO_PORT=0")
        app = Recorder()
        here = i2p.I2PAddress(B32)
        connection.attach(app, here, here)
        connection.dataReceived(b"abc HTTP/1.1")
        self.assertEqual(app.received, b"GET /id/abc HTTP/1.1")

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
