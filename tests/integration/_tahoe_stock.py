"""
Stock Tahoe-LAFS (``tahoe ARGS...``) for the grid tests, with txi2p adjusted
in this child process only -- site-packages is never edited.

Stock Tahoe cannot give I2P sessions their options (Tahoe ticket 2889), yet
the private router of ``_i2pnet.py`` needs zero-hop tunnels; so the stock
baseline gets them here, from the environment:

- ``SIDETLS_TEST_I2CP_OPTIONS``: ``key=value,key=value`` merged into every
  SAM session txi2p creates (dialing and listening alike);
- ``SIDETLS_TEST_INVERT_TLS=0``: disable txi2p's ``invertTLS`` (the
  workaround for Tahoe ticket 2861), which turns a stock listener over I2P
  into a second TLS client: the negative control.

Run as ``python _tahoe_stock.py ARGS...``; with neither variable set it is
plain ``tahoe ARGS...``.
"""

from __future__ import annotations

import os
import sys


def _parse_options(text: str) -> dict[str, str]:
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(
                "SIDETLS_TEST_I2CP_OPTIONS: %r is not key=value (expected e.g. inbound.length=0,outbound.length=0)"
                % (item,)
            )
        options[key] = value
    return options


def _patch_txi2p(options: dict[str, str], invert_tls: bool) -> None:
    from txi2p import address
    from txi2p.sam import session

    if options:
        create_factory = session.SessionCreateFactory.__init__

        def with_options(self, nickname, style="STREAM", keyfile=None, localPort=None, options=None, sigType=None):
            merged = dict(extra)
            merged.update(options or {})
            create_factory(self, nickname, style, keyfile, localPort, merged, sigType)

        extra = options
        session.SessionCreateFactory.__init__ = with_options

    if not invert_tls:
        transport_init = address.I2PTunnelTransport.__init__

        def never_inverted(self, wrappedTransport, localAddr, peerAddr=None, invertTLS=False):
            transport_init(self, wrappedTransport, localAddr, peerAddr, False)

        address.I2PTunnelTransport.__init__ = never_inverted


def main() -> None:
    options = _parse_options(os.environ.get("SIDETLS_TEST_I2CP_OPTIONS", ""))
    invert = os.environ.get("SIDETLS_TEST_INVERT_TLS", "1")
    if invert not in ("0", "1"):
        raise SystemExit("SIDETLS_TEST_INVERT_TLS must be 0 or 1, not %r" % (invert,))
    _patch_txi2p(options, invert == "1")
    from allmydata.scripts.runner import run  # type: ignore[import-untyped]

    sys.argv[0] = "tahoe"
    sys.exit(run())


if __name__ == "__main__":
    main()
