"""
Twisted endpoint descriptions, taken apart as text: which port and
interface a C{tcp:} listener binds, whether a listener would reveal this
machine's address, and what is wrong with a description in plain words
(Twisted's own complaints speak Python).
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

from ._errors import _why

def _split_escaped(text: str, sep: str = ":") -> list[str]:
    """Split a Twisted endpoint description on unescaped C{sep}; unescape."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _tcp_port(description: str) -> Optional[tuple[int, Optional[str]]]:
    """(port, interface) of a C{tcp:} server endpoint description, else None."""
    parts = _split_escaped(description)
    if parts[0] != "tcp":
        return None
    port: Optional[str] = None
    interface: Optional[str] = None
    positional = 0
    for part in parts[1:]:
        name, eq, value = part.partition("=")
        if eq:
            if name == "port":
                port = value
            elif name == "interface":
                interface = value
        else:
            if positional == 0:
                port = part
            positional += 1
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


def _field(parts: Sequence[str], name: str, names: Sequence[str]) -> Optional[str]:
    """The value of field C{name} in a split endpoint description: by name, else by position."""
    positional = []
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if eq:
            if key == name:
                return value
        else:
            positional.append(part)
    index = names.index(name)
    return positional[index] if index < len(positional) else None


def _port_zero(description: str) -> bool:
    """Whether a (checked) server endpoint description asks for whatever port is free."""
    parts = _split_escaped(description)
    names = _SERVER_FIELDS.get(parts[0])
    port = _field(parts, "port", names) if names is not None else None
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
    parts = _split_escaped(description)
    kind = parts[0]
    if kind in _WRAPPERS:
        return _exposure(description.split(":", 1)[1] if ":" in description else "")
    if kind in _NO_IP_LISTENER:
        return None
    names = _IP_SERVER_FIELDS.get(kind)
    if names is None:
        return "an interface foolscap-sidetls cannot tell (%s: endpoints do not say)" % (kind or "these",)
    interface = _field(parts, "interface", names)
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
    parts = _split_escaped(text[len("sidetls:"):] if text.startswith("sidetls:") else text)
    kind = parts[0]
    if kind not in _IP_SERVER_FIELDS:
        return "tcp:PORT:interface=127.0.0.1"
    loopback = "\\:\\:1" if kind == "tcp6" else "127.0.0.1"
    keyword = re.compile(r"(^|:)interface=(?:\\.|[^:\\])*")
    if keyword.search(text):
        return keyword.sub(lambda m: m.group(1) + "interface=" + loopback, text, count=1)
    if _field(parts, "interface", _IP_SERVER_FIELDS[kind]) is not None:  # given by position
        prefix = "sidetls:" if text.startswith("sidetls:") else ""
        return "%s%s:%s:interface=%s" % (prefix, kind, _field(parts, "port", _IP_SERVER_FIELDS[kind]), loopback)
    return text + ":interface=" + loopback


def _endpoint_problem(description: str, server: bool) -> Optional[str]:
    """What is wrong with an endpoint description, in plain words; None if nothing."""
    parts = _split_escaped(description)
    names = (_SERVER_FIELDS if server else _CLIENT_FIELDS).get(parts[0])
    if names is not None:
        port = _field(parts, "port", names)
        if not port:
            return "it has no port"
        if not _ascii_digits(port):
            return "its port %r is not a number" % (port,)
        if int(port) > 65535 or (not server and int(port) == 0):
            return "its port %s is not from 1 to 65535" % (port,)
    try:
        (serverFromString if server else clientFromString)(MemoryReactor(), description)
    except Exception as e:
        return _plain(e, parts[0])
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
