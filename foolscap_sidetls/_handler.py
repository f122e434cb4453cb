"""
Connection-hint handlers whose endpoints are dialers.

Foolscap's C{TubConnector} asks a handler per hint type for an endpoint and
connects a C{Negotiation} factory to it.  Wrapping the handler wraps every
endpoint it makes, so any handler -- Foolscap's tcp, tor and i2p ones, or a
user's -- becomes role-based without knowing about it.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Union

from typing_extensions import Unpack

from zope.interface import implementer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from foolscap.connections.tcp import DefaultTCP
from foolscap.ipb import IConnectionHintHandler

from ._endpoints import _dialer
from ._foolscap import tubHandlers
from ._hints import parse_tcp_hint
from ._limits import UNSET, DialerLimitKeywords, Limits, Seconds, resolve_dialer

__all__ = ["SideTLSHandler", "handler", "install", "tubHandlers"]

_HintResult = tuple[IStreamClientEndpoint, str]

#: L{SideTLSHandler}'s keywords before they took this project's snake_case
#: spelling; still accepted, with a DeprecationWarning.
_OLDER_KEYWORDS = {
    "handshakeTimeout": "handshake_timeout",
    "negotiationTimeout": "negotiation_timeout",
    "closeTimeout": "close_timeout",
}


def _renamed(what: str, given: dict[str, Any], older: dict[str, Any]) -> dict[str, Any]:
    """
    C{given} (keywords by their current names) with those of C{older}
    spelt the old way moved in, warning for each; refuse an unknown name
    or a value given both ways.
    """
    for old, value in older.items():
        new = _OLDER_KEYWORDS.get(old)
        if new is None:
            raise TypeError(
                "%s got an unexpected keyword argument %r; it takes %s and limits"
                % (what, old, ", ".join(_OLDER_KEYWORDS.values()))
            )
        if given[new] is not UNSET:
            raise TypeError("%s got %s and its older spelling %s; give %s only" % (what, new, old, new))
        warnings.warn(
            "%s: %s is deprecated; use %s (or limits=Limits(...))" % (what, old, new),
            DeprecationWarning,
            stacklevel=3,
        )
        given[new] = value
    return given


@implementer(IConnectionHintHandler)
class SideTLSHandler:
    """
    An C{IConnectionHintHandler} that delegates hint parsing to another
    handler and makes each endpoint it returns a dialer.

    Its limits come as one L{Limits} (C{limits=}), or as the separate
    values (positionally, as subclasses such as the I2P handler pass them,
    or as keywords; the camelCase keywords of earlier releases still work,
    deprecated); not both.

    @ivar limits: Those of every dialer it makes (read-only).

    Foolscap's own tcp handler gets its hints checked strictly first: its
    expression takes any Unicode digit and any number of them for the port,
    so C{tcp:HOST:65558} would dial port 22.
    """

    #: Its endpoints are dialers already: L{handler} and L{install} leave it
    #: (and any handler class that sets this, such as the Tor one) as it is.
    _sidetlsRoleBased = True

    def __init__(
        self,
        inner: IConnectionHintHandler,
        clock: Optional[IReactorTime] = None,
        handshake_timeout: Seconds = UNSET,
        negotiation_timeout: Seconds = UNSET,
        close_timeout: Seconds = UNSET,
        *,
        limits: Optional[Limits] = None,
        **older: Any,
    ) -> None:
        self.inner = inner
        self._clock = clock
        given = dict(
            handshake_timeout=handshake_timeout,
            negotiation_timeout=negotiation_timeout,
            close_timeout=close_timeout,
        )
        self._limits = resolve_dialer("SideTLSHandler", limits, **_renamed("SideTLSHandler", given, older))

    @property
    def limits(self) -> Limits:
        return self._limits

    def __repr__(self) -> str:
        return "<sidetls handler around %r>" % (self.inner,)

    def hint_to_endpoint(
        self, hint: str, reactor: Any, update_status: Callable[[str], None]
    ) -> Union[_HintResult, "Deferred[_HintResult]"]:
        if isinstance(self.inner, DefaultTCP):
            parse_tcp_hint(hint)
        # Stay synchronous when the inner handler is: Foolscap accepts both,
        # and a Deferred costs a reactor-independent but real detour per hint.
        result = self.inner.hint_to_endpoint(hint, reactor, update_status)
        if isinstance(result, Deferred):
            return result.addCallback(self._wrap)
        return self._wrap(result)

    def _wrap(self, result: _HintResult) -> _HintResult:
        endpoint, host = result
        return (
            _dialer(endpoint, self._clock, self._limits),
            host,
        )

    def describe(self) -> str:
        describe = getattr(self.inner, "describe", None)
        inner = describe() if describe is not None else repr(self.inner)
        return "sidetls+" + inner


def handler(
    inner: IConnectionHintHandler,
    *,
    clock: Optional[IReactorTime] = None,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> IConnectionHintHandler:
    """
    Make C{inner}'s endpoints dialers (TLS clients), for
    C{tub.addConnectionHintHandler(hint_type, handler(inner))}; the
    limits (C{limits=} or the separate keywords, not both) are those of
    L{foolscap_sidetls.dialer}.

    Wrapping an already wrapped handler returns it unchanged: its dials
    are role-based already, and wrapping again would only stack a second
    set of timers.

    @raise TypeError: if C{inner} is not an C{IConnectionHintHandler}, or a
        timeout is not a number or None, or both C{limits} and a keyword
        are given.
    @raise ValueError: if a timeout is 0 or less (L{None}: no limit), or
        C{limits} has a C{max_negotiating}.
    """
    if not IConnectionHintHandler.providedBy(inner):
        raise TypeError(
            "foolscap_sidetls.handler() expects an IConnectionHintHandler "
            "(such as foolscap.connections.tcp.default() or "
            "foolscap.connections.tor.socks_endpoint(...)), got %r (%s)"
            % (inner, type(inner).__name__)
        )
    chosen = resolve_dialer("foolscap_sidetls.handler()", limits, **separate)
    if getattr(inner, "_sidetlsRoleBased", False) is True:
        return inner
    return SideTLSHandler(inner, clock, limits=chosen)


def install(
    tub: Any,
    *,
    clock: Optional[IReactorTime] = None,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> None:
    """
    Make every connection C{tub} dials role-based: wrap each hint handler it
    has, Foolscap's default C{tcp} one included, with the limits of
    L{foolscap_sidetls.dialer}.

    A handler this function (or L{handler}) wrapped before is wrapped
    again around the same inner handler, so the limits of the last call
    apply; handlers whose dials are role-based by construction (those of
    L{foolscap_sidetls.tor} and L{foolscap_sidetls.i2p}) keep the limits
    they were made with.

    A Tub whose handlers were removed (a Tor-only node, say) gets none
    added.  Handlers added after this call are not wrapped; add them as
    C{handler(...)} or call C{install} again.  Listeners are chosen by the
    caller: use L{listener} or C{"sidetls:"} descriptions with
    C{tub.listenOn}.

    @raise TypeError: if C{tub} is not a Tub, or a timeout is not a number
        or None, or both C{limits} and a keyword are given.
    @raise ValueError: if a timeout is 0 or less (L{None}: no limit), or
        C{limits} has a C{max_negotiating}.
    """
    handlers = tubHandlers(tub)
    if handlers is None:
        raise TypeError(
            "foolscap_sidetls.install() expects a foolscap.api.Tub, got %r (%s)"
            % (tub, type(tub).__name__)
        )
    chosen = resolve_dialer("foolscap_sidetls.install()", limits, **separate)
    for hintType, inner in list(handlers.items()):
        if type(inner) is SideTLSHandler:
            inner = inner.inner
        tub.addConnectionHintHandler(hintType, handler(inner, clock=clock, limits=chosen))
