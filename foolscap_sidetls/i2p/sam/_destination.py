"""
I2P destinations: their base64 (I2P's alphabet), the public part of a
private key, the C{.b32.i2p} address of either, and L{I2PAddress}.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Optional

from zope.interface import implementer
from twisted.internet.interfaces import IAddress

#: The signature type of destinations made here (SAM's name for it).
SIGNATURE_TYPE = "EdDSA_SHA512_Ed25519"


def i2p_b64decode(text: str) -> bytes:
    """I2P base64 (C{-~} for C{+/}); L{ValueError} if it is not."""
    try:
        return base64.b64decode(text.encode("ascii"), altchars=b"-~", validate=True)
    except (ValueError, UnicodeEncodeError) as e:
        raise ValueError("not I2P base64 (%s)" % (e,)) from None


def public_part(raw: bytes) -> bytes:
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


def b32(destination_b64: str) -> str:
    """C{<52 chars>.b32.i2p} for a destination or private key in I2P base64."""
    public = public_part(i2p_b64decode(destination_b64))
    digest = hashlib.sha256(public).digest()
    return base64.b32encode(digest).decode("ascii").lower().rstrip("=") + ".b32.i2p"


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


