"""
Shared pieces for the in-memory TLS tests: certificates made once per test
run, TLS options as Foolscap makes them, and a small protocol with
Foolscap's shape (a plaintext header block each way, then C{startTLS},
then application data).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.python.failure import Failure
from foolscap import crypto

_certs: dict[str, crypto.MyOptions] = {}


def certificate(name: str):
    """
    A Foolscap certificate (RSA key and self-signed cert) per name, made once
    per test run: key generation is the slow part of a TLS test.
    """
    if name not in _certs:
        _certs[name] = crypto.createCertificate()
    return _certs[name]


def foolscapOptions(name: str) -> crypto.FoolscapContextFactory:
    """The context factory Foolscap's Negotiation.startTLS builds."""
    cert = certificate(name)
    return crypto.FoolscapContextFactory(
        privateKey=cert.privateKey.original, certificate=cert.original
    )


def outerServerOptions() -> CertificateOptions:
    """Options for an outer TLS layer's server (no client certificate)."""
    cert = certificate("outer")
    return CertificateOptions(
        privateKey=cert.privateKey.original, certificate=cert.original
    )


def outerClientOptions() -> CertificateOptions:
    """Options for an outer TLS layer's client; no verification, as the
    outer layer here only has to be TLS, not trusted."""
    return CertificateOptions()


class Speaker(Protocol):
    """
    Plays Foolscap's negotiation shape: the dialer sends a header block, the
    listener answers with one and both switch to TLS, then each sends one
    secret over TLS.

    @ivar plaintext: The bytes received before the switch.
    @ivar received: The bytes received after it.
    @ivar lostReason: The C{connectionLost} reason, once lost.
    """

    lostReason: Optional[Failure] = None

    def __init__(self, name: str, dialer: bool, pipeline: bool = False) -> None:
        self.name = name
        self.dialer = dialer
        self.pipeline = pipeline
        self.plaintext = b""
        self.received = b""
        self.tls = False
        self.secret = b"secret from " + name.encode("ascii")

    def connectionMade(self) -> None:
        if self.dialer:
            self.transport.write(b"GET /id/" + self.name.encode() + b" HTTP/1.1\r\n\r\n")
            if self.pipeline:
                # Not what Foolscap does, but legal: switch without waiting,
                # so the listener sees the header and TLS bytes in one read.
                self._switch()

    def _switch(self) -> None:
        self.tls = True
        self.transport.startTLS(foolscapOptions(self.name))
        self.transport.write(self.secret)

    def dataReceived(self, data: bytes) -> None:
        if self.tls:
            self.received += data
            return
        self.plaintext += data
        if not self.plaintext.endswith(b"\r\n\r\n"):
            # The wrapper hands up at most one header block per read.
            assert b"\r\n\r\n" not in self.plaintext, self.plaintext
            return
        if not self.dialer:
            if not self.pipeline:
                self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            self._switch()
        elif not self.pipeline:
            self._switch()

    def connectionLost(self, reason: Failure) -> None:
        self.lostReason = reason


class SpeakerFactory(Factory):
    def __init__(self, name: str, dialer: bool, pipeline: bool = False) -> None:
        self.name = name
        self.dialer = dialer
        self.pipeline = pipeline
        self.built: list[Speaker] = []

    def buildProtocol(self, addr):
        p = Speaker(self.name, self.dialer, self.pipeline)
        p.factory = self
        self.built.append(p)
        return p
