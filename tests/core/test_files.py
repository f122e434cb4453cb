"""foolscap_sidetls._files: how every key file this package writes reaches the disk."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from foolscap_sidetls._files import write_private


class WritePrivateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sidetls-files-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "key")

    def mode(self) -> int:
        return stat.S_IMODE(os.stat(self.path).st_mode)

    def test_text_and_bytes_private_from_the_start(self) -> None:
        old = os.umask(0)  # a permissive umask must not leak into the file
        try:
            self.assertTrue(write_private(self.path, "ED25519-V3:abc\n"))
        finally:
            os.umask(old)
        self.assertEqual(self.mode(), 0o600)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"ED25519-V3:abc\n")
        self.assertTrue(write_private(self.path, b"\x00\x01"))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"\x00\x01")
        self.assertEqual(os.listdir(self.dir), ["key"])

    def test_replace_false_keeps_what_is_there(self) -> None:
        write_private(self.path, "first")
        self.assertFalse(write_private(self.path, "second", replace=False))
        with open(self.path) as f:
            self.assertEqual(f.read(), "first")
        self.assertEqual(os.listdir(self.dir), ["key"])
        other = os.path.join(self.dir, "new")
        self.assertTrue(write_private(other, "third", replace=False))
        with open(other) as f:
            self.assertEqual(f.read(), "third")
        self.assertEqual(stat.S_IMODE(os.stat(other).st_mode), 0o600)

    def test_nothing_left_when_it_fails(self) -> None:
        os.mkdir(self.path)  # a directory where the file should go
        self.assertRaises(OSError, write_private, self.path, "x")
        self.assertEqual(os.listdir(self.dir), ["key"])
        self.assertRaises(OSError, write_private, os.path.join(self.dir, "missing", "key"), "x")
        self.assertRaises(UnicodeEncodeError, write_private, os.path.join(self.dir, "k2"), "ключ")
        self.assertEqual(os.listdir(self.dir), ["key"])


class TemporaryPaths(SynchronousTestCase):
    """tests/conftest.py: trial's mktemp() under pytest leaves nothing in the checkout."""

    def test_mktemp_is_outside_the_checkout(self) -> None:
        checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = self.mktemp()
        self.assertTrue(os.path.isabs(path), path)
        self.assertFalse(os.path.exists(path))
        self.assertTrue(os.path.isdir(os.path.dirname(path)))
        self.assertFalse(os.path.realpath(path).startswith(os.path.realpath(checkout) + os.sep), path)
