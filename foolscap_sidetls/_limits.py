"""
The limits every sidetls connection runs under, as one value.

Four numbers bound a connection -- its TLS handshake, its whole
negotiation, the close this end starts, and (for a listener) how many may
negotiate at once.  They travel together from whoever configures them (a
caller of L{foolscap_sidetls.listener}, a C{sidetls:} description, a
configuration file) down to the wrapper factory that enforces them, so they
are one frozen value with one set of checks, instead of four arguments
re-checked at every layer they pass through.  The clock is not a limit and
stays a separate argument: it is how the limits are measured, not one of
them.

The checks here are also the relay's (L{check_seconds}, L{check_count},
L{check_fraction} for its jitter): a timeout or a count is checked the
same way, with the same words, wherever it is given.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, TypedDict, Union

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DialerLimitKeywords",
    "LimitKeywords",
    "OPTION_NAMES",
    "UNSET",
    "Limits",
    "check_count",
    "check_fraction",
    "check_seconds",
    "resolve",
    "resolve_dialer",
]

#: How long a TLS handshake may take before the connection is dropped with a
#: diagnosis.  Foolscap's own limits are 120 s for both ends: a listener's
#: whole negotiation (C{Negotiation.SERVER_TIMEOUT}) and a dialer's whole
#: connection attempt (C{TubConnector.CONNECTION_TIMEOUT}).  A handshake is
#: one or two round trips, so even over Tor or I2P 60 s means the handshake
#: is not going to happen.
DEFAULT_HANDSHAKE_TIMEOUT = 60.0

#: How long, after this end closes a connection, the peer has to finish the
#: close -- answer TLS's close_notify, read what is still buffered for it --
#: before the connection is aborted.  Without a bound, a peer that stops
#: reading and never closes holds the socket forever: after C{startTLS} a
#: clean close waits for the peer's close_notify.
DEFAULT_CLOSE_TIMEOUT = 30.0


class _Unset(enum.Enum):
    """
    The default of a limit keyword that was not passed: tells "not given"
    from an explicit value, so that giving both C{limits=} and a keyword is
    refused rather than one silently winning.
    """

    UNSET = "unset"

    def __repr__(self) -> str:
        return "<from Limits()>"


UNSET = _Unset.UNSET

#: A limit keyword's type in the functions that also take C{limits=}.
Seconds = Union[float, None, _Unset]
Count = Union[int, None, _Unset]


class DialerLimitKeywords(TypedDict, total=False):
    """
    The fields of L{Limits} a dialer has, as the separate keywords every
    function making dialers takes instead of C{limits=}
    (C{**separate: Unpack[DialerLimitKeywords]}, PEP 692): one list of the
    names, here, rather than one per signature.  Those not given keep
    L{Limits}' defaults.
    """

    handshake_timeout: Optional[float]
    negotiation_timeout: Optional[float]
    close_timeout: Optional[float]


class LimitKeywords(DialerLimitKeywords, total=False):
    """L{DialerLimitKeywords} and the listener's C{max_negotiating}: every field of L{Limits}."""

    max_negotiating: Optional[int]


def check_seconds(value: object, name: str, what: str, *, optional: bool = True) -> None:
    """
    A timeout or interval: a finite number of seconds above 0, or (when
    C{optional}) L{None} for "no limit".  Checked where it is given, so a
    string does not fail later, deep in C{callLater}, and 0 or a negative
    number does not silently mean something else.

    @param what: Who took the value, for the message (C{"Limits"},
        C{"foolscap_sidetls.listener()"}, C{"RelayLimits"}).
    @raise TypeError: for a value that is not a number (C{True} included).
    @raise ValueError: for a number that is not above 0, or not finite.
    """
    if value is None and optional:
        return
    orNone = " or None" if optional else ""
    noLimit = " (None: no limit)" if optional else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "%s: %s must be a number of seconds%s, got %r (%s)"
            % (what, name, orNone, value, type(value).__name__)
        )
    if not value > 0:  # nan included
        raise ValueError("%s: %s must be more than 0 seconds%s, got %r" % (what, name, noLimit, value))
    if math.isinf(value):
        raise ValueError(
            "%s: %s must be a finite number of seconds%s, got %r" % (what, name, noLimit, value)
        )


