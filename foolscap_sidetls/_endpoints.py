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

from ._protocol import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    SideTLSFactory,
)


def _checkSeconds(value: object, name: str, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "%s: %s must be a number of seconds or None, got %r (%s)"
            % (what, name, value, type(value).__name__)
        )
    if not value > 0:
        raise ValueError(
            "%s: %s must be more than 0 seconds (None: no limit), got %r" % (what, name, value)
        )


def _checkCount(value: object, name: str, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "%s: %s must be a whole number of connections or None, got %r (%s)"
            % (what, name, value, type(value).__name__)
        )
    if value < 1:
        raise ValueError(
            "%s: %s must be at least 1 (None: no limit), got %d" % (what, name, value)
        )


def _checkLimits(
    what: str,
    handshake_timeout: object = None,
    negotiation_timeout: object = None,
    close_timeout: object = None,
    max_negotiating: object = None,
) -> None:
    """
    Check the limits a listener or dialer is given, where it is given them
    (not when the first connection arrives), naming C{what} took them.

    @raise TypeError: a limit that is not a number (or None).
    @raise ValueError: a limit that is not more than 0: C{0} would
        silently mean "no limit", which is what L{None} is for.
    """
    _checkSeconds(handshake_timeout, "handshake_timeout", what)
    _checkSeconds(negotiation_timeout, "negotiation_timeout", what)
    _checkSeconds(close_timeout, "close_timeout", what)
    _checkCount(max_negotiating, "max_negotiating", what)


def _requireProvider(value: object, interface: type, what: str, accepted: str) -> None:
    if not interface.providedBy(value):  # type: ignore[attr-defined]
        raise TypeError(
            "%s expects %s, got %r (%s); %s"
            % (what, interface.__name__, value, type(value).__name__, accepted)
        )


class _RoleEndpoint:
    """
    What L{ListenerEndpoint} and L{DialerEndpoint} share: the endpoint they
    wrap, the limits every connection gets, and the wrapper factory --
    Twisted's C{_WrapperEndpoint} pattern, with the role as a class
    attribute.
    """

    _isClient: bool

    def __init__(
        self,
        endpoint: Any,
        clock: Optional[IReactorTime] = None,
        handshakeTimeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
        negotiationTimeout: Optional[float] = None,
        closeTimeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
        maxNegotiating: Optional[int] = None,
    ) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._handshakeTimeout = handshakeTimeout
        self._negotiationTimeout = negotiationTimeout
        self._closeTimeout = closeTimeout
        self._maxNegotiating = maxNegotiating

    def _wrapperFactory(self, protocolFactory: IProtocolFactory) -> SideTLSFactory:
        return SideTLSFactory(
            protocolFactory,
            self._isClient,
            self._clock,
            self._handshakeTimeout,
            self._negotiationTimeout,
            self._closeTimeout,
            self._maxNegotiating,
        )


@implementer(IStreamServerEndpoint)
class ListenerEndpoint(_RoleEndpoint):
    """
    A server endpoint whose connections are all logically listeners: the
    TLS server, whatever direction their sockets were opened in.

    @ivar factory: The wrapper factory of the last C{listen}, for tests and
        diagnostics (its C{negotiating} counts the C{max_negotiating} cap).
    """

    _isClient = False
    factory: Optional[SideTLSFactory] = None

    def __repr__(self) -> str:
        return "<sidetls listener on %r>" % (self._endpoint,)

    def listen(self, protocolFactory: IProtocolFactory) -> "Deferred[IListeningPort]":
        self.factory = self._wrapperFactory(protocolFactory)
        return self._endpoint.listen(self.factory)


