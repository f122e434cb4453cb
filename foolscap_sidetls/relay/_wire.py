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

from OpenSSL import SSL
from zope.interface import implementer
from twisted.internet.interfaces import (
    IPushProducer,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.basic import LineOnlyReceiver
from foolscap import base32, crypto

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


#: The reason phrase of each status the relay answers with: one home for
#: them (Twisted's C{twisted.web.http.RESPONSES} spells 408 and 504
#: "Time-out", which is not what the relay has always said).
REASONS = {
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def http_error(status: int, text: str) -> bytes:
    """
    An error status line (the reason phrase from L{REASONS}) in the form
    Foolscap's C{Negotiation} quotes back to its user ("not right, got
    '...'").
    """
    text = " ".join(text.split())
    return ("HTTP/1.1 %d %s: %s\r\n\r\n" % (status, REASONS[status], text)).encode(
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


class Answer:
    """
    The relay's answer to a request this end sent (the control request, a
    stream's claim): one header block, read as it arrives, with whatever
    follows it kept for the layer above.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> Optional[tuple[int, str, bytes]]:
        """
        Add C{data}; once the block is complete, its status code (0 if it
        is not an HTTP status line), its first line, and the bytes after it.

        @return: L{None} while the block is incomplete.
        @raise AnswerTooLong: if it has no end within L{MAX_HEADER} bytes.
        """
        self._buffer += data
        end = self._buffer.find(END_OF_BLOCK)
        if end == -1:
            if len(self._buffer) > MAX_HEADER:
                raise AnswerTooLong(
                    "no end of header within %d bytes" % (MAX_HEADER,)
                )
            return None
        end += len(END_OF_BLOCK)
        block, rest = self._buffer[:end], self._buffer[end:]
        self._buffer = b""
        code, line = status_line(block)
        return code, line, rest


class AnswerTooLong(Exception):
    """An answer whose header block does not end within L{MAX_HEADER} bytes."""


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
