"""
Tubs made by Tahoe-LAFS's own functions under the launcher: every handler
and listener role-based (the main Tub, the storage-server Tubs, the
log-port Tub), shown with a dial whose socket direction is inverted --
the I2P shape -- which fails between stock Tahoe Tubs.
"""

from __future__ import annotations

from typing import Any

from foolscap.api import Referenceable, Tub
from twisted.application.service import MultiService
from twisted.trial.unittest import TestCase

from allmydata import node
from allmydata.util import connection_status, iputil

from foolscap_sidetls._foolscap import tubHandlers
from foolscap_sidetls.tahoe import _networks
from foolscap_sidetls.testing import INBOUND, MemoryNetwork

from ..relay._helpers import pumpReactor
from ._support import launcher, node_dir


class Echo(Referenceable):
    def remote_echo(self, data: Any) -> Any:
        return data


def tahoe_tub(case: TestCase, net: MemoryNetwork) -> Any:
    """
    A Tub as Tahoe's storage broker makes one: node.create_tub with Tahoe's
    HTTPS-capable Tub, and a stock handler for memory: hints whose dialed
    connections look inbound (the I2P shape).
    """
    tub = node.create_tub(
        {"expose-remote-exception-types": False},
        {"memory": "memory", "tcp": None},
        {"memory": net.hint_handler(socket=INBOUND)},
    )
    tub._test_options = dict(tub._test_options, connect_timeout=8)
    tub.startService()
    case.addCleanup(tub.stopService)
    return tub


class InvertedDialTests(TestCase):
    def dial(self) -> tuple[Any, Any]:
        net = self.net = MemoryNetwork()
        server, client = tahoe_tub(self, net), tahoe_tub(self, net)
        net.listen(server, "server")
        furl = server.registerReference(Echo())
        d = client.getReference(furl)
        pumpReactor()
        return client, d

    def test_launcherTubsConnect(self) -> None:
        """Under the launcher, two Tahoe-made Tubs connect and call across the inverted dial."""
        launcher(self)
        client, d = self.dial()
        rref = self.successResultOf(d)
        call = rref.callRemote("echo", b"x" * 1000)
        pumpReactor()
        self.assertEqual(self.successResultOf(call), b"x" * 1000)

    def test_stockTubsFail(self) -> None:
        """
        Without it (the control), the same Tahoe Tubs never connect: both
        ends are TLS servers waiting for a ClientHello, until Foolscap's
        connect timeout.
        """
        client, d = self.dial()
        self.assertNoResult(d)
        self.assertEqual(client.brokers, {})
        # Stands in for the timeout: the stuck connection goes away.
        self.assertEqual(len(self.net.transports), 2)
        for transport in self.net.transports:
            transport.abortConnection()
        pumpReactor()
        failure = self.failureResultOf(d)
        self.assertEqual(type(failure.value).__name__, "ConnectionLost")

    def test_welcomePageSaysSidetls(self) -> None:
        """The welcome page's connection status (Tahoe's own renderer) says the dial was sidetls's."""
        launcher(self)
        net = MemoryNetwork()
        server, client = tahoe_tub(self, net), tahoe_tub(self, net)
        net.listen(server, "server")
        furl = server.registerReference(Echo())
        reconnector = client.connectTo(furl, lambda rref: None)
        self.addCleanup(reconnector.stopConnecting)
        pumpReactor()
        status = connection_status.from_foolscap_reconnector(reconnector, None)
        self.assertEqual(status.summary, "Connected to memory:server via sidetls+memory")


