"""
Tahoe-LAFS-style configuration files for role-based Foolscap Tubs.

Applications built like Tahoe-LAFS describe their connections in an INI
file; this module reads one and builds the Tub it describes, with every
handler and listener role-based (listener = TLS server, dialer = TLS
client), so the same file works over TCP, Tor onion services and I2P::

    from foolscap_sidetls import config

    node = config.load("node.cfg")            # raises config.ConfigError
    d = config.create_tub(node)                # fires with a running Tub
    d.addCallback(lambda tub: tub.registerReference(obj))

The keys mean what they mean in Tahoe-LAFS 1.20 (``[node] tub.port``,
``tub.location``, ``reveal-IP-address``, ``timeout.*``; ``[connections]
tcp``; ``[tor]``; ``[i2p]``), so a Tahoe node's ``tahoe.cfg`` works
unchanged; Tahoe's other sections (``[client]``, ``[storage]``, ...) are
accepted and ignored.  Beyond Tahoe: ``[i2p] launch`` starts a private
i2pd, ``[i2p] i2p.configdir`` reads an i2pd.conf for the SAM address, and
``[i2p] i2cp.options`` carries session options (tunnel lengths, ...).

Everything is checked when the file is loaded, before anything starts: an
invalid file raises L{ConfigError}, whose message names the file, the
section, the key, the bad value and what is accepted, and nothing has been
launched, listened on or written.
"""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
# Endpoint descriptions are checked by building their endpoints on a
# MemoryReactor: building one does no I/O, and checking must not touch the
# real reactor.
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from zope.interface import implementer

from foolscap.ipb import InvalidHintError
from foolscap.util import allocate_tcp_port

from . import _hints, _onion, i2p as _i2p
from ._endpoints import listener
from ._files import write_private
from ._parser import split_limits
from ._handler import handler as _sidetls_handler

__all__ = [
    "CERT_FILE",
    "ConfigError",
    "HANDLER_NAMES",
    "I2P_STATEDIR",
    "NodeConfig",
    "PORTNUM_FILE",
    "StartError",
    "TOR_STATEDIR",
    "TOR_UNAVAILABLE",
    "create_tub",
    "from_string",
    "load",
    "local_addresses",
    "write_private",
]

#: What ``[connections] tcp`` may name (Tahoe-LAFS's values).
HANDLER_NAMES: tuple[str, ...] = ("tcp", "tor", "i2p", "disabled")
#: Where a node without ``tub.port`` keeps the port chosen at its first
#: start, relative to the config file's directory (Tahoe-LAFS client nodes
#: use the same file name).
PORTNUM_FILE = "client.port"
#: The Tub's certificate (its TubID), made at the first start.  Not
#: Tahoe's ``private/node.pem``: pointing this at a Tahoe node directory
#: must not borrow that node's identity.
CERT_FILE = os.path.join("private", "sidetls-tub.pem")
#: Data directories of a launched tor / i2pd (Tahoe keeps tor's there too).
TOR_STATEDIR = os.path.join("private", "tor-statedir")
I2P_STATEDIR = os.path.join("private", "i2p-statedir")

#: What C{check} and C{ping} say when tor: hints cannot be dialed for want of txtorcon.
TOR_UNAVAILABLE = "[tor] unavailable: txtorcon is not installed (pip install 'foolscap-sidetls[tor]')"

_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off")
_BOOL = "true or false (or yes/no, on/off, 1/0)"
_PORT = "a port number from 1 to 65535"
_SECONDS = "a whole number of seconds, e.g. 600"

#: The keys this module reads, per section, with their one-line meaning.
_KEYS: dict[str, dict[str, str]] = {
    "node": {
        "tub.port": "server endpoints to listen on (or listen:tor, listen:i2p, disabled)",
        "tub.location": "hints announced in FURLs (AUTO: this machine's addresses; disabled)",
        "reveal-ip-address": "false refuses anything that would reveal this machine's IP address",
        "timeout.keepalive": "seconds of silence before a keepalive is sent",
        "timeout.disconnect": "seconds of silence before a connection is dropped",
    },
    "connections": {
        "tcp": "which handler dials tcp: hints (tcp, tor, i2p, disabled)",
    },
    "tor": {
        "enabled": "dial tor: hints",
        "launch": "start a tor of our own",
        "tor.executable": "the tor to launch",
        "control.port": "client endpoint of a running tor's control port",
        "socks.port": "client endpoint of a running tor's SOCKS port",
        "bootstrap.timeout": "seconds tor may go without bootstrap progress (0 or none: keep waiting)",
        "onion": "publish an onion service for this Tub",
        "onion.local_port": "the 127.0.0.1 port the onion service forwards to",
        "onion.external_port": "the onion service's port",
        "onion.private_key_file": "the onion service's key",
    },
    "i2p": {
        "enabled": "dial i2p: hints",
        "sam.port": "client endpoint of a running router's SAM bridge",
        "launch": "start an i2pd of our own",
        "i2p.executable": "the i2pd to launch",
        "i2p.configdir": "an i2pd's configuration directory",
        "dest": "listen on an I2P destination (with tub.port = listen:i2p)",
        "dest.port": "the I2P port announced in the hint",
        "dest.private_key_file": "the destination's private key",
        "i2cp.options": "I2CP options for the SAM sessions (NAME=VALUE, ...)",
    },
}

#: Tahoe-LAFS 1.20 ``[node]`` keys that are about the rest of a Tahoe node.
_TAHOE_NODE_KEYS = ("log_gatherer.furl", "nickname", "tempdir", "web.port", "web.static")
#: Tahoe-LAFS 1.20 sections about the rest of a Tahoe node: accepted, ignored.
_TAHOE_SECTIONS = (
    "client",
    "storage",
    "helper",
    "sftpd",
    "ftpd",
    "magic_folder",
    "grid_managers",
    "grid_manager_certificates",
)
_TAHOE_PLUGIN_SECTIONS = ("storageclient.plugins.", "storageserver.plugins.")

#: The Foolscap Tub option each [node] timeout sets (as Tahoe-LAFS sets them).
_TUB_OPTIONS = {"timeout.keepalive": "keepaliveTimeout", "timeout.disconnect": "disconnectTimeout"}
_LISTEN_TOR = "listen:tor"
_LISTEN_I2P = "listen:i2p"
_TOR_HINT = re.compile(r"^tor:([A-Za-z0-9.\-]+):(\d{1,5})$")
_I2P_OPTION_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")
_I2P_OPTION_VALUE = re.compile(r'^[^\s"=,]*$')
_I2P_RESERVED = (
    "STYLE", "ID", "DESTINATION", "SIGNATURE_TYPE", "SILENT", "FROM_PORT", "TO_PORT", "PORT",
    "HOST", "PROTOCOL", "HEADER",
)


class ConfigError(ValueError):
    """
    The configuration cannot be used.  The message names the file, the
    section, the key, the value and what would be accepted, e.g.
    C{'node.cfg' [connections] tcp = 'toor': unknown handler; expected one
    of tcp, tor, i2p, disabled}.

    @ivar source: the file's name as given (or C{<string>}).
    @ivar section: the section, or L{None} for the file as a whole.
    @ivar key: the key, or L{None}.
    @ivar value: the value as written, or L{None} if it is not set.
    @ivar problem: what is wrong, and what would be accepted.
    """

    def __init__(
        self,
        source: str,
        section: Optional[str],
        key: Optional[str],
        value: Optional[str],
        problem: str,
        unset: str = "",
    ) -> None:
        where = "%r" % (source,)
        if section is not None:
            where += " [%s]" % (section,)
        if key is not None:
            where += " " + key
            if value is not None:
                where += " = %r" % (value,)
            elif unset:
                where += " " + unset
        ValueError.__init__(self, "%s: %s" % (where, problem))
        self.source = source
        self.section = section
        self.key = key
        self.value = value
        self.problem = problem


class StartError(Exception):
    """
    A valid configuration could not be started (a port in use, tor or the
    I2P router unreachable, ...); the message names the setting involved.
    """


# -- small helpers -------------------------------------------------------------------


def _close_matches(word: str, choices: Iterable[str]) -> str:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return " (did you mean %s?)" % (found[0],) if found else ""


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


