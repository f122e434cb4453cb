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

from typing_extensions import Unpack

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

from ._limits import DialerLimitKeywords, LimitKeywords, Limits, resolve, resolve_dialer
from ._protocol import SideTLSFactory


def _require_provider(value: object, interface: type, what: str, accepted: str) -> None:
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

    @ivar limits: What bounds each connection (read-only).
    """

    _is_client: bool

    def __init__(
        self,
        endpoint: Any,
        clock: Optional[IReactorTime] = None,
        limits: Limits = Limits(),
    ) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._limits = limits

    @property
    def limits(self) -> Limits:
        return self._limits

    def _wrapper_factory(self, protocolFactory: IProtocolFactory) -> SideTLSFactory:
        return SideTLSFactory(protocolFactory, self._is_client, self._clock, limits=self._limits)


@implementer(IStreamServerEndpoint)
class ListenerEndpoint(_RoleEndpoint):
    """
    A server endpoint whose connections are all logically listeners: the
    TLS server, whatever direction their sockets were opened in.

    @ivar factory: The wrapper factory of the last C{listen}, for tests and
        diagnostics (its C{negotiating} counts the C{max_negotiating} cap).
    """

    _is_client = False
    factory: Optional[SideTLSFactory] = None

    def __repr__(self) -> str:
        return "<sidetls listener on %r>" % (self._endpoint,)

    def listen(self, protocolFactory: IProtocolFactory) -> "Deferred[IListeningPort]":
        self.factory = self._wrapper_factory(protocolFactory)
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

    _is_client = True

    def __repr__(self) -> str:
        return "<sidetls dialer via %r>" % (self._endpoint,)

    def connect(self, protocolFactory: IProtocolFactory) -> "Deferred[IProtocol]":
        return self._endpoint.connect(self._wrapper_factory(protocolFactory)).addCallback(
            lambda protocol: protocol.wrappedProtocol
        )


def listener(
    endpoint: IStreamServerEndpoint,
    *,
    clock: Optional[IReactorTime] = None,
    limits: Optional[Limits] = None,
    **separate: Unpack[LimitKeywords],
) -> IStreamServerEndpoint:
    """
    Wrap C{endpoint} for C{tub.listenOn(...)}: every connection it yields is
    the TLS server, so a listener whose connections are outbound sockets
    (I2P, reverse tunnels, relays) still completes its handshake.

    The limits are given either as one C{limits=}L{Limits} or as the
    separate keywords below (L{LimitKeywords}: the fields of L{Limits};
    those not given keep its defaults), not both.

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
        a limit is not a number or None, or both C{limits} and a keyword
        are given.
    @raise ValueError: if a limit is 0 or less (L{None} means no limit).
    """
    what = "foolscap_sidetls.listener()"
    _require_provider(
        endpoint,
        IStreamServerEndpoint,
        what,
        "pass a server endpoint such as serverFromString(reactor, 'tcp:0'); "
        "for a description string use tub.listenOn('sidetls:' + description)",
    )
    return ListenerEndpoint(
        endpoint,
        clock,
        resolve(what, limits, **separate),
    )


def dialer(
    endpoint: IStreamClientEndpoint,
    *,
    clock: Optional[IReactorTime] = None,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> IStreamClientEndpoint:
    """
    Wrap C{endpoint} so every connection it makes is the TLS client, even
    when the socket underneath was accepted (a reverse tunnel handing us a
    connection it accepted) or is no socket at all.

    C{limits} (or the separate keywords L{DialerLimitKeywords}:
    C{handshake_timeout}, C{negotiation_timeout} and C{close_timeout}) are
    as for L{listener} (a dialer's negotiation is
    otherwise bounded by Foolscap's 120 s connection timeout); a dialer
    takes no C{max_negotiating}.

    @raise TypeError: if C{endpoint} is not an C{IStreamClientEndpoint}, or
        a limit is not a number or None, or both C{limits} and a keyword
        are given.
    @raise ValueError: if a limit is 0 or less (L{None} means no limit), or
        C{limits} has a C{max_negotiating}.
    """
    return _dialer(endpoint, clock, resolve_dialer("foolscap_sidetls.dialer()", limits, **separate))


def _dialer(
    endpoint: IStreamClientEndpoint, clock: Optional[IReactorTime], limits: Limits
) -> IStreamClientEndpoint:
    """
    L{dialer} with limits already checked as a dialer's: what a handler
    calls once per hint, where resolving its limits again would be waste.
    """
    _require_provider(
        endpoint,
        IStreamClientEndpoint,
        "foolscap_sidetls.dialer()",
        "pass a client endpoint such as clientFromString(reactor, "
        "'tcp:host=example.org:port=1234')",
    )
    return DialerEndpoint(endpoint, clock, limits)
