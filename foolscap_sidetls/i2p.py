"""
Foolscap over I2P, role-based: dial C{i2p:} hints as the TLS client and
listen on an I2P destination as the TLS server, through an I2P router's SAM
bridge (i2pd or Java I2P).

Why this module exists: a Tub I{listening} on I2P gets each connection over
a socket it opened itself (SAM's C{STREAM ACCEPT}), so stock Twisted makes
it a TLS client and the handshake dies -- both ends send a ClientHello.  Here
the listener's connections go through L{foolscap_sidetls.listener} and are
the TLS server whatever the socket says; no C{invertTLS} workaround is
involved (this module speaks SAM v3 itself and does not need txi2p).

Dialing::

    from foolscap_sidetls import i2p
    h = i2p.default(reactor)                 # SAM at 127.0.0.1:7656
    tub.addConnectionHintHandler("i2p", h)   # i2p:ADDR and i2p:ADDR:PORT hints
    h.setServiceParent(tub)                  # close its SAM session with the Tub

Listening (fires with the hint once the Tub is listening)::

    d = i2p.listen(tub, h, "node.i2p.key")   # or a SAM client endpoint
    d.addCallback(tub.setLocation)           # "i2p:<52 chars>.b32.i2p"

Other ways to reach a router: L{sam_endpoint} (any SAM client endpoint),
L{local_i2p} (reads an i2pd.conf for the SAM address), L{launch} (starts a
private i2pd and stops it with the Tub).  Each returns an L{I2PHandler}: one
SAM session for dialing, opened on first use and shared by every
connection (a session costs ~20 s on i2pd; a further connection costs one
SAM round trip), and the C{sam} argument of L{listen}, whose listening
session is separate (a dialer does not reveal the listener's address).

Foolscap's connection status shows what a dial is waiting for:
C{"launching i2pd"}, C{"opening SAM session (can take ~20 s)"},
C{"connecting to <address> over I2P"}.  A session that does not open says
why: a launched i2pd whose log shows that reseeding failed (no peers: this
machine cannot reach the I2P network) fails it after C{reseed_timeout}
(30 s), naming the log; an attached router's silence is reported every 30 s
with what SAM last said.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections import deque
from typing import Any, Callable, Mapping, Optional, Union

from zope.interface import implementer
from twisted.application import service
from twisted.application.internet import backoffPolicy
from twisted.internet import defer, error, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.protocol import ClientFactory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from foolscap.ipb import IConnectionHintHandler, InvalidHintError

from ._endpoints import _checkLimits, listener
from ._files import write_private
from ._handler import SideTLSHandler
from ._process import spawn_in_own_group
from ._protocol import DEFAULT_CLOSE_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT

__all__ = [
    "I2PAddress",
    "I2PConfigError",
    "I2PDFailed",
    "I2PDNotFound",
    "I2PError",
    "I2PHandler",
    "SAMConnectionLost",
    "SAMRefused",
    "SAMTimeout",
    "SAMUnreachable",
    "address_of",
    "default",
    "launch",
    "listen",
    "local_i2p",
    "sam_endpoint",
]

log = Logger()

#: Where a router's SAM bridge listens unless configured otherwise.
DEFAULT_SAM_HOST = "127.0.0.1"
DEFAULT_SAM_PORT = 7656
#: How long a SAM bridge may take to answer HELLO (it answers at once).
HELLO_TIMEOUT = 30.0
#: How long SESSION CREATE may take: i2pd answers after ~20 s when its
#: tunnels are ready; Java I2P on a real network can take longer.
SESSION_TIMEOUT = 300.0
#: How long a launched i2pd may take until its SAM bridge answers.
LAUNCH_TIMEOUT = 60.0
#: How long a launched i2pd whose log says reseeding failed may take to
#: open a session before the session fails saying so (launch()'s
#: C{reseed_timeout}; None waits for SESSION_TIMEOUT).
RESEED_TIMEOUT = 30.0
#: How often the launched i2pd's log is read while a session opens, how
#: much of it at most per read, and the longest log line kept.
_LOG_POLL = 1.0
_LOG_READ = 65536
_LOG_LINE = 1000
#: How often an attached router's SESSION CREATE wait is reported.
_SESSION_NOTE = 30.0
#: Where i2pd lives when it is not on PATH (Debian/Ubuntu: /usr/sbin).
I2PD_SEARCH_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
#: The configuration directories L{local_i2p} tries, in i2pd's own order
#: (plus Debian's /etc/i2pd).
I2PD_CONFIG_DIRS: tuple[str, ...] = ("~/.i2pd", "/var/lib/i2pd", "/etc/i2pd")
#: Reseed certificates of Debian's i2pd package, used by a launched i2pd
#: whose data directory has none.
_DEBIAN_CERTIFICATES = "/usr/share/i2pd/certificates"

_SIGNATURE_TYPE = "EdDSA_SHA512_Ed25519"
#: STREAM ACCEPTs kept open per listening session (SAM >= 3.1 on i2pd and
#: SAM 3.2 on Java I2P allow several; one is used where they do not).
_PENDING_ACCEPTS = 2
#: A listener's retries (a STREAM ACCEPT, or reopening its lost session)
#: wait _RETRY_FIRST s after a first failure, twice as long after each
#: further one, at most _RETRY_MAX s.  The wait starts over after an
#: accepted, well-formed peer, or when _RETRY_RESET s passed since the last
#: retry without a failure.
_RETRY_FIRST = 0.5
_RETRY_MAX = 10.0
_RETRY_RESET = 60.0
#: The longest SAM reply line accepted (a destination is ~520 bytes).
_MAX_LINE = 65536

_OPENING_SESSION = "opening SAM session (can take ~20 s)"
_ENABLE_SAM = (
    "Is the I2P router running with its SAM bridge enabled? For i2pd, put "
    "'[sam]' with 'enabled = true' (and address = 127.0.0.1, port = 7656) in "
    "i2pd.conf and restart it; for Java I2P, enable the SAM application bridge "
    "in the router console (Config > Clients). Or let "
    "foolscap_sidetls.i2p.launch() start an i2pd of its own"
)
_INSTALL_I2PD = "install the Debian/Ubuntu package 'i2pd' (apt-get install i2pd)"

#: SAM words a session option must not override.
_RESERVED_OPTIONS = frozenset(
    ["STYLE", "ID", "DESTINATION", "SIGNATURE_TYPE", "SILENT", "FROM_PORT", "TO_PORT", "PORT", "HOST", "PROTOCOL", "HEADER"]
)
_OPTION_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")
_OPTION_VALUE = re.compile(r'^[^\s"=]*$')
_I2P_NAME = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+i2p\Z")
#: Printable ASCII without spaces: what an I2P hint may contain.
_HINT_CHARACTERS = re.compile(r"[\x21-\x7e]+\Z")
_B32_LABEL = re.compile(r"^[a-z2-7]{52,}$")


# -- errors -------------------------------------------------------------------


class I2PError(Exception):
    """I2P could not be used; the message says why and what to do."""


class SAMUnreachable(I2PError):
    """Nothing answered at the SAM bridge's address (or it did not speak SAM)."""

    def __init__(self, where: str, reason: str) -> None:
        I2PError.__init__(
            self, "no SAM bridge answering at %s (%s). %s." % (where, reason, _ENABLE_SAM)
        )
        self.where = where
        self.reason = reason


class SAMRefused(I2PError):
    """
    The SAM bridge answered a command with a RESULT other than OK.

    @ivar command: the SAM command (C{"SESSION CREATE"}, C{"STREAM CONNECT"}, ...).
    @ivar result: SAM's RESULT (C{"I2P_ERROR"}, C{"CANT_REACH_PEER"}, ...).
    @ivar message: SAM's MESSAGE, or C{""}.
    """

    def __init__(self, where: str, command: str, result: str, message: str, advice: str = "") -> None:
        text = "the SAM bridge at %s refused %s: RESULT=%s" % (where, command, result)
        if message:
            text += " MESSAGE=%s" % (message,)
        if advice:
            text += " (%s)" % (advice,)
        I2PError.__init__(self, text)
        self.where = where
        self.command = command
        self.result = result
        self.message = message


class SAMConnectionLost(I2PError):
    """The SAM bridge closed a connection before answering (did the router stop?)."""


class SAMTimeout(I2PError):
    """The SAM bridge did not answer a command in time."""


class I2PDNotFound(I2PError):
    """No i2pd executable: install i2pd or pass C{executable=}."""


class I2PDFailed(I2PError):
    """A launched i2pd exited, or its SAM bridge did not answer in time."""


class I2PConfigError(I2PError, ValueError):
    """An i2pd.conf (or a C{config=} setting) that cannot be used, and why."""


# -- small helpers --------------------------------------------------------------


def _kind(value: object) -> str:
    return "%r (%s)" % (value, type(value).__name__)


def _where(endpoint: object) -> str:
    """A human name for a SAM client endpoint: C{tcp:127.0.0.1:7656}."""
    path = getattr(endpoint, "_path", None)
    if isinstance(path, (str, bytes)):
        return "unix:%s" % (os.fsdecode(path),)
    host = getattr(endpoint, "_host", None) or getattr(endpoint, "_hostText", None)
    port = getattr(endpoint, "_port", None)
    if host is not None and port is not None:
        return "tcp:%s:%s" % (host, port)
    return repr(endpoint)


def _printable(text: str, limit: int) -> str:
    """C{text} safe to show: control characters replaced, cut at C{limit}."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def _reason(f: Failure) -> str:
    value = f.value
    text = str(value) or type(value).__name__
    if isinstance(value, error.ConnectionRefusedError):
        return "connection refused"
    return text


def _observe(d: Deferred) -> Deferred:
    """A new Deferred with C{d}'s result; cancelling it leaves C{d} alone."""
    out: Deferred = Deferred()

    def copy(result: Any) -> None:
        if not out.called:
            if isinstance(result, Failure):
                out.errback(result)
            else:
                out.callback(result)
        return None

    d.addBoth(copy)
    return out


def _ignore_status(status: str) -> None:
    pass


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _check_port(name: str, value: object, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "%s must be a port number (int from 1 to 65535)%s, got %s"
            % (name, " or None" if allow_none else "", _kind(value))
        )
    if not 1 <= value <= 65535:
        raise ValueError("%s must be from 1 to 65535, got %d" % (name, value))


