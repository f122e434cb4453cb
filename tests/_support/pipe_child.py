"""
Child process for test_process_pipes: a Foolscap listener that serves one
connection on its own stdin/stdout -- a transport with no startTLS at all.

    python _pipe_child.py CERT_FILE SWISSNUM

The parent generated the Tub's certificate (so it knows the tubid and can
write the FURL before this process exists) and the swissnum.  stdout
carries Foolscap bytes and nothing else; diagnostics go to stderr.  The
process exits when the connection is lost (the parent closed the pipes),
or after a safety timeout.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: Exit on our own if the parent never closes the pipes.
SAFETY_TIMEOUT = 30.0


def main(certFile: str, swissnum: str) -> None:
    from zope.interface import implementer
    from twisted.internet import defer, reactor
    from twisted.internet.interfaces import (
        IAddress,
        IListeningPort,
        IStreamServerEndpoint,
    )
    from twisted.internet.error import ConnectionDone
    from twisted.internet.stdio import StandardIO
    from twisted.python.failure import Failure
    from foolscap.api import Referenceable, Tub

    from foolscap_sidetls._protocol import SideTLSFactory

    def log(message: str) -> None:
        # The parent closes stderr along with stdin and stdout, so a late
        # message can meet a broken pipe; it must not stop the exit.
        try:
            sys.stderr.write("pipe child %d: %s\n" % (os.getpid(), message))
            sys.stderr.flush()
        except OSError:
            pass

    class Echo(Referenceable):
        def remote_echo(self, data: Any) -> Any:
            return data

        def remote_describe(self) -> dict[str, Any]:
            # What this end of the pipe looks like to Foolscap.
            (broker,) = tub.brokers.values()
            transport = broker.transport
            return {
                "pid": os.getpid(),
                "role": transport.role,
                "tlsSide": transport.tlsSide,
                "below": type(transport.transport).__name__,
            }

    @implementer(IAddress)
    class StdioAddress:
        """Where our one connection comes from: no host, no port."""

        def __repr__(self) -> str:
            return "<stdio>"

    @implementer(IListeningPort)
    class _NoPort:
        def startListening(self) -> None:
            pass

        def stopListening(self) -> Any:
            return defer.succeed(None)

        def getHost(self) -> Any:
            return StdioAddress()

    @implementer(IStreamServerEndpoint)
    class _FactoryCatcher:
        """Gets the Tub's Listener factory without opening anything."""

        factory: Any = None

        def listen(self, factory: Any) -> Any:
            self.factory = factory
            return defer.succeed(_NoPort())

    # Typed loosely: Twisted's stubs describe StandardIO per platform.
    _StandardIO: Any = StandardIO

    class _ServeOnce(_StandardIO):
        """Stdio whose loss (the parent closed our pipes) ends the process."""

        def loseConnection(self) -> None:
            _StandardIO.loseConnection(self)
            # StandardIO reports the loss only once its writer closes, and
            # stops reading stdin.  If the parent already closed our stdout
            # (it closes all three pipes at once), the writer is gone and
            # that never happens: the process would idle until the safety
            # timeout.  Finish the connection here instead.
            if getattr(self, "_writer", None) is None and not self.disconnected:
                self.connectionLost(Failure(ConnectionDone()))

        def connectionLost(self, reason: Any) -> None:
            try:
                _StandardIO.connectionLost(self, reason)
                log("connection lost (%s); exiting" % (reason.getErrorMessage(),))
            finally:
                if reactor.running:
                    reactor.stop()

    with open(certFile, "rb") as f:
        tub = Tub(certData=f.read())
    tub.setLocation("pipe:child")
    tub.startService()
    catcher = _FactoryCatcher()
    tub.listenOn(catcher)
    assert catcher.factory is not None, "Tub did not start its Listener"
    tub.registerReference(Echo(), name=swissnum)

    protocol = SideTLSFactory(catcher.factory, isClient=False).buildProtocol(
        StdioAddress()
    )
    _ServeOnce(protocol)
    log("serving tub %s on stdio" % (tub.getTubID(),))
    reactor.callLater(SAFETY_TIMEOUT, reactor.stop)
    reactor.run()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.stderr.write("usage: %s CERT_FILE SWISSNUM\n" % (sys.argv[0],))
        raise SystemExit(2)
    main(sys.argv[1], sys.argv[2])
