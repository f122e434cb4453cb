"""
C{tub.port = listen:i2p,listen:tor} under the launcher: Tahoe-LAFS's own
C{create_main_tub} publishes the node's I2P destination and onion service
through this project's listeners (L{foolscap_sidetls.i2p.listen},
L{foolscap_sidetls.tor.listen}), never Tahoe's txi2p/txtorcon listeners.

In memory: the fake SAM bridge of tests/i2p and the fake tor control port
of tests/tor, on one L{MemoryReactorClock}.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from allmydata import client, node

from foolscap_sidetls import _onion, i2p
from foolscap_sidetls._endpoints import ListenerEndpoint
from foolscap_sidetls.i2p.sam import SAMServerEndpoint

from ..i2p._fakes import FakeSAMBridge, b32_of, make_keypair
from ..tor.test_tor import SERVICE_ID, FakeTor
from ._support import launcher, node_dir

_LOCAL_PORT = 41000


def _network(bridge: FakeSAMBridge) -> Any:
    """The bridge's clock, its TCP connections to 7656 going to the fake SAM bridge, the rest recorded."""
    clock = bridge.clock
    record = clock.connectTCP

    def connectTCP(host: str, port: int, factory: Any, *args: Any, **kwargs: Any) -> Any:
        if port == 7656:
            return bridge.endpoint.connect(factory)
        return record(host, port, factory, *args, **kwargs)

    clock.connectTCP = connectTCP  # type: ignore[method-assign]
    return clock


class PublishTests(TestCase):
    def test_listenI2PAndTor(self) -> None:
        """
        Both overlay listeners: a SAM session with the node's key and an
        ADD_ONION forwarding to 127.0.0.1:41000, each feeding a sidetls
        listener on Tahoe's main Tub; the hints published are the node's
        addresses; the Tub's location is tahoe.cfg's.
        """
        launcher(self)
        public, private = make_keypair()
        address = b32_of(public)
        onion_key, onion = _onion.new_key()
        location = "i2p:%s:3457,tor:%s:3457" % (address, onion)
        basedir = node_dir(
            self,
            "[node]\ntub.port = listen:i2p,listen:tor\ntub.location = %s\n[connections]\ntcp = disabled\n"
            "[i2p]\nsam.port = tcp:127.0.0.1:7656\ndest = true\ndest.port = 3457\n"
            "dest.private_key_file = private/i2p_dest.privkey\n"
            "[tor]\ncontrol.port = tcp:127.0.0.1:9051\nonion = true\nonion.local_port = %d\n"
            "onion.external_port = 3457\nonion.private_key_file = private/tor_onion.privkey\n"
            % (location, _LOCAL_PORT),
        )
        with open(os.path.join(basedir, "private", "i2p_dest.privkey"), "w") as f:
            f.write(private)
        with open(os.path.join(basedir, "private", "tor_onion.privkey"), "w") as f:
            f.write(onion_key + "\n")
        bridge = FakeSAMBridge()
        clock = _network(bridge)
        tor = FakeTor(clock)

        config = client.read_config(basedir, "client.port")
        i2p_provider = client.create_i2p_provider(clock, config)
        tor_provider = client.create_tor_provider(clock, config)
        defaults, handlers = node.create_connection_handlers(config, i2p_provider, tor_provider)
        tub = node.create_main_tub(config, {}, defaults, handlers, i2p_provider, tor_provider)
        tub.startService()
        self.addCleanup(self.stop, tub, i2p_provider, bridge)
        bridge.flush()
        tor.accept()
        for hsdir in ("$" + "E" * 40,):
            tor.event("HS_DESC UPLOAD %s UNKNOWN %s %s HSDIR_INDEX=00" % (SERVICE_ID, hsdir, "d" * 43))
            tor.event("HS_DESC UPLOADED %s UNKNOWN %s" % (SERVICE_ID, hsdir))
        bridge.flush()

        # (The fake tor answers every ADD_ONION with its one ServiceID.)
        published = [self.successResultOf(d) for d in i2p_provider.networks.listening]
        self.assertEqual(published, ["i2p:%s:3457" % (address,), "tor:%s.onion:3457" % (SERVICE_ID,)])
        # The I2P session carries the node's own key; the onion forwards to the local port.
        self.assertEqual([fields["DESTINATION"] for _, fields in bridge.created], [private])
        self.assertEqual(
            [c for c in tor.commands if c.startswith("ADD_ONION")],
            ["ADD_ONION %s Port=3457,127.0.0.1:%d Flags=DiscardPK" % (onion_key, _LOCAL_PORT)],
        )
        self.assertEqual([(port, interface) for port, _, _, interface in clock.tcpServers], [(_LOCAL_PORT, "127.0.0.1")])
        # Both listeners are sidetls's (the TLS server whatever the socket), over SAM and the onion's port.
        endpoints = [listener._ep for listener in tub.getListeners()]
        self.assertEqual([type(ep) for ep in endpoints], [ListenerEndpoint, ListenerEndpoint])
        self.assertIsInstance(endpoints[0]._endpoint, SAMServerEndpoint)
        self.assertEqual(tub.locationHints, [location])

    def stop(self, tub: Any, i2p_provider: Any, bridge: FakeSAMBridge) -> Deferred:
        d = tub.stopService()
        bridge.flush()
        for service in list(tub):
            if isinstance(service, i2p.I2PHandler):
                service.stop()
        bridge.flush()
        return d