def _check_options(options: object, what: str) -> dict[str, str]:
    """Validate SAM/I2CP session options; returns them as strings."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(
            "%s expects options to be a dict of I2CP/SAM session options such as "
            "{'inbound.length': '1'}, got %s" % (what, _kind(options))
        )
    checked = {}
    for key, value in options.items():
        if not isinstance(key, str) or not _OPTION_KEY.match(key):
            raise ValueError(
                "%s: session option name %r must be letters, digits, '.', '_' or '-' "
                "(e.g. 'inbound.length')" % (what, key)
            )
        if key.upper() in _RESERVED_OPTIONS:
            raise ValueError(
                "%s: session option %r is set by foolscap_sidetls.i2p itself" % (what, key)
            )
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, str)):
            text = str(value)
        else:
            raise TypeError(
                "%s: session option %r must be a str, int or bool, got %s" % (what, key, _kind(value))
            )
        if not _OPTION_VALUE.match(text):
            raise ValueError(
                "%s: session option %r=%r must not contain spaces, quotes or '='" % (what, key, text)
            )
        checked[key] = text
    return checked


# -- destinations and keys -------------------------------------------------------


def _i2p_b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), altchars=b"-~", validate=True)
    except (ValueError, UnicodeEncodeError) as e:
        raise ValueError("not I2P base64 (%s)" % (e,)) from None


def _public_part(raw: bytes) -> bytes:
    """
    The public destination at the start of a destination or private key:
    256 bytes of encryption key, 128 of signing key (or padding), then a
    certificate (type, 2-byte length, payload).
    """
    if len(raw) < 387:
        raise ValueError("too short for an I2P destination (%d bytes)" % (len(raw),))
    length = 387 + int.from_bytes(raw[385:387], "big")
    if len(raw) < length:
        raise ValueError("its certificate runs past its end")
    return raw[:length]


def _b32(destination_b64: str) -> str:
    """C{<52 chars>.b32.i2p} for a destination or private key in I2P base64."""
    public = _public_part(_i2p_b64decode(destination_b64))
    digest = hashlib.sha256(public).digest()
    return base64.b32encode(digest).decode("ascii").lower().rstrip("=") + ".b32.i2p"


def _read_key(path: str) -> Optional[str]:
    """The private key in C{path} (I2P base64, as SAM and txi2p write it), or None."""
    try:
        with open(path, "r", encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError("cannot read I2P key file %r: %s" % (path, e)) from None
    try:
        raw = _i2p_b64decode(text)
        public = _public_part(raw)
        if len(raw) <= len(public):
            raise ValueError("it holds a public destination, not a private key")
    except ValueError as e:
        raise ValueError(
            "%r does not hold an I2P private key (%s); move it away to have a new "
            "one made" % (path, e)
        ) from None
    return text


def address_of(keyfile: Union[str, "os.PathLike[str]"]) -> str:
    """
    The I2P address (C{<52 chars>.b32.i2p}) of the private key in
    C{keyfile}, as written by L{listen} (or txi2p).

    @raise ValueError: if the file is missing or holds no I2P private key.
    """
    path = os.fspath(keyfile)
    key = _read_key(path)
    if key is None:
        raise ValueError("I2P key file %r does not exist" % (path,))
    return _b32(key)


@implementer(IAddress)
class I2PAddress:
    """
    Where an I2P connection goes or comes from.

    @ivar host: the C{.b32.i2p} (or C{.i2p}) name.
    @ivar port: the I2P port, or L{None}.
    @ivar destination: the full destination in I2P base64, when known.
    """

    def __init__(self, host: str, port: Optional[int] = None, destination: Optional[str] = None) -> None:
        self.host = host
        self.port = port
        self.destination = destination

    def __repr__(self) -> str:
        if self.port:
            return "I2PAddress(%s:%d)" % (self.host, self.port)
        return "I2PAddress(%s)" % (self.host,)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, I2PAddress):
            return NotImplemented
        return (self.host, self.port) == (other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.host, self.port))


# -- SAM replies ------------------------------------------------------------------


def _parse_reply(line: str) -> tuple[str, dict[str, str]]:
    """
    Split a SAM reply into its topic (C{"SESSION STATUS"}) and its
    C{KEY=VALUE} fields; values may be quoted (C{MESSAGE="..."}).
    """
    words: list[str] = []
    fields: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        start = i
        while i < n and line[i] not in " =":
            i += 1
        key = line[start:i]
        if i < n and line[i] == "=":
            i += 1
            if i < n and line[i] == '"':
                i += 1
                value = []
                while i < n and line[i] != '"':
                    if line[i] == "\\" and i + 1 < n:
                        i += 1
                    value.append(line[i])
                    i += 1
                i += 1
                fields[key.upper()] = "".join(value)
            else:
                start = i
                while i < n and line[i] != " ":
                    i += 1
                fields[key.upper()] = line[start:i]
        elif not fields:
            words.append(key)
    return " ".join(words[:2]), fields


# -- one connection to the SAM bridge ----------------------------------------------


@implementer(ITransport, IPushProducer)
class _I2PStreamTransport:
    """
    What the protocol on an I2P stream sees: the SAM socket's bytes, with
    I2P addresses.  Deliberately no C{startTLS}: the TLS side is chosen by
    the L{foolscap_sidetls.listener}/L{foolscap_sidetls.dialer} above us.
    """

    def __init__(self, sam: "_SAMConnection", host: I2PAddress, peer: I2PAddress) -> None:
        self._sam = sam
        self._host = host
        self._peer = peer

    def __repr__(self) -> str:
        return "<I2P stream %r -> %r>" % (self._host, self._peer)

    @property
    def _t(self) -> Any:
        return self._sam.transport

    @property
    def disconnecting(self) -> bool:
        return bool(getattr(self._t, "disconnecting", False))

    @property
    def connected(self) -> bool:
        return not self._sam.lost

    def write(self, data: bytes) -> None:
        self._t.write(data)

    def writeSequence(self, data: Any) -> None:
        self._t.writeSequence(data)

    def loseConnection(self) -> None:
        # Bytes the bridge sends after this are dropped, not delivered: the
        # application is done with this stream.
        self._sam.app_closed = True
        self._t.loseConnection()

    def abortConnection(self) -> None:
        self._sam.app_closed = True
        self._t.abortConnection()

    def getPeer(self) -> I2PAddress:
        return self._peer

    def getHost(self) -> I2PAddress:
        return self._host

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._t.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._t.unregisterProducer()

    def pauseProducing(self) -> None:
        self._t.pauseProducing()

    def resumeProducing(self) -> None:
        self._t.resumeProducing()

    def stopProducing(self) -> None:
        self._t.stopProducing()

    def setTcpNoDelay(self, enabled: bool) -> None:
        setter = getattr(self._t, "setTcpNoDelay", None)
        if setter is not None:
            setter(enabled)

    def getTcpNoDelay(self) -> bool:
        getter = getattr(self._t, "getTcpNoDelay", None)
        return bool(getter()) if getter is not None else False

    def setTcpKeepAlive(self, enabled: bool) -> None:
        setter = getattr(self._t, "setTcpKeepAlive", None)
        if setter is not None:
            setter(enabled)

    def getTcpKeepAlive(self) -> bool:
        getter = getattr(self._t, "getTcpKeepAlive", None)
        return bool(getter()) if getter is not None else False


class _SAMConnection(Protocol):
    """
    One socket to the SAM bridge: HELLO, then one command at a time; a
    stream socket then carries an application's bytes.

    Modes: C{"lines"} (SAM replies), C{"hold"} (a stream was opened; bytes
    are kept until L{attach}), C{"data"} (bytes go to the application).
    """

    transport: Any

    def __init__(self, where: str, clock: IReactorTime) -> None:
        self.where = where
        self._clock = clock
        self._buffer = b""
        self._mode = "lines"
        self._pending: Optional[tuple[Deferred, str, str, bool]] = None
        self._timer: Any = None
        self._app: Optional[IProtocol] = None
        self._lostWaiters: list[Deferred] = []
        self.lost = False
        #: Set once the application closed its stream: no byte reaches it after that.
        self.app_closed = False
        self.version: Optional[str] = None
        #: The last line the bridge sent (printable, at most 200 characters):
        #: what a timeout reports the bridge last said.
        self.last_line: Optional[str] = None
        self.hello: Deferred = Deferred()

    def __repr__(self) -> str:
        return "<SAM connection to %s (%s)>" % (self.where, self._mode)

    def connectionMade(self) -> None:
        d = self.request("HELLO VERSION MIN=3.1 MAX=3.3", "HELLO", "HELLO REPLY", HELLO_TIMEOUT)

        def hello(fields: dict[str, str]) -> "_SAMConnection":
            self.version = fields.get("VERSION")
            return self

        def refused(f: Failure) -> Failure:
            value = f.value
            if isinstance(value, SAMRefused) and value.result == "NOVERSION":
                raise SAMRefused(
                    self.where, "HELLO", "NOVERSION", value.message,
                    "foolscap_sidetls.i2p needs SAM 3.1 or newer: i2pd 2.x or Java I2P 0.9.14+",
                )
            return f

        d.addCallbacks(hello, refused).chainDeferred(self.hello)

    # -- commands -------------------------------------------------------------

    def request(
        self, line: str, command: str, topic: str, timeout: Optional[float], raw_after: bool = False
    ) -> Deferred:
        """
        Send one command line; fire with the reply's fields once a reply
        with C{topic} arrives and says RESULT=OK, else fail with
        L{SAMRefused}.  With C{raw_after}, bytes after that reply are held
        for L{attach}.
        """
        assert self._pending is None, "one SAM command at a time"
        if self.lost:
            return defer.fail(SAMConnectionLost(
                "the SAM bridge at %s closed the connection before %s" % (self.where, command)
            ))
        d: Deferred = Deferred(self._cancel)
        self._pending = (d, command, topic, raw_after)
        if timeout is not None:
            self._timer = self._clock.callLater(timeout, self._timedOut, command, timeout)
        self.transport.write(line.encode("utf-8") + b"\n")
        return d

    def next_line(self) -> Deferred:
        """Fire with the next line (an accepted stream's peer line); hold what follows."""
        assert self._pending is None
        d: Deferred = Deferred(self._cancel)
        self._pending = (d, "STREAM ACCEPT", "", True)
        self._drain()
        if self.lost and self._pending is not None and self._pending[0] is d:
            # The bridge closed the socket right after its STREAM STATUS:
            # no peer line will come.
            self._pending = None
            d.errback(SAMConnectionLost(
                "the SAM bridge at %s closed the STREAM ACCEPT connection before a peer arrived" % (self.where,)
            ))
        return d

    def attach(self, app: IProtocol, host: I2PAddress, peer: I2PAddress) -> None:
        """Hand this socket to C{app}, with the bytes already received."""
        self._mode = "data"
        self._app = app
        app.makeConnection(_I2PStreamTransport(self, host, peer))
        held, self._buffer = self._buffer, b""
        if held and not self.lost and not self.app_closed:
            app.dataReceived(held)
        if self.lost and self._app is not None:
            # The bridge closed the stream before it was handed over.
            self._app = None
            app.connectionLost(Failure(error.ConnectionDone()))

    def abort(self) -> None:
        if not self.lost and self.transport is not None:
            self.transport.abortConnection()

    def close(self) -> Deferred:
        """Close; fires once the socket is gone."""
        d = self.when_lost()
        if not self.lost and self.transport is not None:
            self.transport.loseConnection()
        return d

    def when_lost(self) -> Deferred:
        if self.lost:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._lostWaiters.append(d)
        return d

    def _cancel(self, d: Deferred) -> None:
        if self._pending is not None and self._pending[0] is d:
            self._pending = None
            self._stopTimer()
        self.abort()

    def _timedOut(self, command: str, timeout: float) -> None:
        self._timer = None
        pending, self._pending = self._pending, None
        self.abort()
        if pending is not None:
            pending[0].errback(SAMTimeout(
                "the SAM bridge at %s did not answer %s within %d s" % (self.where, command, timeout)
            ))

    def _stopTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    # -- bytes ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._mode == "data":
            if self.app_closed or self._app is None:
                return
            self._app.dataReceived(data)
            return
        self._buffer += data
        self._drain()

    def _drain(self) -> None:
        while self._mode == "lines":
            end = self._buffer.find(b"\n")
            if end == -1:
                if len(self._buffer) > _MAX_LINE:
                    # Reported through the pending command (so a listener
                    # logs it once per retry step, not once per socket).
                    self._buffer = b""
                    pending, self._pending = self._pending, None
                    self._stopTimer()
                    self.abort()
                    if pending is not None:
                        pending[0].errback(I2PError(
                            "the SAM bridge at %s sent a line longer than %d bytes while we waited for the "
                            "answer to %s" % (self.where, _MAX_LINE, pending[1])
                        ))
                    else:
                        log.debug("SAM bridge at {where} sent an over-long line; closing", where=self.where)
                return
            line = self._buffer[:end].rstrip(b"\r").decode("utf-8", "replace")
            self._buffer = self._buffer[end + 1 :]
            self._line(line)

    def _line(self, line: str) -> None:
        self.last_line = _printable(line, 200)
        if line.startswith("PING"):
            self.transport.write(b"PONG" + line[4:].encode("utf-8") + b"\n")
            return
        if line.startswith("PONG"):
            return
        pending = self._pending
        if pending is None:
            log.info("SAM bridge at {where} sent {line!r} unasked", where=self.where, line=line[:200])
            return
        d, command, topic, raw_after = pending
        if not topic:
            # An accepted stream's peer line: what follows is stream data.
            self._pending = None
            self._mode = "hold"
            d.callback(line)
            return
        found, fields = _parse_reply(line)
        if found != topic:
            log.info(
                "SAM bridge at {where} answered {command} with {line!r}; still waiting for {topic}",
                where=self.where, command=command, line=line[:200], topic=topic,
            )
            return
        self._pending = None
        self._stopTimer()
        # DEST REPLY has no RESULT when it succeeds.
        result = fields.get("RESULT", "OK")
        if result != "OK":
            d.errback(SAMRefused(self.where, command, result, fields.get("MESSAGE", "")))
            return
        if raw_after:
            self._mode = "hold"
        d.callback(fields)

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        if reason is None:
            reason = Failure(error.ConnectionDone())
        self.lost = True
        self._stopTimer()
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[0].errback(SAMConnectionLost(
                "the SAM bridge at %s closed the connection while we waited for the "
                "answer to %s (%s); did the I2P router stop?" % (self.where, pending[1], _reason(reason))
            ))
        app, self._app = self._app, None
        if app is not None:
            app.connectionLost(reason)
        waiters, self._lostWaiters = self._lostWaiters, []
        for d in waiters:
            d.callback(None)


class _ConnectionFactory(ClientFactory):
    noisy = False

    def __init__(self, connection: _SAMConnection) -> None:
        self._connection = connection

    def buildProtocol(self, addr: Any) -> _SAMConnection:
        return self._connection


# -- a SAM bridge, and an i2pd we launched ----------------------------------------


class _Bridge:
    """
    How to reach one SAM bridge (and the i2pd behind it, when we launched
    it).  Counts the sessions it creates, for the curious and the tests.
    """

    def __init__(
        self,
        endpoint: Optional[IStreamClientEndpoint],
        where: str,
        reactor: Any = None,
        launcher: Optional["_Launcher"] = None,
    ) -> None:
        self.endpoint = endpoint
        self.where = where
        self._reactor = reactor
        self.launcher = launcher
        self.sessions_created = 0

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            self._reactor = _global_reactor()
        return self._reactor

    async def connect(self, report: Callable[[str], None] = _ignore_status) -> _SAMConnection:
        """A new SAM socket, past HELLO."""
        if self.launcher is not None:
            await self.launcher.ensure_running(report)
        assert self.endpoint is not None
        connection = _SAMConnection(self.where, self.reactor)
        try:
            await self.endpoint.connect(_ConnectionFactory(connection))
        except (CancelledError, error.ConnectingCancelledError):
            raise
        except Exception as e:
            raise SAMUnreachable(self.where, _reason(Failure(e))) from None
        try:
            await connection.hello
        except SAMConnectionLost:
            raise SAMUnreachable(
                self.where, "it closed the connection without answering HELLO; is it a SAM bridge?"
            ) from None
        except SAMTimeout:
            raise SAMUnreachable(
                self.where, "it did not answer HELLO within %d s; is it a SAM bridge?" % (HELLO_TIMEOUT,)
            ) from None
        except BaseException:
            connection.abort()
            raise
        return connection

    async def generate_key(self, report: Callable[[str], None] = _ignore_status) -> str:
        connection = await self.connect(report)
        try:
            fields = await connection.request(
                "DEST GENERATE SIGNATURE_TYPE=%s" % (_SIGNATURE_TYPE,), "DEST GENERATE", "DEST REPLY", HELLO_TIMEOUT
            )
        finally:
            connection.abort()
        key = fields.get("PRIV")
        if not key:
            raise I2PError("the SAM bridge at %s sent DEST REPLY without PRIV" % (self.where,))
        return key


class _Session:
    """
    One SAM session: one I2P destination, kept alive by its control socket,
    shared by every stream of one purpose (dialing, or one listener).

    Opened on first use.  When its control socket closes (the router
    stopped), the next use opens it again; listeners learn of the loss
    through L{on_lost}.
    """

    def __init__(
        self,
        bridge: _Bridge,
        purpose: str,
        nickname: str,
        key: Optional[str],
        options: dict[str, str],
    ) -> None:
        self.bridge = bridge
        self.purpose = purpose
        self.nickname = nickname
        self.key = key
        self.options = options
        self.address: Optional[I2PAddress] = None
        self.created = 0
        self._connection: Optional[_SAMConnection] = None
        self._opening: Optional[Deferred] = None
        self._waiters: list[Deferred] = []
        self._reporters: list[Callable[[str], None]] = []
        self._status: Optional[str] = None
        self._lostCallbacks: list[Callable[[], None]] = []
        self._closeCallbacks: list[Callable[[], None]] = []
        self.closed = False

    def __repr__(self) -> str:
        return "<SAM session %s (%s) at %s%s>" % (
            self.nickname, self.purpose, self.bridge.where, "" if self.alive else ", not open",
        )

    @property
    def alive(self) -> bool:
        return self._connection is not None and not self._connection.lost

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call C{callback} when the bridge drops this (open) session."""
        self._lostCallbacks.append(callback)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call C{callback} once, when L{close} is called."""
        self._closeCallbacks.append(callback)

    def ready(self, report: Callable[[str], None] = _ignore_status) -> Deferred:
        """Fire with this session once it is open, opening it if needed."""
        if self.closed:
            return defer.fail(I2PError("this I2P session (%s) was closed" % (self.nickname,)))
        if self.alive:
            return defer.succeed(self)

        def cancel(d: Deferred) -> None:
            if d in self._waiters:
                self._waiters.remove(d)

        d: Deferred = Deferred(cancel)
        self._waiters.append(d)
        self._reporters.append(report)
        if self._opening is None:
            self._opening = Deferred.fromCoroutine(self._open())
            self._opening.addBoth(self._opened)
        elif self._status is not None:
            report(self._status)
        return d

    def _report(self, status: str) -> None:
        if status == self._status:
            return
        self._status = status
        for report in list(self._reporters):
            report(status)

    async def _open(self) -> "_Session":
        connection = await self.bridge.connect(self._report)
        try:
            self._report(_OPENING_SESSION)
            line = "SESSION CREATE STYLE=STREAM ID=%s DESTINATION=%s" % (self.nickname, self.key or "TRANSIENT")
            if self.key is None:
                line += " SIGNATURE_TYPE=%s" % (_SIGNATURE_TYPE,)
            for name, value in self.options.items():
                line += " %s=%s" % (name, value)
            self.bridge.sessions_created += 1
            self.created += 1
            request = connection.request(line, "SESSION CREATE", "SESSION STATUS", SESSION_TIMEOUT)
            watch = _CreateWatch(self.bridge, connection, request, self._report)
            try:
                fields = await request
            except CancelledError:
                if watch.failure is not None:
                    raise watch.failure from None
                raise
            except SAMTimeout:
                raise watch.timed_out() from None
            except SAMConnectionLost:
                # A launched i2pd stopped for want of peers (by another
                # session's watch): say that rather than "did it stop?".
                why = watch.no_peers()
                if why is None:
                    raise
                raise I2PDFailed(why) from None
            finally:
                watch.stop()
            destination = fields.get("DESTINATION") or self.key
            if not destination:
                raise I2PError("the SAM bridge at %s sent SESSION STATUS without DESTINATION" % (self.bridge.where,))
            address = I2PAddress(_b32(destination))
        except SAMRefused as e:
            connection.abort()
            raise SAMRefused(e.where, e.command, e.result, e.message, _session_advice(e.result)) from None
        except BaseException:
            connection.abort()
            raise
        if self.closed:
            connection.abort()
            raise I2PError("this I2P session (%s) was closed" % (self.nickname,))
        self.address = address
        self._connection = connection
        connection.when_lost().addCallback(self._lost, connection)
        log.info("SAM session {nick} open: {address}", nick=self.nickname, address=address.host)
        return self

    def _opened(self, result: Any) -> None:
        self._opening = None
        self._status = None
        waiters, self._waiters = self._waiters, []
        self._reporters = []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
        return None

    def _lost(self, _: Any, connection: _SAMConnection) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        if self.closed:
            return
        log.info("SAM session {nick} at {where} was closed by the bridge", nick=self.nickname, where=self.bridge.where)
        for callback in list(self._lostCallbacks):
            callback()

    def invalidate(self) -> None:
        """The bridge no longer knows this session (RESULT=INVALID_ID): drop it."""
        if self._connection is not None:
            self._connection.abort()

    def close(self) -> Deferred:
        """Close the session; fires once its socket is gone."""
        if not self.closed:
            self.closed = True
            callbacks, self._closeCallbacks = self._closeCallbacks, []
            for callback in callbacks:
                callback()
        steps = []
        if self._opening is not None:
            self._opening.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            steps.append(connection.close())
        return defer.gatherResults(steps).addCallback(lambda _: None)


class _CreateWatch:
    """
    Watches one SESSION CREATE while the router builds tunnels, so a wait
    that will not end says why: for a launched i2pd, from its log (no
    peers because reseeding failed: fail after its C{reseed_timeout}); for
    an attached router, how long SAM has been silent and what it last said.
    """

    def __init__(
        self, bridge: _Bridge, connection: _SAMConnection, request: Deferred, report: Callable[[str], None]
    ) -> None:
        self._bridge = bridge
        self._connection = connection
        self._request = request
        self._report = report
        self._clock = bridge.reactor
        self._started = self._clock.seconds()
        self._noted = 0.0
        #: Why the session failed, when this watch made it fail.
        self.failure: Optional[I2PError] = None
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(_LOG_POLL, now=False).addErrback(
            lambda f: log.failure("watching SESSION CREATE at {where}", f, where=bridge.where)
        )

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _elapsed(self) -> float:
        return self._clock.seconds() - self._started

    def _tick(self) -> None:
        if self._request.called:
            self.stop()
            return
        launcher = self._bridge.launcher
        elapsed = self._elapsed()
        if launcher is not None and launcher.log is not None:
            text = self.no_peers()
            if text is not None:
                timeout = launcher.reseed_timeout
                if timeout is not None and elapsed >= timeout:
                    self.failure = I2PDFailed(
                        "%s (no SAM session after %d s; launch(reseed_timeout=None) keeps waiting)"
                        % (text, elapsed)
                    )
                    self.stop()
                    self._request.cancel()
                    # Of no use without peers: stopped now (a later use
                    # launches it again) rather than left running.
                    launcher.stop_process()
                    return
                if timeout is None:
                    self._report("opening SAM session: %s; still waiting" % (text,))
                else:
                    self._report("opening SAM session: %s; giving up in %d s" % (text, max(timeout - elapsed, 0)))
                return
        if elapsed - self._noted >= _SESSION_NOTE:
            self._noted = elapsed
            self._report("opening SAM session (can take ~20 s): %s" % (self._silence(),))

    def no_peers(self) -> Optional[str]:
        """Why a launched i2pd has no peers, from its log; None if it does not say."""
        launcher = self._bridge.launcher
        if launcher is None or launcher.log is None:
            return None
        launcher.log.poll()
        why = launcher.log.diagnosis()
        if why is None:
            return None
        return "i2pd has no peers: reseeding failed (%s); this machine cannot reach the I2P network. i2pd's log: %s" % (
            why, launcher.log.path,
        )

    def _silence(self) -> str:
        said = self._connection.last_line
        return "no answer to SESSION CREATE from %s for %d s (the last thing SAM said: %s)" % (
            self._where(), self._elapsed(), repr(said) if said else "nothing",
        )

    def _where(self) -> str:
        launcher = self._bridge.launcher
        if launcher is not None:
            return "the launched i2pd's SAM bridge (%s)" % (self._bridge.where,)
        return "the SAM bridge at %s" % (self._bridge.where,)

    def timed_out(self) -> I2PError:
        """The error for a SESSION CREATE that got no answer in time."""
        said = self._connection.last_line
        text = (
            "the SAM session did not open: %s did not answer SESSION CREATE within %d s (the last thing "
            "SAM said: %s), so the router has built no tunnels -- is it connected to the I2P network?"
            % (self._where(), self._elapsed(), repr(said) if said else "nothing")
        )
        launcher = self._bridge.launcher
        if launcher is not None and launcher.log is not None:
            return SAMTimeout("%s i2pd's log: %s" % (text, launcher.log.path))
        return SAMTimeout(text + " Its log or web console says why")


def _session_advice(result: str) -> str:
    if result == "DUPLICATED_ID":
        return "another session already uses this nickname on that router; pick another"
    if result == "DUPLICATED_DEST":
        return "this destination (key) is already in use on that router"
    if result == "INVALID_KEY":
        return "the router does not accept this private key"
    if result == "I2P_ERROR":
        return "check the session options and the router's log"
    return ""


# -- dialing --------------------------------------------------------------------------


def _parse_hint(hint: str) -> tuple[str, Optional[int]]:
    """C{i2p:ADDRESS} or C{i2p:ADDRESS:PORT}, as Foolscap's own I2P handler reads them."""

    def bad(reason: str) -> InvalidHintError:
        return InvalidHintError(
            "%s (expected 'i2p:ADDRESS' or 'i2p:ADDRESS:PORT', ADDRESS being NAME.i2p "
            "or <52 characters>.b32.i2p)" % (reason,)
        )

    if not isinstance(hint, str) or not hint.startswith("i2p:"):
        raise bad("not an I2P hint: %r" % (hint,))
    if not _HINT_CHARACTERS.match(hint):
        # Also what keeps a line break out of the SAM commands the address
        # goes into ('$' in _I2P_NAME matches before a trailing newline).
        odd = next(c for c in hint if not ("!" <= c <= "~"))
        raise bad(
            "I2P hint %r contains %r, which is not printable ASCII (hints have no "
            "spaces, control or non-ASCII characters)" % (hint, odd)
        )
    parts = hint[len("i2p:") :].split(":")
    if len(parts) > 2:
        raise bad("I2P hint %r has too many ':'" % (hint,))
    host = parts[0]
    if not host:
        raise bad("I2P hint %r has no address" % (hint,))
    if not _I2P_NAME.match(host):
        raise bad("I2P hint %r: %r is not an I2P address" % (hint, host))
    lowered = host.lower()
    if lowered.endswith(".b32.i2p") and not _B32_LABEL.match(lowered[: -len(".b32.i2p")]):
        raise bad("I2P hint %r: a .b32.i2p address has at least 52 characters of a-z and 2-7 before '.b32.i2p'" % (hint,))
    port: Optional[int] = None
    if len(parts) == 2:
        text = parts[1]
        if not text:
            raise bad("I2P hint %r: its port is empty" % (hint,))
        if not (text.isascii() and text.isdigit()) or len(text) > 5 or not 1 <= int(text) <= 65535:
            raise bad("I2P hint %r: port %r is not a number from 1 to 65535" % (hint, text))
        port = int(text)
    return host, port


@implementer(IStreamClientEndpoint)
class _SAMClientEndpoint:
    """Connects to one I2P address through a handler's dialing session."""

    def __init__(self, owner: "I2PHandler", host: str, port: Optional[int], report: Callable[[str], None]) -> None:
        self._owner = owner
        self._host = host
        self._port = port
        self._report = report

    def __repr__(self) -> str:
        return "<I2P client endpoint to %s%s via SAM at %s>" % (
            self._host, ":%d" % self._port if self._port else "", self._owner._bridge.where,
        )

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred:
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        owner = self._owner
        session = await owner._dial_session().ready(self._report)
        self._report("connecting to %s over I2P" % (self._host,))
        connection = await owner._bridge.connect(self._report)
        try:
            destination = owner._lookups.get(self._host.lower())
            if destination is None:
                try:
                    fields = await connection.request(
                        "NAMING LOOKUP NAME=%s" % (self._host,), "NAMING LOOKUP", "NAMING REPLY", SESSION_TIMEOUT
                    )
                except SAMRefused as e:
                    raise SAMRefused(
                        e.where, "NAMING LOOKUP of %s" % (self._host,), e.result, e.message,
                        "I2P found no such destination: is the Tub at that address running and listening on I2P?",
                    ) from None
                destination = fields.get("VALUE", "")
                if self._host.lower().endswith(".b32.i2p"):
                    owner._lookups[self._host.lower()] = destination
            line = "STREAM CONNECT ID=%s DESTINATION=%s SILENT=false" % (session.nickname, destination)
            if self._port:
                line += " TO_PORT=%d" % (self._port,)
            try:
                await connection.request(line, "STREAM CONNECT", "STREAM STATUS", SESSION_TIMEOUT, raw_after=True)
            except SAMRefused as e:
                if e.result == "INVALID_ID":
                    session.invalidate()
                raise SAMRefused(
                    e.where, "STREAM CONNECT to %s" % (self._host,), e.result, e.message, _connect_advice(e.result)
                ) from None
        except BaseException:
            connection.abort()
            raise
        peer = I2PAddress(self._host, self._port, destination)
        assert session.address is not None
        protocol = factory.buildProtocol(peer)
        if protocol is None:
            connection.abort()
            raise error.ConnectError(string="the protocol factory declined the connection to %s" % (self._host,))
        connection.attach(protocol, session.address, peer)
        return protocol


def _connect_advice(result: str) -> str:
    if result in ("CANT_REACH_PEER", "PEER_NOT_FOUND", "TIMEOUT"):
        return "I2P could not reach it: is the Tub at that address running and listening on I2P?"
    if result == "INVALID_ID":
        return "the router lost our session (did it restart?); the next attempt opens a new one"
    return ""


@implementer(IConnectionHintHandler)
class _I2PHints:
    """The raw hint handler: plain SAM endpoints (L{I2PHandler} makes them dialers)."""

    def __init__(self, owner: "I2PHandler") -> None:
        self._owner = owner

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Callable[[str], None]) -> tuple[_SAMClientEndpoint, str]:
        host, port = _parse_hint(hint)
        self._owner._bridge._reactor = self._owner._bridge._reactor or reactor
        return _SAMClientEndpoint(self._owner, host, port, update_status), host

    def describe(self) -> str:
        return "i2p (%s)" % (self._owner._detail(),)