def _check_hidden_listeners(
    reader: "_Reader", entries: Sequence["_Listen"], chosen_later: bool, portnum: Optional[str]
) -> None:
    """
    With reveal-IP-address = false, every listener binds loopback only.

    Anyone holding a FURL can ask an address for its TubID: the right host
    answers C{101 Switching Protocols}, any other C{500 unknown TubID}.  A
    hidden node listening on a public interface would confirm which IP
    address runs it, whatever tub.location announces.  Tahoe-LAFS does
    not check this; here it is refused, as an onion service forwarding to
    a public interface already is.
    """
    reveals = (
        "which reveals this machine's IP address to whoever connects there (the TubID in a FURL "
        "confirms which address runs this node), but [node] reveal-IP-address = false"
    )
    also = "(only this machine can connect; a tor onion service can forward there), listen:tor or listen:i2p"
    if chosen_later:
        if portnum is None:
            raise reader.error(
                "node", "tub.port",
                "a free port chosen at the first start would listen on every interface, " + reveals,
                "tub.port = tcp:PORT:interface=127.0.0.1 " + also, None, "is not set",
            )
        where = _exposure(portnum)
        if where is not None:
            path = os.path.join(reader.basedir, PORTNUM_FILE)
            raise reader.error(
                "node", "tub.port",
                "%s holds %r (the port chosen at the first start), which listens on %s, %s"
                % (path, portnum, where, reveals),
                "tub.port = %s %s" % (_loopback_fix(portnum), also), None, "is not set",
            )
        return
    for entry in entries:
        if entry.kind != "endpoint":
            continue
        where = _exposure(entry.endpoint)
        if where is not None:
            raise reader.bad(
                "node", "tub.port",
                "%r listens on %s, %s" % (entry.text, where, reveals),
                "%s %s" % (_loopback_fix(entry.text), also),
            )


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


def local_addresses() -> list[str]:
    """
    This machine's IPv4 addresses, every address of every interface,
    loopback last: what C{tub.location = AUTO} announces.  Tahoe-LAFS 1.20
    asks psutil for them too, so AUTO means the same here on every system
    psutil knows.  Where psutil cannot list the interfaces, the addresses
    the host name resolves to stand in (and 127.0.0.1 is always there).
    """
    try:
        import psutil

        interfaces: Optional[Mapping[str, Sequence[Any]]] = psutil.net_if_addrs()
    except Exception:  # not installed, or not supported on this system
        interfaces = None
    if interfaces is not None:
        found = _ipv4_addresses(interfaces)
    else:
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            found = [str(info[4][0]) for info in infos]
        except OSError:
            found = []
    return _loopback_last(found + ["127.0.0.1"])


def _ipv4_addresses(interfaces: Mapping[str, Sequence[Any]]) -> list[str]:
    """The IPv4 addresses in what C{psutil.net_if_addrs()} returns, in its order."""
    return [
        str(entry.address)
        for entries in interfaces.values()
        for entry in entries
        if entry.family == socket.AF_INET
    ]


def _loopback_last(addresses: Iterable[str]) -> list[str]:
    unique = list(dict.fromkeys(addresses))
    return [a for a in unique if not a.startswith("127.")] + [a for a in unique if a.startswith("127.")]



# -- what a file says, resolved ------------------------------------------------------------


@dataclass(frozen=True)
class _Onion:
    local_port: int
    external_port: int
    key_file: str
    address: str
    #: The 127.0.0.1 port tor.listen() listens on for the onion service:
    #: local_port, or None (a free one) when a tub.port entry on every
    #: interface already holds local_port.
    forward_port: Optional[int]

    @property
    def hint(self) -> str:
        return "tor:%s:%d" % (self.address, self.external_port)


@dataclass(frozen=True)
class _Tor:
    enabled: bool = True
    launch: bool = False
    executable: Optional[str] = None
    control_port: Optional[str] = None
    socks_port: Optional[str] = None
    onion: Optional[_Onion] = None
    available: bool = True
    #: Seconds without bootstrap progress before dials and the onion
    #: service fail saying why; None: wait as long as it takes.
    bootstrap_timeout: Optional[float] = 60.0


@dataclass(frozen=True)
class _Dest:
    port: int
    key_file: str
    address: str

    @property
    def hint(self) -> str:
        return "i2p:%s:%d" % (self.address, self.port)


@dataclass(frozen=True)
class _I2P:
    enabled: bool = True
    sam_port: Optional[str] = None
    launch: bool = False
    executable: Optional[str] = None
    configdir: Optional[str] = None
    configdir_sam: Optional[str] = None
    dest: Optional[_Dest] = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Listen:
    """One C{tub.port} entry: C{kind} is C{endpoint}, C{tor} or C{i2p}."""

    kind: str
    text: str
    endpoint: str = ""
    #: listener() keywords from a C{sidetls:} entry's limit options.
    limits: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeConfig:
    """
    A checked configuration: what L{create_tub} will build.  Made by
    L{load} and L{from_string}; the attributes are for reading.

    @ivar source: the file's name as given (for messages).
    @ivar basedir: where relative paths start (the file's directory).
    @ivar handlers: per hint type (C{tcp}, C{tor}, C{i2p}), the handler
        that dials it (C{"tcp"}, C{"tor"}, C{"i2p"}), or L{None} if such
        hints are not dialed.
    @ivar listening: L{False} when C{tub.port = disabled}.
    @ivar tub_port: the C{tub.port} entries (bare numbers as C{tcp:N});
        empty when the port is still to be chosen (see L{PORTNUM_FILE}).
    @ivar location: the hints announced in FURLs, C{AUTO} expanded; empty
        when not listening.
    @ivar reveal_ip: C{[node] reveal-IP-address}.
    @ivar timeouts: C{timeout.keepalive} and C{timeout.disconnect}, in
        seconds, when set.
    @ivar warnings: settings that are valid but probably not what was meant.
    @ivar ignored: Tahoe-LAFS sections present in the file and not used here.
    """

    source: str
    basedir: str
    handlers: Mapping[str, Optional[str]]
    listening: bool
    tub_port: tuple[str, ...]
    location: tuple[str, ...]
    reveal_ip: bool
    warnings: tuple[str, ...]
    ignored: tuple[str, ...]
    timeouts: Mapping[str, int]
    _listens: tuple[_Listen, ...]
    _portnum: Optional[str]
    _auto: Optional[tuple[int, tuple[str, ...]]]
    _tor: _Tor
    _i2p: _I2P

    # -- descriptions, for `check` and `serve` --------------------------------------------

    def why_not_dialed(self, hint_type: str) -> Optional[str]:
        """
        Why hints of C{hint_type} (C{tcp}, C{tor}, C{i2p}) have no handler,
        in words naming the setting or the missing package; L{None} if they
        have one.
        """
        if self.handlers.get(hint_type) is not None:
            return None
        if hint_type == "tcp":
            return "[connections] tcp = disabled"
        if hint_type == "tor" and not self._tor.available:
            return TOR_UNAVAILABLE
        return "[%s] enabled = false" % (hint_type,)

    def describe_handler(self, hint_type: str) -> str:
        """How hints of C{hint_type} are dialed, in words."""
        name = self.handlers.get(hint_type)
        if name is None:
            return "not dialed (%s)" % (self.why_not_dialed(hint_type),)
        if name == "tcp":
            return "sidetls+tcp (direct TCP connections)"
        if name == "tor":
            return "sidetls+tor (%s)" % (self._describe_tor(),)
        what = "sidetls+i2p (%s)" % (self._describe_i2p(),)
        if hint_type == "tcp":
            what += "; I2P has no exits, so tcp: hints fail as bad hints"
        return what

    def _describe_tor(self) -> str:
        tor = self._tor
        if tor.launch:
            return "a tor launched here (%s, data in %s)" % (
                tor.executable or "tor from PATH",
                os.path.join(self.basedir, TOR_STATEDIR),
            )
        if tor.socks_port:
            return "SOCKS port %s" % (tor.socks_port,)
        if tor.control_port:
            return "control port %s" % (tor.control_port,)
        return "SOCKS 127.0.0.1:9050 or 127.0.0.1:9150, the default"

    def _describe_i2p(self) -> str:
        i2p = self._i2p
        if i2p.sam_port:
            text = "SAM at %s" % (i2p.sam_port,)
        elif i2p.launch:
            text = "an i2pd launched here (%s, data in %s)" % (
                i2p.executable or "i2pd from PATH",
                i2p.configdir or os.path.join(self.basedir, I2P_STATEDIR),
            )
        elif i2p.configdir:
            text = "SAM at %s" % (i2p.configdir_sam,)
        else:
            text = "SAM at tcp:127.0.0.1:7656, the default"
        if i2p.options:
            text += ", options %s" % (", ".join("%s=%s" % kv for kv in i2p.options.items()),)
        return text

    def describe_listeners(self) -> list[str]:
        """Each listener, in words; empty when not listening."""
        if not self.listening:
            return []
        lines = []
        if self._portnum is not None:
            lines.append(
                "%s (role-based: each connection is the TLS server; kept in %s)"
                % (self._portnum, os.path.join(self.basedir, PORTNUM_FILE))
            )
        elif not self._listens:
            lines.append(
                "tcp:<a free port, chosen at the first start and kept in %s>"
                % (os.path.join(self.basedir, PORTNUM_FILE),)
            )
        for entry in self._listens:
            if entry.kind == "endpoint":
                lines.append("%s (role-based: each connection is the TLS server)" % (entry.text,))
        onion = self._tor.onion
        if onion is not None:
            lines.append(
                "onion service %s:%d -> 127.0.0.1:%s (key %s; published through %s)"
                % (onion.address, onion.external_port,
                   "<a free port>" if onion.forward_port is None else onion.forward_port, onion.key_file,
                   self._describe_tor() if self._tor.launch else "control port %s" % (self._tor.control_port,))
            )
        dest = self._i2p.dest
        if dest is not None and any(e.kind == "i2p" for e in self._listens):
            lines.append(
                "I2P destination %s:%d (key %s; through %s)"
                % (dest.address, dest.port, dest.key_file, self._describe_i2p())
            )
        return lines

    def describe(self) -> list[str]:
        """The whole configuration in words: what C{foolscap-sidetls check} prints."""
        lines = ["handlers (this end dials, and is the TLS client):"]
        for hint_type in ("tcp", "tor", "i2p"):
            lines.append("  %s: hints -> %s" % (hint_type, self.describe_handler(hint_type)))
        lines.append("listeners (the other end dials, this end is the TLS server):")
        listeners = self.describe_listeners()
        lines += ["  " + line for line in listeners] or ["  none (tub.port = disabled)"]
        lines.append("location (the hints FURLs announce):")
        if self.listening:
            lines += ["  " + hint for hint in self.location]
        else:
            lines.append("  none (tub.location = disabled): this Tub only dials")
        if self.timeouts:
            lines.append(
                "timeouts: " + ", ".join("%s %d s" % (k, v) for k, v in sorted(self.timeouts.items()))
            )
        if not self.reveal_ip:
            lines.append("reveal-IP-address = false: nothing announced or dialed reveals this machine's IP address")
        for name in self.ignored:
            lines.append("ignored: [%s] (Tahoe-LAFS settings foolscap-sidetls does not use)" % (name,))
        for warning in self.warnings:
            lines.append("warning: " + warning)
        return lines


