"""
The one home of everything that reads Foolscap's private state or leans on
the shape of its objects.

Foolscap offers no public API for what the wrapper needs to know: whether
a C{Negotiation} has handed its connection to a C{Broker}, why it closed
a connection, which hint handlers a Tub dials with.  Each reader below
says what it reads and why a mistake errs on the safe side; when Foolscap
changes, this module is where to look (tests/core/test_protocol.py checks
the switch against the installed Foolscap).
"""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer
from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure
from foolscap.ipb import IConnectionHintHandler
from foolscap.negotiate import Negotiation
from foolscap.tokens import DuplicateConnection, RemoteNegotiationError


def negotiating(app: Any) -> bool:
    """
    Whether Foolscap's C{Negotiation} C{app} has yet to hand the connection
    to a C{Broker} (after the TLS handshake it still exchanges encrypted
    hellos).

    Foolscap has no flag for this; its C{switchToBanana} rebinds the
    negotiation's C{dataReceived} to the new Broker's, for this connection
    alone, and that is what is checked: negotiating while C{dataReceived}
    is still a method bound to the negotiation itself.  Anything else --
    the Broker's method, or something that is no bound method at all --
    counts as done, because the mistake in that direction only loses the
    negotiation timeout and the cap for a connection, while the other one
    would time out live connections.  Anything that is not a Foolscap
    negotiation is done negotiating once its TLS handshake is.
    """
    if not isinstance(app, Negotiation):
        return False
    handler = getattr(app, "dataReceived", None)
    return getattr(handler, "__self__", None) is app


def failureReason(app: Any) -> Optional[Failure]:
    """
    Why Foolscap's C{Negotiation} C{app} closed its connection (an unknown
    TubID, a TubID mismatch, its own negotiation timeout), or L{None}.
    Foolscap keeps it in the negotiation's C{failureReason} attribute.
    """
    reason = getattr(app, "failureReason", None)
    return reason if isinstance(reason, Failure) else None


def benign(reason: Failure) -> bool:
    """
    Foolscap closing a connection for a reason it considers normal: parallel
    hints, or full-mesh applications such as Tahoe-LAFS, make duplicate
    connections, and one end rejects all but one (Foolscap logs these at
    its NOISY level).  The remote form carries only the message text.
    """
    if reason.check(DuplicateConnection):
        return True
    if reason.check(RemoteNegotiationError):
        args: tuple[Any, ...] = tuple(getattr(reason.value, "args", ()))
        return bool(args) and "Duplicate connection" in str(args[0])
    return False


def tubHandlers(tub: Any) -> Optional[dict[str, IConnectionHintHandler]]:
    """
    The hint handlers C{tub} dials with, by hint type, or L{None} if it is
    not a Foolscap Tub.  Foolscap keeps them in a private dict with no
    public getter; this is the one place that reads it.
    """
    handlers = getattr(tub, "_connectionHandlers", None)
    return handlers if isinstance(handlers, dict) else None


@implementer(IAddress)
class _HostPortAddress:
    """
    An address with the C{host} and C{port} that Foolscap's
    C{Listener.buildProtocol} logs, for transports whose addresses have
    neither (process pipes, UNIX sockets, I2P destinations).
    """

    def __init__(self, original: IAddress) -> None:
        self.original = original
        self.host = getattr(original, "name", None) or str(original)
        self.port = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)

    def __repr__(self) -> str:
        return repr(self.original)


def loggableAddress(addr: Any) -> Any:
    """C{addr}, or C{addr} given the C{host} and C{port} Foolscap's listener logs."""
    if hasattr(addr, "host") and hasattr(addr, "port"):
        return addr
    return _HostPortAddress(addr)