@implementer(IConnectionHintHandler)
class I2PHandler(SideTLSHandler, service.Service):
    """
    A Foolscap connection-hint handler for C{i2p:} hints whose connections
    go through a SAM bridge and are TLS clients (sidetls dialers); also the
    C{sam} argument of L{listen}.

    Made by L{sam_endpoint}, L{default}, L{local_i2p} and L{launch}.  Its one
    dialing session is opened on the first dial (or by L{prepare}) and
    shared by all.  It is a Twisted service: C{h.setServiceParent(tub)}
    closes its sessions (and stops a launched i2pd) when the Tub stops;
    L{listen} does that for a handler that has no parent yet.

    C{handshake_timeout}, C{negotiation_timeout} and C{close_timeout} are
    those of L{foolscap_sidetls.dialer}, for every connection it dials.
    """

    def __init__(
        self,
        bridge: _Bridge,
        options: dict[str, str],
        nickname: Optional[str],
        clock: Optional[IReactorTime] = None,
        handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
        negotiation_timeout: Optional[float] = None,
        close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        SideTLSHandler.__init__(
            self, _I2PHints(self), clock, handshake_timeout, negotiation_timeout, close_timeout
        )
        self._bridge = bridge
        self.options = options
        self._nickname = nickname or "sidetls-dial-%s" % (secrets.token_hex(5),)
        self._session: Optional[_Session] = None
        self._listening: set[_Session] = set()
        self._lookups: dict[str, str] = {}
        self._stopped = False

    def __repr__(self) -> str:
        return "<foolscap_sidetls.i2p handler: %s>" % (self._detail(),)

    def _detail(self) -> str:
        if self._bridge.launcher is not None:
            return self._bridge.launcher.describe()
        return "SAM at %s" % (self._bridge.where,)

    @property
    def sam_endpoint(self) -> IStreamClientEndpoint:
        """The SAM bridge's client endpoint (a launched i2pd's may not answer yet)."""
        assert self._bridge.endpoint is not None
        return self._bridge.endpoint

    @property
    def sam_where(self) -> str:
        """The SAM bridge's address, e.g. C{"tcp:127.0.0.1:7656"}."""
        return self._bridge.where

    @property
    def dial_nickname(self) -> str:
        """The SAM session ID this handler dials with."""
        return self._nickname

    @property
    def launched_pid(self) -> Optional[int]:
        """The process id of the i2pd this handler launched and is running, else None."""
        return self._bridge.launcher.pid if self._bridge.launcher is not None else None

    @property
    def sessions_created(self) -> int:
        """How many SAM sessions have been created through this handler (dialing and listening)."""
        return self._bridge.sessions_created

    def new_destination_key(self) -> "Deferred[str]":
        """
        Have the router make a new destination's private key (SAM's
        C{DEST GENERATE}), without opening a session or listening: what a
        program making a node directory needs, as C{tahoe create-node
        --listen=i2p} does, to write the key file L{listen} will use.
        Fires with the key in I2P base64; L{address_of} gives its
        C{.b32.i2p} address once it is written to a file.
        """
        if self._stopped:
            return defer.fail(I2PError("this I2P handler (%s) was stopped" % (self._detail(),)))
        return defer.ensureDeferred(self._bridge.generate_key())

    def _dial_session(self) -> _Session:
        if self._stopped:
            raise I2PError("this I2P handler (%s) was stopped" % (self._detail(),))
        if self._session is None:
            self._session = _Session(self._bridge, "dial", self._nickname, None, self.options)
        return self._session

    def prepare(self, update_status: Callable[[str], None] = _ignore_status) -> Deferred:
        """
        Open the dialing session now (it takes ~20 s on i2pd) rather than
        on the first dial; fires with None once it is open.
        """
        try:
            session = self._dial_session()
        except I2PError:
            return defer.fail()
        return session.ready(update_status).addCallback(lambda _: None)

    def stop(self) -> Deferred:
        """
        Close this handler's SAM sessions (dialing, and the listeners made
        with it) and stop the i2pd it launched, if any; fires when done.
        """
        self._stopped = True
        steps = []
        if self._session is not None:
            steps.append(self._session.close())
        for session in list(self._listening):
            steps.append(session.close())
        d = defer.gatherResults(steps, consumeErrors=True)
        if self._bridge.launcher is not None:
            launcher = self._bridge.launcher
            d.addBoth(lambda _: launcher.stop())
        return d.addBoth(lambda _: None)

    def stopService(self) -> Deferred:
        service.Service.stopService(self)
        return self.stop()


def _make_handler(
    bridge: _Bridge,
    options: object,
    nickname: object,
    what: str,
    handshake_timeout: Optional[float],
    negotiation_timeout: Optional[float],
    close_timeout: Optional[float],
) -> I2PHandler:
    checked = _check_options(options, what)
    _checkLimits(
        "foolscap_sidetls.i2p." + what, handshake_timeout, negotiation_timeout, close_timeout
    )
    if nickname is not None and (not isinstance(nickname, str) or not _OPTION_KEY.match(nickname)):
        raise ValueError(
            "%s: nickname (the SAM session ID) must be letters, digits, '.', '_' or '-', got %s"
            % (what, _kind(nickname))
        )
    return I2PHandler(
        bridge,
        checked,
        nickname,
        handshake_timeout=handshake_timeout,
        negotiation_timeout=negotiation_timeout,
        close_timeout=close_timeout,
    )


def sam_endpoint(
    sam_client_endpoint: IStreamClientEndpoint,
    options: Optional[Mapping[str, Any]] = None,
    nickname: Optional[str] = None,
    *,
    reactor: Any = None,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
) -> I2PHandler:
    """
    A handler that dials C{i2p:} hints through the SAM bridge at
    C{sam_client_endpoint} (e.g. C{clientFromString(reactor,
    "tcp:127.0.0.1:7656")}).

    @param options: I2CP/SAM options for its sessions, e.g.
        C{{"inbound.length": "1"}}; L{listen} uses them too unless given its own.
    @param nickname: the SAM session ID for dialing (default: a random
        C{sidetls-dial-...}, so two Tubs never share one by accident).
    """
    if not IStreamClientEndpoint.providedBy(sam_client_endpoint):
        raise TypeError(
            "foolscap_sidetls.i2p.sam_endpoint() expects an IStreamClientEndpoint to the "
            "SAM bridge, such as clientFromString(reactor, 'tcp:127.0.0.1:7656'), got %s"
            % (_kind(sam_client_endpoint),)
        )
    bridge = _Bridge(sam_client_endpoint, _where(sam_client_endpoint), reactor)
    return _make_handler(
        bridge, options, nickname, "sam_endpoint()", handshake_timeout, negotiation_timeout, close_timeout
    )


def default(
    reactor: Any,
    options: Optional[Mapping[str, Any]] = None,
    *,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
) -> I2PHandler:
    """A handler for the SAM bridge at 127.0.0.1:7656 (i2pd's and Java I2P's default)."""
    endpoint = TCP4ClientEndpoint(reactor, DEFAULT_SAM_HOST, DEFAULT_SAM_PORT)
    bridge = _Bridge(endpoint, "tcp:%s:%d" % (DEFAULT_SAM_HOST, DEFAULT_SAM_PORT), reactor)
    return _make_handler(
        bridge, options, None, "default()", handshake_timeout, negotiation_timeout, close_timeout
    )


# -- an existing i2pd's configuration -----------------------------------------------


def _read_i2pd_conf(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, inline_comment_prefixes=("#",), comment_prefixes=("#", ";")
    )
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise I2PConfigError("cannot read %s: %s" % (path, e.strerror or e)) from None
    try:
        parser.read_string("[__top__]\n" + text, source=path)
    except configparser.Error as e:
        raise I2PConfigError("cannot parse %s as an i2pd.conf: %s" % (path, e)) from None
    return parser


def _conf_bool(value: str, path: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise I2PConfigError("%s: [sam] %s = %r is neither true nor false" % (path, name, value))


def _find_config(configdir: Union[str, "os.PathLike[str]", None]) -> str:
    if configdir is None:
        tried = []
        for candidate in I2PD_CONFIG_DIRS:
            path = os.path.join(os.path.expanduser(candidate), "i2pd.conf")
            tried.append(path)
            if os.path.isfile(path):
                return path
        raise I2PConfigError(
            "no i2pd.conf found (looked for %s); %s, or pass its directory"
            % (", ".join(tried), _INSTALL_I2PD)
        )
    if not isinstance(configdir, (str, os.PathLike)):
        raise TypeError(
            "local_i2p() expects configdir to be a directory holding i2pd.conf (str), got %s" % (_kind(configdir),)
        )
    path = os.fspath(configdir)
    if os.path.isdir(path):
        path = os.path.join(path, "i2pd.conf")
    if not os.path.isfile(path):
        raise I2PConfigError("%s does not exist; is i2pd configured there?" % (path,))
    return path


def _sam_from_conf(path: str) -> tuple[str, int]:
    """The SAM bridge's host and port an i2pd.conf configures."""
    parser = _read_i2pd_conf(path)
    if not parser.has_section("sam"):
        raise I2PConfigError(
            "%s has no [sam] section, so its SAM bridge's address is unknown; add\n"
            "  [sam]\n  enabled = true\n  address = 127.0.0.1\n  port = 7656\n"
            "to it and restart i2pd" % (path,)
        )
    sam = parser["sam"]
    enabled = _conf_bool(sam.get("enabled", "true"), path, "enabled")
    if not enabled:
        raise I2PConfigError(
            "%s disables the SAM bridge ([sam] enabled = false); set 'enabled = true' "
            "in its [sam] section and restart i2pd" % (path,)
        )
    host = sam.get("address", DEFAULT_SAM_HOST).strip() or DEFAULT_SAM_HOST
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    text = sam.get("port", str(DEFAULT_SAM_PORT)).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise I2PConfigError("%s: [sam] port = %r is not a port number" % (path, text))
    return host, int(text)


def local_i2p(
    configdir: Union[str, "os.PathLike[str]", None] = None,
    options: Optional[Mapping[str, Any]] = None,
    *,
    reactor: Any = None,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
) -> I2PHandler:
    """
    A handler for the SAM bridge of the i2pd configured in C{configdir}
    (its C{i2pd.conf}: C{[sam] enabled/address/port}); with L{None}, the
    first of C{~/.i2pd}, C{/var/lib/i2pd}, C{/etc/i2pd} that has one.

    @raise I2PConfigError: no i2pd.conf, no C{[sam]} section, SAM disabled,
        or a bad port -- the message says what to change.
    """
    path = _find_config(configdir)
    host, port = _sam_from_conf(path)
    if reactor is None:
        reactor = _global_reactor()
    if ":" in host:
        endpoint: IStreamClientEndpoint = TCP6ClientEndpoint(reactor, host, port)
        where = "tcp:[%s]:%d" % (host, port)
    else:
        endpoint = TCP4ClientEndpoint(reactor, host, port)
        where = "tcp:%s:%d" % (host, port)
    bridge = _Bridge(endpoint, "%s (from %s)" % (where, path), reactor)
    return _make_handler(
        bridge, options, None, "local_i2p()", handshake_timeout, negotiation_timeout, close_timeout
    )


# -- launching a private i2pd -------------------------------------------------------


class _I2PDProcess(ProcessProtocol):
    """A launched i2pd: keeps the end of its output and tells when it exits."""

    transport: Any

    def __init__(self) -> None:
        self._tail: deque[str] = deque(maxlen=30)
        self._partial = b""
        self.ended: Optional[Failure] = None
        self._waiting: list[Deferred] = []

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._tail.append(line.decode("utf-8", "replace").rstrip("\r"))

    errReceived = outReceived

    def output(self) -> str:
        lines = list(self._tail)
        if self._partial:
            lines.append(self._partial.decode("utf-8", "replace"))
        return "\n".join(lines)

    def how(self) -> str:
        if self.ended is None:
            return "is running"
        sig = getattr(self.ended.value, "signal", None)
        if sig is not None:
            return "was killed by signal %s" % (sig,)
        return "exited with status %s" % (getattr(self.ended.value, "exitCode", None),)

    def processEnded(self, reason: Failure) -> None:
        self.ended = reason
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def when_ended(self) -> Deferred:
        if self.ended is not None:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def terminate(self, reactor: IReactorTime, grace: float = 5.0) -> Deferred:
        """SIGTERM, then SIGKILL after C{grace} s; fires once the process is gone."""
        if self.ended is not None or self.transport is None:
            return defer.succeed(None)
        ended = self.when_ended()
        try:
            self.transport.signalProcess("TERM")
        except error.ProcessExitedAlready:
            return ended

        def kill() -> None:
            if self.ended is None:
                try:
                    self.transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass

        timer = reactor.callLater(grace, kill)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return ended.addBoth(done)


def _find_i2pd(executable: Optional[str]) -> str:
    if executable is not None:
        if not isinstance(executable, (str, os.PathLike)):
            raise TypeError("launch() expects executable to be a path (str) or None, got %s" % (_kind(executable),))
        executable = os.fspath(executable)
        if os.sep not in executable:
            found = shutil.which(executable, path=_search_path())
            if found is None:
                raise I2PDNotFound(
                    "i2pd executable %r not found on PATH or in %s; %s, or pass the path of an i2pd executable"
                    % (executable, ", ".join(I2PD_SEARCH_DIRS), _INSTALL_I2PD)
                )
            return found
        if not os.path.exists(executable):
            raise I2PDNotFound(
                "i2pd executable %r does not exist; %s, or pass the path of an i2pd executable"
                % (executable, _INSTALL_I2PD)
            )
        if os.path.isdir(executable) or not os.access(executable, os.X_OK):
            raise I2PDNotFound("%r is not an executable file" % (executable,))
        return os.path.abspath(executable)
    found = shutil.which("i2pd", path=_search_path())
    if found is None:
        raise I2PDNotFound(
            "i2pd executable not found on PATH or in %s; %s, or pass executable='/path/to/i2pd'"
            % (", ".join(I2PD_SEARCH_DIRS), _INSTALL_I2PD)
        )
    return found


def _search_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", os.defpath)] + list(I2PD_SEARCH_DIRS))


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


#: i2pd settings a launched i2pd needs and the caller may not change.
_FIXED_SETTINGS = {
    "datadir": "is the data_directory argument",
    "conf": "is written by launch()",
    "tunconf": "is set by launch() (no client tunnels)",
    "tunnelsdir": "is set by launch() (no client tunnels)",
    "pidfile": "is kept in the data directory",
    "daemon": "must be false: launch() supervises the process",
    "service": "must be false: launch() chooses the directories",
    "sam.enabled": "must be true: the handler talks to i2pd through SAM",
    "sam.address": "must be 127.0.0.1: the handler connects there",
}


def _check_config(config: object) -> dict[str, str]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(
            "launch() expects config to be a dict of i2pd settings such as "
            "{'netid': 99, 'ntcp2.port': 12345}, got %s" % (_kind(config),)
        )
    checked = {}
    for key, value in config.items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_.]+)?$", key):
            raise ValueError(
                "launch(): config key %r is not an i2pd setting name; use i2pd's command-line "
                "names without '--': 'netid', 'ntcp2.port', 'reseed.urls'" % (key,)
            )
        if key in _FIXED_SETTINGS:
            raise ValueError("launch(): config may not set %r: it %s" % (key, _FIXED_SETTINGS[key]))
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, str)):
            text = str(value)
        else:
            raise TypeError("launch(): config %r must be a str, int or bool, got %s" % (key, _kind(value)))
        if "\n" in text or "\r" in text:
            raise ValueError("launch(): config %r must be one line" % (key,))
        checked[key] = text
    if "sam.port" in checked:
        port = checked["sam.port"]
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("launch(): config 'sam.port' must be a port number, got %r" % (port,))
    return checked


