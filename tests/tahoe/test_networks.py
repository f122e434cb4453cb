"""
A node's [tor] and [i2p] served by foolscap-sidetls under the launcher:
the providers Tahoe asks for handlers are built by foolscap_sidetls.config
from the node's own tahoe.cfg, with the keys Tahoe lacks.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from allmydata import client, node
from allmydata.util.configutil import UnknownConfigError

from foolscap_sidetls import i2p, tor
from foolscap_sidetls._foolscap import tubHandlers
from foolscap_sidetls.tahoe import _networks

from ._support import i2p_private_key, launcher, node_dir

_CLIENT = "[node]\ntub.port = disabled\ntub.location = disabled\n[connections]\ntcp = disabled\n"


class ProviderTests(TestCase):
    def providers(self, text: str, files: dict[str, str] = {}) -> tuple[Any, Any, Any]:
        basedir = node_dir(self, text)
        for name, content in files.items():
            with open(os.path.join(basedir, name), "w") as f:
                f.write(content)
        config = client.read_config(basedir, "client.port")
        i2p_provider = client.create_i2p_provider(reactor, config)
        tor_provider = client.create_tor_provider(reactor, config)
        self.addCleanup(i2p_provider.networks.stopService)
        return config, i2p_provider, tor_provider

    def test_i2cpOptionsReachTheHandler(self) -> None:
        """[i2p] i2cp.options (Tahoe ticket 2889) is given to the I2P handler that dials."""
        launcher(self)
        _, i2p_provider, _ = self.providers(
            _CLIENT + "[i2p]\nsam.port = tcp:127.0.0.1:7656\ni2cp.options = inbound.length=0, outbound.length=0\n"
        )
        handler = i2p_provider.get_client_endpoint()
        self.assertIsInstance(handler, i2p.I2PHandler)
        self.assertEqual(handler.options, {"inbound.length": "0", "outbound.length": "0"})
        self.assertEqual(handler.describe(), "sidetls+i2p (SAM at tcp:127.0.0.1:7656)")

    def test_i2pLaunch(self) -> None:
        """[i2p] launch = true, which Tahoe's own provider refuses (NotImplementedError), makes a launching handler."""
        fake_i2pd = os.path.join(node_dir(self), "i2pd")
        with open(fake_i2pd, "w") as f:
            f.write("#!/bin/sh\nexit 1\n")
        os.chmod(fake_i2pd, stat.S_IRWXU)
        text = (
            "[node]\ntub.port = listen:i2p\ntub.location = disabled\n"
            "[i2p]\nlaunch = true\ni2p.executable = %s\ndest = true\ndest.port = 3457\n"
            "dest.private_key_file = private/i2p_dest.privkey\n" % (fake_i2pd,)
        )
        private = i2p_private_key()
        keyfile = os.path.join(node_dir(self), "key")
        with open(keyfile, "w") as f:
            f.write(private)
        text = text.replace("tub.location = disabled", "tub.location = i2p:%s:3457" % (i2p.address_of(keyfile),))
        stock = node_dir(self, text)
        with self.assertRaises(NotImplementedError):
            client.create_i2p_provider(reactor, client.read_config(stock, "client.port"))
        launcher(self)
        _, i2p_provider, _ = self.providers(text, {"private/i2p_dest.privkey": private})
        handler = i2p_provider.get_client_endpoint()
        self.assertIsInstance(handler, i2p.I2PHandler)
        self.assertIn("launched i2pd", handler.describe())

    def test_torControlPortOnly(self) -> None:
        """[tor] control.port alone: foolscap-sidetls's tor handler (which follows SocksPort ADDRESS:PORT)."""
        launcher(self)
        _, i2p_provider, tor_provider = self.providers(_CLIENT + "[tor]\ncontrol.port = tcp:127.0.0.1:9051\n")
        handler = tor_provider.get_client_endpoint()
        self.assertIsInstance(handler, tor.TorHandler)
        self.assertTrue(handler.can_listen)
        self.assertIs(tor_provider.networks, i2p_provider.networks)

    def test_tahoesHandlersAreSidetls(self) -> None:
        """Tahoe's create_connection_handlers and create_tub put the providers' handlers on the Tub, role-based."""
        launcher(self)
        config, i2p_provider, tor_provider = self.providers(
            "[node]\ntub.port = disabled\ntub.location = disabled\n[tor]\ncontrol.port = tcp:127.0.0.1:9051\n"
            "[i2p]\nsam.port = tcp:127.0.0.1:7656\n"
        )
        defaults, handlers = node.create_connection_handlers(config, i2p_provider, tor_provider)
        self.assertEqual(defaults, {"tcp": "tcp", "tor": "tor", "i2p": "i2p"})
        tub = node.create_tub({}, defaults, handlers)
        self.assertEqual(
            {k: v.describe().split(" ", 1)[0] for k, v in tubHandlers(tub).items()},
            {"tcp": "sidetls+tcp", "tor": "sidetls+tor", "i2p": "sidetls+i2p"},
        )
        self.assertIs(tubHandlers(tub)["i2p"], i2p_provider.get_client_endpoint())

    def test_saysSoOnceInTheLog(self) -> None:
        """Making both providers logs the one line saying the node is role-based."""
        launcher(self)
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.providers(_CLIENT)
        said = [e for e in events if e.get("log_namespace") == "foolscap_sidetls.tahoe"]
        self.assertEqual(len(said), 1)
        self.assertIn("every Tub of this node is role-based", said[0]["log_format"])

    def test_badValueNamed(self) -> None:
        """A bad value of an added key: Tahoe's "Configuration error" names the file, section, key and what is accepted."""
        launcher(self)
        basedir = node_dir(self, _CLIENT + "[i2p]\ni2cp.options = inbound.length\n")
        config = client.read_config(basedir, "client.port")
        with self.assertRaises(UnknownConfigError) as caught:
            client.create_i2p_provider(reactor, config)
        message = str(caught.exception)
        self.assertIn(os.path.join(basedir, "tahoe.cfg"), message)
        self.assertIn("[i2p] i2cp.options", message)

    def test_onionPublisher(self) -> None:
        """
        The onion service is published through the tor handler when it has a
        control connection, else through [tor] control.port itself (a SOCKS
        handler cannot publish).
        """
        launcher(self)
        _, _, control_only = self.providers(_CLIENT + "[tor]\ncontrol.port = tcp:127.0.0.1:9051\n")
        self.assertIs(control_only.networks.tor_publisher(), control_only.get_client_endpoint())
        _networks._made.clear()
        _, _, both = self.providers(
            _CLIENT + "[tor]\nsocks.port = tcp:127.0.0.1:9050\ncontrol.port = tcp:127.0.0.1:9051\n"
        )
        self.assertFalse(both.get_client_endpoint().can_listen)
        publisher = both.networks.tor_publisher()
        self.assertTrue(IStreamClientEndpoint.providedBy(publisher))
        self.assertEqual((publisher._host, publisher._port), ("127.0.0.1", 9051))

    def test_listenI2PWithI2PDisabled(self) -> None:
        """listen:i2p with [i2p] enabled = false: refused, saying which setting."""
        launcher(self)
        _, i2p_provider, _ = self.providers(_CLIENT + "[i2p]\nenabled = false\n")
        with self.assertRaises(ValueError) as caught:
            i2p_provider.listen(object())
        self.assertIn("[node] tub.port has listen:i2p, but I2P is not enabled ([i2p] enabled = false)",
                      str(caught.exception))
