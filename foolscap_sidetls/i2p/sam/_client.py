"""
L{SAMClientEndpoint}: an C{IStreamClientEndpoint} to one I2P address over
a session (C{NAMING LOOKUP}, then C{STREAM CONNECT} on a socket of its own,
which then carries the stream).
"""

from __future__ import annotations

from typing import Callable, Optional

from zope.interface import implementer
from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint

from ._destination import I2PAddress
from ._errors import SAMRefused
from ._session import SESSION_TIMEOUT, Report, SAMBridge, SAMSession
from ._util import ignore_status


@implementer(IStreamClientEndpoint)
class SAMClientEndpoint:
    """
    Connects to C{host} (a C{.b32.i2p} or C{.i2p} name), port C{port}, as
    C{session()}'s destination.

    @param session: gives the session to dial from when a connection starts
        (so a handler can refuse once stopped, and share one session).
    @param lookups: C{.b32.i2p} names already looked up, shared between the
        endpoints of one session: a further connection costs one round trip.
    """

    def __init__(
        self,
        bridge: SAMBridge,
        session: Callable[[], SAMSession],
        host: str,
        port: Optional[int],
        report: Report = ignore_status,
        lookups: Optional[dict[str, str]] = None,
    ) -> None:
        self._bridge = bridge
        self._session = session
        self._host = host
        self._port = port
        self._report = report
        self._lookups = lookups if lookups is not None else {}

    def __repr__(self) -> str:
        return "<I2P client endpoint to %s%s via SAM at %s>" % (
            self._host, ":%d" % self._port if self._port else "", self._bridge.where,
        )

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred:
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        session = await self._session().ready(self._report)
        self._report("connecting to %s over I2P" % (self._host,))
        connection = await self._bridge.connect(self._report)
        name = self._host.lower()
        try:
            destination = self._lookups.get(name)
            if destination is None:
                destination = await self._bridge.lookup(connection, self._host)
                if name.endswith(".b32.i2p"):
                    self._lookups[name] = destination
            line = "STREAM CONNECT ID=%s DESTINATION=%s SILENT=false" % (session.nickname, destination)
            if self._port:
                line += " TO_PORT=%d" % (self._port,)
            try:
                await connection.request(line, "STREAM CONNECT", "STREAM STATUS", SESSION_TIMEOUT, raw_after=True)
            except SAMRefused as e:
                if e.result == "INVALID_ID":
                    session.invalidate()
                raise e.advised("STREAM CONNECT to %s" % (self._host,), _connect_advice(e.result)) from None
        except BaseException:
            connection.abort()
            raise
        peer = I2PAddress(self._host, self._port, destination)
        assert session.address is not None
        protocol = factory.buildProtocol(peer)
        if protocol is None:
            connection.abort()
            raise error.ConnectError(string="the protocol factory declined the connection to %s" % (self._host,))
        connection.attach(protocol, session.address, peer)
        return protocol


def _connect_advice(result: str) -> str:
    if result in ("CANT_REACH_PEER", "PEER_NOT_FOUND", "TIMEOUT"):
        return "I2P could not reach it: is the Tub at that address running and listening on I2P?"
    if result == "INVALID_ID":
        return "the router lost our session (did it restart?); the next attempt opens a new one"
    return ""