def _i2pd_conf(settings: dict[str, str]) -> str:
    """An i2pd.conf: top-level settings first, then one [section] per prefix."""
    top = []
    sections: dict[str, list[str]] = {}
    for key, value in settings.items():
        if "." in key:
            section, name = key.split(".", 1)
            sections.setdefault(section, []).append("%s = %s" % (name, value))
        else:
            top.append("%s = %s" % (key, value))
    lines = ["# written by foolscap_sidetls.i2p.launch()"] + top
    for section, entries in sections.items():
        lines += ["", "[%s]" % (section,)] + entries
    return "\n".join(lines) + "\n"


class _I2PDLog:
    """
    What a launched i2pd's log says about its peers, read incrementally.

    Why: an i2pd that cannot reseed has no peers and SAM just leaves
    SESSION CREATE unanswered; only the log says why.  The log is treated
    as hostile: at most L{_LOG_READ} bytes per L{poll}, lines cut at
    L{_LOG_LINE} characters, reasons shown printable and short.  Lines
    written before C{start_at} (an earlier run in the same data directory)
    are not read.
    """

    def __init__(self, path: str, start_at: int = 0) -> None:
        self.path = path
        self._offset = start_at
        self._partial = b""
        self._skipping = False
        #: Reseed attempts that failed, and the last failure's words.
        self.reseed_errors = 0
        self.reseed_reason: Optional[str] = None
        #: i2pd gave up reseeding ("Failed to reseed from servers").
        self.reseed_failed = False
        #: i2pd said it has no peers to build tunnels with.
        self.no_peers = False

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self._offset:
                    # Truncated or replaced: read it from the start.
                    self._offset = 0
                    self._partial = b""
                    self._skipping = False
                f.seek(self._offset)
                data = f.read(_LOG_READ)
        except OSError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            if self._skipping:
                # The end of an over-long line: already counted.
                self._skipping = False
                continue
            self.line(raw[:_LOG_LINE].decode("utf-8", "replace"))
        if len(self._partial) > _LOG_LINE:
            # An over-long line: its start is read, the rest skipped.
            if not self._skipping:
                self.line(self._partial[:_LOG_LINE].decode("utf-8", "replace"))
            self._partial = b""
            self._skipping = True

    def line(self, line: str) -> None:
        """One log line (C{HH:MM:SS@NNN/level - Component: text})."""
        _, sep, text = line.partition(" - ")
        if not sep:
            return
        text = text.strip()
        if text.startswith("Reseed: "):
            what = text[len("Reseed: "):]
            if what.startswith("Failed to reseed from servers"):
                self.reseed_failed = True
            elif what.startswith(("Couldn't connect to ", "No reseed servers specified")) or "failed" in what.lower():
                if not what.startswith("SU3 download failed"):
                    self.reseed_errors += 1
                    self.reseed_reason = _printable(what, 200)
        elif "no peers available" in text or text.startswith("Tunnel: Can't find any router"):
            self.no_peers = True

    def diagnosis(self) -> Optional[str]:
        """Why i2pd has no peers, when its log says it could not reseed; else None."""
        if not self.reseed_failed:
            return None
        reason = self.reseed_reason or "no reseed server answered"
        if self.reseed_errors > 1:
            reason = "%d attempts; the last: %s" % (self.reseed_errors, reason)
        return reason