def check_count(
    value: object, name: str, what: str, *, optional: bool = True, unit: Optional[str] = "connections"
) -> None:
    """
    A cap: a whole number of at least 1 (C{True} is not one), or (when
    C{optional}) L{None} for "no limit".

    @param unit: What is counted, for the message; L{None} says nothing.
    @raise TypeError: for a value that is not an int.
    @raise ValueError: for an int below 1.
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "%s: %s must be a whole number%s%s, got %r (%s)"
            % (
                what,
                name,
                " of " + unit if unit else "",
                " or None" if optional else "",
                value,
                type(value).__name__,
            )
        )
    if value < 1:
        raise ValueError(
            "%s: %s must be at least 1%s, got %d"
            % (what, name, " (None: no limit)" if optional else "", value)
        )


def check_fraction(value: object, name: str, what: str) -> None:
    """
    A jitter: a number from 0 up to (not including) 1.

    @raise TypeError: for a value that is not a number (C{True} included).
    @raise ValueError: for a number outside that range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "%s: %s must be a number from 0 to 1, got %r (%s)"
            % (what, name, value, type(value).__name__)
        )
    if not 0 <= value < 1:
        raise ValueError(
            "%s: %s must be from 0 up to (not including) 1, got %r" % (what, name, value)
        )


#: The spelling of each limit as a C{sidetls:} endpoint-string option
#: (Twisted's camelCase for those) -> the field of L{Limits}.
OPTION_NAMES: Mapping[str, str] = {
    "handshakeTimeout": "handshake_timeout",
    "negotiationTimeout": "negotiation_timeout",
    "closeTimeout": "close_timeout",
    "maxNegotiating": "max_negotiating",
}

_NONE = "none"
_SECONDS_TEXT = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?\Z")
_COUNT_TEXT = re.compile(r"[0-9]{1,9}\Z")


def _secondsFromText(option: str, text: str) -> Optional[float]:
    if text == _NONE:
        return None
    value = float(text) if _SECONDS_TEXT.match(text) else math.nan
    if not value > 0:  # nan (not a number) or 0
        raise ValueError(
            "sidetls: option %s=%r: expected a number of seconds more than 0, "
            "in digits with an optional decimal point (such as 30 or 2.5), or "
            "%r for no limit" % (option, text, _NONE)
        )
    return value


def _countFromText(option: str, text: str) -> Optional[int]:
    if text == _NONE:
        return None
    value = int(text) if _COUNT_TEXT.match(text) else 0
    if value < 1:
        raise ValueError(
            "sidetls: option %s=%r: expected a whole number of connections, at "
            "least 1, in digits (such as 100), or %r for no limit" % (option, text, _NONE)
        )
    return value


