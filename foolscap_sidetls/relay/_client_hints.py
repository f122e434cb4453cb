"""
Reaching the relay by its connection hints, as the hidden Tub dials any
hint: through the Tub's own handler for each hint type, first answer wins.
"""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure

from .._endpoints import DialerEndpoint
from .._handler import SideTLSHandler, tubHandlers
from . import _url as url
from . import _wire as wire


@implementer(IStreamClientEndpoint)
class _HintsEndpoint:
    """
    Connects to the first of a relay's connection hints that answers, each
    through its hint handler, as Foolscap's connector would.
    """

    def __init__(self, hints: list[tuple[str, Any]], reactor: Any) -> None:
        self._hints = hints
        self._reactor = reactor

    def __repr__(self) -> str:
        return ",".join(hint for hint, _ in self._hints)

    def connect(self, protocolFactory: IProtocolFactory) -> "Deferred[IProtocol]":
        remaining = list(self._hints)
        errors: list[str] = []
        current: list[Optional["Deferred[Any]"]] = [None]

        def cancel(result: "Deferred[IProtocol]") -> None:
            remaining.clear()
            attempt = current[0]
            if attempt is not None:
                attempt.cancel()

        result: Deferred[IProtocol] = Deferred(cancel)

        def try_next() -> None:
            if result.called:
                return
            if not remaining:
                result.errback(
                    wire.RelayError(
                        "could not reach the relay at any of its hints: %s"
                        % ("; ".join(errors),)
                    )
                )
                return
            hint, handler = remaining.pop(0)
            d = defer.maybeDeferred(
                handler.hint_to_endpoint, hint, self._reactor, lambda status: None
            )
            d.addCallback(lambda found: _unwrap_dialer(found[0]).connect(protocolFactory))
            current[0] = d

            def connected(protocol: IProtocol) -> None:
                current[0] = None
                if not result.called:
                    result.callback(protocol)

            def failed(reason: Failure) -> None:
                current[0] = None
                errors.append("%s: %s" % (hint, reason.getErrorMessage()))
                try_next()

            d.addCallbacks(connected, failed)

        try_next()
        return result


def _unwrap_dialer(endpoint: IStreamClientEndpoint) -> IStreamClientEndpoint:
    """
    The endpoint below a sidetls dialer wrapper (as tor handlers return):
    the control channel runs its own TLS session and the streams are
    made listener-role above, so a dialer role in between would only add
    a layer that scans every byte for header blocks.
    """
    while isinstance(endpoint, DialerEndpoint):
        endpoint = endpoint._endpoint
    return endpoint


def _hints_endpoint(hints: list[str], tub: Any, reactor: Any) -> _HintsEndpoint:
    """
    Dial the relay's hints as C{tub} dials any hint: with its own handler
    for each hint type, C{tcp} included -- a Tub whose tcp hints go through
    Tor must reach its relay through Tor too, or the relay learns its
    address, and a Tub without a tcp handler must not dial tcp at all.
    """
    handlers = tubHandlers(tub) or {}
    resolved: list[tuple[str, Any]] = []
    for hint in hints:
        if url.is_tcp_hint(hint):
            hint = url.tcp_hint(hint)  # a bad one fails now, not at each retry
        hint_type = hint.split(":", 1)[0]
        handler = handlers.get(hint_type)
        # Its role wrapper does not apply (see _unwrap_dialer).
        while isinstance(handler, SideTLSHandler):
            handler = handler.inner
        if handler is None:
            raise ValueError(
                "no connection-hint handler for %r hints on %r, so the relay hint "
                "%r cannot be dialed (the Tub would not dial such a hint either); "
                "add one with tub.addConnectionHintHandler(%r, ...), give the relay "
                "a hint of a type the Tub has a handler for (it has: %s), or pass "
                "an IStreamClientEndpoint for the relay"
                % (hint_type, tub, hint, hint_type, ", ".join(sorted(handlers)) or "none")
            )
        resolved.append((hint, handler))
    return _HintsEndpoint(resolved, reactor)
