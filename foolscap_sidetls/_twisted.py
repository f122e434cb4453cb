"""
The one home of what this project takes from Twisted's private API.

Twisted parses endpoint descriptions (C{"tcp:0:interface=127.0.0.1"}) in
C{twisted.internet.endpoints._parse}, and hands a string-endpoint plugin
only the pieces, never the text.  Two things here need those pieces
without building an endpoint: a configuration file checking a
C{sidetls:} description before anything starts, and the C{sidetls:}
prefix taking its own options out before the rest reaches the inner
endpoint's parser.  Twisted has no public function for that (the parser
plugins' C{*args, **kwargs} are what it offers), and a second,
hand-written tokenizer would disagree with Twisted's on escapes sooner or
later.  So the private name is imported here, once, beside
L{foolscap_sidetls._foolscap} (the home of Foolscap's private state):
when Twisted changes it, this module is where to look, and
tests/core/test_parser.py checks it against the installed Twisted.
"""

from __future__ import annotations

from twisted.internet.endpoints import _parse, quoteStringArgument

__all__ = ["parse_description", "unparse_description"]


def parse_description(description: str) -> tuple[list[str], dict[str, str]]:
    """
    An endpoint description as Twisted's own parser splits it: the
    positional fields and the C{name=value} options, each unescaped.
    """
    args, kwargs = _parse(description)
    return list(args), dict(kwargs)


def _quote_field(text: str) -> str:
    # quoteStringArgument escapes backslashes and colons; a positional
    # field or an option's name also needs its "=" escaped, or the parser
    # would read it as an option (an option's value may hold "=" as it is).
    return quoteStringArgument(text).replace("=", "\\=")


def unparse_description(args: tuple[str, ...], kwargs: dict[str, str]) -> str:
    """
    The description L{parse_description} would split into C{args} and
    C{kwargs}: the inverse, so that a description taken apart and put back
    together reaches its own parser exactly as it was written.
    """
    parts = [_quote_field(arg) for arg in args]
    parts += ["%s=%s" % (_quote_field(key), quoteStringArgument(value)) for key, value in kwargs.items()]
    return ":".join(parts)
