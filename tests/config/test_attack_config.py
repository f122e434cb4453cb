"""
Security hole 4 (privacy): C{reveal-IP-address = false} with a listener on
every interface.

The attack: the node's FURL announces only an onion, but C{tub.port =
tcp:3457} listens on 0.0.0.0.  Whoever holds the FURL asks candidate
addresses for its TubID: the right host answers C{101 Switching
Protocols}, any other C{500 unknown TubID}, which confirms the IP address
that runs the hidden node.  Now every tub.port listener of such a node
binds loopback only, and one that would bind anything else is a
L{config.ConfigError} naming the key, the value and the fix
(C{interface=127.0.0.1}); C{create-node --hide-ip} applies the same check.

Also: with txtorcon missing, C{check} and C{ping} say so, rather than
C{[tor] enabled = false} (which the file does not say) and C{no handler
registered}.  The import is made to fail in this process: C{txtorcon} (and
the module that needs it) hidden from C{sys.modules} for the test.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

import foolscap_sidetls
from foolscap_sidetls import _cli, config

from ..cli._support import main
from .test_config import BusyReactor, Node, addresses, listing

ONION = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
HIDDEN = (
    "[node]\nreveal-IP-address = false\ntub.port = %s\ntub.location = tor:" + ONION + ":3457\n"
    "[connections]\ntcp = tor\n"
)
REVEALS = (
    "which reveals this machine's IP address to whoever connects there (the TubID in a FURL confirms which "
    "address runs this node), but [node] reveal-IP-address = false"
)
ALSO = "(only this machine can connect; a tor onion service can forward there), listen:tor or listen:i2p"

#: tub.port, where it listens, the fix the message gives.
EVERYWHERE = [
    ("tcp:3457", "every interface", "tcp:3457:interface=127.0.0.1"),
    ("tcp:3457:interface=0.0.0.0", "every interface", "tcp:3457:interface=127.0.0.1"),
    ("tcp:3457:interface=192.0.2.1", "192.0.2.1", "tcp:3457:interface=127.0.0.1"),
    ("tcp:3457:interface=\\:\\:", "every interface", "tcp:3457:interface=127.0.0.1"),
    ("sidetls:tcp:3457", "every interface", "sidetls:tcp:3457:interface=127.0.0.1"),
]
#: More of the same shape.
ALSO_REFUSED = [
    ("3457", "every interface", "tcp:3457:interface=127.0.0.1"),
    ("tcp:port=3457:interface=10.1.2.3", "10.1.2.3", "tcp:port=3457:interface=127.0.0.1"),
    ("sidetls:tcp:3457:maxNegotiating=10", "every interface",
     "sidetls:tcp:3457:maxNegotiating=10:interface=127.0.0.1"),
    ("tcp6:3457", "every interface", "tcp6:3457:interface=\\:\\:1"),
    ("tcp:3457:interface=node.example.net",
     "node.example.net (a name: only a loopback address is sure to stay on this machine)",
     "tcp:3457:interface=127.0.0.1"),
]
#: tub.port, the interface it binds.
LOOPBACK = [
    ("tcp:3457:interface=127.0.0.1", "127.0.0.1"),
    ("tcp:3457:interface=\\:\\:1", "::1"),
    ("tcp:3457:interface=127.0.0.2", "127.0.0.2"),
]


def refused(port: str, where: str, fix: str, value: str = "") -> str:
    shown = "tcp:" + port if port.isdigit() else port
    return "'node.cfg' [node] tub.port = %r: %r listens on %s, %s; expected %s %s" % (
        value or port, shown, where, REVEALS, fix, ALSO,
    )


class HiddenListeners(SynchronousTestCase):
    def setUp(self) -> None:
        self.node = Node(self)

    def parse(self, port: str) -> config.NodeConfig:
        return self.node.parse(HIDDEN % (port,))

    def test_only_loopback_listeners(self) -> None:
        """Before: each every-interface form was accepted, and `check` said nothing reveals this machine's address."""
        before = listing(self.node.dir)
        for port, where, fix in EVERYWHERE + ALSO_REFUSED:
            e = self.assertRaises(config.ConfigError, self.parse, port)
            self.assertEqual(str(e), refused(port, where, fix))
            self.assertEqual((e.section, e.key, e.value), ("node", "tub.port", port))
        self.assertEqual(listing(self.node.dir), before)
        # Loopback (and a UNIX socket) is what such a node listens on.
        for port in [p for p, _ in LOOPBACK] + ["unix:/run/node.sock", "tcp:3457:interface=localhost"]:
            c = self.parse(port)
            self.assertEqual(c.tub_port, (port,))
            self.assertIn(
                "reveal-IP-address = false: nothing announced or dialed reveals this machine's IP address",
                c.describe(),
            )
        # Revealing the address is allowed: every interface is fine then.
        c = self.node.parse("[node]\ntub.port = tcp:3457\ntub.location = tor:%s:3457\n" % (ONION,))
        self.assertEqual(c.tub_port, ("tcp:3457",))

    def test_among_several_entries(self) -> None:
        value = "tcp:3457:interface=127.0.0.1,tcp:3458"
        e = self.assertRaises(config.ConfigError, self.parse, value)
        self.assertEqual(str(e), refused("tcp:3458", "every interface", "tcp:3458:interface=127.0.0.1", value))

    def test_port_chosen_at_first_start_refused(self) -> None:
        """A node without tub.port listens on a free port on every interface: refused too."""
        text = "[node]\nreveal-IP-address = false\ntub.location = tor:%s:3457\n[connections]\ntcp = tor\n" % (ONION,)
        e = self.assertRaises(config.ConfigError, self.node.parse, text)
        self.assertEqual(
            str(e),
            "'node.cfg' [node] tub.port is not set: a free port chosen at the first start would listen on every "
            "interface, %s; expected tub.port = tcp:PORT:interface=127.0.0.1 %s" % (REVEALS, ALSO),
        )
        self.node.write(config.PORTNUM_FILE, "tcp:40123\n")
        e = self.assertRaises(config.ConfigError, self.node.parse, text)
        self.assertEqual(
            str(e),
            "'node.cfg' [node] tub.port is not set: %s holds 'tcp:40123' (the port chosen at the first start), "
            "which listens on every interface, %s; expected tub.port = tcp:40123:interface=127.0.0.1 %s"
            % (self.node.path(config.PORTNUM_FILE), REVEALS, ALSO),
        )

