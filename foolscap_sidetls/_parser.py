"""
C{sidetls:} endpoint strings: C{serverFromString(reactor, "sidetls:" + inner)}
and C{clientFromString(reactor, "sidetls:" + inner)} wrap the endpoint the
inner description names, as Twisted's C{haproxy:} prefix does.

This is what makes C{tub.listenOn("sidetls:tcp:0")} and Tahoe-style
C{tub.port = sidetls:i2p:...} settings work without code.
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

PREFIX = "sidetls"


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


@implementer(IPlugin, IStreamServerEndpointStringParser)
class SideTLSServerParser:
    prefix = PREFIX

    def parseStreamServer(self, reactor: Any, *args: Any, **kwargs: Any) -> IStreamServerEndpoint:
        return listener(serverFromString(reactor, _inner(args, kwargs, "sidetls:tcp:0")))


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class SideTLSClientParser:
    prefix = PREFIX

    def parseStreamClient(self, reactor: Any, *args: Any, **kwargs: Any) -> IStreamClientEndpoint:
        return dialer(
            clientFromString(reactor, _inner(args, kwargs, "sidetls:tcp:example.org:1234"))
        )
