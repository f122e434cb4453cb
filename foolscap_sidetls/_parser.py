"""
C{sidetls:} endpoint strings: C{serverFromString(reactor, "sidetls:" + inner)}
and C{clientFromString(reactor, "sidetls:" + inner)} wrap the endpoint the
inner description names, as Twisted's C{haproxy:} prefix does.

This is what makes C{tub.listenOn("sidetls:tcp:0")} and Tahoe-style
C{tub.port = sidetls:i2p:...} settings work without code.

The fields of L{foolscap_sidetls.Limits} are options, anywhere in the
description, in Twisted's camelCase for endpoint-string options
(L{_limits.OPTION_NAMES} is the one table of those spellings):
C{sidetls:tcp:0:maxNegotiating=100:negotiationTimeout=30}.  They are taken
out before the rest reaches the inner endpoint's parser (Twisted's parser
does not keep where in the string an option was, so they cannot be told
apart by position; no Twisted endpoint has options by these names).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

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
from ._limits import OPTION_NAMES, Limits

PREFIX = "sidetls"

_BY_LOWER = {name.lower(): name for name in OPTION_NAMES}


def _limits(kwargs: dict[str, str], server: bool) -> Limits:
    """
    Take this prefix's options out of C{kwargs} (which then holds only the
    inner endpoint's), as the L{Limits} of a listener (C{server}) or
    dialer.  An option is ours whatever its case, so that a misspelt one
    is reported rather than handed to the inner endpoint.
    """
    ours = {key: kwargs.pop(key) for key in list(kwargs) if key.lower() in _BY_LOWER}
    return Limits.from_strings(ours, server=server)


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


def parse_limits(description: str, server: bool = True) -> tuple[str, Limits]:
    """
    What follows C{sidetls:} in a description, taken apart without building
    anything: the inner endpoint's own description, and the L{Limits} its
    limit options give (defaults for those not given).  For configuration
    files, which check every description before anything starts and build
    the listener themselves.

    @raise ValueError: a limit option is misspelt, out of range, or not one
        this kind of endpoint takes; or there is no inner description.
    """
    args, kwargs = _parse(description)
    limits = _limits(kwargs, server)
    return _inner(tuple(args), kwargs, "sidetls:tcp:0" if server else "sidetls:tcp:example.org:1234"), limits


def split_limits(description: str, server: bool = True) -> tuple[str, dict[str, Any]]:
    """
    L{parse_limits} with the limits as keywords of L{listener} (C{server})
    or L{dialer}, for callers that have not moved to C{limits=}.
    """
    inner, limits = parse_limits(description, server)
    keywords = {f.name: getattr(limits, f.name) for f in fields(limits)}
    if not server:
        del keywords["max_negotiating"]
    return inner, keywords


@implementer(IPlugin, IStreamServerEndpointStringParser)
class SideTLSServerParser:
    prefix = PREFIX

    def parseStreamServer(self, reactor: Any, *args: Any, **kwargs: Any) -> IStreamServerEndpoint:
        limits = _limits(kwargs, server=True)
        return listener(serverFromString(reactor, _inner(args, kwargs, "sidetls:tcp:0")), limits=limits)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class SideTLSClientParser:
    prefix = PREFIX

    def parseStreamClient(self, reactor: Any, *args: Any, **kwargs: Any) -> IStreamClientEndpoint:
        limits = _limits(kwargs, server=False)
        return dialer(
            clientFromString(reactor, _inner(args, kwargs, "sidetls:tcp:example.org:1234")),
            limits=limits,
        )
