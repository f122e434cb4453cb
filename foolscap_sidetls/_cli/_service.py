"""
The ping service C{serve} registers and C{ping} calls: it reports how the
server sees the caller's connection, which only the server knows.
"""

from __future__ import annotations

from typing import Any, Optional

from foolscap.api import Referenceable

from .._interfaces import ISideTLSTransport
from .._version import __version__
from ._output import PROG


def side_of(transport: Any) -> dict[str, Optional[str]]:
    """The role and TLS side a connection's transport took (both L{None} for a stock Foolscap one)."""
    if ISideTLSTransport.providedBy(transport):
        return {"role": transport.role, "tls_side": transport.tlsSide}
    return {"role": None, "tls_side": None}


def describe_side(side: dict[str, Any]) -> str:
    """L{side_of}'s report (from either end) as ping prints it."""
    if side.get("role") is None:
        return "not role-based (its TLS side came from the socket direction)"
    return "%s, TLS %s" % (side["role"], side["tls_side"])


class PingService(Referenceable):
    """
    What C{serve} registers: an echo, and a report of how this end sees the
    caller's connection (its role and TLS side), which only the server
    knows.
    """

    def remote_ping(self, data: bytes = b"") -> bytes:
        return data

    def remote_whoami(self, caller: Any) -> dict[str, Any]:
        # The caller passes one of its own objects; our reference to it
        # rides on the very connection the caller dialed, so its broker's
        # transport is this end of that connection.
        seen = side_of(caller.tracker.broker.transport)
        seen["software"] = "%s %s" % (PROG, __version__)
        return seen


class Caller(Referenceable):
    """Passed to C{whoami} so the server can find our connection."""