class Started(TestCase):
    """What create_tub binds, on an in-memory reactor."""

    def test_binds_loopback_only(self) -> None:
        """
        Before: the five every-interface forms started, bound to '', 0.0.0.0,
        192.0.2.1, :: and ''.  Now none starts; the loopback ones bind exactly there.
        """
        node = Node(self)
        bound: list[tuple[str, Any]] = []
        tubs = []
        for port, *_ in EVERYWHERE + [(p, None, None) for p, _ in LOOPBACK]:
            try:
                c = config.load(node.cfg(HIDDEN % (port,)), local_addresses=addresses)
            except config.ConfigError:
                bound.append((port, "refused"))
                continue
            busy = BusyReactor()
            tub = self.successResultOf(config.create_tub(c, busy))
            tubs.append(tub)
            [(number, _, _, interface)] = busy.tcpServers
            bound.append((port, (number, interface)))
        for tub in tubs:
            self.addCleanup(tub.stopService)
        self.assertEqual(
            bound,
            [(port, "refused") for port, _, _ in EVERYWHERE]
            + [(port, (3457, interface)) for port, interface in LOOPBACK],
        )
        self.assertEqual(tubs[0].locationHints, ["tor:%s:3457" % (ONION,)])


class CreateNodeHideIP(SynchronousTestCase):
    """create-node --hide-ip, through the command's real entry point."""

    def setUp(self) -> None:
        self.dir = Node(self).path("nodes")
        os.makedirs(self.dir)
        self.node = os.path.join(self.dir, "node")

    def create(self, *options: str) -> tuple[int, str, str]:
        return main(["create-node", self.node, "--hide-ip", *options])

    def test_listener_on_every_interface_refused(self) -> None:
        location = "--location=tor:%s:3457" % (ONION,)
        for port, where, fix in EVERYWHERE:
            self.assertEqual(
                self.create("--port=" + port, location),
                (2, "", "foolscap-sidetls create-node: error: --port=%s: %r listens on %s, which reveals this "
                        "machine's IP address to whoever connects there (the TubID in a FURL confirms which "
                        "address runs this node), but --hide-ip (reveal-IP-address = false); expected %s %s\n"
                        % (port, port, where, fix, ALSO)),
            )
            self.assertEqual(os.listdir(self.dir), [])

    def test_tcp_hint_still_refused(self) -> None:
        code, out, err = self.create("--port=tcp:3457:interface=127.0.0.1", "--location=tcp:192.0.2.1:3457")
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(
            err,
            "foolscap-sidetls create-node: error: --location=tcp:192.0.2.1:3457: the hint 'tcp:192.0.2.1:3457' "
            "reveals this machine's IP address, but --hide-ip (reveal-IP-address = false); expected tor: or i2p: "
            "hints only\n",
        )
        self.assertEqual(os.listdir(self.dir), [])

    def test_loopback_listener_for_an_onion_set_up_in_torrc(self) -> None:
        """Before: refused outright ("--hide-ip cannot be used with --listen=tcp")."""
        code, out, err = self.create("--port=tcp:3457:interface=127.0.0.1", "--location=tor:%s:3457" % (ONION,))
        self.assertEqual((code, err), (0, ""))
        with open(os.path.join(self.node, "node.cfg")) as f:
            self.assertIn(
                "[node]\ntub.port = tcp:3457:interface=127.0.0.1\ntub.location = tor:%s:3457\n"
                "reveal-IP-address = false\n#timeout.keepalive =\n#timeout.disconnect =\n\n"
                "[connections]\ntcp = tor\n" % (ONION,),
                f.read(),
            )
        code, out, err = main(["check", self.node])
        self.assertEqual((code, err), (0, ""))
        self.assertIn("  tcp:3457:interface=127.0.0.1 (role-based: each connection is the TLS server)",
                      out.splitlines())


