"""
Tor v3 onion service keys, as tor's control port and Tahoe-LAFS keep them.

A v3 onion address is the service's Ed25519 public key (with a checksum
and a version byte).  The key file holds tor's "expanded" secret key: the
clamped secret scalar, then the nonce key.  Knowing the address a key file
publishes lets C{check} say whether C{tub.location} announces the right
onion without asking tor, and lets C{create-node} make a key without a
running tor.  The curve arithmetic is libsodium's (through PyNaCl).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Optional

#: How tor (ADD_ONION, and Tahoe-LAFS's key files) writes a v3 key.
KEY_PREFIX = "ED25519-V3:"


def public_key(expanded: bytes) -> bytes:
    """
    The Ed25519 public key of tor's expanded secret key (64 bytes; only the
    first 32, the secret scalar, matter).  Tor multiplies the scalar as it
    is, without clamping it again: so does this.

    @raise ValueError: if the scalar is not a clamped Ed25519 scalar, which
        tor never writes and from which it would compute another key.
    """
    from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp

    scalar = expanded[:32]
    if len(scalar) != 32:
        raise ValueError("its secret scalar is %d bytes, not 32" % (len(scalar),))
    if scalar[0] & 7 or scalar[31] & 0xC0 != 0x40:
        raise ValueError("its secret scalar is not clamped as tor makes them")
    return bytes(crypto_scalarmult_ed25519_base_noclamp(scalar))


#: Base32 characters of a v3 address (before C{.onion}): 32 bytes of public
#: key, 2 of checksum, 1 of version.
ADDRESS_LENGTH = 56
VERSION = 3
_BASE32 = re.compile(r"[a-z2-7]+\Z")


def _checksum(public: bytes, version: bytes) -> bytes:
    return hashlib.sha3_256(b".onion checksum" + public + version).digest()[:2]


def onion_address(public: bytes) -> str:
    """The C{.onion} name of a v3 service key (rend-spec-v3, section 6)."""
    version = bytes([VERSION])
    checksum = _checksum(public, version)
    return base64.b32encode(public + checksum + version).decode("ascii").lower() + ".onion"


def address_problem(label: str) -> Optional[str]:
    """
    What is wrong with C{label} (the part before C{.onion}) as a v3 onion
    address, in words; L{None} if nothing.

    Tor would refuse a bad one only once asked to connect; checking it
    where the hint is read catches a mistyped address (the checksum is
    there for that) with a message saying so, before anything is dialed.
    The public key is not checked for being a point of the curve: no typo
    that keeps the checksum right gets there.
    """
    if len(label) != ADDRESS_LENGTH:
        return "it has %d characters before '.onion', not %d" % (len(label), ADDRESS_LENGTH)
    if not _BASE32.match(label.lower()):
        bad = next(c for c in label.lower() if not _BASE32.match(c))
        return "%r is not a base32 character (a-z and 2-7)" % (bad,)
    raw = base64.b32decode(label.upper())
    public, checksum, version = raw[:32], raw[32:34], raw[34:]
    if version[0] != VERSION:
        return "its version byte is %d, not %d" % (version[0], VERSION)
    if _checksum(public, version) != checksum:
        return "its checksum does not match the rest (a mistyped address?)"
    return None


def address_of_key(text: str) -> str:
    """
    The C{.onion} address a tor C{ED25519-V3:...} key publishes.

    @raise ValueError: saying what is wrong, if C{text} is not such a key.
    """
    if not text.startswith(KEY_PREFIX):
        raise ValueError("it does not start with %r" % (KEY_PREFIX,))
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX):], validate=True)
    except ValueError:
        raise ValueError("its key is not base64") from None
    if len(raw) != 64:
        raise ValueError("its key is %d bytes, not 64" % (len(raw),))
    return onion_address(public_key(raw))


def new_key() -> tuple[str, str]:
    """
    A new v3 onion service key, made here so that creating a node needs no
    running tor: C{(key file text, .onion address)}.

    The address comes from libsodium's own key pair for the seed, not from
    L{public_key}: the two derivations agreeing is what the tests check.
    """
    from nacl.signing import SigningKey

    signing = SigningKey.generate()
    expanded = bytearray(hashlib.sha512(bytes(signing)).digest())
    expanded[0] &= 248
    expanded[31] &= 127
    expanded[31] |= 64
    text = KEY_PREFIX + base64.b64encode(bytes(expanded)).decode("ascii")
    return text, onion_address(bytes(signing.verify_key))
