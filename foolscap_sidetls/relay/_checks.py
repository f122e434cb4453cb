"""
The relay's argument checks: the server's L{RelayLimits} and the hidden
Tub's L{RelayListenerEndpoint} take timeouts and counts, and each is
checked when the object is made, naming the argument and what it accepts.
"""

from __future__ import annotations

from .. import _limits

__all__ = ["check_count", "check_fraction", "check_seconds"]


def check_seconds(value: object, name: str, what: str, *, optional: bool = False) -> None:
    """
    A timeout or interval argument: the check of L{foolscap_sidetls.Limits}'
    timeouts, with L{None} ("none") refused unless C{optional}.

    @raise TypeError: for a value that is not a number (C{True} included).
    @raise ValueError: for a number that is not above 0, or not finite.
    """
    _limits.check_seconds(value, name, what, optional=optional)


def check_count(value: object, name: str, what: str) -> None:
    """
    A relay cap (streams, registrations, connections): the check of
    L{foolscap_sidetls.Limits}' C{max_negotiating}, with L{None} refused.

    @raise TypeError: for a value that is not an int.
    @raise ValueError: for an int below 1.
    """
    _limits.check_count(value, name, what, optional=False, unit=None)


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
