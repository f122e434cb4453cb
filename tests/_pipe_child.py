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
    from twisted.internet.stdio import StandardIO
    from foolscap.api import Referenceable, Tub

    from foolscap_sidetls._protocol import SideTLSFactory

    def log(message: str) -> None:
        sys.stderr.write("pipe child %d: %s\n" % (os.getpid(), message))
        sys.stderr.flush()

    class Echo(Referenceable):  # type: ignore[misc]
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

    class _ServeOnce(StandardIO):
        """Stdio whose loss (the parent closed our pipes) ends the process."""

        def connectionLost(self, reason: Any) -> None:
            StandardIO.connectionLost(self, reason)
            log("connection lost (%s); exiting" % (reason.getErrorMessage(),))
            if reactor.running:  # type: ignore[attr-defined]
                reactor.stop()  # type: ignore[attr-defined]

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
    reactor.callLater(SAFETY_TIMEOUT, reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.stderr.write("usage: %s CERT_FILE SWISSNUM\n" % (sys.argv[0],))
        raise SystemExit(2)
    main(sys.argv[1], sys.argv[2])
