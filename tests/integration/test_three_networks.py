"""
One FURL, three networks: a Tub listening on loopback TCP, on an onion
service in the private Tor network and on an I2P destination on the private
router, dialed while one or two of the networks are down.

"Down" is what a user meets: for Tor and I2P the dialer's daemon is not
there (its handler points at a loopback port nobody listens on); for TCP
the listener has stopped.  Whatever survives must carry the call, and the
dead hints must be reported as failed in the connection's status, not
hang the connection.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any

import pytest
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString
from twisted.internet.error import ConnectionRefusedError
from twisted.trial.unittest import TestCase

from foolscap.api import Referenceable, Tub
from foolscap.connections import tcp

import foolscap_sidetls
from foolscap_sidetls import i2p, tor
from .._support.waiting import coroutine

from . import _i2pnet

NETWORKS = ("tcp", "tor", "i2p")


@pytest.fixture(autouse=True)
def _networks(request, tor_network, i2p_router):
    request.instance.net = tor_network
    request.instance.router = i2p_router


class Echo(Referenceable):
    def remote_echo(self, data):
        return data


def dead_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreeNetworks(TestCase):
    timeout = 240
    net: Any
    router: Any

    def tub(self) -> Tub:
        tub = Tub()
        tub.setOption("expose-remote-exception-types", False)
        tub.startService()
        self.addCleanup(lambda: tub.stopService() if tub.running else None)
        return tub

    def keyfile(self) -> str:
        directory = tempfile.mkdtemp(prefix="sidetls-three-")
        self.addCleanup(shutil.rmtree, directory, True)
        return os.path.join(directory, "dest.key")

    def sam_handler(self, endpoint: Any) -> i2p.I2PHandler:
        handler = i2p.sam_endpoint(endpoint, options=_i2pnet.SESSION_OPTIONS)
        self.addCleanup(handler.stop)
        return handler

    def tor_control(self, node: Any) -> tor.TorHandler:
        handler = tor.control_endpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", node.control_port))
        self.addCleanup(handler.stop)
        return handler

    @coroutine
    async def test_any_surviving_network_carries_the_call(self):
        """
        Every way of losing one or two of tcp, tor and i2p: the call goes
        through on a surviving network, and each dead hint's status says
        it failed.
        """
        server = self.tub()
        tcp_port = dead_port()
        tcp_listener = server.listenOn("sidetls:tcp:%d:interface=127.0.0.1" % tcp_port)
        tcp_hint = "tcp:127.0.0.1:%d" % tcp_port

        # Dialer-side handlers, shared by every dialing Tub below so the
        # I2P session (~20 s on i2pd) is opened once.
        alive = {
            "tor": self.tor_control(self.net.dialer),
            "i2p": self.sam_handler(clientFromString(reactor, self.router.sam_description)),
        }
        dead = {
            "tor": foolscap_sidetls.handler(
                tor.socks_endpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", dead_port()))
            ),
            "i2p": self.sam_handler(TCP4ClientEndpoint(reactor, "127.0.0.1", dead_port())),
        }
        server_sam = self.sam_handler(clientFromString(reactor, self.router.sam_description))
        tor_hint, i2p_hint, _ = await defer.gatherResults(
            [
                tor.listen(server, self.tor_control(self.net.server)),
                i2p.listen(server, server_sam, self.keyfile()),
                alive["i2p"].prepare(),
            ],
            consumeErrors=True,
        )
        hints = {"tcp": tcp_hint, "tor": tor_hint, "i2p": i2p_hint}
        server.setLocation(",".join(hints[n] for n in NETWORKS))
        furl = server.registerReference(Echo(), "echo")

        async def dial(down: frozenset[str]) -> tuple[str, dict[str, str]]:
            tub = self.tub()
            tub.removeAllConnectionHintHandlers()
            tub.addConnectionHintHandler("tcp", foolscap_sidetls.handler(tcp.default()))
            for name in ("tor", "i2p"):
                tub.addConnectionHintHandler(name, (dead if name in down else alive)[name])
            rref = await tub.getReference(furl)
            payload = os.urandom(64 * 1024)
            self.assertEqual(await rref.callRemote("echo", payload), payload)
            info = rref.getConnectionInfo()
            statuses = dict(info.connectorStatuses)
            await tub.stopService()
            return info.winningHint, statuses

        cases = [frozenset(c) for c in ((), ("tor",), ("i2p",), ("tor", "i2p"))]
        later = [frozenset(c) for c in (("tcp",), ("tcp", "tor"), ("tcp", "i2p"))]
        results: dict[frozenset[str], tuple[str, dict[str, str]]] = {}
        for down in cases:
            results[down] = await dial(down)
        await server.stopListeningOn(tcp_listener)
        for down in later:
            results[down] = await dial(down)

        # All three down: the call fails (it does not hang), and every hint
        # says why.
        tub = self.tub()
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("tcp", foolscap_sidetls.handler(tcp.default()))
        for name in ("tor", "i2p"):
            tub.addConnectionHintHandler(name, dead[name])
        connector = tub.getReference(furl)
        [info] = [c.getConnectionInfo() for c in tub._activeConnectors]
        try:
            await connector
        except (ConnectionRefusedError, tor.TorError, i2p.I2PError):
            pass
        else:
            self.fail("connected with every network down")
        all_down = dict(info.connectorStatuses)

        by_hint = {v: k for k, v in hints.items()}
        # What a dead network looks like in the connection status: a dead
        # daemon is reported at once, in words that say which and where; a
        # stopped TCP listener is refused -- or, because Twisted's
        # HostnameEndpoint reports refusal only after its 0.3 s attempt
        # delay, abandoned when another hint won first.
        dead_status = {
            "tcp": r"^(connection refused|abandoned)$",
            "tor": r"^failed to connect: could not reach tor's SOCKS port at 127\.0\.0\.1:\d+ "
            r"\(connection refused\); is tor running\?",
            "i2p": r"^failed to connect: no SAM bridge answering at tcp:127\.0\.0\.1:\d+ "
            r"\(connection refused\)\. Is the I2P router running with its SAM bridge enabled\?",
        }
        for down, (winner, statuses) in results.items():
            case = "down=%s: %r" % (sorted(down), statuses)
            self.assertNotIn(by_hint[winner], down, case)
            self.assertEqual(statuses[winner], "successful", case)
            for name in down:
                self.assertRegex(statuses[hints[name]], dead_status[name], case)
        for name in NETWORKS:
            self.assertRegex(all_down[hints[name]], dead_status[name].replace("|abandoned", ""), all_down)
        # With only one survivor, the winner is determined.
        for survivor in NETWORKS:
            down = frozenset(NETWORKS) - {survivor}
            self.assertEqual(by_hint[results[down][0]], survivor)
