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

Always: txi2p's accept loop is kept alive after a bug that ends it (see
L{_keep_txi2p_accepting}), and logged.

Run as ``python _tahoe_stock.py ARGS...``.
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


def _keep_txi2p_accepting() -> None:
    """
    Keep a stock listener's txi2p accept loop alive, and log it to
    twistd.log (the grid tests print that log when they fail).

    txi2p keeps one ``STREAM ACCEPT`` open (SAM 3.0) and opens the next
    only when a peer arrives on it.  When a stream is already waiting, i2pd
    answers the ``STREAM ACCEPT`` with its status and the peer line in one
    read; txi2p's parser then hands a str to a bytes buffer ("can't concat
    str to bytes"), drops that socket, and never opens another accept.  The
    node stays announced but deaf: i2pd closes every later connection to it
    after its 10 s pending-incoming timeout.  In these grids a stream waits
    whenever two dialers reach a stock node in the same second, and before
    this patch 4 of 5 runs of ``StockGridTests`` had one test failing for
    it (3 runs after it: all passed).  The stock baseline gets a new accept
    after such a loss (Twisted's backoffPolicy: 1 s, doubling to 10 s while
    they keep failing), so
    the grid tests compare TLS sides, not this txi2p bug.
    foolscap-sidetls's own SAM client reads that reply correctly
    (tests/i2p/test_listen.py, test_stream_waiting_before_the_accept).
    """
    from twisted.application.internet import backoffPolicy
    from twisted.internet import reactor
    from twisted.python import log
    from txi2p.sam import stream

    delay_for = backoffPolicy(initialDelay=1.0, maxDelay=10.0, factor=2.0, jitter=lambda: 0.0)

    open_accept = stream.StreamAcceptPort.openAccept
    stop_listening = stream.StreamAcceptPort.stopListening
    refused = stream.StreamAcceptFactory.resultNotOK
    finish = stream.StreamAcceptReceiver.finishParsing

    def traced_open(self):
        if getattr(self, "_sidetls_test_stopped", False):
            return None
        log.msg("txi2p: opening a STREAM ACCEPT (%d pending)" % (len(self.accepts),))
        return open_accept(self)

    def stopped(self):
        self._sidetls_test_stopped = True
        return stop_listening(self)

    def traced_refused(self, result, message=None):
        log.msg("txi2p: STREAM ACCEPT refused: RESULT=%s %s" % (result, message or ""))
        return refused(self, result, message)

    def finished(self, reason):
        port = getattr(self.factory, "listeningPort", None)
        if port is None:
            return finish(self, reason)
        if self.wrappedProto is not None:
            port._sidetls_test_losses = 0
            return finish(self, reason)
        finish(self, reason)
        if getattr(port, "_sidetls_test_stopped", False):
            return None
        if self in port.accepts:
            port.accepts.remove(self)
        losses = getattr(port, "_sidetls_test_losses", 0)
        port._sidetls_test_losses = losses + 1
        delay = delay_for(losses)
        log.msg(
            "txi2p: a STREAM ACCEPT ended before a peer arrived (%s); opening another in %g s" % (reason.value, delay)
        )
        reactor.callLater(delay, port.openAccept)
        return None

    stream.StreamAcceptPort.openAccept = traced_open
    stream.StreamAcceptPort.stopListening = stopped
    stream.StreamAcceptFactory.resultNotOK = traced_refused
    stream.StreamAcceptReceiver.finishParsing = finished


def main() -> None:
    options = _parse_options(os.environ.get("SIDETLS_TEST_I2CP_OPTIONS", ""))
    invert = os.environ.get("SIDETLS_TEST_INVERT_TLS", "1")
    if invert not in ("0", "1"):
        raise SystemExit("SIDETLS_TEST_INVERT_TLS must be 0 or 1, not %r" % (invert,))
    _patch_txi2p(options, invert == "1")
    _keep_txi2p_accepting()
    from allmydata.scripts.runner import run  # type: ignore[import-untyped]

    sys.argv[0] = "tahoe"
    sys.exit(run())


if __name__ == "__main__":
    main()