class _Launcher:
    """Starts (and restarts, if it died) one private i2pd, and stops it."""

    def __init__(
        self,
        executable: str,
        data_directory: Optional[str],
        config: dict[str, str],
        reactor: Any,
        reseed_timeout: Optional[float] = RESEED_TIMEOUT,
    ) -> None:
        self.executable = executable
        self.reseed_timeout = reseed_timeout
        #: The running i2pd's log, when it writes one to a file.
        self.log: Optional[_I2PDLog] = None
        self._given_directory = data_directory
        self._config = config
        self._reactor = reactor
        self.sam_port = int(config.get("sam.port") or _free_port())
        self.data_directory: Optional[str] = data_directory
        self._temporary: Optional[str] = None
        self.process: Optional[_I2PDProcess] = None
        self._starting: Optional[Deferred] = None
        self._shutdownTrigger: Any = None
        self._stopped = False
        self.bridge: Optional[_Bridge] = None

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            self._reactor = _global_reactor()
        return self._reactor

    @property
    def pid(self) -> Optional[int]:
        """The running i2pd's process id, or None."""
        if self.process is None or self.process.ended is not None or self.process.transport is None:
            return None
        return self.process.transport.pid

    def describe(self) -> str:
        return "launched i2pd, SAM at tcp:127.0.0.1:%d" % (self.sam_port,)

    def settings(self, datadir: str) -> dict[str, str]:
        settings = {
            "log": "file",
            "logfile": os.path.join(datadir, "i2pd.log"),
            "loglevel": "warn",
            "daemon": "false",
            "service": "false",
            "http.enabled": "false",
            "httpproxy.enabled": "false",
            "socksproxy.enabled": "false",
            "bob.enabled": "false",
            "i2cp.enabled": "false",
            "i2pcontrol.enabled": "false",
            "sam.enabled": "true",
            "sam.address": "127.0.0.1",
            "sam.port": str(self.sam_port),
        }
        if not os.path.isdir(os.path.join(datadir, "certificates")) and os.path.isdir(_DEBIAN_CERTIFICATES):
            settings["certsdir"] = _DEBIAN_CERTIFICATES
        settings.update(self._config)
        return settings

    async def ensure_running(self, report: Callable[[str], None]) -> None:
        if self._stopped:
            raise I2PError("this launched i2pd was stopped")
        if self.process is not None and self.process.ended is None and self._starting is None:
            return
        starting = self._starting
        if starting is None:
            # Kept here too: a start that fails at once clears _starting.
            starting = self._starting = Deferred.fromCoroutine(self._start(report))

            def done(result: Any) -> Any:
                self._starting = None
                return result

            starting.addBoth(done)
        else:
            report("launching i2pd")
        await _observe(starting)

    async def _start(self, report: Callable[[str], None]) -> None:
        report("launching i2pd")
        if self.process is not None and self.process.ended is not None:
            log.warn("launched i2pd {how}; starting it again", how=self.process.how())
        datadir = self.data_directory
        if datadir is None:
            datadir = self._temporary = tempfile.mkdtemp(prefix="sidetls-i2pd-")
            self.data_directory = datadir
        os.makedirs(datadir, mode=0o700, exist_ok=True)
        conf = os.path.join(datadir, "i2pd.conf")
        tunconf = os.path.join(datadir, "tunnels.conf")
        tunnelsdir = os.path.join(datadir, "tunnels.d")
        settings = self.settings(datadir)
        with open(conf, "w", encoding="utf-8") as f:
            f.write(_i2pd_conf(settings))
        self.log = None
        if settings.get("log") == "file" and settings.get("logfile"):
            logfile = os.path.join(datadir, settings["logfile"])
            try:
                start_at = os.stat(logfile).st_size
            except OSError:
                start_at = 0
            self.log = _I2PDLog(logfile, start_at)
        with open(tunconf, "w", encoding="utf-8") as f:
            f.write("# no client tunnels: foolscap_sidetls uses SAM\n")
        os.makedirs(tunnelsdir, exist_ok=True)
        args = [
            self.executable,
            "--conf", conf,
            "--tunconf", tunconf,
            "--tunnelsdir", tunnelsdir,
            "--datadir", datadir,
            "--pidfile", os.path.join(datadir, "i2pd.pid"),
        ]
        process = _I2PDProcess()
        self.process = process
        try:
            # Through a new process group (the exec keeps the pid): a
            # terminal's Ctrl-C then reaches only us, and we stop i2pd.
            spawn_in_own_group(self.reactor, process, self.executable, args, env=dict(os.environ), path=datadir)
        except OSError as e:
            raise I2PDFailed("could not start %s: %s" % (self.executable, e)) from None
        if self._shutdownTrigger is None:
            self._shutdownTrigger = self.reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        try:
            await self._await_sam(process)
        except BaseException:
            await process.terminate(self.reactor)
            raise

    async def _await_sam(self, process: _I2PDProcess) -> None:
        assert self.bridge is not None
        endpoint = self.bridge.endpoint
        assert endpoint is not None
        deadline = self.reactor.seconds() + LAUNCH_TIMEOUT
        delay = 0.05
        while True:
            if process.ended is not None:
                raise I2PDFailed(
                    "the launched i2pd (%s) %s before its SAM bridge answered on 127.0.0.1:%d; "
                    "its output:\n%s\nits log: %s"
                    % (self.executable, process.how(), self.sam_port, process.output() or "(none)",
                       self._log_tail())
                )
            connection = _SAMConnection(self.bridge.where, self.reactor)
            try:
                await endpoint.connect(_ConnectionFactory(connection))
                await connection.hello
                connection.abort()
                return
            except CancelledError:
                connection.abort()
                raise
            except Exception as e:
                connection.abort()
                last = str(e) or type(e).__name__
            if self.reactor.seconds() >= deadline:
                raise I2PDFailed(
                    "the launched i2pd's SAM bridge did not answer on 127.0.0.1:%d within %d s (%s); "
                    "its log: %s" % (self.sam_port, LAUNCH_TIMEOUT, last, self._log_tail())
                )
            await task.deferLater(self.reactor, delay, lambda: None)
            delay = min(delay * 2, 0.5)

    def stop_process(self) -> Deferred:
        """Stop the running i2pd, but not this launcher: the next use starts one again."""
        process = self.process
        if process is None:
            return defer.succeed(None)
        d = process.terminate(self.reactor)
        d.addErrback(lambda f: log.failure("stopping the launched i2pd", f))
        return d

    def _log_tail(self) -> str:
        if self.data_directory is None:
            return "(none)"
        path = os.path.join(self.data_directory, "i2pd.log")
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                lines = f.readlines()[-15:]
        except OSError:
            return "(no %s)" % (path,)
        return "%s:\n%s" % (path, "".join(lines).rstrip())

    def stop(self) -> Deferred:
        """Stop i2pd (SIGTERM, then SIGKILL after 5 s); remove a temporary data directory."""
        self._stopped = True
        if self._starting is not None:
            self._starting.cancel()
        if self._shutdownTrigger is not None:
            self.reactor.removeSystemEventTrigger(self._shutdownTrigger)
            self._shutdownTrigger = None
        process = self.process
        d = process.terminate(self.reactor) if process is not None else defer.succeed(None)

        def clean(_: Any) -> None:
            if self._temporary is not None:
                shutil.rmtree(self._temporary, ignore_errors=True)
                self._temporary = None

        return d.addBoth(clean)