@implementer(IStreamClientEndpoint)
class DialerEndpoint(_RoleEndpoint):
    """
    A client endpoint whose connections are all logically dialers: the TLS
    client.

    C{connect} fires with the protocol the caller's factory built, not with
    the wrapper, as Twisted's own wrapping endpoints do: Foolscap's
    C{TubConnector} keys its pending negotiations by that object.  (A
    dialer takes no C{maxNegotiating}: the cap is a listener's defence.)
    """

    _isClient = True

    def __repr__(self) -> str:
        return "<sidetls dialer via %r>" % (self._endpoint,)

    def connect(self, protocolFactory: IProtocolFactory) -> "Deferred[IProtocol]":
        return self._endpoint.connect(self._wrapperFactory(protocolFactory)).addCallback(
            lambda protocol: protocol.wrappedProtocol
        )


def listener(
    endpoint: IStreamServerEndpoint,
    *,
    clock: Optional[IReactorTime] = None,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    max_negotiating: Optional[int] = None,
) -> IStreamServerEndpoint:
    """
    Wrap C{endpoint} for C{tub.listenOn(...)}: every connection it yields is
    the TLS server, so a listener whose connections are outbound sockets
    (I2P, reverse tunnels, relays) still completes its handshake.

    @param handshake_timeout: seconds to wait for a TLS handshake before
        dropping the connection with an explanation; L{None} waits forever.
    @param negotiation_timeout: seconds a connection may take from its start
        until Foolscap hands it to a Broker (plaintext header, TLS
        handshake, encrypted hello); L{None} (the default) leaves it to
        Foolscap's own 120 s negotiation timeout.
    @param close_timeout: seconds the peer gets to finish a close this end
        started (answer TLS's close_notify, read what is buffered) before
        the connection is aborted; L{None} waits forever.
    @param max_negotiating: at most this many connections negotiating at
        once; when another arrives, one still negotiating is dropped: the
        oldest of those that have sent nothing for 5 s, or else the oldest
        of all.  So connections that open and say nothing never displace
        one that spoke, and a connection is otherwise dropped only when
        C{max_negotiating - 1} newer ones are still negotiating: an honest
        peer is kept out only by that many connections arriving while it
        negotiates.  L{None} (the default): no limit.
    @raise TypeError: if C{endpoint} is not an C{IStreamServerEndpoint}, or
        a limit is not a number or None.
    @raise ValueError: if a limit is 0 or less (L{None} means no limit).
    """
    what = "foolscap_sidetls.listener()"
    _requireProvider(
        endpoint,
        IStreamServerEndpoint,
        what,
        "pass a server endpoint such as serverFromString(reactor, 'tcp:0'); "
        "for a description string use tub.listenOn('sidetls:' + description)",
    )
    _checkLimits(what, handshake_timeout, negotiation_timeout, close_timeout, max_negotiating)
    return ListenerEndpoint(
        endpoint, clock, handshake_timeout, negotiation_timeout, close_timeout, max_negotiating
    )


def dialer(
    endpoint: IStreamClientEndpoint,
    *,
    clock: Optional[IReactorTime] = None,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
) -> IStreamClientEndpoint:
    """
    Wrap C{endpoint} so every connection it makes is the TLS client, even
    when the socket underneath was accepted (a reverse tunnel handing us a
    connection it accepted) or is no socket at all.

    C{handshake_timeout}, C{negotiation_timeout} and C{close_timeout} are
    as for L{listener} (a dialer's negotiation is otherwise bounded by
    Foolscap's 120 s connection timeout).

    @raise TypeError: if C{endpoint} is not an C{IStreamClientEndpoint}, or
        a limit is not a number or None.
    @raise ValueError: if a limit is 0 or less (L{None} means no limit).
    """
    what = "foolscap_sidetls.dialer()"
    _requireProvider(
        endpoint,
        IStreamClientEndpoint,
        what,
        "pass a client endpoint such as clientFromString(reactor, "
        "'tcp:host=example.org:port=1234')",
    )
    _checkLimits(what, handshake_timeout, negotiation_timeout, close_timeout)
    return DialerEndpoint(endpoint, clock, handshake_timeout, negotiation_timeout, close_timeout)