class ListenerTests(TestCase):
    def test_tubPortEntriesWrapped(self) -> None:
        """Every plain tub.port entry becomes a sidetls listener, in order, and the location is Tahoe's."""
        launcher(self)
        tub = Tub()
        node.tub_listen_on(None, None, tub, "tcp:0:interface=127.0.0.1,tcp:0:interface=127.0.0.2", b"tcp:a:1")
        self.assertEqual(
            [repr(listener).split(" on ", 1)[1][:22] for listener in tub.getListeners()],
            ["<sidetls listener on <", "<sidetls listener on <"],
        )
        self.assertEqual(tub.locationHints, ["tcp:a:1"])

    def test_stockTubPortEntries(self) -> None:
        """The control: stock tub_listen_on leaves the description to Foolscap, no sidetls listener."""
        tub = Tub()
        node.tub_listen_on(None, None, tub, "tcp:0:interface=127.0.0.1", b"tcp:a:1")
        self.assertEqual([" sidetls " in repr(listener) for listener in tub.getListeners()], [False])

    def test_overlayListenersGoToSidetls(self) -> None:
        """listen:i2p and listen:tor go to the launcher's providers, the Tub passed along; TCP entries stay."""
        launcher(self)
        seen = []

        class Recording(_networks.I2PProvider):
            def __init__(self) -> None:
                pass

            def listen(self, tub: Any) -> None:
                seen.append(("i2p", tub))

        class RecordingTor(_networks.TorProvider):
            def __init__(self) -> None:
                pass

            def listen(self, tub: Any, local_port: Any = "configured") -> None:
                seen.append(("tor", tub))

            def onion_local_port(self) -> None:
                return None

        tub = Tub()
        node.tub_listen_on(Recording(), RecordingTor(), tub, "listen:tor,tcp:0:interface=127.0.0.1,listen:i2p", b"x")
        self.assertEqual(seen, [("tor", tub), ("i2p", tub)])
        self.assertEqual(len(tub.getListeners()), 1)

    def test_onionAsCreateNodeWritesIt(self) -> None:
        """
        `tahoe create-node --listen=tor` writes tub.port = tcp:LOCAL:interface=127.0.0.1 and
        [tor] onion = true, which stock Tahoe's tor provider publishes as it starts: here
        tor.listen takes that entry (it listens there and publishes); a tub.port holding the
        port on every interface keeps it, and the onion forwards to a free loopback port.
        """
        launcher(self)
        seen: list[Any] = []

        class OnionTor(_networks.TorProvider):
            def __init__(self) -> None:
                pass

            def listen(self, tub: Any, local_port: Any = "configured") -> None:
                seen.append(local_port)

            def onion_local_port(self) -> int:
                return 7000

        tub = Tub()
        node.tub_listen_on(None, OnionTor(), tub, "tcp:7000:interface=127.0.0.1", b"x")
        self.assertEqual((seen, len(tub.getListeners())), (["configured"], 0))
        del seen[:]
        tub = Tub()
        node.tub_listen_on(None, OnionTor(), tub, "tcp:7000", b"x")
        self.assertEqual((seen, len(tub.getListeners())), ([None], 1))
        del seen[:]
        tub = Tub()
        node.tub_listen_on(None, OnionTor(), tub, "listen:tor", b"x")
        self.assertEqual((seen, len(tub.getListeners())), (["configured"], 0))

    def test_tahoesOwnProviderRefused(self) -> None:
        """Given Tahoe's own provider (made before the patch), listen:i2p says why instead of half-working."""
        launcher(self)
        with self.assertRaises(TypeError) as caught:
            node.tub_listen_on(object(), None, Tub(), "listen:i2p", b"x")
        self.assertIn("listen:i2p needs the launcher's i2p provider", str(caught.exception))


class LogTubTests(TestCase):
    def test_logPortTub(self) -> None:
        """
        The log-port Tub as Tahoe's Node.create_log_tub makes it: its tcp
        handler and its loopback listener are sidetls's, its location
        Tahoe's.  (Called on a bare service holder: a whole Node would set
        Foolscap's process-wide incident directory.)
        """
        launcher(self)

        class Holder(MultiService):
            logged: list[Any] = []

            def log(self, *args: Any, **kwargs: Any) -> None:
                self.logged.append(args)

        holder = Holder()
        node.Node.create_log_tub(holder)
        log_tub = holder.log_tub
        self.assertEqual(list(holder), [log_tub])
        self.assertEqual({k: v.describe() for k, v in tubHandlers(log_tub).items()}, {"tcp": "sidetls+tcp"})
        (listener,) = log_tub.getListeners()
        self.assertIn("<sidetls listener on ", repr(listener))
        (hint,) = log_tub.locationHints
        self.assertEqual(holder.logged, [("Log Tub location set to 127.0.0.1:%s" % (hint.split(":")[1],),)])

    def test_logPortTubHandlers(self) -> None:
        """listenOnUnused (what create_log_tub calls) wraps the Tub's own default tcp handler."""
        launcher(self)
        tub = Tub()
        port = iputil.listenOnUnused(tub)
        self.assertEqual(tub.locationHints, ["localhost:%d" % (port,)])
        self.assertEqual({k: v.describe() for k, v in tubHandlers(tub).items()}, {"tcp": "sidetls+tcp"})
