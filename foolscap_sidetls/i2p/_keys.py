"""
Keys and addresses: the private key files L{listen} keeps (read here,
written atomically and 0600 by L{foolscap_sidetls._files.write_private}),
their C{.b32.i2p} address, and C{i2p:} connection hints.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Optional, Union

from foolscap.ipb import InvalidHintError

from .._files import read_small
from .sam import b32, i2p_b64decode, public_part

_I2P_NAME = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+i2p\Z")
#: Printable ASCII without spaces: what an I2P hint may contain.
_HINT_CHARACTERS = re.compile(r"[\x21-\x7e]+\Z")
_B32_LABEL = re.compile(r"^[a-z2-7]{52,}$")

#: Destinations this process listens on, per SAM bridge: I2P has one
#: session per destination (and i2pd 2.45 does not refuse a second).
_LISTENING: set[tuple[str, str]] = set()


def claim(where: str, address: str, what: str) -> Callable[[], None]:
    """
    Reserve listening on C{address} through the SAM bridge at C{where} for
    this process; returns what gives it back.

    @raise ValueError: this process already listens there (the message
        naming C{what} was asked).
    """
    if (where, address) in _LISTENING:
        raise ValueError(
            "%s: this process already listens on %s through the SAM bridge at %s; "
            "I2P has one session per destination, so use another keyfile" % (what, address, where)
        )
    _LISTENING.add((where, address))
    return lambda: _LISTENING.discard((where, address))


def read_key(path: str) -> Optional[str]:
    """The private key in C{path} (I2P base64, as SAM and txi2p write it), or None."""
    try:
        text = read_small(path)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError("cannot read I2P key file %r: %s" % (path, e)) from None
    if text is None:
        return None
    try:
        raw = i2p_b64decode(text)
        public = public_part(raw)
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
    key = read_key(path)
    if key is None:
        raise ValueError("I2P key file %r does not exist" % (path,))
    return b32(key)




def parse_hint(hint: str) -> tuple[str, Optional[int]]:
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

