"""
Plain-words explanations for TLS handshakes that fail because both ends
picked the same side.

OpenSSL reports a peer that also sent a ClientHello as "unexpected message"
(or "wrong version number"), and two ends that both wait as servers as
nothing at all.  Neither tells a Tahoe-LAFS operator that the other end is a
Foolscap that still chooses its TLS side from the socket direction.  This
module looks at the first TLS record the peer sent -- the only evidence there
is -- and turns it into a sentence.
"""

from __future__ import annotations

from ._errors import TLSHandshakeTimeout, TLSSideError

#: TLS record content type for handshake messages (RFC 8446 section 5.1).
_HANDSHAKE_RECORD = 0x16
#: Handshake message types (RFC 8446 section 4).
_CLIENT_HELLO = 0x01
_SERVER_HELLO = 0x02

#: How many bytes of the peer's first record we need to classify it:
#: type (1), legacy version (2), length (2), handshake type (1).
PREFIX_LENGTH = 6

_HINT = (
    "it probably picks its TLS side from the socket direction (stock "
    "Foolscap on a transport such as I2P's SAM STREAM ACCEPT, a reverse "
    "tunnel or a relay); run foolscap-sidetls on both ends"
)


def firstHandshakeMessage(prefix: bytes) -> int | None:
    """
    Return the handshake message type that C{prefix} (the first bytes the
    peer sent after the switch to TLS) starts with, or L{None} if it is not
    a TLS handshake record at all.
    """
    if len(prefix) < PREFIX_LENGTH:
        return None
    if prefix[0] != _HANDSHAKE_RECORD or prefix[1] != 0x03:
        return None
    return prefix[5]


def explainFailure(isClient: bool, prefix: bytes) -> TLSSideError | None:
    """
    Explain a handshake failure, given which side this end took and the
    first bytes the peer sent; L{None} when the bytes show no side mismatch
    (the original OpenSSL error is then the best report there is).
    """
    message = firstHandshakeMessage(prefix)
    if isClient and message == _CLIENT_HELLO:
        return TLSSideError(
            "TLS handshake failed: the peer also acted as TLS client (it "
            "sent a ClientHello) although this end dialed the connection "
            "and is the TLS client; " + _HINT
        )
    if not isClient and message == _SERVER_HELLO:
        return TLSSideError(
            "TLS handshake failed: the peer also acted as TLS server (it "
            "sent a ServerHello without being asked) although this end is "
            "the listener and the TLS server; " + _HINT
        )
    return None


def explainTimeout(isClient: bool, prefix: bytes, seconds: float) -> TLSHandshakeTimeout:
    """
    Explain a handshake that did not finish within C{seconds}.

    Silence proves less than a wrong record does: a peer that also waits as
    TLS server and a peer that stalls (or was cut off) look the same from
    here, so a timeout names every cause the evidence allows.
    """
    if not isClient and not prefix:
        return TLSHandshakeTimeout(
            "TLS handshake failed: no ClientHello arrived within %g s; the peer "
            "sent nothing after the switch to TLS (this end is the listener and "
            "the TLS server): either it stalled, or the peer also acted as TLS "
            "server and waited for a ClientHello too -- if so, %s" % (seconds, _HINT)
        )
    if isClient and not prefix:
        return TLSHandshakeTimeout(
            "TLS handshake failed: the peer did not answer this end's "
            "ClientHello within %g s (this end dialed and is the TLS client): "
            "it stalled, or it does not speak TLS after the switch" % (seconds,)
        )
    return TLSHandshakeTimeout(
        "TLS handshake failed: the peer started the handshake and then stopped; "
        "it did not complete within %g s (this end is the TLS %s)"
        % (seconds, "client" if isClient else "server")
    )
