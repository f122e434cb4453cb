"""
The relay's certificate file: its identity, kept across restarts so that
the relay URL stays the same.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.ssl import PrivateCertificate
from foolscap import crypto

from .._files import write_private
from ._wire import RelayError


def _load_or_create(path: str) -> PrivateCertificate:
    """
    The relay's certificate from C{path}, made and written there first if
    the file does not exist.  The file holds the private key: it is
    created with mode 0600 and appears whole or not at all (written to a
    temporary file and linked into place), and a relay started twice at
    once uses whichever key was written first.

    @raise RelayError: naming the file, if it cannot be read or does
        not hold a certificate and key.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return _create(path)
    except OSError as e:
        raise RelayError(
            "cannot read the relay's certificate file %r: %s" % (path, e.strerror or e)
        ) from None
    return _parse_certificate(path, data)


def _parse_certificate(path: str, data: bytes) -> PrivateCertificate:
    try:
        return PrivateCertificate.loadPEM(data)
    except Exception as e:
        raise RelayError(
            "the relay's certificate file %r does not hold a PEM certificate and "
            "private key, as RelayServer(cert_file=...) writes it (%s: %s); restore "
            "it, or move it away to make a new relay identity (which changes the "
            "relay URL)" % (path, type(e).__name__, e)
        ) from None


def _create(path: str) -> PrivateCertificate:
    certificate = cast(PrivateCertificate, crypto.createCertificate())
    try:
        # Never replaces a file another process wrote meanwhile: both
        # starts then use that one identity.
        written = write_private(path, certificate.dumpPEM(), replace=False)
    except OSError as e:
        raise RelayError(
            "cannot create the relay's certificate file %r: %s" % (path, e.strerror or e)
        ) from None
    if not written:
        with open(path, "rb") as f:
            return _parse_certificate(path, f.read())
    return certificate