def launch(
    executable: Optional[str] = None,
    data_directory: Optional[str] = None,
    config: Optional[Mapping[str, Any]] = None,
    *,
    options: Optional[Mapping[str, Any]] = None,
    reactor: Any = None,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    reseed_timeout: Optional[float] = RESEED_TIMEOUT,
) -> I2PHandler:
    """
    A handler whose SAM bridge belongs to an i2pd of its own, started on
    first use (Foolscap's status: C{"launching i2pd"}) with SAM on a free
    loopback port, every other service (web console, proxies, BOB, I2CP)
    off, and client tunnels from nowhere.  Stopped with the handler
    (C{h.stop()}, or the Tub when C{h.setServiceParent(tub)} or L{listen}
    attached it); started again if it dies while in use.

    @param executable: the i2pd program (default: C{i2pd} on PATH or /usr/sbin).
    @param data_directory: i2pd's data directory (router identity, netDb);
        default: a temporary one, removed when i2pd stops.
    @param config: more i2pd settings, by their command-line names without
        C{--}: C{{"netid": 99, "ntcp2.port": 12345, "reseed.urls": ""}}.
    @param options: I2CP/SAM options for the handler's sessions.
    @param reseed_timeout: an i2pd that cannot reseed has no peers and
        never opens a session; when its log says reseeding failed, a
        session still not open this many seconds after it was asked for
        fails with L{I2PDFailed} saying so (and naming the log).  L{None}:
        keep waiting (e.g. for peers that will come later); the status
        still says why it waits.
    @raise I2PDNotFound: no i2pd executable ("install the Debian/Ubuntu
        package 'i2pd'").
    """
    found = _find_i2pd(executable)
    if data_directory is not None and not isinstance(data_directory, (str, os.PathLike)):
        raise TypeError("launch() expects data_directory to be a path (str) or None, got %s" % (_kind(data_directory),))
    settings = _check_config(config)
    if reseed_timeout is not None and (
        isinstance(reseed_timeout, bool)
        or not isinstance(reseed_timeout, (int, float))
        or not 0 < reseed_timeout < float("inf")
    ):
        raise ValueError(
            "launch(): reseed_timeout must be a number of seconds greater than 0, or None to keep "
            "waiting for peers, got %s" % (_kind(reseed_timeout),)
        )
    directory = os.path.abspath(os.fspath(data_directory)) if data_directory is not None else None
    launcher = _Launcher(found, directory, settings, reactor, reseed_timeout)
    endpoint = TCP4ClientEndpoint(reactor if reactor is not None else _global_reactor(), "127.0.0.1", launcher.sam_port)
    bridge = _Bridge(endpoint, "tcp:127.0.0.1:%d" % (launcher.sam_port,), reactor, launcher)
    launcher.bridge = bridge
    return _make_handler(
        bridge, options, None, "launch()", handshake_timeout, negotiation_timeout, close_timeout
    )


