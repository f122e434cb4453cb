"""
The relay's wire protocol, in one place: what each kind of connection says
first, the control channel's lines, and the limits on both.

One port carries three kinds of connection, told apart by the first
header block (HTTP-like lines ending in an empty line, at most
L{MAX_HEADER} bytes)::

  dialer   GET /id/<tubid> HTTP/1.1 ...            any Foolscap dialer, stock
                                                   included; the relay keeps
                                                   the block and splices
  control  GET /relay/v1/control HTTP/1.1 ...      a hidden Tub registering
           <- HTTP/1.1 101 Switching Protocols     then TLS: relay = server,
                                                   hidden Tub = client with
                                                   its own Tub certificate
  stream   GET /relay/v1/stream/<token> HTTP/1.1   a hidden Tub answering
           <- HTTP/1.1 200 Relayed                 CONNECT; the dialer's bytes
                                                   follow, from its first

Anything else is answered C{HTTP/1.1 400 Bad Request: <why>; <what is
accepted>} and closed.  Errors a dialer meets are HTTP status lines too,
because that is where Foolscap's C{Negotiation} looks: it reports "not
right, got 'HTTP/1.1 404 Not Found: no Tub with TubID ...'".

Inside the control channel's TLS session, CRLF-terminated ASCII lines of at
most L{MAX_LINE} bytes::

  hidden -> relay   REGISTER <tubid>          -> OK REGISTER <tubid>
                    PING <n>                  -> PONG <n>
                    REFUSED <token> <reason>  (it will not open that stream)
  relay -> hidden   CONNECT <token> <dialer host> <dialer port>
  either way        ERROR <text>              (then the sender closes)

A TubID is the Foolscap digest of a certificate (base32 of its SHA-1, 32
characters), and a hidden Tub may register only the TubID of the
certificate it presented: that is the whole of the authentication.  The
relay's own identity ("relay ID") is the same digest of its certificate.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from foolscap.ipb import InvalidHintError

from OpenSSL import SSL
from zope.interface import implementer
from twisted.internet.interfaces import (
    IPushProducer,
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IReactorTime,
)
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.basic import LineOnlyReceiver
from foolscap import base32, crypto

from . import _hints
from ._endpoints import _checkSeconds

#: The longest first header block, as Foolscap's own Negotiation allows.
MAX_HEADER = 4096
#: The longest control line, delimiter excluded.
MAX_LINE = 1024

END_OF_BLOCK = b"\r\n\r\n"

CONTROL_PATH = "/relay/v1/control"
STREAM_PREFIX = "/relay/v1/stream/"
DIALER_PREFIX = "/id/"

CONTROL_REQUEST = (
    b"GET " + CONTROL_PATH.encode("ascii") + b" HTTP/1.1\r\n"
    b"Upgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n"
)
CONTROL_ACCEPTED = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n"
)
STREAM_ACCEPTED = b"HTTP/1.1 200 Relayed\r\n\r\n"

#: What the relay's port accepts, for error messages.
ACCEPTED = (
    "a foolscap-sidetls relay accepts, as the first header block (ending in "
    "an empty line, at most %d bytes): 'GET /id/<tubid> HTTP/1.1' from "
    "Foolscap dialers, and 'GET %s HTTP/1.1' or 'GET %s<token> HTTP/1.1' "
    "from hidden Tubs" % (MAX_HEADER, CONTROL_PATH, STREAM_PREFIX)
)
#: What the control channel accepts, for error messages.
CONTROL_COMMANDS = (
    "the relay's control channel accepts 'REGISTER <tubid>', 'PING <n>' and "
    "'REFUSED <token> <reason>' lines (ASCII, CRLF, at most %d bytes)" % MAX_LINE
)

_ID_RE = re.compile(r"^[a-z2-7]{32}\Z")
_NUMBER_RE = re.compile(r"^[0-9]{1,20}\Z")
_LEGACY_HINT_RE = re.compile(r"^([A-Za-z0-9.\-]+):([0-9]{1,5})\Z", re.ASCII)

RELAY_URL_SCHEME = "relay://"


class RelayError(Exception):
    """
    Something went wrong between a hidden Tub and its relay.  The text is
    written for the operator who reads it in a log or a status display.
    """


class RelayRefusedError(RelayError):
    """The relay answered with an error (its words are in the message)."""


class RelayIdentityError(RelayError):
    """The relay's certificate is not the one its relay URL names."""


class RelayTimeoutError(RelayError):
    """The relay stopped answering within the time allowed."""


class BadRequest(Exception):
    """A first header block the relay does not accept; the text says why."""


def is_id(value: str) -> bool:
    """Is C{value} shaped like a TubID, relay ID or stream token?"""
    return bool(_ID_RE.match(value))


def is_number(value: str) -> bool:
    return bool(_NUMBER_RE.match(value))


