"""
The SAM client is a library of its own: loading it loads nothing of
Foolscap, nor the Foolscap layers of foolscap_sidetls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import foolscap_sidetls

PACKAGE = os.path.dirname(os.path.abspath(foolscap_sidetls.__file__))

#: Loads foolscap_sidetls.i2p.sam with its parent packages as empty
#: namespaces (their __init__ modules are the Foolscap plugin's, and
#: Python runs a parent's __init__ before any submodule), then says which
#: modules were loaded.
PROBE = """
import json, sys, types
for name, path in [("foolscap_sidetls", %(package)r), ("foolscap_sidetls.i2p", %(package)r + "/i2p")]:
    parent = types.ModuleType(name)
    parent.__path__ = [path]
    sys.modules[name] = parent
import foolscap_sidetls.i2p.sam as sam
print(json.dumps({
    "foolscap": sorted(m for m in sys.modules if m == "foolscap" or m.startswith("foolscap.")),
    "ours": sorted(m for m in sys.modules if m.startswith("foolscap_sidetls.")),
    "names": sorted(sam.__all__),
}))
"""


class FreshInterpreter(SynchronousTestCase):
    def test_no_foolscap(self) -> None:
        done = subprocess.run(
            [sys.executable, "-c", PROBE % {"package": PACKAGE}],
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        loaded = json.loads(done.stdout.splitlines()[-1])
        self.assertEqual(loaded["foolscap"], [])
        self.assertEqual(
            loaded["ours"],
            # The first: the empty stand-in for the parent package.
            ["foolscap_sidetls.i2p", "foolscap_sidetls.i2p.sam"]
            + ["foolscap_sidetls.i2p.sam._%s" % name for name in
             ("client", "destination", "errors", "server", "session", "util", "wire")],
        )
        for name in ("SAMBridge", "SAMSession", "SAMClientEndpoint", "SAMServerEndpoint", "parse_reply"):
            self.assertIn(name, loaded["names"])