class TorUnavailable(TestCase):
    """txtorcon not installed, as far as this process can tell during each test."""

    def setUp(self) -> None:
        saved = {name: sys.modules.get(name) for name in ("txtorcon", "foolscap_sidetls.tor")}
        had = foolscap_sidetls.__dict__.get("tor")

        def restore() -> None:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
            if had is not None:
                foolscap_sidetls.tor = had  # type: ignore[attr-defined]

        self.addCleanup(restore)
        sys.modules["txtorcon"] = None  # type: ignore[assignment]  # "import txtorcon" raises ImportError
        sys.modules.pop("foolscap_sidetls.tor", None)
        foolscap_sidetls.__dict__.pop("tor", None)
        self.node = Node(self)

    def test_check_says_so(self) -> None:
        """Before: 'tor: hints -> not dialed ([tor] enabled = false)', which the file does not say."""
        path = self.node.cfg("[node]\ntub.port = disabled\ntub.location = disabled\n")
        code, out, err = main(["check", path])
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(
            lines[3],
            "  tor: hints -> not dialed ([tor] unavailable: txtorcon is not installed "
            "(pip install 'foolscap-sidetls[tor]'))",
        )
        self.assertEqual(
            lines[-1],
            "warning: tor: hints are not dialed: [tor] unavailable: txtorcon is not installed "
            "(pip install 'foolscap-sidetls[tor]')",
        )
        e = self.assertRaises(
            config.ConfigError, self.node.parse,
            "[node]\ntub.port = disabled\ntub.location = disabled\n[connections]\ntcp = tor\n",
        )
        self.assertEqual(
            str(e),
            "'node.cfg' [connections] tcp = 'tor': the tor handler is not available ([tor] unavailable: txtorcon "
            "is not installed (pip install 'foolscap-sidetls[tor]')); expected a handler that is enabled, or "
            "disabled",
        )

    def test_ping_says_so(self) -> Deferred:
        """Before: 'not tried: no handler for this hint type (disabled in the configuration, or unknown)'."""
        furl = "pb://%s@tor:%s:3457/%s" % ("a" * 32, ONION, "b" * 32)
        out, err = io.StringIO(), io.StringIO()
        d = Deferred.fromCoroutine(_cli.run(reactor, ["ping", furl, "--timeout=20"], out, err))

        def done(code: int) -> None:
            self.assertEqual(code, 1)
            self.assertEqual(
                out.getvalue().splitlines(),
                [
                    "pinging Tub %s at 1 hint (default handlers)" % ("a" * 32,),
                    "  tor:%s:3457: not tried: [tor] unavailable: txtorcon is not installed "
                    "(pip install 'foolscap-sidetls[tor]')" % (ONION,),
                ],
            )
            self.assertTrue(err.getvalue().startswith("foolscap-sidetls ping: could not connect: "), err.getvalue())

        return d.addCallback(done)
