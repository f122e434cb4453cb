"""
L{foolscap_sidetls.i2p.local_i2p}: an i2pd.conf's SAM address.
"""

from __future__ import annotations

import os

from twisted.internet.testing import MemoryReactorClock

from foolscap_sidetls import i2p

from ._fakes import TempTestCase


class LocalI2PTests(TempTestCase):
    def conf(self, text: str) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "i2pd.conf"), "w") as f:
            f.write(text)
        return directory

    def test_enabled(self) -> None:
        d = self.conf("log = file\n[http]\nport = 7070\n[sam]\nenabled = true\naddress = 127.0.0.1\nport = 17656 # mine\n")
        h = i2p.local_i2p(d, reactor=MemoryReactorClock())
        self.assertEqual(h.sam_where, "tcp:127.0.0.1:17656 (from %s/i2pd.conf)" % (d,))
        self.assertEqual((h.sam_endpoint._host, h.sam_endpoint._port), ("127.0.0.1", 17656))
        self.assertIn("SAM at tcp:127.0.0.1:17656", h.describe())

    def test_defaults_and_wildcards(self) -> None:
        h = i2p.local_i2p(self.conf("[sam]\nenabled = yes\n"), reactor=MemoryReactorClock())
        self.assertEqual((h.sam_endpoint._host, h.sam_endpoint._port), ("127.0.0.1", 7656))
        h = i2p.local_i2p(self.conf("[sam]\naddress = 0.0.0.0\nport = 7000\n"), reactor=MemoryReactorClock())
        self.assertEqual((h.sam_endpoint._host, h.sam_endpoint._port), ("127.0.0.1", 7000))
        h = i2p.local_i2p(self.conf("[sam]\naddress = ::\n"), reactor=MemoryReactorClock())
        self.assertEqual(h.sam_endpoint._host, "::1")

    def test_config_file_path(self) -> None:
        d = self.conf("[sam]\nenabled = true\n")
        h = i2p.local_i2p(os.path.join(d, "i2pd.conf"), reactor=MemoryReactorClock())
        self.assertEqual(h.sam_endpoint._port, 7656)

    def test_disabled(self) -> None:
        d = self.conf("[sam]\nenabled = false\n")
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, d)
        self.assertIn("disables the SAM bridge ([sam] enabled = false)", str(e))
        self.assertIn("set 'enabled = true'", str(e))
        self.assertIsInstance(e, ValueError)

    def test_missing_section(self) -> None:
        d = self.conf("ipv4 = true\n[http]\nenabled = true\n")
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, d)
        self.assertIn("has no [sam] section", str(e))
        self.assertIn("enabled = true", str(e))

    def test_bad_values(self) -> None:
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, self.conf("[sam]\nport = http\n"))
        self.assertIn("port = 'http' is not a port number", str(e))
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, self.conf("[sam]\nenabled = maybe\n"))
        self.assertIn("neither true nor false", str(e))
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, self.conf("[sam\nport = 1\n"))
        self.assertIn("cannot parse", str(e))

    def test_missing_file(self) -> None:
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p, self.mktemp())
        self.assertIn("does not exist", str(e))
        self.assertRaises(TypeError, i2p.local_i2p, 7656)

    def test_search(self) -> None:
        first, second = self.mktemp(), self.conf("[sam]\nport = 7001\n")
        self.patch(i2p, "I2PD_CONFIG_DIRS", (first, second))
        h = i2p.local_i2p(reactor=MemoryReactorClock())
        self.assertEqual(h.sam_endpoint._port, 7001)
        self.patch(i2p, "I2PD_CONFIG_DIRS", (first,))
        e = self.assertRaises(i2p.I2PConfigError, i2p.local_i2p)
        self.assertIn("no i2pd.conf found (looked for %s/i2pd.conf)" % (first,), str(e))
        self.assertIn("'i2pd'", str(e))
