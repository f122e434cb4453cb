"""
Tahoe-LAFS's own command line with role-based Tubs::

    foolscap-sidetls tahoe run NODEDIR        # or any other tahoe subcommand
    python -m foolscap_sidetls.tahoe create-node --listen=none NODEDIR

runs C{tahoe ARGS...} in this process after patching the few Tahoe-LAFS
functions that make Tubs, handlers and listeners (listed, with the
releases they were checked against, in L{_hooks}): every Tub Tahoe makes
-- the main one, the storage-server ones, the log-port one -- dials as the
TLS client and listens as the TLS server, whichever way its sockets were
opened, so stock Tahoe's I2P double-ClientHello (Tahoe ticket 2861) is
gone without txi2p's C{invertTLS}.  The node's C{[tor]} and C{[i2p]}
sections are served by L{foolscap_sidetls.tor} and L{foolscap_sidetls.i2p}
(read by L{foolscap_sidetls.config}), which adds C{[i2p] i2cp.options},
C{[i2p] launch = true}, C{[i2p] i2p.configdir}, a tor whose SocksPort is
ADDRESS:PORT, and SAM session recovery.

A Tahoe-LAFS whose internals differ from the checked ones is refused at
start (L{HookMismatch}), before anything is patched.  Python users can
call L{apply} and then Tahoe's own functions (C{allmydata.client.
create_client}) in-process.
"""

from __future__ import annotations

import sys
from typing import NoReturn, Optional, Sequence, TextIO

from ._hooks import CHECKED_VERSIONS, PATCH_POINTS, HookMismatch, Patched, PatchPoint, apply, check
from ._keys import ADDED_KEYS

__all__ = [
    "ADDED_KEYS",
    "CHECKED_VERSIONS",
    "HookMismatch",
    "INSTALL_HINT",
    "PATCH_POINTS",
    "PROG",
    "PatchPoint",
    "Patched",
    "apply",
    "check",
    "main",
]

#: How this command names itself in Tahoe's usage messages.
PROG = "foolscap-sidetls tahoe"
#: The one line printed when Tahoe-LAFS is not installed.
INSTALL_HINT = (
    "foolscap-sidetls tahoe: Tahoe-LAFS is not installed; install it with: pip install 'foolscap-sidetls[tahoe]'"
)


def main(argv: Optional[Sequence[str]] = None, *, stderr: Optional[TextIO] = None) -> NoReturn:
    """
    Run Tahoe-LAFS's command line (C{argv}, default C{sys.argv[1:]},
    passed to Tahoe verbatim, C{--help} and C{--version} included) with
    every Tub role-based; exits with Tahoe's status, or 1 when Tahoe is not
    installed or does not match the patch points.
    """
    err = sys.stderr if stderr is None else stderr
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        import allmydata  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        print(INSTALL_HINT, file=err)
        raise SystemExit(1)
    try:
        apply()
    except HookMismatch as e:
        print(str(e), file=err)
        raise SystemExit(1)
    from allmydata.scripts import runner  # type: ignore[import-untyped]

    runner.run(argv=[PROG] + arguments)
    raise SystemExit(0)  # pragma: no cover - runner.run always exits
