"""
C{sidetls:} endpoint strings: C{serverFromString(reactor, "sidetls:" + inner)}
and C{clientFromString(reactor, "sidetls:" + inner)} wrap the endpoint the
inner description names, as Twisted's C{haproxy:} prefix does.

This is what makes C{tub.listenOn("sidetls:tcp:0")} and Tahoe-style
C{tub.port = sidetls:i2p:...} settings work without code.

The limits of L{foolscap_sidetls.listener} and L{foolscap_sidetls.dialer}
are options, anywhere in the description, in Twisted's camelCase:
C{sidetls:tcp:0:maxNegotiating=100:negotiationTimeout=30}.  They are taken
out before the rest reaches the inner endpoint's parser (Twisted's parser
does not keep where in the string an option was, so they cannot be told
apart by position; no Twisted endpoint has options by these names).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional

from zope.interface import implementer
from twisted.internet.endpoints import _parse, clientFromString, serverFromString
from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin

from ._endpoints import dialer, listener

PREFIX = "sidetls"

_SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?\Z")
_COUNT = re.compile(r"[0-9]{1,9}\Z")
_NONE = "none"


def _seconds(name: str, text: str) -> Optional[float]:
    if text == _NONE:
        return None
    value = float(text) if _SECONDS.match(text) else math.nan
    if not value > 0:  # nan (not a number) or 0
        raise ValueError(
            "sidetls: option %s=%r: expected a number of seconds more than 0, "
            "in digits with an optional decimal point (such as 30 or 2.5), or "
            "%r for no limit" % (name, text, _NONE)
        )
    return value


def _count(name: str, text: str) -> Optional[int]:
    if text == _NONE:
        return None
    value = int(text) if _COUNT.match(text) else 0
    if value < 1:
        raise ValueError(
            "sidetls: option %s=%r: expected a whole number of connections, at "
            "least 1, in digits (such as 100), or %r for no limit" % (name, text, _NONE)
        )
    return value


#: Option name in the description -> (keyword of listener()/dialer(), parser).
_LIMITS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "handshakeTimeout": ("handshake_timeout", _seconds),
    "negotiationTimeout": ("negotiation_timeout", _seconds),
    "closeTimeout": ("close_timeout", _seconds),
    "maxNegotiating": ("max_negotiating", _count),
}
_SERVER_LIMITS = ("handshakeTimeout", "negotiationTimeout", "closeTimeout", "maxNegotiating")
_CLIENT_LIMITS = ("handshakeTimeout", "negotiationTimeout", "closeTimeout")


def _limits(kwargs: dict[str, str], accepted: tuple[str, ...], kind: str) -> dict[str, Any]:
    """
    Take this prefix's options out of C{kwargs} (which then holds only the
    inner endpoint's), parsed into keywords for listener() or dialer().
    """
    found: dict[str, Any] = {}
    byLower = {name.lower(): name for name in _LIMITS}
    for key in list(kwargs):
        name = byLower.get(key.lower())
        if name is None:
            continue
        if key != name:
            raise ValueError(
                "sidetls: option %r is spelled %r (options are case-sensitive)" % (key, name)
            )
        if name not in accepted:
            raise ValueError(
                "sidetls: option %s applies to listeners (server endpoints) only; "
                "a %s endpoint takes %s" % (name, kind, ", ".join(accepted))
            )
        keyword, parse = _LIMITS[name]
        found[keyword] = parse(name, kwargs.pop(key))
    return found


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def unparse(args: tuple[str, ...], kwargs: dict[str, str]) -> str:
    """
    Rebuild an endpoint description from the pieces Twisted's parser split
    it into, escaping what the parser unescaped, so the inner description
    reaches its own parser exactly as the user wrote it.
    """
    parts = [_quote(arg) for arg in args]
    parts += ["%s=%s" % (_quote(key), _quote(value)) for key, value in kwargs.items()]
    return ":".join(parts)


def _inner(args: tuple[str, ...], kwargs: dict[str, str], example: str) -> str:
    if not args or not args[0]:
        raise ValueError(
            "a 'sidetls:' endpoint needs an inner endpoint description after "
            "the prefix, e.g. %r" % (example,)
        )
    if args[0] == PREFIX:
        raise ValueError(
            "'sidetls:sidetls:...' wraps the role twice; use one 'sidetls:' prefix"
        )
    return unparse(args, kwargs)


def split_limits(description: str, server: bool = True) -> tuple[str, dict[str, Any]]:
    """
    What follows C{sidetls:} in a description, taken apart without building
    anything: the inner endpoint's own description, and the keywords of
    L{listener} (C{server}) or L{dialer} its limit options give.  For
    configuration files, which check every description before anything
    starts and build the listener themselves.

    @raise ValueError: a limit option is misspelt, out of range, or not one
        this kind of endpoint takes; or there is no inner description.
    """
    args, kwargs = _parse(description)
    limits = _limits(kwargs, _SERVER_LIMITS if server else _CLIENT_LIMITS, "server" if server else "client")
    return _inner(tuple(args), kwargs, "sidetls:tcp:0" if server else "sidetls:tcp:example.org:1234"), limits


@implementer(IPlugin, IStreamServerEndpointStringParser)
class SideTLSServerParser:
    prefix = PREFIX

    def parseStreamServer(self, reactor: Any, *args: Any, **kwargs: Any) -> IStreamServerEndpoint:
        limits = _limits(kwargs, _SERVER_LIMITS, "server")
        return listener(serverFromString(reactor, _inner(args, kwargs, "sidetls:tcp:0")), **limits)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class SideTLSClientParser:
    prefix = PREFIX

    def parseStreamClient(self, reactor: Any, *args: Any, **kwargs: Any) -> IStreamClientEndpoint:
        limits = _limits(kwargs, _CLIENT_LIMITS, "client")
        return dialer(
            clientFromString(reactor, _inner(args, kwargs, "sidetls:tcp:example.org:1234")),
            **limits,
        )