# -- reading --------------------------------------------------------------------------------


class _Reader:
    """One parsed file and the helpers that turn its values into checked ones."""

    def __init__(self, parser: configparser.ConfigParser, source: str, basedir: str) -> None:
        self.parser = parser
        self.source = source
        self.basedir = basedir
        self.warnings: list[str] = []

    def error(
        self,
        section: Optional[str],
        key: Optional[str],
        problem: str,
        accepted: Optional[str] = None,
        value: Optional[str] = None,
        unset: str = "",
    ) -> ConfigError:
        text = problem + ("; expected " + accepted if accepted else "")
        shown = "reveal-IP-address" if key == "reveal-ip-address" else key
        return ConfigError(self.source, section, shown, value, text, unset)

    def bad(self, section: str, key: str, problem: str, accepted: Optional[str] = None) -> ConfigError:
        return self.error(section, key, problem, accepted, self.get(section, key))

    def get(self, section: str, key: str) -> Optional[str]:
        if not self.parser.has_option(section, key):
            return None
        return self.parser.get(section, key).strip()

    def boolean(self, section: str, key: str, default: bool) -> bool:
        value = self.get(section, key)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise self.bad(section, key, "not a boolean", _BOOL)

    def port(self, section: str, key: str) -> Optional[int]:
        value = self.get(section, key)
        if value is None:
            return None
        if not _ascii_digits(value) or not 1 <= int(value) <= 65535:
            raise self.bad(section, key, "not a port number", _PORT)
        return int(value)

    def seconds(self, section: str, key: str) -> Optional[int]:
        value = self.get(section, key)
        if not value:  # Tahoe: an empty value means "not set"
            return None
        if not _ascii_digits(value):
            raise self.bad(section, key, "not a number of seconds", _SECONDS)
        return int(value)

    def path(self, value: str) -> str:
        # As Tahoe-LAFS's get_config_path(): joined to the node directory
        # first, so a leading ~ is a directory named ~ there, not $HOME.
        return os.path.normpath(os.path.join(self.basedir, value))

    def relative(self, value: str) -> str:
        """Where a relative C{value} starts, for messages about a path that is not there."""
        note = "relative paths start at %s" % (self.basedir,)
        if value.startswith("~"):
            note += "; ~ is not expanded, as in Tahoe-LAFS"
        return note

    def client_endpoint(self, section: str, key: str, example: str) -> Optional[str]:
        value = self.get(section, key)
        if value is None:
            return None
        if not value:
            raise self.bad(section, key, "empty", "a client endpoint description such as %r" % (example,))
        problem = _endpoint_problem(value, server=False)
        if problem is not None:
            raise self.bad(
                section, key, "not a client endpoint description (%s)" % (problem,), "one such as %r" % (example,),
            )
        return value

    def executable(self, section: str, key: str, name: str, search: Sequence[str]) -> Optional[str]:
        value = self.get(section, key)
        path_env = os.pathsep.join([os.environ.get("PATH", os.defpath)] + list(search))
        if value is None:
            if shutil.which(name, path=path_env) is None:
                raise self.error(
                    section, "launch",
                    "no %s executable found on PATH or in %s" % (name, ", ".join(search)),
                    "%s installed (apt-get install %s) or [%s] %s.executable set to its path"
                    % (name, "tor" if name == "tor" else "i2pd", section, section),
                    value="true",
                )
            return None
        if os.sep in value:
            found: Optional[str] = self.path(value)
            assert found is not None
            if not os.path.isfile(found) or not os.access(found, os.X_OK):
                raise self.bad(
                    section, key, "%s is not an executable file" % (found,),
                    "the path of %s %s executable (%s)"
                    % ("an" if name[0] in "aeiou" else "a", name, self.relative(value)),
                )
            return found
        found = shutil.which(value, path=path_env)
        if found is None:
            raise self.bad(
                section, key, "not found on PATH or in %s" % (", ".join(search),),
                "the name or path of %s %s executable" % ("an" if name[0] in "aeiou" else "a", name),
            )
        return found


def _why(e: BaseException) -> str:
    return (str(e).strip() or type(e).__name__).rstrip(".")


def _check_sections(reader: _Reader) -> list[str]:
    ignored = []
    known = list(_KEYS) + list(_TAHOE_SECTIONS)
    for section in reader.parser.sections():
        if section in _KEYS:
            allowed = list(_KEYS[section]) + (list(_TAHOE_NODE_KEYS) if section == "node" else [])
            for key in reader.parser.options(section):
                if key not in allowed:
                    raise reader.error(
                        section, key,
                        "unknown key%s" % (_close_matches(key, _KEYS[section]),),
                        "one of " + ", ".join(_KEYS[section]).replace("reveal-ip-address", "reveal-IP-address"),
                        reader.get(section, key),
                    )
        elif section in _TAHOE_SECTIONS or section.startswith(_TAHOE_PLUGIN_SECTIONS):
            ignored.append(section)
        else:
            raise reader.error(
                section, None,
                "unknown section%s" % (_close_matches(section, known),),
                "one of %s (and Tahoe-LAFS's %s, which are ignored)"
                % (", ".join("[%s]" % s for s in _KEYS), ", ".join("[%s]" % s for s in _TAHOE_SECTIONS)),
            )
    return ignored


