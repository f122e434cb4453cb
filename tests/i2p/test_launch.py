"""
L{foolscap_sidetls.i2p.launch}: arguments, the executable, the i2pd.conf it writes.
"""

from __future__ import annotations

import os
import sys

from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock

from foolscap_sidetls import i2p
from foolscap_sidetls.i2p import _launch

from ._fakes import B32, Recorder, TempTestCase


class LaunchTests(TempTestCase):
    def test_not_found(self) -> None:
        e = self.assertRaises(i2p.I2PDNotFound, i2p.launch, "/nonexistent/i2pd")
        self.assertIn("install the Debian/Ubuntu package 'i2pd'", str(e))
        self.patch(i2p, "I2PD_SEARCH_DIRS", ())
        self.patch(os, "environ", {"PATH": self.mktemp()})
        e = self.assertRaises(i2p.I2PDNotFound, i2p.launch)
        self.assertIn("i2pd executable not found on PATH", str(e))
        self.assertIn("install the Debian/Ubuntu package 'i2pd'", str(e))
        e = self.assertRaises(i2p.I2PDNotFound, i2p.launch, "no-such-i2pd")
        self.assertIn("'no-such-i2pd' not found on PATH", str(e))

    def test_not_executable(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("")
        e = self.assertRaises(i2p.I2PDNotFound, i2p.launch, path)
        self.assertIn("not an executable file", str(e))

    def fake_i2pd(self, script: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + script)
        os.chmod(path, 0o755)
        return path

    def test_config_checked(self) -> None:
        exe = self.fake_i2pd("exit 0\n")
        self.assertRaises(TypeError, i2p.launch, exe, config=["netid=99"])
        self.assertRaises(TypeError, i2p.launch, exe, data_directory=3)
        e = self.assertRaises(ValueError, i2p.launch, exe, config={"sam.enabled": False})
        self.assertIn("must be true", str(e))
        e = self.assertRaises(ValueError, i2p.launch, exe, config={"datadir": "/tmp"})
        self.assertIn("data_directory argument", str(e))
        e = self.assertRaises(ValueError, i2p.launch, exe, config={"--netid": "99"})
        self.assertIn("without '--'", str(e))
        self.assertRaises(TypeError, i2p.launch, exe, config={"netid": 9.9})
        self.assertRaises(ValueError, i2p.launch, exe, config={"netid": "9\n[x]"})
        self.assertRaises(ValueError, i2p.launch, exe, config={"sam.port": "0x10"})

    def test_conf_text(self) -> None:
        text = _launch._i2pd_conf({"netid": "99", "sam.port": "1", "httpproxy.i2cp.leaseSetType": "1", "log": "file"})
        self.assertEqual(
            text,
            "# written by foolscap_sidetls.i2p.launch()\nnetid = 99\nlog = file\n\n"
            "[sam]\nport = 1\n\n[httpproxy]\ni2cp.leaseSetType = 1\n",
        )

    def test_sam_port_from_config(self) -> None:
        h = i2p.launch(self.fake_i2pd("exit 0\n"), config={"sam.port": 17001}, reactor=MemoryReactorClock())
        self.assertEqual(h.sam_where, "tcp:127.0.0.1:17001")
        self.assertIn("launched i2pd", h.describe())

    def test_exits_at_once(self) -> None:
        """An i2pd that dies before SAM answers: I2PDFailed with its output; nothing left."""
        exe = self.fake_i2pd("echo 'unrecognised option --bogus' >&2\nexit 3\n")
        datadir = self.mktemp()
        h = i2p.launch(exe, data_directory=datadir)
        statuses: list[str] = []
        ep, _ = h.hint_to_endpoint("i2p:" + B32, None, statuses.append)
        d = ep.connect(Factory.forProtocol(Recorder))

        def failed(f):
            f.trap(i2p.I2PDFailed)
            self.assertIn("exited with status 3", str(f.value))
            self.assertIn("unrecognised option --bogus", str(f.value))
            self.assertEqual(statuses, ["launching i2pd"])
            self.assertIsNone(h.launched_pid)
            with open(os.path.join(datadir, "i2pd.conf")) as conf:
                text = conf.read()
            self.assertIn("[sam]\nenabled = true\naddress = 127.0.0.1\nport = %d" % h._bridge.launcher.sam_port, text)
            self.assertIn("[http]\nenabled = false", text)
            return h.stop()

        d.addCallbacks(lambda _: self.fail("connected?"), failed)
        return d

    if not sys.platform.startswith("linux"):
        test_exits_at_once.skip = "needs /bin/sh"  # type: ignore[attr-defined]
