"""
Twisted endpoint descriptions, taken apart by Twisted's own parser
(through L{foolscap_sidetls._twisted}, so escapes are read as Twisted
reads them): which port and interface a C{tcp:} listener binds,
whether a listener would reveal this machine's address, and what is
wrong with a description in plain words (Twisted's own complaints speak
Python).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional, Sequence

from twisted.internet.endpoints import clientFromString, serverFromString
# Endpoint descriptions are checked by building their endpoints on a
# MemoryReactor: building one does no I/O, and checking must not touch the
# real reactor.
from twisted.internet.testing import MemoryReactor

from .._twisted import parse_description
from ._errors import _why

class _Parts:
    """
    An endpoint description as Twisted's own parser reads it: its type,
    its positional fields after the type, and its C{name=value} options.
    """

    def __init__(self, description: str) -> None:
        args, self.options = parse_description(description)
        self.kind = args[0] if args else ""
        self.positional = args[1:]

    def field(self, name: str, names: Sequence[str]) -> Optional[str]:
        """The value of field C{name} (C{names} in positional order): by name, else by position."""
        if name in self.options:
            return self.options[name]
        index = names.index(name)
        return self.positional[index] if index < len(self.positional) else None


def _tcp_port(description: str) -> Optional[tuple[int, Optional[str]]]:
    """(port, interface) of a C{tcp:} server endpoint description, else None."""
    parts = _Parts(description)
    if parts.kind != "tcp":
        return None
    port = parts.field("port", _SERVER_FIELDS["tcp"])
    interface = parts.options.get("interface")
    if port is None or not _ascii_digits(port):
        return None
    return int(port), interface


def _ascii_digits(text: str) -> bool:
    # str.isdigit() also takes other scripts' digits, which int() reads.
    return text.isascii() and text.isdigit()


#: The fields of the endpoint types whose port is checked here, in their
#: positional order (Twisted's own errors for them speak Python).
_SERVER_FIELDS = {"tcp": ("port", "backlog", "interface"), "tcp6": ("port", "backlog", "interface")}
_CLIENT_FIELDS = {
    "tcp": ("host", "port", "timeout", "bindAddress"),
    "tcp6": ("host", "port", "timeout", "bindAddress"),
}


def _port_zero(description: str) -> bool:
    """Whether a (checked) server endpoint description asks for whatever port is free."""
    parts = _Parts(description)
    names = _SERVER_FIELDS.get(parts.kind)
    port = parts.field("port", names) if names is not None else None
    return port is not None and int(port) == 0


#: The fields of the server endpoint types that bind an IP interface, in
#: their positional order (each binds every interface when none is given).
_IP_SERVER_FIELDS = {
    "tcp": ("port", "backlog", "interface"),
    "tcp6": ("port", "backlog", "interface"),
    "ssl": ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog"),
}
#: Server endpoint types that bind no IP interface reachable from elsewhere:
#: a UNIX socket; txtorcon's onion service and txi2p's destination, which
#: are reached through tor and the I2P router.
_NO_IP_LISTENER = ("unix", "onion", "i2p")
#: Wrappers whose inner description follows their prefix.
_WRAPPERS = ("haproxy",)


def _exposure(description: str) -> Optional[str]:
    """
    Where a (checked) server endpoint description listens other than on this
    machine's loopback interface, in words (C{"every interface"},
    C{"192.0.2.1"}); L{None} if it listens on loopback only, or on no IP
    interface at all.
    """
    parts = _Parts(description)
    kind = parts.kind
    if kind in _WRAPPERS:
        return _exposure(description.split(":", 1)[1] if ":" in description else "")
    if kind in _NO_IP_LISTENER:
        return None
    names = _IP_SERVER_FIELDS.get(kind)
    if names is None:
        return "an interface foolscap-sidetls cannot tell (%s: endpoints do not say)" % (kind or "these",)
    interface = parts.field("interface", names)
    if not interface:
        return "every interface"
    if interface == "localhost":  # as the onion check above reads it
        return None
    try:
        address = ipaddress.ip_address(interface)
    except ValueError:
        return "%s (a name: only a loopback address is sure to stay on this machine)" % (interface,)
    if address.is_loopback:
        return None
    return "every interface" if address.is_unspecified else interface


def _loopback_fix(text: str) -> str:
    """C{text} (a tub.port entry) made to listen on loopback only, as a suggestion."""
    parts = _Parts(text[len("sidetls:"):] if text.startswith("sidetls:") else text)
    kind = parts.kind
    if kind not in _IP_SERVER_FIELDS:
        return "tcp:PORT:interface=127.0.0.1"
    loopback = "\\:\\:1" if kind == "tcp6" else "127.0.0.1"
    keyword = re.compile(r"(^|:)interface=(?:\\.|[^:\\])*")
    if keyword.search(text):
        return keyword.sub(lambda m: m.group(1) + "interface=" + loopback, text, count=1)
    if parts.field("interface", _IP_SERVER_FIELDS[kind]) is not None:  # given by position
        prefix = "sidetls:" if text.startswith("sidetls:") else ""
        return "%s%s:%s:interface=%s" % (prefix, kind, parts.field("port", _IP_SERVER_FIELDS[kind]), loopback)
    return text + ":interface=" + loopback


def _endpoint_problem(description: str, server: bool) -> Optional[str]:
    """What is wrong with an endpoint description, in plain words; None if nothing."""
    parts = _Parts(description)
    names = (_SERVER_FIELDS if server else _CLIENT_FIELDS).get(parts.kind)
    if names is not None:
        port = parts.field("port", names)
        if not port:
            return "it has no port"
        if not _ascii_digits(port):
            return "its port %r is not a number" % (port,)
        if int(port) > 65535 or (not server and int(port) == 0):
            return "its port %s is not from 1 to 65535" % (port,)
    try:
        (serverFromString if server else clientFromString)(MemoryReactor(), description)
    except Exception as e:
        return _plain(e, parts.kind)
    return None


def _plain(e: Exception, kind: str) -> str:
    """Twisted's complaint about an endpoint description, without Python's words."""
    text = _why(e)
    found = re.fullmatch(r"Unknown endpoint type: (.*)", text)
    if found:
        return "unknown endpoint type %s" % (found.group(1),) if kind else "it has no endpoint type"
    found = re.fullmatch(r"invalid literal for int\(\) with base (\d+): (.*)", text)
    if found:
        return "%s is not %s" % (found.group(2), "a number" if found.group(1) == "10" else "an octal number")
    found = re.search(r"missing \d+ required positional arguments?: (.*)", text)
    if found:
        return "it has no %s" % (" and no ".join(re.findall(r"'(\w+)'", found.group(1))),)
    found = re.search(r"unexpected keyword argument '(\w+)'", text)
    if found:
        return "%s= is not an option of %s: endpoints" % (found.group(1), kind)
    if re.search(r"takes .* positional arguments? but \d+ (were|was) given", text):
        return "it has too many ':'-separated fields (write an IPv6 address's colons as \\:)"
    found = re.search(r"got multiple values for argument '(\w+)'", text)
    if found:
        return "it gives %s twice (write an IPv6 address's colons as \\:)" % (found.group(1),)
    return text