def _read_tub_port(reader: _Reader) -> tuple[bool, list[_Listen], bool]:
    """(listening, entries, chosen_later) from [node] tub.port and tub.location."""
    port = reader.get("node", "tub.port")
    location = reader.get("node", "tub.location")
    if port == "":
        raise reader.bad("node", "tub.port", "empty", "endpoint descriptions separated by commas, or disabled")
    if location == "":
        raise reader.bad("node", "tub.location", "empty", "hints separated by commas, AUTO, or disabled")
    port_off = port == "disabled"
    location_off = location == "disabled"
    if port_off and not location_off:
        raise reader.error(
            "node", "tub.location",
            "announced, but [node] tub.port = 'disabled' listens nowhere",
            "tub.location = disabled too (a Tub that only dials)", location, "is not set",
        )
    if location_off and not port_off:
        raise reader.error(
            "node", "tub.port",
            "listens, but [node] tub.location = 'disabled' announces nothing",
            "tub.port = disabled too (a Tub that only dials)", port, "is not set",
        )
    if port_off:
        return False, [], False
    if port is None:
        return True, [], True
    entries: list[_Listen] = []
    for text in port.split(","):
        text = text.strip()
        if not text:
            raise reader.bad("node", "tub.port", "has an empty entry", "endpoint descriptions separated by commas")
        written = text
        if _ascii_digits(text):
            text = "tcp:%d" % (int(text),)
        if text.startswith("listen:"):
            if text == _LISTEN_TOR:
                kind = "tor"
            elif text == _LISTEN_I2P:
                kind = "i2p"
            else:
                raise reader.bad(
                    "node", "tub.port", "%r is not a listener this module knows" % (text,),
                    "listen:tor or listen:i2p",
                )
            if any(e.kind == kind for e in entries):
                raise reader.bad("node", "tub.port", "lists %s twice" % (text,), "it once")
            entries.append(_Listen(kind, text))
            continue
        inner = text
        limits: dict[str, Any] = {}
        if text.startswith("sidetls:"):
            try:
                inner, limits = split_limits(text[len("sidetls:"):])
            except ValueError as e:
                raise reader.bad("node", "tub.port", str(e)) from None
        problem = _endpoint_problem(inner, server=True)
        if problem is not None:
            raise reader.bad(
                "node", "tub.port",
                "%r is not a server endpoint description (%s)" % (text, problem),
                "descriptions such as tcp:3457 or tcp:3457:interface=127.0.0.1, listen:tor, listen:i2p",
            )
        if _port_zero(inner):
            # Tahoe-LAFS refuses it too (PortAssignmentRequired): the port
            # is announced in FURLs, so it must be the same at every start.
            raise reader.bad(
                "node", "tub.port",
                "%r listens on port 0, which is not allowed: you must choose (the announced location must "
                "stay valid)" % (written,),
                "a fixed port such as tcp:3457",
            )
        entries.append(_Listen("endpoint", text, inner, limits))
    return True, entries, False


def _check_hint(reader: _Reader, hint: str) -> str:
    """The hint's type, after checking its syntax."""
    from foolscap.connections.tcp import NEW_STYLE_HINT_RE, convert_legacy_hint

    converted = convert_legacy_hint(hint)
    kind = converted.split(":", 1)[0] if ":" in converted else ""
    accepted = "hints such as tcp:example.net:3457, tor:ADDRESS.onion:3457, i2p:ADDRESS.b32.i2p, or AUTO"
    if not kind or "/" in hint or "@" in hint:
        raise reader.bad("node", "tub.location", "%r is not a connection hint" % (hint,), accepted)
    port_text: Optional[str] = None
    if kind == "tcp":
        if not NEW_STYLE_HINT_RE.search(converted):
            raise reader.bad("node", "tub.location", "%r is not a tcp:HOST:PORT hint" % (hint,), accepted)
        port_text = converted.rsplit(":", 1)[1]
    elif kind == "tor":
        found = _TOR_HINT.match(converted)
        if not found:
            raise reader.bad("node", "tub.location", "%r is not a tor:HOST:PORT hint" % (hint,), accepted)
        # What dialers would refuse (a mistyped onion) is refused here, once.
        problem = _hints.onion_problem(found.group(1))
        if problem is not None:
            raise reader.bad("node", "tub.location", "%r: %s" % (hint, problem), _hints.ONION_ACCEPTED)
        port_text = found.group(2)
    elif kind == "i2p":
        try:
            _, i2p_port = _i2p._parse_hint(converted)
        except InvalidHintError as e:
            raise reader.bad("node", "tub.location", str(e), accepted) from None
        port_text = None if i2p_port is None else str(i2p_port)
    if port_text is not None and not (_ascii_digits(port_text) and 1 <= int(port_text) <= 65535):
        raise reader.bad("node", "tub.location", "%r has port %s" % (hint, port_text), _PORT)
    return kind


def _tor_or_none() -> Any:
    """
    L{foolscap_sidetls.tor}, or L{None} without txtorcon.  txtorcon itself
    is imported each time, not only the module once: a module imported
    earlier in the process does not prove txtorcon is still importable.
    """
    try:
        import txtorcon  # noqa: F401

        from . import tor
    except ImportError:
        return None
    return tor


def _read_tor(reader: _Reader, entries: list[_Listen], reveal_ip: bool) -> _Tor:
    section = "tor"
    enabled = reader.boolean(section, "enabled", True)
    launch = reader.boolean(section, "launch", False)
    onion = reader.boolean(section, "onion", False)
    control = reader.client_endpoint(section, "control.port", "tcp:127.0.0.1:9051")
    socks = reader.client_endpoint(section, "socks.port", "tcp:127.0.0.1:9050")
    local_port = reader.port(section, "onion.local_port")
    external_port = reader.port(section, "onion.external_port")
    key_value = reader.get(section, "onion.private_key_file")
    if key_value == "":
        raise reader.bad(section, "onion.private_key_file", "empty", "the path of the onion service's key file")
    _tor_module = _tor_or_none()
    available = _tor_module is not None
    search: Sequence[str] = (
        _tor_module.TOR_SEARCH_DIRS if _tor_module is not None
        else ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
    )
    needs = []
    if launch:
        needs.append(("launch", "true"))
    if onion:
        needs.append(("onion", "true"))
    if control:
        needs.append(("control.port", control))
    if socks:
        needs.append(("socks.port", socks))
    if needs and not available:
        key, value = needs[0]
        raise reader.error(
            section, key, "needs txtorcon, which is not installed",
            "pip install 'foolscap-sidetls[tor]'", value,
        )
    executable = reader.executable(section, "tor.executable", "tor", search) if launch else None
    bootstrap_timeout = _read_bootstrap_timeout(reader, _tor_module)
    if not launch and not control and reader.get(section, "bootstrap.timeout") is not None:
        reader.warnings.append(
            "[tor] bootstrap.timeout is not used: only a launched tor ([tor] launch = true) or one "
            "at [tor] control.port tells its bootstrap progress"
        )
    if not launch and reader.get(section, "tor.executable") is not None:
        reader.warnings.append("[tor] tor.executable is not used: [tor] launch is not true")
    if launch:
        for unused, setting in (("control.port", control), ("socks.port", socks)):
            if setting:
                reader.warnings.append(
                    "[tor] %s is not used: [tor] launch = true dials and publishes through the "
                    "launched tor" % (unused,)
                )
    onion_plan: Optional[_Onion] = None
    listens_tor = [e for e in entries if e.kind == "tor"]
    if onion:
        if not launch and not control:
            raise reader.error(
                section, "onion",
                "needs [tor] launch = true or [tor] control.port: only tor's control port can publish an onion service",
                None, "true",
            )
        for key, got, what in (
            ("onion.local_port", local_port, _PORT + ": the 127.0.0.1 port the onion service forwards to"),
            ("onion.external_port", external_port, _PORT + ": the onion service's port, e.g. 3457"),
            ("onion.private_key_file", key_value, "the path of the onion service's key file"),
        ):
            if got is None:
                raise reader.error(section, "onion", "needs [tor] %s" % (key,), what, "true")
        assert local_port is not None and external_port is not None and key_value is not None
        key_file = reader.path(key_value)
        address = _read_onion_key(reader, key_value, key_file)
        # The onion service forwards to 127.0.0.1:local_port: tub.port must
        # listen there, as listen:tor or tcp:LOCAL:interface=127.0.0.1.
        found = False
        forward: Optional[int] = local_port
        for entry in list(entries):
            if entry.kind != "endpoint":
                continue
            tcp = _tcp_port(entry.endpoint)
            if tcp is None or tcp[0] != local_port:
                continue
            found = True
            if tcp[1] in ("127.0.0.1", "localhost"):
                entries[entries.index(entry)] = _Listen("tor", entry.text)
                continue
            # Tahoe-LAFS accepts this: its listener takes 127.0.0.1:PORT
            # too, and tor forwards there.  Here tor.listen() listens for
            # the onion itself, so it takes a free 127.0.0.1 port instead,
            # and this entry stays the Tub's listener on the other addresses.
            everywhere = tcp[1] in (None, "", "0.0.0.0", "::")
            where = "every interface" if everywhere else tcp[1]
            if not reveal_ip:
                raise reader.error(
                    "node", "tub.port",
                    "%r listens on %s, which reveals this machine's IP address to whoever connects there, "
                    "but [node] reveal-IP-address = false" % (entry.text, where),
                    "tcp:%d:interface=127.0.0.1 or listen:tor (reachable only through the onion service)"
                    % (local_port,),
                    reader.get("node", "tub.port"),
                )
            forward = None
            reader.warnings.append(
                "[node] tub.port %r listens on %s, not only on 127.0.0.1 where [tor] onion.local_port = %d "
                "points: this Tub is also reachable without tor, at %s, and the onion service forwards to a "
                "free 127.0.0.1 port of its own; tcp:%d:interface=127.0.0.1 (or listen:tor) would make it "
                "reachable only through the onion service"
                % (entry.text, where, local_port, "this machine's IP addresses" if everywhere else tcp[1],
                   local_port)
            )
        if listens_tor:
            found = True
        if not found:
            raise reader.error(
                section, "onion",
                "the onion service forwards to 127.0.0.1:%d, but [node] tub.port does not listen there"
                % (local_port,),
                "listen:tor (or tcp:%d:interface=127.0.0.1) in [node] tub.port" % (local_port,),
                "true",
            )
        onion_plan = _Onion(local_port, external_port, key_file, address, forward)
    elif listens_tor:
        raise reader.error(
            "node", "tub.port",
            "listen:tor needs [tor] onion = true (with onion.local_port, onion.external_port and "
            "onion.private_key_file)",
            None, reader.get("node", "tub.port"),
        )
    return _Tor(enabled, launch, executable, control, socks, onion_plan, available, bootstrap_timeout)