# -- listening --------------------------------------------------------------------------


@implementer(IListeningPort)
class _SAMListeningPort:
    """
    A listening session's accepting sockets: keeps a few C{STREAM ACCEPT}s
    open, hands each incoming stream to the factory, and reopens the
    session (same key, same address) if the router drops it.

    Every failure -- a STREAM ACCEPT refused, closed before a peer came, or
    answered with a bad peer line; a bridge that does not answer HELLO; the
    session lost, or not reopened -- is a step of one backoff: one retry
    pending at a time, one warning per step, the wait doubling up to
    L{_RETRY_MAX}.  So a bridge that fails every socket costs a few sockets
    per step rather than a tight reconnect loop, and a failure repeated on
    each of the pending accepts is logged once.
    """

    def __init__(self, session: _Session, factory: IProtocolFactory, port: Optional[int]) -> None:
        self._session = session
        self._factory = factory
        self._port = port
        self._accepts: set[_SAMConnection] = set()
        self._opening = 0
        self._target = _PENDING_ACCEPTS
        self._stopped = False
        self._tasks: set[Deferred] = set()
        self._backoff = backoffPolicy(_RETRY_FIRST, _RETRY_MAX, 2.0, jitter=lambda: 0.0)
        #: The pending retry, if any: while it is, nothing else is tried.
        self._retry: Optional[IDelayedCall] = None
        #: Backoff steps since the last real success.
        self.failures = 0
        self._lastRetry: Optional[float] = None
        session.on_lost(self._sessionLost)

    def __repr__(self) -> str:
        return "<I2P listening port %s (%s)>" % (self.getHost(), self._session.nickname)

    @property
    def _reactor(self) -> Any:
        return self._session.bridge.reactor

    def start(self) -> Deferred:
        """Fire with this port once the session is open and an accept is waiting."""
        d = self._session.ready()

        def opened(_: Any) -> Deferred:
            return Deferred.fromCoroutine(self._accept(first=True))

        return d.addCallback(opened).addCallback(lambda _: self)

    def startListening(self) -> None:
        pass

    def getHost(self) -> I2PAddress:
        address = self._session.address
        host = address.host if address is not None else "(not open)"
        return I2PAddress(host, self._port)

    def stopListening(self) -> Deferred:
        self._stopped = True
        self._cancelRetry()
        for job in list(self._tasks):
            job.cancel()
        steps = [c.close() for c in list(self._accepts)]
        steps.append(self._session.close())
        return defer.gatherResults(steps, consumeErrors=True).addBoth(lambda _: None)

    def _track(self, job: Deferred) -> None:
        """Keep C{job} until it is done, so L{stopListening} can cancel it."""
        def done(result: Any) -> None:
            self._tasks.discard(job)
            if isinstance(result, Failure) and not result.check(CancelledError):
                log.warn("I2P listener {host}: {why}", host=self.getHost().host, why=str(result.value))

        self._tasks.add(job)
        job.addBoth(done)

    def _fill(self) -> None:
        """Open STREAM ACCEPTs up to the target, unless a retry is pending (it will)."""
        while (
            not self._stopped
            and self._retry is None
            and self._session.alive
            and len(self._accepts) + self._opening < self._target
        ):
            self._track(Deferred.fromCoroutine(self._accept()))

    async def _accept(self, first: bool = False) -> None:
        self._opening += 1
        connection: Optional[_SAMConnection] = None
        try:
            connection = await self._session.bridge.connect()
            await connection.request(
                "STREAM ACCEPT ID=%s SILENT=false" % (self._session.nickname,),
                "STREAM ACCEPT", "STREAM STATUS", HELLO_TIMEOUT,
            )
        except CancelledError:
            if connection is not None:
                connection.abort()
            self._opening -= 1
            return
        except Exception as e:
            self._opening -= 1
            if connection is not None:
                connection.abort()
            if first:
                raise
            self._acceptFailed(e)
            return
        self._opening -= 1
        self._accepts.add(connection)
        # Not yet a success: the bridge may still close this socket or send
        # a bad peer line, so the backoff is left as it is.
        if first:
            self._fill()
            self._track(Deferred.fromCoroutine(self._wait(connection)))
            return
        await self._wait(connection)

    async def _wait(self, connection: _SAMConnection) -> None:
        try:
            line = await connection.next_line()
        except CancelledError:
            self._accepts.discard(connection)
            connection.abort()
            return
        except Exception as e:
            # The accepting socket closed: the session went (its loss
            # reopens it), we stopped, or the bridge dropped this accept.
            self._accepts.discard(connection)
            if not self._stopped and self._session.alive:
                self._retryLater(str(e))
            return
        self._accepts.discard(connection)
        destination, _, rest = line.partition(" ")
        try:
            host = _b32(destination)
        except ValueError as e:
            connection.abort()
            self._retryLater(
                "the SAM bridge at %s sent a bad peer line %r (%s; expected an I2P destination in "
                "base64, then FROM_PORT=... TO_PORT=...)" % (connection.where, line[:100], e)
            )
            return
        # An accepted, well-formed peer: the bridge works again.
        self._succeeded()
        fields = _parse_reply("PEER LINE " + rest)[1]
        from_port = fields.get("FROM_PORT")
        peer = I2PAddress(host, int(from_port) if from_port and from_port.isdigit() and int(from_port) else None, destination)
        protocol = self._factory.buildProtocol(peer)
        if protocol is None:
            connection.abort()
            return
        assert self._session.address is not None
        connection.attach(protocol, self.getHost(), peer)

    def _acceptFailed(self, e: Exception) -> None:
        if self._stopped:
            return
        if isinstance(e, SAMRefused) and e.result == "INVALID_ID":
            # The bridge forgot the session: drop it; the retry reopens it.
            self._session.invalidate()
            self._retryLater("the SAM bridge no longer knows the session (%s); reopening it" % (e,))
            return
        if isinstance(e, SAMRefused) and self._accepts and self._target > 1:
            # This bridge allows one pending STREAM ACCEPT per session.
            self._target = 1
            log.info("I2P listener {host}: the SAM bridge allows one pending STREAM ACCEPT ({e})",
                     host=self.getHost().host, e=str(e))
            return
        self._retryLater("could not open a STREAM ACCEPT: %s" % (e,))

    def _retryLater(self, why: str) -> None:
        """
        One failure: start a backoff step, or -- when one is pending --
        fold it into that step, so a bridge failing all our sockets at once
        is logged (and retried) once.
        """
        if self._stopped:
            return
        if self._retry is not None:
            log.debug("I2P listener {host}: {why} (retry already scheduled)", host=self.getHost().host, why=why)
            return
        if self._lastRetry is not None and self._reactor.seconds() - self._lastRetry >= _RETRY_RESET:
            # The last retry worked for a good while: this is a new failure.
            self.failures = 0
        delay = self._backoff(self.failures)
        self.failures += 1
        log.warn(
            "I2P listener {host}: {why}; retrying in {delay} s",
            host=self.getHost().host, why=why, delay="%g" % (delay,), failures=self.failures,
        )
        self._retry = self._reactor.callLater(delay, self._retryNow)

    def _retryNow(self) -> None:
        self._retry = None
        self._lastRetry = self._reactor.seconds()
        if self._stopped:
            return
        if self._session.alive:
            self._fill()
        else:
            self._recover()

    def _cancelRetry(self) -> None:
        if self._retry is not None:
            if self._retry.active():
                self._retry.cancel()
            self._retry = None

    def _succeeded(self) -> None:
        self.failures = 0
        if self._session.alive:
            # Refill now rather than when a pending retry fires.
            self._cancelRetry()
        self._fill()

    def _sessionLost(self) -> None:
        if self._stopped:
            return
        for connection in list(self._accepts):
            connection.abort()
        self._accepts.clear()
        self._retryLater("the SAM session was lost; reopening it")

    def _recover(self) -> None:
        if self._stopped or self._session.closed:
            return
        d = self._session.ready()

        def reopened(_: Any) -> None:
            log.info("I2P listener {host}: SAM session reopened", host=self.getHost().host)
            self._fill()

        def failed(f: Failure) -> None:
            if f.check(CancelledError) or self._stopped:
                return
            self._retryLater("reopening the SAM session failed: %s" % (f.value,))

        self._track(d.addCallbacks(reopened, failed))