@dataclass(frozen=True)
class Limits:
    """
    What bounds each connection of a listener or dialer.

    Checked when made, so a bad value is reported where it was written,
    not when the first connection arrives.

    @ivar handshake_timeout: Seconds to wait for a TLS handshake before
        dropping the connection with an explanation; L{None} waits forever.
    @ivar negotiation_timeout: Seconds a connection may take from its start
        until Foolscap hands it to a Broker (plaintext header, TLS
        handshake, encrypted hello); L{None} leaves it to Foolscap's own
        120 s (C{Negotiation.SERVER_TIMEOUT} for a listener,
        C{TubConnector.CONNECTION_TIMEOUT} for a dialer's whole attempt).
    @ivar close_timeout: Seconds the peer gets to finish a close this end
        started (answer TLS's close_notify, read what is buffered) before
        the connection is aborted; L{None} waits forever.
    @ivar max_negotiating: A listener's cap on connections negotiating at
        once (see L{foolscap_sidetls._admission}); L{None}: no cap.  A
        dialer takes none: the cap is a listener's defence.
    """

    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT
    negotiation_timeout: Optional[float] = None
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT
    max_negotiating: Optional[int] = None

    def __post_init__(self) -> None:
        _check("Limits", vars(self))

    @classmethod
    def checked(cls, what: str, **values: Any) -> "Limits":
        """
        Limits from keywords, with errors naming C{what} took them (such as
        C{"foolscap_sidetls.listener()"}) rather than this class.
        """
        _check(what, values)
        return cls(**values)

    @classmethod
    def from_strings(cls, options: Mapping[str, str], *, server: bool = True) -> "Limits":
        """
        Limits from C{sidetls:} endpoint-string options (C{{"maxNegotiating":
        "100", "closeTimeout": "none"}}), in their order; what is not given
        keeps its default.

        @param server: Whether they are a listener's; a dialer's may not
            have C{maxNegotiating}.
        @raise ValueError: for an option that is misspelt (options are
            case-sensitive), not one this kind of endpoint takes, or not
            digits (or C{none}) in range; naming the option and what it
            accepts.
        """
        accepted = [name for name in OPTION_NAMES if server or name != "maxNegotiating"]
        byLower = {name.lower(): name for name in OPTION_NAMES}
        values: dict[str, Any] = {}
        for option, text in options.items():
            name = byLower.get(option.lower())
            if name is None:
                raise ValueError(
                    "sidetls: option %r is not a limit; the limits are %s"
                    % (option, ", ".join(OPTION_NAMES))
                )
            if option != name:
                raise ValueError(
                    "sidetls: option %r is spelled %r (options are case-sensitive)" % (option, name)
                )
            if name not in accepted:
                raise ValueError(
                    "sidetls: option %s applies to listeners (server endpoints) only; "
                    "a client endpoint takes %s" % (name, ", ".join(accepted))
                )
            field = OPTION_NAMES[name]
            parse = _countFromText if field == "max_negotiating" else _secondsFromText
            values[field] = parse(name, text)
        return cls(**values)

    def for_dialer(self, what: str) -> "Limits":
        """
        These limits, checked as a dialer's: a dialer has no C{max_negotiating}.

        @raise ValueError: if C{max_negotiating} is set.
        """
        if self.max_negotiating is not None:
            raise ValueError(
                "%s: max_negotiating applies to listeners only (the cap is a listener's "
                "defence), got Limits(max_negotiating=%r); a dialer takes handshake_timeout, "
                "negotiation_timeout and close_timeout" % (what, self.max_negotiating)
            )
        return self


_CHECKS = {
    "handshake_timeout": check_seconds,
    "negotiation_timeout": check_seconds,
    "close_timeout": check_seconds,
    "max_negotiating": check_count,
}


def _check(what: str, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        check = _CHECKS.get(name)
        if check is None:
            raise TypeError(
                "%s: %r is not a limit; the limits are %s"
                % (what, name, ", ".join(f.name for f in fields(Limits)))
            )
        check(value, name, what)


def resolve(what: str, limits: Optional[Limits], **keywords: Any) -> Limits:
    """
    The one L{Limits} of a function that takes either C{limits=} or the
    separate limit keywords (those passed as L{UNSET} were not given).

    @raise TypeError: if both are given (naming both), or C{limits} is not
        a L{Limits}, or a keyword's value has the wrong type.
    @raise ValueError: if a keyword's value is out of range.
    """
    given = {name: value for name, value in keywords.items() if value is not UNSET}
    if limits is None:
        return Limits.checked(what, **given)
    if not isinstance(limits, Limits):
        raise TypeError(
            "%s: limits must be a foolscap_sidetls.Limits, got %r (%s)"
            % (what, limits, type(limits).__name__)
        )
    if given:
        raise TypeError(
            "%s: got both limits=%r and %s; give the limits one way: limits=Limits(...) "
            "or the separate keywords"
            % (what, limits, ", ".join("%s=%r" % item for item in given.items()))
        )
    return limits


def resolve_dialer(what: str, limits: Optional[Limits], **keywords: Any) -> Limits:
    """
    L{resolve} for a function that makes dialers (L{foolscap_sidetls.dialer},
    the hint handlers), whose separate keywords are L{DialerLimitKeywords}:
    a C{max_negotiating} keyword, or a C{limits} with one, is refused (see
    L{Limits.for_dialer}).

    @raise TypeError: for a C{max_negotiating} keyword, and as L{resolve}.
    """
    if "max_negotiating" in keywords:
        raise TypeError(
            "%s got an unexpected keyword argument 'max_negotiating': it applies to listeners only "
            "(the cap is a listener's defence); a dialer takes %s"
            % (what, ", ".join(DialerLimitKeywords.__annotations__))
        )
    return resolve(what, limits, **keywords).for_dialer(what)
