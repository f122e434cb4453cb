"""
The I2P settings a user who cannot reach the network needs (issue 13, item
5): C{serve} says what the router says while its I2P destination opens, and
C{[i2p] reseed.timeout} bounds how long a launched i2pd that cannot reseed
is waited for, read as C{[tor] bootstrap.timeout} is.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from foolscap_sidetls import config
from foolscap_sidetls._foolscap import tubHandlers

from ..i2p._fakes import FakeSAMBridge, routed
from .test_config import DEST, Node, addresses

LAUNCHED = "[node]\ntub.port = disabled\ntub.location = disabled\n[i2p]\nlaunch = true\ni2p.executable = bin/i2pd\n"


class ReseedTimeout(SynchronousTestCase):
    def setUp(self) -> None:
        self.node = Node(self)

    def test_values(self) -> None:
        for text, expected in [("", 30.0), ("reseed.timeout = 12\n", 12.0), ("reseed.timeout = 0\n", None),
                               ("reseed.timeout = none\n", None), ("reseed.timeout = \n", 30.0)]:
            c = self.node.parse(LAUNCHED + text)
            self.assertEqual((c._i2p.reseed_timeout, c.warnings), (expected, ()), text)

    def test_bad_values(self) -> None:
        for value in ("soon", "-1", "1.5"):
            e = self.assertRaises(config.ConfigError, self.node.parse, LAUNCHED + "reseed.timeout = %s\n" % (value,))
            self.assertEqual(
                str(e),
                "'node.cfg' [i2p] reseed.timeout = %r: not a number of seconds; expected a whole number of "
                "seconds, e.g. 30, or 0 (or none) to wait for i2pd's peers as long as it takes" % (value,),
            )

    def test_unused_without_launch(self) -> None:
        c = self.node.parse("[node]\ntub.port = disabled\ntub.location = disabled\n[i2p]\nreseed.timeout = 5\n")
        self.assertEqual(
            c.warnings,
            ("[i2p] reseed.timeout is not used: only a launched i2pd ([i2p] launch = true) is watched for "
             "failing to reseed",),
        )

    def test_passed_to_launch(self) -> None:
        for text, expected in [("", 30.0), ("reseed.timeout = 7\n", 7.0), ("reseed.timeout = none\n", None)]:
            c = config.load(self.node.cfg(LAUNCHED + text), local_addresses=addresses)
            tub = self.successResultOf(config.create_tub(c, FakeSAMBridge().clock, listen=False))
            handler: Any = tubHandlers(tub)["i2p"]
            self.assertEqual(handler._bridge.launcher.reseed_timeout, expected, text)


class ServeStatus(SynchronousTestCase):
    def test_what_the_router_says_while_waiting(self) -> None:
        """
        A router that takes 45 s to open the destination's session: what
        SAM said (and for how long it has been silent) reaches
        C{update_status}, prefixed C{"i2p: "}, while C{serve} waits.
        """
        node = Node(self)
        bridge = FakeSAMBridge()
        bridge.session_delay = 45
        c = config.load(
            node.cfg("[node]\ntub.port = listen:i2p\ntub.location = i2p:%s:3457\n" % (node.b32,) + DEST),
            local_addresses=addresses,
        )
        statuses: list[str] = []
        d = config.create_tub(c, routed(bridge), update_status=statuses.append)
        bridge.flush()
        for _ in range(46):
            bridge.advance(1)
        tub = self.successResultOf(d)
        self.addCleanup(tub.stopService)
        self.assertEqual(
            statuses,
            [
                "i2p: opening a SAM session for %s (i2pd takes ~20 s)" % (node.b32,),
                "i2p: opening SAM session (can take ~20 s)",
                "i2p: opening SAM session (can take ~20 s): no answer to SESSION CREATE from the SAM bridge at "
                "tcp:127.0.0.1:7656 for 30 s (the last thing SAM said: 'HELLO REPLY RESULT=OK VERSION=3.1')",
                "i2p: listening on i2p:%s:3457" % (node.b32,),
            ],
        )
