"""
The recipes in the headers of C{examples/configs/*.cfg}, run as written,
one after another, through the real command.

Each recipe makes a node directory of its own, copies the example into it
and checks it.  Running them all in one sequence shows they do not collide
(they used to share C{/tmp/n}), and a listing of C{examples/configs} before
and after shows nothing is written there (keys used to be copied into its
C{private/}).
"""

from __future__ import annotations

import filecmp
import os
import shlex
import shutil
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from ..cli._support import CommandReactor, main, scratch
from ..i2p._fakes import FakeSAMBridge

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(TOP, "examples", "configs")
#: What every recipe's directory starts with.
RECIPE_ROOT = "/tmp/sidetls-"


def recipe(name: str) -> list[list[str]]:
    """The commands in C{name}'s header, as argument lists, in order."""
    commands = []
    with open(os.path.join(EXAMPLES, name)) as f:
        for line in f:
            if not line.startswith("#"):
                break
            text = line[1:].strip()
            if text.startswith(("foolscap-sidetls ", "cp ")):
                commands.append(shlex.split(text))
    return commands


def listing(top: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs)


class Recipes(SynchronousTestCase):
    def test_every_recipe_runs_in_sequence(self) -> None:
        names = sorted(n for n in os.listdir(EXAMPLES) if n.endswith(".cfg"))
        withRecipes = [n for n in names if recipe(n)]
        self.assertEqual(
            withRecipes, ["i2p-launch.cfg", "i2p.cfg", "tcp.cfg", "tor-launch-hide-ip.cfg", "tor.cfg"]
        )
        root = scratch(self)
        before = listing(EXAMPLES)
        directories = set()
        for name in withRecipes:
            node = None
            for argv in recipe(name):
                argv = [a.replace(RECIPE_ROOT, os.path.join(root, "sidetls-")) for a in argv]
                if argv[0] == "cp":
                    self.assertEqual(argv[1], "examples/configs/%s" % (name,))
                    shutil.copy(os.path.join(TOP, argv[1]), argv[2])
                    continue
                argv = [os.path.join(TOP, a) if a.startswith("examples/") else a for a in argv]
                if argv[1] == "create-node":
                    node = argv[-1]
                    self.assertTrue(node.startswith(os.path.join(root, "sidetls-")), (name, node))
                    directories.add(node)
                out = self.run_command(name, argv[1:])
                if argv[1] == "check":
                    self.assertIn("is valid.", out, name)
                    # Only the placeholder location differs from the key's.
                    warnings = [l for l in out.splitlines() if l.startswith("warning:")]
                    self.assertEqual(len(warnings), 0 if node is None else 1, (name, warnings))
                    for warning in warnings:
                        self.assertIn("dialers will not find", warning, name)
            if node is None:
                # Checked where it is: check writes nothing.
                continue
            self.assertTrue(filecmp.cmp(os.path.join(EXAMPLES, name), os.path.join(node, "node.cfg"), shallow=False))
        self.assertEqual(len(directories), 4)
        self.assertEqual(listing(EXAMPLES), before)

    def run_command(self, name: str, argv: list[str]) -> str:
        if "--i2p-launch" in argv:
            # Launches a real i2pd (DEST GENERATE needs no peers); the
            # in-memory reactor cannot spawn it.
            if shutil.which("i2pd") is None and os.environ.get("CI") != "true":
                self.skipTest("i2pd not installed (make system-deps)")
            done = subprocess.run(
                [sys.executable, "-m", "foolscap_sidetls", *argv],
                capture_output=True, text=True, timeout=60, cwd=TOP,
            )
            self.assertEqual((done.returncode, done.stderr), (0, ""), (name, argv, done.stdout))
            return done.stdout
        code, out, err = main(argv, CommandReactor(FakeSAMBridge()))
        self.assertEqual((code, err), (0, ""), (name, argv, out))
        return out
