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

from typing import Any

from zope.interface import implementer
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin

from ._endpoints import dialer, listener
from ._limits import OPTION_NAMES, Limits
from ._twisted import parse_description, unparse_description

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
    return unparse_description(args, kwargs)


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
    args, kwargs = parse_description(description)
    limits = _limits(kwargs, server)
    return _inner(tuple(args), kwargs, "sidetls:tcp:0" if server else "sidetls:tcp:example.org:1234"), limits


def _i2p() -> Any:
    """
    What C{sidetls:i2p:...} is built with: this project's SAM client
    (L{foolscap_sidetls.i2p._strings}), not txi2p's C{i2p:} plugin, whose
    import compiles Parsley grammars for seconds in every process.
    Imported on first use, so other descriptions do not load I2P at all.
    """
    from .i2p import _strings

    return _strings


def inner_server(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    The server endpoint for the inner description L{parse_limits} gives,
    built as the C{sidetls:} prefix builds it: C{i2p:} through this
    project's SAM client (so a configuration file's C{tub.port =
    sidetls:i2p:...} does not import txi2p either), anything else by
    Twisted's C{serverFromString}.
    """
    args, kwargs = parse_description(description)
    if args and args[0] == "i2p":
        return _i2p().server(reactor, tuple(args[1:]), kwargs)
    return serverFromString(reactor, description)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class SideTLSServerParser:
    prefix = PREFIX

    def parseStreamServer(self, reactor: Any, *args: Any, **kwargs: Any) -> IStreamServerEndpoint:
        limits = _limits(kwargs, server=True)
        if args and args[0] == "i2p":
            return listener(_i2p().server(reactor, args[1:], kwargs), limits=limits)
        return listener(serverFromString(reactor, _inner(args, kwargs, "sidetls:tcp:0")), limits=limits)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class SideTLSClientParser:
    prefix = PREFIX

    def parseStreamClient(self, reactor: Any, *args: Any, **kwargs: Any) -> IStreamClientEndpoint:
        limits = _limits(kwargs, server=False)
        if args and args[0] == "i2p":
            return dialer(_i2p().client(reactor, args[1:], kwargs), limits=limits)
        return dialer(
            clientFromString(reactor, _inner(args, kwargs, "sidetls:tcp:example.org:1234")),
            limits=limits,
        )
