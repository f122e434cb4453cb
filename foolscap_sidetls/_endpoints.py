"""
Endpoints that fix the logical role of every connection they make.

The role belongs to the endpoint, not to the socket: a Tub's listener gets
its connections from C{IStreamServerEndpoint.listen} however they arrive
(accepted sockets, SAM sessions that dialed out, relays), and a dialer
makes them with C{IStreamClientEndpoint.connect}.  Wrapping at that layer
is what lets one mechanism cover every transport.
"""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)

from ._protocol import DEFAULT_HANDSHAKE_TIMEOUT, SideTLSFactory, SideTLSProtocol


def _requireProvider(value: object, interface: type, what: str, accepted: str) -> None:
    if not interface.providedBy(value):  # type: ignore[attr-defined]
        raise TypeError(
            "%s expects %s, got %r (%s); %s"
            % (what, interface.__name__, value, type(value).__name__, accepted)
        )


@implementer(IStreamServerEndpoint)
class ListenerEndpoint:
    """
    A server endpoint whose connections are all logically listeners: the
    TLS server, whatever direction their sockets were opened in.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        clock: Optional[IReactorTime] = None,
        handshakeTimeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._handshakeTimeout = handshakeTimeout

    def __repr__(self) -> str:
        return "<sidetls listener on %r>" % (self._endpoint,)

    def listen(self, protocolFactory: IProtocolFactory) -> "Deferred[IListeningPort]":
        return self._endpoint.listen(
            SideTLSFactory(
                protocolFactory, False, self._clock, self._handshakeTimeout
            )
        )


@implementer(IStreamClientEndpoint)
class DialerEndpoint:
    """
    A client endpoint whose connections are all logically dialers: the TLS
    client.

    C{connect} fires with the protocol the caller's factory built, not with
    the wrapper, as Twisted's own wrapping endpoints do: Foolscap's
    C{TubConnector} keys its pending negotiations by that object.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: Optional[IReactorTime] = None,
        handshakeTimeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._handshakeTimeout = handshakeTimeout

    def __repr__(self) -> str:
        return "<sidetls dialer via %r>" % (self._endpoint,)

    def connect(self, protocolFactory: IProtocolFactory) -> "Deferred[IProtocol]":
        factory = SideTLSFactory(
            protocolFactory, True, self._clock, self._handshakeTimeout
        )
        d = self._endpoint.connect(factory)

        def unwrap(wrapper: Any) -> IProtocol:
            return wrapper._app

        return d.addCallback(unwrap)


def listener(
    endpoint: IStreamServerEndpoint,
    *,
    clock: Optional[IReactorTime] = None,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
) -> IStreamServerEndpoint:
    """
    Wrap C{endpoint} for C{tub.listenOn(...)}: every connection it yields is
    the TLS server, so a listener whose connections are outbound sockets
    (I2P, reverse tunnels, relays) still completes its handshake.

    @param handshake_timeout: seconds to wait for a TLS handshake before
        dropping the connection with an explanation; L{None} waits forever.
    @raise TypeError: if C{endpoint} is not an C{IStreamServerEndpoint}.
    """
    _requireProvider(
        endpoint,
        IStreamServerEndpoint,
        "foolscap_sidetls.listener()",
        "pass a server endpoint such as serverFromString(reactor, 'tcp:0'); "
        "for a description string use tub.listenOn('sidetls:' + description)",
    )
    return ListenerEndpoint(endpoint, clock, handshake_timeout)


def dialer(
    endpoint: IStreamClientEndpoint,
    *,
    clock: Optional[IReactorTime] = None,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
) -> IStreamClientEndpoint:
    """
    Wrap C{endpoint} so every connection it makes is the TLS client, even
    when the socket underneath was accepted (a reverse tunnel handing us a
    connection it accepted) or is no socket at all.

    @raise TypeError: if C{endpoint} is not an C{IStreamClientEndpoint}.
    """
    _requireProvider(
        endpoint,
        IStreamClientEndpoint,
        "foolscap_sidetls.dialer()",
        "pass a client endpoint such as clientFromString(reactor, "
        "'tcp:host=example.org:port=1234')",
    )
    return DialerEndpoint(endpoint, clock, handshake_timeout)
