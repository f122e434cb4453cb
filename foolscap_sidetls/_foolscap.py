"""
The one home of everything that reads Foolscap's private state or leans on
the shape of its objects.

Foolscap offers no public API for what the wrapper needs to know: whether
a C{Negotiation} has handed its connection to a C{Broker}, why it closed
a connection, which hint handlers a Tub dials with.  Each reader below
says what it reads and why a mistake errs on the safe side; when Foolscap
changes, this module is where to look (tests/core/test_protocol.py checks
the switch against the installed Foolscap, tests/core/test_takeover.py the
take-over rule against the installed Tahoe-LAFS).

When the application takes the connection over (L{tookOver})
------------------------------------------------------------

The negotiation limits (C{negotiation_timeout}, C{max_negotiating}) and the
"negotiation failed" report are for Foolscap's negotiation only.  Tahoe-LAFS
1.20 replaces a Tub's C{negotiationClass} with a protocol switch
(C{allmydata.protocol_switch}): on its first 8 bytes it either becomes
Foolscap's C{Negotiation} (a request starting C{GET /id/}) or builds an
HTTPS protocol, connects it to our wrapper with C{makeConnection} and then
turns itself into it, by assigning its own C{__class__} and C{__dict__}.
That connection never calls C{startTLS}: its TLS is its own, above us.

The rule: a connection stops being Foolscap's negotiation when, before
C{startTLS}, the application object the wrapper delivers to is no longer a
Foolscap C{Negotiation} and is no longer the very object, of the very
class, that the listener or dialer built.  That covers the ways Twisted
code hands a connection to another protocol:
  - changing its own class (Tahoe's switch);
  - assigning the transport's C{wrappedProtocol} (what autobahn's
    WebSocket upgrade does over any L{ProtocolWrapper}) or C{protocol}
    (what it and C{twisted.conch.telnet} do over a socket transport; the
    wrapper makes that attribute mean the same).
It is checked after each plaintext delivery, when the connection is made,
on assignment, and whenever a limit is about to act on the connection, so
a switch made outside a delivery is seen before it could be cut.

Why it opens no hole:
  - Only the application can get there; the peer's bytes are never looked
    at.  On a stock Tub the application is Foolscap's C{Negotiation}
    whatever a peer sends (HTTP, TLS, garbage): Foolscap rejects what it
    does not parse, and a peer that dawdles is cut and counted as before.
  - A switch that has not decided yet (Tahoe's, before 8 bytes) is still
    the object that was built, so it is still negotiating: a silent
    connection to a Tahoe node is cut and counted as on a stock Tub.
  - A connection that did escape is one the application chose to serve.
    Under Tahoe a peer's first bytes do steer that choice (anything but
    C{GET /id/} gets HTTPS), but it is Tahoe's choice: the connection is
    then held exactly as stock Tahoe holds it (Tahoe's own TLS server,
    which has no handshake timeout), plus our C{close_timeout} -- never
    less protected than without sidetls.
A protocol that only delegates (keeps itself in place and forwards its
bytes to another) is indistinguishable from a slow negotiation and stays
under the limits: the safe side for a listener, and the reason the rule
asks for a visible hand-over.
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


def tookOver(app: Any, built: Any, builtType: type) -> bool:
    """
    Whether the application C{app}, before any C{startTLS}, has stopped
    being a Foolscap negotiation: it is no C{Negotiation}, and it is not
    C{built} (the protocol the connection was built with) still of
    C{builtType}.  See the module docstring for the rule and its reasons.
    """
    if isinstance(app, Negotiation):
        return False
    return app is not built or type(app) is not builtType


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
