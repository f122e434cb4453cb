"""
What a connection's end is explained as, and the one line logged for it.

The wrapper knows things the application does not -- the peer's first TLS
bytes, which of our limits fired, that this end forced a close -- and
tells them here, once, when the connection is gone: L{explain} turns them
into the failure the application (and so Foolscap's C{getReference}
errback) sees, and L{report} logs at most one line per connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from OpenSSL.SSL import Error as SSLError

from . import _foolscap
from ._diagnosis import explainFailure
from ._errors import NegotiationTimeout, TooManyNegotiating
from ._phase import Phase

if TYPE_CHECKING:
    from ._protocol import SideTLSProtocol

log = Logger(namespace="foolscap_sidetls")


def describeFailure(failure: Failure) -> str:
    """One line for a connection's end: OpenSSL's reasons, or the exception's text."""
    value = failure.value
    if value is None:
        return "unknown reason"
    if isinstance(value, SSLError):
        reasons = []
        if value.args and isinstance(value.args[0], list):
            for entry in value.args[0]:
                if isinstance(entry, tuple) and entry and entry[-1]:
                    reasons.append(str(entry[-1]))
        return "TLS error: %s" % (", ".join(reasons) or str(value) or repr(value),)
    if isinstance(value, ConnectionDone):
        return "the peer closed the connection"
    if isinstance(value, ConnectionLost):
        return "the connection was lost (the peer closed it mid-stream, or it was reset)"
    if value.args and all(isinstance(arg, str) for arg in value.args):
        # str() of some Foolscap exceptions is a tuple's repr
        text = " ".join(value.args)
    else:
        text = str(value)
    text = " ".join(text.split())
    if type(value).__module__.startswith("foolscap.") and type(value).__name__ not in text:
        text = "%s: %s" % (type(value).__name__, text)
    return text or type(value).__name__


def peerText(transport: Any) -> str:
    """The peer's address as a log line shows it: C{host:port} where there is one."""
    try:
        peer = transport.getPeer()
    except Exception:
        return "an unknown peer"
    host = getattr(peer, "host", None)
    port = getattr(peer, "port", None)
    if host is not None and port is not None:
        return "%s:%s" % (host, port)
    return str(peer)


def explain(connection: "SideTLSProtocol", reason: Failure) -> Failure:
    """
    The failure the application is told: our own diagnosis (a limit that
    fired), or a handshake error explained from the peer's first bytes,
    or else C{reason} as it came.
    """
    if connection._diagnosis is not None:
        return Failure(connection._diagnosis)
    if connection._reached is Phase.HANDSHAKING and reason.check(SSLError):
        explained = explainFailure(connection.tlsSide == "client", connection._peerPrefix)
        if explained is not None:
            return Failure(explained)
    return reason


def emit(connection: "SideTLSProtocol", level: LogLevel, format: str, **fields: Any) -> None:
    """Emit one line, saying which connection (and with the role, peer and phase as fields)."""
    peer = connection._peerText()
    where = "sidetls %s, connection %s %s" % (
        connection.role,
        "to" if connection.factory.isClient else "from",
        peer,
    )
    log.emit(
        level,
        format,
        where=where,
        role=connection.role,
        peer=peer,
        phase=connection.phase.value,
        **fields,
    )


def report(connection: "SideTLSProtocol", reason: Failure) -> None:
    """
    Log one line for a connection that failed: while negotiating (for any
    reason but this end dropping a connection it no longer wanted, such as
    a losing hint), after negotiation -- or after its application took it
    over, when it was never Foolscap's (L{Phase.PASSTHROUGH}) -- when it
    did not end cleanly, or when the close had to be forced.

    A peer that hangs up cleanly while negotiating, or that Foolscap turns
    away as a duplicate, gets its line at debug level: that is also what an
    honest dialer does with the hints that lost the race (Foolscap itself
    logs these at its NOISY level).  The rest are info.
    """
    if connection._closeAborted is not None:
        emit(
            connection,
            LogLevel.info,
            "{where}: closed by aborting it, the peer did not complete the "
            "close within {seconds} s (it neither answered nor read)",
            seconds="%g" % (connection._closeAborted,),
        )
        return
    explained = connection._diagnosis is not None
    foolscapReason = _foolscap.failureReason(connection.wrappedProtocol)
    if not explained and foolscapReason is not None:
        # Foolscap's own reason: what it closed the connection for.
        reason = foolscapReason
        explained = True
    if not connection._stillNegotiating():
        if not reason.check(ConnectionDone):
            emit(connection, LogLevel.info, "{where}: connection lost: {why}", why=describeFailure(reason))
        return
    if not explained and connection._closedHere and reason.check(ConnectionDone):
        return
    quiet = _foolscap.benign(reason) or (not explained and reason.check(ConnectionDone))
    # Our own limits' reasons already say where negotiation stopped.
    ours = isinstance(connection._diagnosis, (NegotiationTimeout, TooManyNegotiating))
    emit(
        connection,
        LogLevel.debug if quiet else LogLevel.info,
        "{where}: {why}" if ours else "{where}: negotiation failed {stage}: {why}",
        stage=connection._stage(),
        why=describeFailure(reason),
    )