@implementer(IStreamServerEndpoint)
class _SAMServerEndpoint:
    """Listens on one listening session's destination."""

    def __init__(self, session: _Session, port: Optional[int]) -> None:
        self._session = session
        self._port = port
        self._listening: list[Deferred] = []
        self.port: Optional[_SAMListeningPort] = None
        self.failure: Optional[Failure] = None

    def __repr__(self) -> str:
        address = self._session.address
        return "<I2P server endpoint %s via SAM at %s>" % (
            address.host if address else self._session.nickname, self._session.bridge.where,
        )

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred:
        port = _SAMListeningPort(self._session, protocolFactory, self._port)
        d = port.start()

        def started(result: Any) -> Any:
            if isinstance(result, Failure):
                # Foolscap's Listener adds no errback to listen(); report
                # the failure through when_listening() (and the log)
                # instead of leaving it unhandled there.
                self.failure = result
                log.warn("I2P listener via {where} failed: {why}", where=self._session.bridge.where, why=str(result.value))
                result = None
            else:
                self.port = result
            waiting, self._listening = self._listening, []
            for w in waiting:
                w.callback(None)
            return result

        return d.addBoth(started)

    def when_listening(self) -> Deferred:
        """Fires (with None) once a L{listen} has succeeded or failed."""
        if self.port is not None or self.failure is not None:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._listening.append(d)
        return d


#: Destinations this process listens on, per SAM bridge: I2P has one
#: session per destination (and i2pd 2.45 does not refuse a second).
_LISTENING: set[tuple[str, str]] = set()


def listen(
    tub: Any,
    sam: Union[I2PHandler, IStreamClientEndpoint],
    keyfile: Union[str, "os.PathLike[str]"],
    port: Optional[int] = None,
    options: Optional[Mapping[str, Any]] = None,
    *,
    nickname: Optional[str] = None,
    reactor: Any = None,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    max_negotiating: Optional[int] = None,
    update_status: Callable[[str], None] = _ignore_status,
) -> Deferred:
    """
    Make C{tub} listen on an I2P destination; fires with its hint,
    C{"i2p:<52 chars>.b32.i2p"} (or C{...:PORT}), for C{tub.setLocation}.

    The destination's private key is kept in C{keyfile}: made through SAM
    and written there (mode 0600) if missing, reused if present (the same
    address across restarts; txi2p's key files work too).  A SAM session
    of its own is opened (~20 s on i2pd), then the Tub listens through a
    L{foolscap_sidetls.listener} -- each accepted stream is the TLS server
    -- and the Deferred fires once the Tub is listening (when the Tub is
    not running yet, once the listener is in place).  If the router drops
    the session, it is reopened with the same key.  When the Tub stops, so
    does the listener and its session.  On failure nothing is left: no
    listener, no session.

    @param sam: a handler from L{sam_endpoint}, L{default}, L{local_i2p} or
        L{launch} (a launched i2pd then stops with this Tub, unless the
        handler already had a service parent), or an IStreamClientEndpoint
        to a SAM bridge.
    @param port: an I2P port to put in the hint; dialers send it as
        C{TO_PORT}.  The session accepts streams to any port.
    @param options: I2CP/SAM options for the listening session (default:
        the handler's).
    @param handshake_timeout: as for L{foolscap_sidetls.listener}, as are
        the next three.
    @param negotiation_timeout: seconds an incoming connection may take to
        finish negotiating; without it a flood of streams that open and say
        nothing is held until Foolscap's own 120 s negotiation timeout.
    @param close_timeout: seconds the peer gets to finish a close.
    @param max_negotiating: at most this many incoming connections
        negotiating at once (see L{foolscap_sidetls.listener} for which one
        a new connection beyond that drops).
    @param update_status: called with what opening the listening session
        waits for, in words (C{"launching i2pd"}, C{"opening SAM session
        ..."}, or why it does not open: a launched i2pd without peers, an
        attached router silent for N s).
    """
    from foolscap.api import Tub

    if not isinstance(tub, Tub):
        raise TypeError("foolscap_sidetls.i2p.listen() expects a foolscap.api.Tub, got %s" % (_kind(tub),))
    if isinstance(sam, I2PHandler):
        handler = sam
        attach = handler.parent is None
    elif IStreamClientEndpoint.providedBy(sam):
        handler = sam_endpoint(sam, options, reactor=reactor)
        attach = True
    else:
        raise TypeError(
            "foolscap_sidetls.i2p.listen() expects sam to be a handler from sam_endpoint(), "
            "default(), local_i2p() or launch(), or an IStreamClientEndpoint to the SAM bridge, "
            "got %s" % (_kind(sam),)
        )
    if handler._stopped:
        raise ValueError("listen(): the I2P handler %r was stopped" % (handler,))
    _checkLimits(
        "foolscap_sidetls.i2p.listen()",
        handshake_timeout,
        negotiation_timeout,
        close_timeout,
        max_negotiating,
    )
    if not isinstance(keyfile, (str, os.PathLike)):
        raise TypeError("listen() expects keyfile to be a path (str), got %s" % (_kind(keyfile),))
    path = os.fspath(keyfile)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError("listen(): keyfile %r: directory %r does not exist" % (path, directory))
    _check_port("listen(): port", port, allow_none=True)
    if not callable(update_status):
        raise TypeError("listen() expects update_status to be a callable taking a str, got %s" % (_kind(update_status),))
    checked = _check_options(options, "listen()") if options is not None else handler.options
    if nickname is not None and (not isinstance(nickname, str) or not _OPTION_KEY.match(nickname)):
        raise ValueError("listen(): nickname must be letters, digits, '.', '_' or '-', got %s" % (_kind(nickname),))
    key = _read_key(path)
    bridge = handler._bridge
    if reactor is not None and bridge._reactor is None:
        bridge._reactor = reactor
    if key is not None:
        _claim(bridge, _b32(key))

    state: dict[str, Any] = {"session": None, "listener": None, "claimed": key is not None}

    async def run() -> str:
        nonlocal key
        if key is None:
            key = await bridge.generate_key(update_status)
            address = _b32(key)
            _claim(bridge, address)
            state["claimed"] = True
            write_private(path, key)
        address = _b32(key)
        session = _Session(
            bridge, "listen", nickname or "sidetls-listen-%s-%s" % (address[:8], secrets.token_hex(3)), key, checked
        )
        state["session"] = session
        handler._listening.add(session)

        def closed() -> None:
            handler._listening.discard(session)
            _LISTENING.discard((bridge.where, address))

        session.on_close(closed)
        await session.ready(update_status)
        endpoint = _SAMServerEndpoint(session, port)
        state["listener"] = tub.listenOn(
            listener(
                endpoint,
                handshake_timeout=handshake_timeout,
                negotiation_timeout=negotiation_timeout,
                close_timeout=close_timeout,
                max_negotiating=max_negotiating,
            )
        )
        if tub.running:
            await endpoint.when_listening()
            if endpoint.failure is not None:
                endpoint.failure.raiseException()
        if attach and handler.parent is None:
            # Attached last: detaching a service stops it.
            handler.setServiceParent(tub)
        log.info("Tub {tubid} listening on I2P at {address}", tubid=tub.getShortTubID(), address=address)
        return "i2p:%s" % (address,) + (":%d" % (port,) if port else "")

    def undo(f: Failure) -> Failure:
        listening = state["listener"]
        if listening is not None and listening in tub.getListeners():
            tub.stopListeningOn(listening)
        session = state["session"]
        if session is not None:
            session.close()
        if key is not None and state["claimed"]:
            _LISTENING.discard((bridge.where, _b32(key)))
        if not isinstance(sam, I2PHandler):
            handler.stop()
        return f

    return Deferred.fromCoroutine(run()).addErrback(undo)


def _claim(bridge: _Bridge, address: str) -> None:
    if (bridge.where, address) in _LISTENING:
        raise ValueError(
            "listen(): this process already listens on %s through the SAM bridge at %s; "
            "I2P has one session per destination, so use another keyfile" % (address, bridge.where)
        )
    _LISTENING.add((bridge.where, address))
