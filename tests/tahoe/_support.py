"""What the launcher's tests share: the patches applied for one test, and a node directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from foolscap_sidetls.tahoe import _networks, apply


def launcher(case: Any) -> Any:
    """Apply the launcher's patches for this test only; the Patched handle."""
    patched = apply()
    case.addCleanup(patched.undo)
    case.addCleanup(_networks._made.clear)
    return patched


def node_dir(case: Any, config: str = "") -> str:
    """A scratch node directory holding C{config} as its tahoe.cfg."""
    path = tempfile.mkdtemp(prefix="sidetls-tahoe-test-")
    case.addCleanup(shutil.rmtree, path, True)
    os.mkdir(os.path.join(path, "private"), 0o700)
    with open(os.path.join(path, "tahoe.cfg"), "w") as f:
        f.write(config)
    return path


def i2p_private_key() -> str:
    """An I2P destination's private key file's text (I2P base64, null certificate), made offline."""
    import base64

    public = os.urandom(384) + b"\x00\x00\x00"
    return base64.b64encode(public + os.urandom(256) + os.urandom(20), altchars=b"-~").decode("ascii")