def _read_bootstrap_timeout(reader: _Reader, tor_module: Any) -> Optional[float]:
    default = tor_module.BOOTSTRAP_TIMEOUT if tor_module is not None else 60.0
    value = reader.get("tor", "bootstrap.timeout")
    if value is None or value == "":  # Tahoe: an empty value means "not set"
        return float(default)
    if value.lower() == "none" or value == "0":
        return None
    if not _ascii_digits(value):
        raise reader.bad(
            "tor", "bootstrap.timeout", "not a number of seconds",
            "a whole number of seconds, e.g. 60, or 0 (or none) to wait for tor as long as it takes",
        )
    return float(int(value))


def _read_onion_key(reader: _Reader, value: str, path: str) -> str:
    try:
        with open(path, "r", encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise reader.error(
            "tor", "onion.private_key_file",
            "%s does not exist (%s)" % (path, reader.relative(value)),
            "a key file, as 'foolscap-sidetls create-node --listen=tor' writes", value,
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise reader.error(
            "tor", "onion.private_key_file", "cannot read %s (%s)" % (path, _why(e)), None, value,
        ) from None
    try:
        return _onion.address_of_key(text)
    except ValueError as e:
        raise reader.error(
            "tor", "onion.private_key_file",
            "%s does not hold a tor onion service key (%s)" % (path, e),
            "one line 'ED25519-V3:<base64>', as tor and Tahoe-LAFS write it", value,
        ) from None


def _read_i2p_key(reader: _Reader, value: str, path: str) -> str:
    """The .b32.i2p address of the key in C{path}."""
    accepted = "an I2P private key file, as 'foolscap-sidetls create-node --listen=i2p' writes"
    if not os.path.isfile(path):
        raise reader.error(
            "i2p", "dest.private_key_file",
            "%s does not exist (%s)" % (path, reader.relative(value)), accepted, value,
        )
    try:
        return _i2p.address_of(path)
    except ValueError:
        raise reader.error(
            "i2p", "dest.private_key_file", "%s does not hold an I2P private key" % (path,), accepted, value,
        ) from None


def _parse_i2cp(reader: _Reader) -> dict[str, str]:
    value = reader.get("i2p", "i2cp.options")
    if value is None:
        return {}
    accepted = "NAME=VALUE pairs separated by commas, e.g. inbound.length=1, outbound.length=1"
    options: dict[str, str] = {}
    for item in [p for p in re.split(r"[,\s]+", value) if p]:
        name, eq, setting = item.partition("=")
        if not eq or not name:
            raise reader.bad("i2p", "i2cp.options", "%r is not NAME=VALUE" % (item,), accepted)
        if not _I2P_OPTION_KEY.match(name):
            raise reader.bad(
                "i2p", "i2cp.options", "option name %r has characters other than letters, digits, '.', '_', '-'"
                % (name,), accepted,
            )
        if name.upper() in _I2P_RESERVED:
            raise reader.bad("i2p", "i2cp.options", "%r is set by foolscap-sidetls itself" % (name,), accepted)
        if not _I2P_OPTION_VALUE.match(setting):
            raise reader.bad("i2p", "i2cp.options", "the value of %r has a quote or '='" % (name,), accepted)
        options[name] = setting
    if not options:
        raise reader.bad("i2p", "i2cp.options", "empty", accepted)
    return options


def _read_i2p(reader: _Reader, entries: list[_Listen]) -> _I2P:
    section = "i2p"
    enabled = reader.boolean(section, "enabled", True)
    launch = reader.boolean(section, "launch", False)
    dest = reader.boolean(section, "dest", False)
    sam = reader.client_endpoint(section, "sam.port", "tcp:127.0.0.1:7656")
    dest_port = reader.port(section, "dest.port")
    key_value = reader.get(section, "dest.private_key_file")
    if key_value == "":
        raise reader.bad(section, "dest.private_key_file", "empty", "the path of the destination's key file")
    options = _parse_i2cp(reader)
    configdir_value = reader.get(section, "i2p.configdir")
    if configdir_value == "":
        raise reader.bad(section, "i2p.configdir", "empty", "the directory holding an i2pd.conf")
    if sam and launch:
        raise reader.error(
            section, "launch",
            "conflicts with [i2p] sam.port = %r: a launched i2pd has a SAM port of its own" % (sam,),
            "one of them", "true",
        )
    executable = (
        reader.executable(section, "i2p.executable", "i2pd", _i2p.I2PD_SEARCH_DIRS) if launch else None
    )
    if not launch and reader.get(section, "i2p.executable") is not None:
        reader.warnings.append("[i2p] i2p.executable is not used: [i2p] launch is not true")
    configdir: Optional[str] = None
    configdir_sam: Optional[str] = None
    if configdir_value is not None:
        configdir = reader.path(configdir_value)
        conf = os.path.join(configdir, "i2pd.conf")
        if launch:
            # The launched i2pd keeps its data (and the i2pd.conf launch()
            # writes) there: never overwrite the file of another i2pd.
            try:
                with open(conf, "r", encoding="utf-8", errors="replace") as f:
                    first = f.readline()
            except FileNotFoundError:
                first = None
            except OSError as e:
                raise reader.bad(section, "i2p.configdir", "cannot read %s (%s)" % (conf, _why(e))) from None
            if first is not None and not first.startswith("# written by foolscap_sidetls.i2p.launch()"):
                raise reader.bad(
                    section, "i2p.configdir",
                    "with [i2p] launch = true the launched i2pd keeps its data there, but %s belongs to "
                    "another i2pd" % (conf,),
                    "a directory of its own for the launched i2pd (or launch = false to use that i2pd)",
                )
            if os.path.exists(configdir) and not os.path.isdir(configdir):
                raise reader.bad(section, "i2p.configdir", "%s is not a directory" % (configdir,))
        elif not sam:
            try:
                made = _i2p.local_i2p(configdir, reactor=MemoryReactor())
            except (_i2p.I2PConfigError, TypeError, ValueError) as e:
                raise reader.bad(
                    section, "i2p.configdir", _why(e),
                    "the configuration directory of a running i2pd with its SAM bridge enabled",
                ) from None
            configdir_sam = made.sam_where
        else:
            reader.warnings.append("[i2p] i2p.configdir is not used: [i2p] sam.port says where SAM is")
    dest_plan: Optional[_Dest] = None
    listens_i2p = any(e.kind == "i2p" for e in entries)
    if dest:
        if not sam and not launch and configdir is None:
            raise reader.error(
                section, "dest",
                "needs a SAM bridge to listen through: [i2p] sam.port, launch = true or i2p.configdir",
                None, "true",
            )
        for key, got, what in (
            ("dest.port", dest_port, _PORT + ": the I2P port announced in the hint, e.g. 3457"),
            ("dest.private_key_file", key_value, "the path of the destination's key file"),
        ):
            if got is None:
                raise reader.error(section, "dest", "needs [i2p] %s" % (key,), what, "true")
        assert dest_port is not None and key_value is not None
        key_file = reader.path(key_value)
        address = _read_i2p_key(reader, key_value, key_file)
        dest_plan = _Dest(dest_port, key_file, address)
        if not listens_i2p:
            reader.warnings.append(
                "[i2p] dest = true is not used: [node] tub.port has no listen:i2p (as in Tahoe-LAFS, "
                "the destination is listened on only through listen:i2p)"
            )
    elif listens_i2p:
        raise reader.error(
            "node", "tub.port",
            "listen:i2p needs [i2p] dest = true (with dest.port and dest.private_key_file)",
            None, reader.get("node", "tub.port"),
        )
    return _I2P(enabled, sam, launch, executable, configdir, configdir_sam, dest_plan, options)


def _read(
    parser: configparser.ConfigParser,
    source: str,
    basedir: str,
    addresses: Callable[[], Sequence[str]],
) -> NodeConfig:
    reader = _Reader(parser, source, basedir)
    ignored = _check_sections(reader)
    reveal_ip = reader.boolean("node", "reveal-ip-address", True)
    timeouts = {}
    for key in _TUB_OPTIONS:
        seconds = reader.seconds("node", key)
        if seconds is not None:
            timeouts[key] = seconds
    listening, entries, chosen_later = _read_tub_port(reader)

    tcp_value = reader.get("connections", "tcp")
    if tcp_value == "":
        # Tahoe-LAFS: "unknown handler type ''", not tcp.
        raise reader.bad("connections", "tcp", "empty", "one of " + ", ".join(HANDLER_NAMES))
    tcp_name = (tcp_value or "tcp").lower()
    if tcp_name not in HANDLER_NAMES:
        raise reader.bad("connections", "tcp", "unknown handler", "one of " + ", ".join(HANDLER_NAMES))

    tor = _read_tor(reader, entries, reveal_ip)
    i2p = _read_i2p(reader, entries)

    handlers: dict[str, Optional[str]] = {
        "tcp": None if tcp_name == "disabled" else tcp_name,
        "tor": "tor" if tor.enabled and tor.available else None,
        "i2p": "i2p" if i2p.enabled else None,
    }
    if tcp_name in ("tor", "i2p") and handlers[tcp_name] is None:
        raise reader.bad(
            "connections", "tcp",
            "the %s handler is not available (%s)"
            % (tcp_name, TOR_UNAVAILABLE if tcp_name == "tor" and not tor.available
               else "[%s] enabled = false" % (tcp_name,)),
            "a handler that is enabled, or disabled",
        )
    if not tor.available and tor.enabled:
        reader.warnings.append("tor: hints are not dialed: " + TOR_UNAVAILABLE)
    if tcp_name == "i2p":
        reader.warnings.append("[connections] tcp = i2p: I2P has no exits, so every tcp: hint fails as a bad hint")

    # reveal-IP-address = false vetoes anything that would reveal it.
    if not reveal_ip and tcp_name == "tcp":
        raise reader.error(
            "connections", "tcp",
            "dials tcp: hints directly, which reveals this machine's IP address, but "
            "[node] reveal-IP-address = false",
            "tor or disabled (or i2p)", tcp_value, "is not set (so tcp)",
        )

    location_value = reader.get("node", "tub.location")
    location: list[str] = []
    auto: Optional[tuple[int, tuple[str, ...]]] = None
    portnum: Optional[str] = None
    if listening:
        if chosen_later:
            portnum = _read_portnum(reader)
        hints = (location_value or "AUTO").split(",")
        for hint in [h.strip() for h in hints]:
            if not hint:
                raise reader.error(
                    "node", "tub.location", "has an empty entry", "hints separated by commas", location_value,
                )
            if hint == "AUTO":
                if not reveal_ip:
                    raise reader.error(
                        "node", "tub.location",
                        "AUTO announces this machine's IP addresses, but [node] reveal-IP-address = false",
                        "tor: or i2p: hints only", location_value, "is not set (so AUTO)",
                    )
                continue
            kind = _check_hint(reader, hint)
            if kind == "tcp" and not reveal_ip:
                raise reader.error(
                    "node", "tub.location",
                    "the hint %r reveals this machine's IP address, but [node] reveal-IP-address = false"
                    % (hint,),
                    "tor: or i2p: hints only", location_value,
                )
        if "AUTO" in [h.strip() for h in hints]:
            port_number: Optional[int] = None
            if portnum is not None:
                port_number = int(portnum.split(":")[1])
            else:
                for entry in entries:
                    tcp = _tcp_port(entry.endpoint) if entry.kind == "endpoint" else None
                    if tcp is not None:
                        port_number = tcp[0]
                        break
                if port_number is None and not chosen_later:
                    raise reader.error(
                        "node", "tub.location",
                        "AUTO announces tcp:ADDRESS:PORT, but [node] tub.port has no tcp: listener to take "
                        "the PORT from",
                        "a tcp:PORT entry in tub.port, or explicit hints", location_value, "is not set (so AUTO)",
                    )
            auto = (port_number or 0, tuple(addresses()))
        for hint in [h.strip() for h in hints]:
            if hint == "AUTO":
                assert auto is not None
                location += ["tcp:%s:%s" % (a, auto[0] or "<port>") for a in auto[1]]
            else:
                location.append(hint)
        if not reveal_ip:
            _check_hidden_listeners(reader, entries, chosen_later, portnum)
        _warn_location(reader, tor, i2p, entries, location)
    return NodeConfig(
        source=source,
        basedir=basedir,
        handlers=handlers,
        listening=listening,
        tub_port=tuple(e.text for e in entries) if listening else (),
        location=tuple(location),
        reveal_ip=reveal_ip,
        warnings=tuple(reader.warnings),
        ignored=tuple(ignored),
        timeouts=timeouts,
        _listens=tuple(entries),
        _portnum=portnum,
        _auto=auto,
        _tor=tor,
        _i2p=i2p,
    )


def _read_portnum(reader: _Reader) -> Optional[str]:
    path = os.path.join(reader.basedir, PORTNUM_FILE)
    try:
        with open(path, "r", encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise reader.error("node", "tub.port", "is not set, and %s cannot be read (%s)" % (path, _why(e))) from None
    if _ascii_digits(text):
        text = "tcp:%d" % (int(text),)
    tcp = _tcp_port(text)
    if tcp is None or not 1 <= tcp[0] <= 65535:
        raise reader.error(
            "node", "tub.port",
            "is not set, and %s (where the port chosen at the first start is kept) holds %r" % (path, text),
            "tcp:PORT there, or tub.port set",
        )
    return text


def _warn_location(reader: _Reader, tor: _Tor, i2p: _I2P, entries: list[_Listen], location: list[str]) -> None:
    """Warn when tub.location does not announce what this Tub publishes."""
    if tor.onion is not None and tor.onion.hint not in location:
        others = [h for h in location if h.startswith("tor:")]
        reader.warnings.append(
            "[tor] onion.private_key_file publishes %s, but [node] tub.location %s; dialers will not "
            "find this onion service"
            % (tor.onion.hint, "announces %s" % (", ".join(others),) if others else "has no tor: hint for it")
        )
    if i2p.dest is not None and any(e.kind == "i2p" for e in entries):
        wanted = (i2p.dest.hint, "i2p:" + i2p.dest.address)
        if not any(h in wanted for h in location):
            others = [h for h in location if h.startswith("i2p:")]
            reader.warnings.append(
                "[i2p] dest.private_key_file listens on %s, but [node] tub.location %s; dialers will not "
                "find this destination"
                % (i2p.dest.hint, "announces %s" % (", ".join(others),) if others else "has no i2p: hint for it")
            )


def _parser() -> configparser.ConfigParser:
    # As Tahoe-LAFS reads tahoe.cfg: a later duplicate wins, and values are
    # taken literally (no %-interpolation, no inline comments).
    return configparser.ConfigParser(interpolation=None, strict=False)


def _parse(text: str, source: str) -> configparser.ConfigParser:
    parser = _parser()
    try:
        parser.read_string(text, source=source)
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            source, None, None, None,
            "line %d (%r) comes before any [section] header; expected [node], [connections], [tor] "
            "or [i2p] first" % (e.lineno, e.line.strip()),
        ) from None
    except configparser.ParsingError as e:
        lineno = e.errors[0][0] if e.errors else 0
        lines = text.splitlines()
        line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        raise ConfigError(
            source, None, None, None,
            "line %d (%r) is neither 'key = value' nor a [section] header" % (lineno, line),
        ) from None
    except configparser.Error as e:
        raise ConfigError(source, None, None, None, _why(e)) from None
    return parser


def from_string(
    text: str,
    *,
    source: str = "<string>",
    basedir: Optional[str] = None,
    local_addresses: Callable[[], Sequence[str]] = local_addresses,
) -> NodeConfig:
    """
    Check a configuration given as text.

    @param source: its name in error messages.
    @param basedir: where relative paths (key files, executables) start;
        default: the current directory.
    @param local_addresses: what C{tub.location = AUTO} expands to (a
        function, so tests can give fixed addresses).
    @raise ConfigError: the first problem found.
    """
    base = os.path.abspath(basedir if basedir is not None else os.getcwd())
    return _read(_parse(text, source), source, base, local_addresses)


def load(
    path: Union[str, "os.PathLike[str]"],
    *,
    local_addresses: Callable[[], Sequence[str]] = local_addresses,
) -> NodeConfig:
    """
    Read and check the configuration file at C{path}; relative paths in
    it start at its directory.

    @raise ConfigError: unreadable, or the first problem found.
    """
    source = os.fspath(path)
    try:
        with open(source, "r", encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(source, None, None, None, "cannot read it (%s)" % (e.strerror or _why(e),)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(source, None, None, None, "cannot read it (not UTF-8: %s)" % (_why(e),)) from None
    basedir = os.path.dirname(os.path.abspath(source))
    return _read(_parse(text, source), source, basedir, local_addresses)


# -- building the Tub ----------------------------------------------------------------------


@implementer(IStreamServerEndpoint)
class _Watched:
    """
    A server endpoint that reports its listen() result: Foolscap's Listener
    drops listen errors, and a port already in use must fail the start.
    """

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint
        self.listening: Deferred = Deferred()

    def __repr__(self) -> str:
        return repr(self._endpoint)

    def listen(self, factory: IProtocolFactory) -> "Deferred[IListeningPort]":
        d = self._endpoint.listen(factory)

        def done(result: Any) -> Any:
            if not self.listening.called:
                if isinstance(result, Failure):
                    self.listening.errback(result)
                    return None
                self.listening.callback(result)
            return result

        return d.addBoth(done)


class _Stopper(service.Service):
    """Stops the handlers a configured Tub made (tor connections, launched daemons) with it."""

    def __init__(self, stops: list[Callable[[], Any]]) -> None:
        self._stops = stops

    def stopService(self) -> Deferred:
        service.Service.stopService(self)
        return defer.gatherResults(
            [defer.maybeDeferred(stop) for stop in self._stops], consumeErrors=True
        ).addBoth(lambda _: None)


class _Made:
    """The handlers of one Tub, made on first use."""

    def __init__(self, config: NodeConfig, reactor: Any) -> None:
        self._config = config
        self._reactor = reactor
        self._cache: dict[str, Any] = {}
        self.stops: list[Callable[[], Any]] = []

    def tcp(self) -> Any:
        if "tcp" not in self._cache:
            from foolscap.connections import tcp

            self._cache["tcp"] = _sidetls_handler(tcp.default())
        return self._cache["tcp"]

    def tor_dialer(self) -> Any:
        if "tor" not in self._cache:
            from . import tor

            settings = self._config._tor
            if settings.launch:
                made = self.tor_launched()
            elif settings.socks_port:
                made = tor.socks_endpoint(clientFromString(self._reactor, settings.socks_port))
            elif settings.control_port:
                made = self.tor_control()
            else:
                made = tor.default_socks()
            self._cache["tor"] = made
        return self._cache["tor"]

    def tor_launched(self) -> Any:
        if "tor-launch" not in self._cache:
            from . import tor

            settings = self._config._tor
            made = tor.launch(
                data_directory=os.path.join(self._config.basedir, TOR_STATEDIR),
                tor_binary=settings.executable,
                bootstrap_timeout=settings.bootstrap_timeout,
            )
            self.stops.append(made.stop)
            self._cache["tor-launch"] = made
        return self._cache["tor-launch"]

    def tor_control(self) -> Any:
        if "tor-control" not in self._cache:
            from . import tor

            assert self._config._tor.control_port is not None
            made = tor.control_endpoint(
                clientFromString(self._reactor, self._config._tor.control_port),
                bootstrap_timeout=self._config._tor.bootstrap_timeout,
            )
            self.stops.append(made.stop)
            self._cache["tor-control"] = made
        return self._cache["tor-control"]

    def tor_publisher(self) -> Any:
        return self.tor_launched() if self._config._tor.launch else self.tor_control()

    def i2p(self) -> Any:
        if "i2p" not in self._cache:
            settings = self._config._i2p
            options = dict(settings.options) or None
            reactor = self._reactor
            if settings.sam_port:
                made = _i2p.sam_endpoint(clientFromString(reactor, settings.sam_port), options, reactor=reactor)
            elif settings.launch:
                made = _i2p.launch(
                    settings.executable,
                    settings.configdir or os.path.join(self._config.basedir, I2P_STATEDIR),
                    options=options,
                    reactor=reactor,
                )
            elif settings.configdir:
                made = _i2p.local_i2p(settings.configdir, options, reactor=reactor)
            else:
                made = _i2p.default(reactor, options)
            self._cache["i2p"] = made
        return self._cache["i2p"]

    def attach(self, tub: Any) -> None:
        """Make the Tub stop these handlers (and what they launched) when it stops."""
        _Stopper(self.stops).setServiceParent(tub)
        if "i2p" in self._cache:
            # An I2PHandler is a service: a child of the Tub, i2p.listen()
            # leaves it there rather than attaching it a second time.
            self._cache["i2p"].setServiceParent(tub)

    def for_name(self, name: str) -> Any:
        return {"tcp": self.tcp, "tor": self.tor_dialer, "i2p": self.i2p}[name]()


def _recheck(config: NodeConfig) -> None:
    """
    The key files a start reads must still be what was checked: they live
    outside the config file and may have changed since L{load}.
    """
    onion = config._tor.onion
    if onion is not None:
        reader = _Reader(_parser(), config.source, config.basedir)
        if _read_onion_key(reader, onion.key_file, onion.key_file) != onion.address:
            raise ConfigError(
                config.source, "tor", "onion.private_key_file", onion.key_file,
                "%s changed since the configuration was checked; check it again" % (onion.key_file,),
            )
    dest = config._i2p.dest
    if dest is not None and any(e.kind == "i2p" for e in config._listens):
        reader = _Reader(_parser(), config.source, config.basedir)
        if _read_i2p_key(reader, dest.key_file, dest.key_file) != dest.address:
            raise ConfigError(
                config.source, "i2p", "dest.private_key_file", dest.key_file,
                "%s changed since the configuration was checked; check it again" % (dest.key_file,),
            )


def create_tub(
    config: NodeConfig,
    reactor: Any = None,
    *,
    listen: bool = True,
    update_status: Optional[Callable[[str], None]] = None,
) -> "Deferred[Any]":
    """
    Build and start the Tub C{config} describes: its handlers (all
    role-based: dialed connections are the TLS client), its listeners (the
    TLS server), its onion service and I2P destination, its location.

    Returns a L{Deferred} rather than the Tub, because an onion service or
    an I2P destination takes seconds to publish and a FURL made before then
    would not work.  It fires with the running Tub once every listener is
    up and the location is set, or fails with L{StartError} (a port in use,
    tor or the router unreachable, the certificate unreadable) after
    stopping everything it started.  A configuration that is no longer
    valid (a key file changed since L{load}) raises L{ConfigError} at once,
    before anything starts.  Cancelling the Deferred stops the start and
    everything it had started.

    The Tub keeps its certificate (its TubID, so its FURLs) in L{CERT_FILE}
    under the config's directory, and a node without C{tub.port} the port
    chosen at its first start in L{PORTNUM_FILE}.  Both are written (mode
    0600 from their first byte) only once that first start has succeeded:
    a start that fails leaves neither behind, so nothing was announced
    that a later start would have to honour.  Stopping the Tub stops what
    it started: listeners, onion service, I2P sessions, a launched tor or
    i2pd.

    @param listen: L{False} for a Tub that only dials (what C{ping} uses):
        the config's handlers and timeouts, a fresh identity, nothing
        listened on, published or written.  (A node whose C{tub.port} is
        C{disabled} also only dials, but keeps its identity.)
    @param update_status: called with each slow step, e.g. C{"tor: waiting
        for tor bootstrap (45%: ...)"}, C{"i2p: opening a SAM session ..."}.
    """
    from foolscap.api import Tub

    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    listening = listen and config.listening
    if listening:
        _recheck(config)
    report = update_status or (lambda status: None)

    new_files: list[tuple[str, str]] = []
    try:
        if listen:
            cert_file = os.path.join(config.basedir, CERT_FILE)
            cert_data = _read_certificate(config, cert_file)
            tub = _tub_with(config, cert_file, cert_data)
            if cert_data is None:
                new_files.append((cert_file, tub.getCertData().decode("ascii")))
        else:
            tub = Tub()
        entries = list(config._listens)
        portnum = config._portnum
        if listening and not entries and portnum is None:
            portnum = "tcp:%d" % (allocate_tcp_port(),)
            new_files.append((os.path.join(config.basedir, PORTNUM_FILE), portnum + "\n"))
        if not listening:
            # Nothing can fail from here on: keep the new identity now.
            _write_new(config, new_files)
            new_files = []
    except StartError:
        return defer.fail()

    # -- from here on, things start ----------------------------------------------------
    if config._tor.launch or (config._i2p.launch and not config._i2p.configdir):
        # A launched tor or i2pd keeps its data under private/: made here,
        # this user's only (os.makedirs would make it world-readable).
        _private_directory(config.basedir)
    for key, seconds in config.timeouts.items():
        tub.setOption(_TUB_OPTIONS[key], seconds)
    made = _Made(config, reactor)
    tub.removeAllConnectionHintHandlers()
    for hint_type, name in config.handlers.items():
        if name is not None:
            tub.addConnectionHintHandler(hint_type, made.for_name(name))
    if not listening:
        made.attach(tub)
        tub.startService()
        return defer.succeed(tub)

    if portnum is not None:
        entries.insert(0, _Listen("endpoint", portnum, portnum))
    location = list(config.location)
    if config._auto is not None and not config._auto[0]:
        port = int((portnum or "tcp:0").split(":")[1])
        location = [h.replace("<port>", str(port)) for h in location]

    dest = config._i2p.dest
    i2p_handler = made.i2p() if dest is not None and any(e.kind == "i2p" for e in entries) else None
    made.attach(tub)
    tub.startService()
    steps: list[Deferred] = []
    for entry in entries:
        if entry.kind != "endpoint":
            continue
        watched = _Watched(serverFromString(reactor, entry.endpoint))
        tub.listenOn(listener(watched, **entry.limits))
        steps.append(watched.listening.addErrback(_listen_failed, config, entry.text))
    tor_settings = config._tor
    if tor_settings.onion is not None:
        from . import tor

        onion = tor_settings.onion
        report("tor: publishing the onion service %s:%d" % (onion.address, onion.external_port))
        steps.append(
            tor.listen(
                tub,
                made.tor_publisher(),
                local_port=onion.forward_port,
                external_port=onion.external_port,
                private_key_file=onion.key_file,
                reactor=reactor,
                update_status=lambda status: report("tor: " + status),
            ).addCallbacks(_published(report, "tor: onion service %s published"), _start_failed,
                           errbackArgs=(config, "tor", "onion", "true", "could not publish the onion service"))
        )
    if dest is not None and i2p_handler is not None:
        if config._i2p.launch:
            report("i2p: launching i2pd")
        report("i2p: opening a SAM session for %s (i2pd takes ~20 s)" % (dest.address,))
        steps.append(
            _i2p.listen(tub, i2p_handler, dest.key_file, port=dest.port, reactor=reactor)
            .addCallbacks(_published(report, "i2p: listening on %s"), _start_failed,
                          errbackArgs=(config, "i2p", "dest", "true", "could not listen on the I2P destination"))
        )

    def started(_: Any) -> Any:
        # Only now: a start that failed has announced nothing, so it keeps
        # no identity and no port that the next start would have to reuse.
        try:
            _write_new(config, new_files)
        except StartError:
            return failed(Failure())
        tub.setLocation(*location)
        return tub

    def failed(f: Failure) -> Any:
        failure = f.value.subFailure if isinstance(f.value, defer.FirstError) else f
        for step in steps:
            if not step.called:
                step.cancel()
        stopping = tub.stopService() if tub.running else defer.succeed(None)
        stopping.addErrback(lambda _: None)
        return stopping.addCallback(lambda _: failure)

    gathered = defer.gatherResults(steps, consumeErrors=True) if steps else defer.succeed([])
    return gathered.addCallbacks(started, failed)


def _read_certificate(config: NodeConfig, path: str) -> Optional[bytes]:
    """The Tub's certificate as kept, or None before the first start."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        # Foolscap would make a new identity and overwrite the old one.
        raise StartError(
            "%r: cannot read the Tub's certificate %s (%s); it is this node's identity (its FURLs), so "
            "it is not replaced" % (config.source, path, e.strerror or _why(e))
        ) from None


def _tub_with(config: NodeConfig, path: str, data: Optional[bytes]) -> Any:
    """A Tub with the certificate C{data} (a new one if None)."""
    from foolscap.api import Tub

    try:
        return Tub(certData=data)
    except Exception as e:  # whatever OpenSSL says about a damaged PEM file
        if data is None:
            raise
        raise StartError(
            "%r: %s does not hold a Tub certificate (%s); it is this node's identity (its FURLs), so it "
            "is not replaced: move it away to make a new one" % (config.source, path, _why(e))
        ) from None


def _private_directory(basedir: str) -> str:
    path = os.path.join(basedir, "private")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _write_new(config: NodeConfig, files: Sequence[tuple[str, str]]) -> None:
    """Write the certificate and port a first start made."""
    for path, text in files:
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            write_private(path, text)
        except OSError as e:
            raise StartError("%r: cannot write %s (%s)" % (config.source, path, e.strerror or _why(e))) from None


def _published(report: Callable[[str], None], text: str) -> Callable[[str], str]:
    def done(hint: str) -> str:
        report(text % (hint,))
        return hint

    return done


def _listen_failed(f: Failure, config: NodeConfig, text: str) -> Failure:
    if f.check(defer.CancelledError):
        return f
    raise StartError(
        "%r [node] tub.port: could not listen on %r (%s)" % (config.source, text, f.getErrorMessage())
    )


def _start_failed(f: Failure, config: NodeConfig, section: str, key: str, value: str, what: str) -> Failure:
    if f.check(defer.CancelledError):
        return f
    raise StartError("%r [%s] %s = %r: %s: %s" % (config.source, section, key, value, what, f.getErrorMessage()))
