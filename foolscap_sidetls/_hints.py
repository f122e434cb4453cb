"""
Strict reading of the parts connection hints share -- a port, a host name,
the hint's characters -- for the tcp, tor and i2p handlers.

Foolscap's own expressions accept more than they mean to: C{\\d} matches
any Unicode digit, C{$} matches before a trailing newline, and a port is
any run of digits.  A hint C{tcp:HOST:65558} then dials port 22 (the
resolver keeps the low 16 bits), and C{int()} of 5,000 digits raises
C{ValueError}.  These functions accept exactly the ASCII hints Foolscap
means, and say what is wrong with the others in an L{InvalidHintError},
which Foolscap shows as C{"bad hint: ..."} in the connection status.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional

from foolscap.ipb import InvalidHintError

from . import _onion

#: Printable ASCII without spaces: every character a hint may contain.
_HINT_CHARACTERS = re.compile(r"[\x21-\x7e]+\Z")
_DNS_NAME = re.compile(r"[A-Za-z0-9.\-]+\Z")
#: A DNS label by the letters-digits-hyphen rule: no hyphen first or last.
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\Z")
_IPV6 = re.compile(r"[A-Fa-f0-9:]+(?:[0-9.]+|%[A-Za-z0-9.]+)?\Z")

#: What an onion host must be, for messages.
ONION_ACCEPTED = (
    "a v3 onion address: 56 base32 characters (a-z, 2-7) before '.onion', "
    "ending in tor's checksum and the version byte 3"
)

TCP_EXPECTED = "'tcp:HOST:PORT', HOST being a DNS name, an IPv4 address or an [IPv6] address"


def invalid(prefix: str, hint: str, reason: str, expected: str) -> InvalidHintError:
    """C{"<prefix> 'the:hint': <reason> (expected ...)"}."""
    return InvalidHintError("%s %r: %s (expected %s)" % (prefix, hint, reason, expected))


def check_characters(prefix: str, hint: object, expected: str) -> str:
    """The hint, if it is non-empty printable ASCII text."""
    if not isinstance(hint, str):
        raise InvalidHintError(
            "%s %r: a hint is text, not %s (expected %s)"
            % (prefix, hint, type(hint).__name__, expected)
        )
    if not hint:
        raise invalid(prefix, hint, "it is empty", expected)
    if not _HINT_CHARACTERS.match(hint):
        bad = next(c for c in hint if not _HINT_CHARACTERS.match(c))
        raise invalid(
            prefix,
            hint,
            "it contains %r, which is not printable ASCII (hints have no spaces, "
            "control or non-ASCII characters)" % (bad,),
            expected,
        )
    return hint


def parse_port(prefix: str, hint: str, text: str, expected: str) -> int:
    """A port: 1 to 65535, in at most five ASCII digits."""
    if not text:
        raise invalid(prefix, hint, "its port is empty", expected)
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise invalid(prefix, hint, "port %r is not a number from 1 to 65535" % (text,), expected)
    return int(text)


def check_dns_name(prefix: str, hint: str, host: str, expected: str) -> None:
    """A DNS name or dotted IPv4 address, as Foolscap's expression allows, minus empty labels."""
    if not host:
        raise invalid(prefix, hint, "it has no host", expected)
    if not _DNS_NAME.match(host):
        raise invalid(
            prefix,
            hint,
            "host %r is not a DNS name or IPv4 address (letters, digits, '-' and '.')" % (host,),
            expected,
        )
    labels = host[:-1].split(".") if host.endswith(".") and host != "." else host.split(".")
    if "" in labels:
        raise invalid(prefix, hint, "host %r has an empty label ('..' or a leading '.')" % (host,), expected)
    if len(host) > 253 or any(len(label) > 63 for label in labels):
        raise invalid(
            prefix,
            hint,
            "host %r is too long for DNS (at most 253 characters, 63 per label)" % (host,),
            expected,
        )
    for label in labels:
        if not _LDH_LABEL.match(label):
            raise invalid(
                prefix, hint, "host %r has label %r, which starts or ends with '-'" % (host, label), expected
            )
        if label[2:4] == "--" and not _valid_a_label(label):
            raise invalid(
                prefix,
                hint,
                "host %r has label %r: '--' in third and fourth place is only for "
                "IDNA ('xn--') labels, and this is not a valid one" % (host, label),
                expected,
            )


def _valid_a_label(label: str) -> bool:
    """An C{xn--} label that decodes as IDNA, as Twisted's HostnameEndpoint requires."""
    if not label.lower().startswith("xn--"):
        return False
    try:
        import idna
    except ImportError:  # pragma: no cover - Twisted's TLS extra brings it
        try:
            label.encode("ascii").decode("idna")
        except UnicodeError:
            return False
        return True
    try:
        idna.decode(label)
    except idna.IDNAError:
        return False
    return True


def parse_tcp_hint(hint: object) -> tuple[str, int]:
    """
    C{(host, port)} from a C{tcp:HOST:PORT} hint, HOST being a DNS name, a
    dotted IPv4 address or a bracketed IPv6 address: the syntax of
    Foolscap's tcp handler, read strictly.

    @raise InvalidHintError: saying what is wrong.
    """
    prefix = "unrecognized TCP hint"
    text = check_characters(prefix, hint, TCP_EXPECTED)
    if not text.startswith("tcp:"):
        raise invalid(prefix, text, "it does not start with 'tcp:'", TCP_EXPECTED)
    host, colon, port_text = text[len("tcp:") :].rpartition(":")
    if not colon:
        raise invalid(prefix, text, "it has no ':PORT' after the host", TCP_EXPECTED)
    port = parse_port(prefix, text, port_text, TCP_EXPECTED)
    if host.startswith("["):
        address = host[1:-1] if host.endswith("]") else None
        if address is None or not _IPV6.match(address):
            raise invalid(prefix, text, "%r is not a bracketed IPv6 address" % (host,), TCP_EXPECTED)
        try:
            ipaddress.IPv6Address(address)
        except ValueError as e:
            raise invalid(prefix, text, "%r is not an IPv6 address (%s)" % (host, e), TCP_EXPECTED) from None
        return address, port
    if ":" in host:
        raise invalid(
            prefix, text, "host %r has ':' (an IPv6 address goes in [brackets])" % (host,), TCP_EXPECTED
        )
    check_dns_name(prefix, text, host, TCP_EXPECTED)
    return host, port


def onion_problem(host: str) -> Optional[str]:
    """
    What is wrong with C{host} as an onion service's name, if it is one
    (its last label is C{onion}); L{None} if nothing, or if it is not an
    onion name.  A subdomain (C{www.<address>.onion}) is allowed, as tor
    allows it: only the label before C{.onion} names the service.
    """
    labels = host.rstrip(".").split(".")
    if len(labels) < 2 or labels[-1].lower() != "onion":
        return None
    problem = _onion.address_problem(labels[-2])
    if problem is None:
        return None
    return "host %r is not a valid v3 onion address: %s" % (host, problem)


def check_onion(prefix: str, hint: str, host: str, expected: str) -> None:
    """Refuse an onion host that is not a valid v3 address (see L{onion_problem})."""
    problem = onion_problem(host)
    if problem is not None:
        raise invalid(prefix, hint, "%s; an onion host must be %s" % (problem, ONION_ACCEPTED), expected)
