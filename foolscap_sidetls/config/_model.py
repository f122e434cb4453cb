"""
A checked configuration: L{NodeConfig}, what L{load} returns and
L{create_tub} builds, and the plans for its tor and I2P parts.  Values
only, with their descriptions in words: nothing here reads a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Optional

from .._limits import Limits
from ._schema import I2P_STATEDIR, PORTNUM_FILE, TOR_STATEDIR, TOR_UNAVAILABLE


@dataclass(frozen=True)
class _Published:
    """
    A service this Tub publishes through an overlay network (an onion
    service, an I2P destination): its key file, the address that key
    gives, and the port announced with it -- together, the hint that
    tub.location must carry for dialers to find it.
    """

    #: C{tor} or C{i2p}: the hint type.
    kind: ClassVar[str]
    key_file: str
    address: str
    #: The port in the hint (an onion service's external port).
    port: int

    @property
    def hint(self) -> str:
        return "%s:%s:%d" % (self.kind, self.address, self.port)


@dataclass(frozen=True)
class _Onion(_Published):
    kind = "tor"
    local_port: int
    #: The 127.0.0.1 port tor.listen() listens on for the onion service:
    #: local_port, or None (a free one) when a tub.port entry on every
    #: interface already holds local_port.
    forward_port: Optional[int]


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
class _Dest(_Published):
    kind = "i2p"


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
    #: Seconds a launched i2pd whose log says reseeding failed may go
    #: without a SAM session before it fails saying so; None: keep waiting.
    reseed_timeout: Optional[float] = 30.0


@dataclass(frozen=True)
class _Listen:
    """One C{tub.port} entry: C{kind} is C{endpoint}, C{tor} or C{i2p}."""

    kind: str
    text: str
    endpoint: str = ""
    #: What bounds this listener's connections: a C{sidetls:} entry's limit
    #: options, the defaults for the others (and for a plain entry).
    limits: Limits = field(default_factory=Limits)


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
                % (onion.address, onion.port,
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
