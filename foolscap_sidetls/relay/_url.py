"""
Relay URLs and the relay's connection hints: what a hidden Tub is
configured with (C{relay://<relay-id>@<hint>[,<hint>...]}) and how its tcp
hints are read -- as strictly as the Tubs' own tcp handlers read theirs.
"""

from __future__ import annotations

import re
from typing import Optional

from foolscap.ipb import InvalidHintError

from .. import _hints
from ._wire import is_id

_LEGACY_HINT_RE = re.compile(r"^([A-Za-z0-9.\-]+):([0-9]{1,5})\Z", re.ASCII)

RELAY_URL_SCHEME = "relay://"


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
