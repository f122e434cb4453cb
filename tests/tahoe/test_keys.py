"""
tahoe.cfg key admission: under the launcher Tahoe accepts the keys
foolscap-sidetls adds, and only those; an unknown key is still refused
with Tahoe's own message.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from allmydata import client
from allmydata.introducer import server
from allmydata.node import read_config
from allmydata.util.configutil import UnknownConfigError

from foolscap_sidetls import config as sidetls_config
from foolscap_sidetls.tahoe import ADDED_KEYS

from ._support import launcher, node_dir

#: A value of each added key, as an operator would write it.
_VALUES = {
    ("i2p", "i2cp.options"): "inbound.length=0, outbound.length=0",
    ("i2p", "reseed.timeout"): "30",
    ("tor", "bootstrap.timeout"): "30",
}


def _cfg(section: str, key: str, value: str) -> str:
    return "[node]\ntub.port = disabled\ntub.location = disabled\n[%s]\n%s = %s\n" % (section, key, value)


class KeyAdmissionTests(SynchronousTestCase):
    def test_addedKeys(self) -> None:
        """The added keys are exactly [i2p] i2cp.options, reseed.timeout and [tor] bootstrap.timeout."""
        self.assertEqual(
            dict(ADDED_KEYS), {"i2p": ("i2cp.options", "reseed.timeout"), "tor": ("bootstrap.timeout",)}
        )
        self.assertEqual(sorted(_VALUES), sorted((s, k) for s, keys in ADDED_KEYS.items() for k in keys))

    def test_addedKeysAdmittedByClientAndIntroducer(self) -> None:
        """Under the launcher each added key is read by a client's and an introducer's read_config."""
        launcher(self)
        for (section, key), value in _VALUES.items():
            basedir = node_dir(self, _cfg(section, key, value))
            self.assertEqual(client.read_config(basedir, "client.port").get_config(section, key), value)
            config = read_config(basedir, "client.port", _valid_config=server._valid_config())
            self.assertEqual(config.get_config(section, key), value)

    def test_addedKeysRefusedByStockTahoe(self) -> None:
        """The control: stock Tahoe refuses each of them (so a node written for the launcher needs it)."""
        for (section, key), value in _VALUES.items():
            basedir = node_dir(self, _cfg(section, key, value))
            with self.assertRaises(UnknownConfigError) as caught:
                client.read_config(basedir, "client.port")
            self.assertEqual(
                str(caught.exception),
                "'%s' section [%s] contains unknown option '%s'" % (os.path.join(basedir, "tahoe.cfg"), section, key),
            )

    def test_unknownKeyStillRefused(self) -> None:
        """A typo ([i2p] i2cp.option) is refused under the launcher, in Tahoe's own words."""
        launcher(self)
        basedir = node_dir(self, _cfg("i2p", "i2cp.option", "inbound.length=0"))
        for valid in (client._valid_config(), server._valid_config()):
            with self.assertRaises(UnknownConfigError) as caught:
                read_config(basedir, "client.port", _valid_config=valid)
            self.assertEqual(
                str(caught.exception),
                "'%s' section [i2p] contains unknown option 'i2cp.option'" % (os.path.join(basedir, "tahoe.cfg"),),
            )

    def test_addedKeysAreSidetlsKeys(self) -> None:
        """Each added key is one foolscap_sidetls.config reads (the two lists cannot drift apart)."""
        for (section, key), value in _VALUES.items():
            node = sidetls_config.from_sections(
                {"node": {"tub.port": "disabled", "tub.location": "disabled"}, section: {key: value}}
            )
            self.assertEqual(node.listening, False)