def new_token() -> str:
    """
    A one-time stream token: 160 random bits, in the TubID alphabet so one
    check validates both.  Only the hidden Tub hears it (inside the control
    channel's TLS); it binds a stream to the dialer waiting for it, so
    nobody else can attach to that dialer.
    """
    return str(base32.encode(os.urandom(20)))


def certificate_id(certificate: Any) -> str:
    """
    The Foolscap digest (TubID form) of a certificate: an OpenSSL C{X509},
    or a Twisted C{Certificate}/C{PrivateCertificate}.
    """
    return str(crypto.digest32(certificate.digest("sha1")))


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLClientConnectionCreator)
class TLSOptions:
    """
    TLS options as Foolscap's C{FoolscapContextFactory} makes them -- present
    our certificate, ask the peer for its own and accept any self-signed
    one, because identities here are certificate digests, not CA
    signatures -- but built once for many connections.  (Foolscap's sets
    the verify mode on every C{getContext()}, which pyOpenSSL refuses once
    the context has served a connection; Foolscap makes one per
    connection.)
    """

    def __init__(self, certificate: Any) -> None:
        options = CertificateOptions(
            privateKey=certificate.privateKey.original, certificate=certificate.original
        )
        context = options.getContext()
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE, crypto.alwaysValidate)
        self._context = context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self._context, None)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self._context, None)


def tls_options(certificate: Any) -> TLSOptions:
    return TLSOptions(certificate)


def http_error(status: int, reason: str, text: str) -> bytes:
    """
    An error status line in the form Foolscap's C{Negotiation} quotes back
    to its user ("not right, got '...'").
    """
    text = " ".join(text.split())
    return ("HTTP/1.1 %d %s: %s\r\n\r\n" % (status, reason, text)).encode(
        "ascii", "replace"
    )


def parse_request(block: bytes) -> tuple[str, str]:
    """
    Classify a connection by its first header block.

    @return: C{("dialer", tubid)}, C{("control", "")} or C{("stream", token)}.
    @raise BadRequest: naming what was wrong.
    """
    line = block.split(b"\r\n", 1)[0]
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("the request line is not ASCII")
    shown = text[:80]
    parts = text.split(" ")
    if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/"):
        raise BadRequest("%r is not a 'GET <path> HTTP/1.1' request line" % (shown,))
    path = parts[1]
    if path.startswith(DIALER_PREFIX):
        tubid = path[len(DIALER_PREFIX) :]
        if not is_id(tubid):
            raise BadRequest(
                "%r is not a TubID (32 characters of a-z and 2-7)" % (tubid[:80],)
            )
        return ("dialer", tubid)
    if path == CONTROL_PATH:
        return ("control", "")
    if path.startswith(STREAM_PREFIX):
        token = path[len(STREAM_PREFIX) :]
        if not is_id(token):
            raise BadRequest(
                "%r is not a stream token (32 characters of a-z and 2-7)"
                % (token[:80],)
            )
        return ("stream", token)
    raise BadRequest("unknown path %r" % (path[:80],))


def status_line(block: bytes) -> tuple[int, str]:
    """
    The status code and the whole first line of a response block; code 0
    if the line is not an HTTP status line.
    """
    line = block.split(b"\r\n", 1)[0].decode("ascii", "replace")
    parts = line.split(" ", 2)
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        return int(parts[1]), line
    return 0, line


def parse_relay_url(relay: str) -> tuple[Optional[str], list[str]]:
    """
    Split a relay URL into the relay ID (or L{None}) and its connection
    hints.

    Accepted: C{relay://<relay-id>@<hint>[,<hint>...]}, which pins the
    relay's certificate, or bare hints C{<hint>[,<hint>...]} (such as
    C{tcp:relay.example.org:7000}), which do not.

    @raise ValueError: naming what was wrong and what is accepted.
    """
    accepted = (
        "expected 'relay://<relay-id>@<hint>[,<hint>...]' (as RelayServer.url() "
        "prints it) or bare connection hints such as 'tcp:relay.example.org:7000'"
    )
    if not isinstance(relay, str):
        raise TypeError("relay URL must be a str, got %r; %s" % (relay, accepted))
    relayID: Optional[str] = None
    rest = relay.strip()
    if rest.startswith(RELAY_URL_SCHEME):
        rest = rest[len(RELAY_URL_SCHEME) :]
        relayID, at, rest = rest.partition("@")
        if not at or not is_id(relayID):
            raise ValueError(
                "bad relay URL %r: %r is not a relay ID (32 characters of a-z "
                "and 2-7) followed by '@'; %s" % (relay, relayID[:80], accepted)
            )
    elif "@" in rest or "://" in rest:
        raise ValueError("bad relay URL %r; %s" % (relay, accepted))
    hints = [h for h in rest.split(",") if h]
    if not hints or any("/" in h or ":" not in h for h in hints):
        raise ValueError(
            "bad relay URL %r: no usable connection hints in %r; %s"
            % (relay, rest, accepted)
        )
    return relayID, hints


