"""
Connection plumbing both ends of the relay share: a bound on closes this
end started, and factories that do not log every connection.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Optional, cast

from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, IProtocolFactory, IReactorTime
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol


def quiet_factory(protocol: Any, *args: Any) -> Factory:
    """
    C{Factory.forProtocol(protocol, *args)}, without the "Starting
    factory" and "Stopping factory" lines a noisy factory logs: the relay
    makes one per connection.
    """
    factory = Factory.forProtocol(partial(protocol, *args))
    factory.noisy = False
    return factory


def tls_layer(
    options: Any,
    is_client: bool,
    factory: IProtocolFactory,
    clock: IReactorTime,
    addr: Optional[IAddress],
) -> TLSMemoryBIOProtocol:
    """
    A TLS session with C{factory}'s protocol on top, the side given by the
    caller's role and not by who opened the socket: the relay is the TLS
    server of a control channel, the hidden Tub its client.
    """
    tls_factory = TLSMemoryBIOFactory(options, is_client, factory, clock=clock)
    return cast(TLSMemoryBIOProtocol, tls_factory.buildProtocol(addr))


def cancel_call(call: Optional[IDelayedCall]) -> None:
    """
    Cancel C{call} if it is still pending: a timer that has fired or
    was cancelled is left alone.
    """
    if call is not None and call.active():
        call.cancel()


class Waiters:
    """
    Deferreds waiting for the next time something happens (a registration,
    a stop), all fired then and forgotten.

    Not Foolscap's C{OneShotObserverList}, which fires once for ever and
    delivers through Foolscap's eventual-send queue: a turn of the global
    reactor later.  Tried here, that failed 31 of the 88 relay tests and
    errored 6 (results that tests driving a L{Clock}, and callers
    chaining on C{stopListening}, expect at once arrived a turn later);
    and a registration can be lost and made again, which a one-shot list
    cannot say.
    """

    def __init__(self) -> None:
        self._waiting: list["Deferred[None]"] = []

    def wait(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def fire(self, error: Optional[Exception] = None) -> None:
        """Fire every waiting Deferred: with L{None}, or failed with C{error}."""
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if error is None:
                d.callback(None)
            else:
                d.errback(error)

    def __bool__(self) -> bool:
        return bool(self._waiting)


def hand_over(connection: Protocol, protocol: IProtocol, rest: bytes) -> None:
    """
    From here on C{protocol} reads C{connection}'s transport directly --
    C{connection.dataReceived} becomes C{protocol}'s, with no call in
    between on the hot path -- starting with C{rest}, the bytes that came
    after the header block C{connection} read.
    """
    protocol.makeConnection(cast(Any, connection).transport)
    connection.dataReceived = protocol.dataReceived  # type: ignore[method-assign]
    if rest:
        protocol.dataReceived(rest)


class CloseTimer:
    """
    Bounds a close this end started: a graceful close (TLS close_notify,
    or a TCP close that first delivers what is buffered) waits for a peer
    that may never read or answer, so after C{seconds} the transport is
    aborted -- the pattern of L{foolscap_sidetls._protocol}'s close timeout.
    The protocol calls L{cancel} from C{connectionLost}.
    """

    _call: Optional[IDelayedCall] = None
    #: The timeout after which the close was forced, if it was.
    aborted: Optional[float] = None

    def start(self, clock: IReactorTime, seconds: Optional[float], transport: Any) -> None:
        """Abort C{transport} after C{seconds} (L{None}: never) unless cancelled first."""
        if seconds is None or self._call is not None:
            return
        self._call = clock.callLater(seconds, self._fire, seconds, transport)

    def _fire(self, seconds: float, transport: Any) -> None:
        self._call = None
        self.aborted = seconds
        transport.abortConnection()

    def cancel(self) -> None:
        cancel_call(self._call)
        self._call = None
