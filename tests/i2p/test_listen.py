"""
L{foolscap_sidetls.i2p.listen} and the SAM listening port, through the fake SAM
bridge of tests/i2p/_fakes.py.
"""

from __future__ import annotations

import os
import stat

from foolscap.api import Tub
from twisted.internet.protocol import Factory

import foolscap_sidetls
from foolscap_sidetls import i2p
from foolscap_sidetls._endpoints import ListenerEndpoint

from twisted.internet.protocol import Factory

from ._fakes import BridgeTestCase, Recorder, b32_of, make_keypair


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

    def test_listening_at_once_with_a_key(self) -> None:
        """
        With its key file in place, the Tub has its listener as listen()
        returns, before the session opens (Tahoe-LAFS checks that a node's
        Tub is listening while it builds the node); the hint comes once
        the session is open.
        """
        key = self.mktemp()
        tub = Tub()
        self.addCleanup(self.cleanup_tub, tub)
        self.successResultOf(self.listen(tub, key))
        self.cleanup_tub(tub)
        tub2 = Tub()
        self.addCleanup(self.cleanup_tub, tub2)
        d = i2p.listen(tub2, self.bridge.endpoint, key, reactor=self.clock)
        self.assertEqual((len(tub2.getListeners()), d.called), (1, False))
        self.bridge.flush()
        self.assertEqual(self.successResultOf(d), "i2p:" + i2p.address_of(key))
        self.assertEqual(len(tub2.getListeners()), 1)

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
            ep.limits,
            foolscap_sidetls.Limits(handshake_timeout=15, negotiation_timeout=20, close_timeout=5, max_negotiating=64),
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

    def test_stream_waiting_before_the_accept(self) -> None:
        """
        More dialers than open accepts at once: i2pd keeps the extra stream
        and answers the next C{STREAM ACCEPT} with the status, the peer line
        and the dialer's first bytes in one read.  Every dialer is served,
        its bytes intact, and the accepts are replenished.  (txi2p's accept
        loop ends here, and its listener goes deaf:
        tests/integration/_tahoe_stock.py.)
        """
        self.bridge.queue_incoming = True
        b32, accepted, port = self.open_listener()
        h = self.handler()
        dials = []
        for i in range(3):
            greeting = b"hello %d" % (i,)

            class Greeter(Recorder):
                def connectionMade(self, greeting=greeting) -> None:
                    self.transport.write(greeting)

            ep, _ = h.hint_to_endpoint("i2p:" + b32, self.clock, lambda status: None)
            dials.append(ep.connect(Factory.forProtocol(Greeter)))
        self.bridge.flush()
        for d in dials:
            self.successResultOf(d)
        self.assertEqual(self.bridge.queued, 1, "no dial found every accept taken")
        self.assertEqual(len(accepted), 3)
        self.assertEqual(sorted(p.received for p in accepted), [b"hello 0", b"hello 1", b"hello 2"])
        self.assertEqual(self.bridge.incoming["srv"], [])
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