def is_tcp_hint(hint: str) -> bool:
    """C{tcp:...}, or Foolscap's legacy C{HOST:PORT}."""
    return hint.startswith("tcp:") or bool(_LEGACY_HINT_RE.match(hint))


def tcp_hint(hint: str) -> str:
    """
    A relay's tcp hint in the C{tcp:HOST:PORT} spelling a Tub's C{tcp}
    handler is asked with, checked strictly (by L{_hints.parse_tcp_hint},
    which the Tubs' own handlers use too).  C{HOST:PORT} is the legacy
    spelling, as Foolscap's connector reads it.

    @raise ValueError: naming the hint, what is wrong and what is accepted.
    """
    spelled = hint if hint.startswith("tcp:") else "tcp:" + hint
    try:
        _hints.parse_tcp_hint(spelled)
    except InvalidHintError as e:
        raise ValueError("bad tcp hint %r for the relay: %s" % (hint, e)) from None
    return spelled


def parse_tcp_hint(hint: str) -> tuple[str, int]:
    """
    The host and port of a relay's tcp hint (C{tcp:HOST:PORT}, or the
    legacy C{HOST:PORT}), read as strictly as the Tubs' own tcp handlers
    read theirs.

    @raise ValueError: naming the hint, what is wrong and what is accepted.
    """
    return _hints.parse_tcp_hint(tcp_hint(hint))


def relay_url(relayID: str, hints: list[str]) -> str:
    for hint in hints:
        if "," in hint or "/" in hint or ":" not in hint:
            raise ValueError(
                "%r is not a connection hint (TYPE:..., with no ',' or '/')" % (hint,)
            )
    if not hints:
        raise ValueError("a relay URL needs at least one connection hint")
    return "%s%s@%s" % (RELAY_URL_SCHEME, relayID, ",".join(hints))


# -- arguments --------------------------------------------------------------


def check_seconds(value: object, name: str, what: str, *, optional: bool = False) -> None:
    """
    A timeout or interval argument: a number of seconds above 0, or (when
    C{optional}) L{None} for "none".  Checked when the object is made, so
    a string does not fail later, deep in C{callLater}, and 0 or a
    negative number does not silently mean something else.

    @raise TypeError: for a value that is not a number (C{True} included).
    @raise ValueError: for a number that is not above 0.
    """
    if optional:
        _checkSeconds(value, name, what)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "%s: %s must be a number of seconds, got %r (%s)"
            % (what, name, value, type(value).__name__)
        )
    if not value > 0:
        raise ValueError("%s: %s must be more than 0 seconds, got %r" % (what, name, value))


def check_count(value: object, name: str, what: str) -> None:
    """
    A limit: a whole number of at least 1 (C{True} is not one).

    @raise TypeError: for a value that is not an int.
    @raise ValueError: for an int below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "%s: %s must be a whole number, got %r (%s)"
            % (what, name, value, type(value).__name__)
        )
    if value < 1:
        raise ValueError("%s: %s must be at least 1, got %d" % (what, name, value))


# -- closing ------------------------------------------------------------------


class CloseTimer:
    """
    Bounds a close this end started: a graceful close (TLS close_notify,
    or a TCP close that first delivers what is buffered) waits for a peer
    that may never read or answer, so after C{seconds} the transport is
    aborted -- the pattern of L{foolscap_sidetls._protocol}'s close timeout.
    The protocol calls L{cancel} from C{connectionLost}.
    """

    _call: Optional[IDelayedCall] = None
    #: The timeout after which the close was forced, if it was.
    aborted: Optional[float] = None

    def start(self, clock: IReactorTime, seconds: Optional[float], transport: Any) -> None:
        """Abort C{transport} after C{seconds} (L{None}: never) unless cancelled first."""
        if seconds is None or self._call is not None:
            return
        self._call = clock.callLater(seconds, self._fire, seconds, transport)

    def _fire(self, seconds: float, transport: Any) -> None:
        self._call = None
        self.aborted = seconds
        transport.abortConnection()

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()


@implementer(IPushProducer)
class ControlLines(LineOnlyReceiver):
    """
    Either end of the control channel, above its TLS session: CRLF lines
    of at most L{MAX_LINE} bytes.

    It is its own transport's producer: every line it reads may make it
    write one (C{PONG}, C{ERROR}, ...), so while the other end is not
    reading what it writes, it stops reading -- a peer that sends and never
    reads fills its own socket, not this end's memory.
    """

    delimiter = b"\r\n"
    MAX_LENGTH = MAX_LINE
    transport: Any

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass
