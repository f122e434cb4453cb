"""
The relay's argument checks: the server's L{RelayLimits} and the hidden
Tub's L{RelayListenerEndpoint} take timeouts and counts, and each is
checked when the object is made, naming the argument and what it accepts.
"""

from __future__ import annotations

from .._endpoints import _checkSeconds


def check_seconds(value: object, name: str, what: str, *, optional: bool = False) -> None:
    """
    A timeout or interval argument: a number of seconds above 0, or (when
    C{optional}) L{None} for "none".  Checked when the object is made, so
    a string does not fail later, deep in C{callLater}, and 0 or a
    negative number does not silently mean something else.

    @raise TypeError: for a value that is not a number (C{True} included).
    @raise ValueError: for a number that is not above 0.
    """
    if optional:
        _checkSeconds(value, name, what)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "%s: %s must be a number of seconds, got %r (%s)"
            % (what, name, value, type(value).__name__)
        )
    if not value > 0:
        raise ValueError("%s: %s must be more than 0 seconds, got %r" % (what, name, value))


def check_count(value: object, name: str, what: str) -> None:
    """
    A limit: a whole number of at least 1 (C{True} is not one).

    @raise TypeError: for a value that is not an int.
    @raise ValueError: for an int below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "%s: %s must be a whole number, got %r (%s)"
            % (what, name, value, type(value).__name__)
        )
    if value < 1:
        raise ValueError("%s: %s must be at least 1, got %d" % (what, name, value))


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
