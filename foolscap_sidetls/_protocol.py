"""
The one mechanism: a protocol wrapper that gives Foolscap a C{startTLS}
whose side comes from the connection's logical role.

Foolscap's C{Negotiation} speaks a plaintext HTTP-like header, then calls
C{self.transport.startTLS(ctx)}.  Twisted's socket transports answer that
by choosing the TLS side from the socket: a socket we connected sends a
ClientHello, an accepted one waits for it.  A listening Tub whose
connections are outbound sockets (I2P SAM C{STREAM ACCEPT}, reverse
tunnels, relays) therefore acts as a TLS client, and so does its dialer.

L{SideTLSProtocol} sits between the transport and Foolscap's protocol from
the moment the connection is built, when the role is known.  When Foolscap
asks for TLS it splices a L{TLSMemoryBIOProtocol} in between -- client for
a dialer, server for a listener -- and never calls the transport's own
C{startTLS}.  The transport underneath only has to move bytes: a TCP
socket in either direction, a child process's pipes, or another TLS
session (TLS inside TLS stacks because each layer only ever sees the one
below it as a byte pipe).

Layers, after the switch::

    Negotiation / Broker        (application: writes plaintext)
          |  ^
    SideTLSProtocol             (this module: the transport Foolscap sees)
          |  ^
    TLSMemoryBIOProtocol        (TLS client or server, chosen by role)
          |  ^
    underlying ITransport       (socket, pipe, outer TLS, memory)
"""

from __future__ import annotations

from typing import Any, Optional, cast

from zope.interface import directlyProvides, implementer, providedBy
from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    ISSLTransport,
    ITransport,
)
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger, LogLevel
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from OpenSSL.SSL import Error as SSLError
from foolscap.negotiate import Negotiation
from foolscap.tokens import DuplicateConnection, RemoteNegotiationError

from ._diagnosis import PREFIX_LENGTH, explainFailure, explainTimeout
from ._errors import NegotiationTimeout, TooManyNegotiating
from ._interfaces import ISideTLSTransport

log = Logger(namespace="foolscap_sidetls")

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

#: With C{max_negotiating}, a connection that has sent nothing for this long
#: is dropped before any other.  An honest dialer speaks as soon as it is
#: connected, but its first bytes reach us a round trip after we accepted
#: (over Tor or I2P a circuit's round trip, often a second or more); until
#: then a new connection is not suspect, only old.
SILENT_GRACE = 5.0

#: Foolscap's plaintext phase is a sequence of header blocks, each ending in
#: an empty line.
_END_OF_BLOCK = b"\r\n\r\n"

LISTENER = "listener"
DIALER = "dialer"


class _AbortByClosing:
    """
    A transport that lacks C{abortConnection} (process pipes, many
    third-party transports), given one that closes instead.

    L{TLSMemoryBIOProtocol} aborts its transport when it is closed before
    the handshake has finished; without this it would raise
    C{AttributeError} and leave the pipe open.
    """

    def __init__(self, transport: ITransport) -> None:
        self._transport = transport

    def abortConnection(self) -> None:
        self._transport.loseConnection()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@implementer(IProtocol, IHandshakeListener)
class _TLSApplicationSide:
    """
    What the TLS layer sees as its application: hands decrypted bytes up to
    the wrapper's application and tells the wrapper about handshake
    completion and loss, so failures can be explained before Foolscap reads
    them.

    The application is looked up on every call: Foolscap's C{Negotiation}
    rebinds its own C{dataReceived} and C{connectionLost} to the C{Broker}'s
    once negotiation is done.  Until then (after the handshake, while the
    encrypted hellos are exchanged) every delivery is followed by a check
    for that switch, which is how the wrapper learns that negotiation is
    over: the switch always happens inside a delivery.
    """

    def __init__(self, wrapper: "SideTLSProtocol") -> None:
        self._wrapper = wrapper

    def makeConnection(self, transport: ITransport) -> None:
        # The application was connected when the connection was built; the
        # TLS layer is created with _connectWrapped=False and never calls
        # this, but IProtocol requires it.
        pass

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        wrapper = self._wrapper
        if wrapper._closing:
            return
        app = wrapper._app
        app.dataReceived(data)
        if wrapper._handshakeDone and not wrapper._negotiated and not _foolscapNegotiating(app):
            wrapper._negotiationFinished()

    def handshakeCompleted(self) -> None:
        self._wrapper._handshakeCompleted()

    def connectionLost(self, reason: Failure) -> None:
        self._wrapper._tlsConnectionLost(reason)


def _discard(data: Any) -> None:
    pass


def _foolscapNegotiating(app: Any) -> bool:
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
    (tests/test_protocol.py checks the switch against the installed
    Foolscap.)
    """
    if not isinstance(app, Negotiation):
        return False
    handler = getattr(app, "dataReceived", None)
    return getattr(handler, "__self__", None) is app


def _benign(reason: Failure) -> bool:
    """
    Foolscap closing a connection for a reason it considers normal: parallel
    hints, or full-mesh applications such as Tahoe-LAFS, make duplicate
    connections, and one end rejects all but one (Foolscap logs these at
    its NOISY level).
    """
    if reason.check(DuplicateConnection):
        return True
    if reason.check(RemoteNegotiationError):
        args: tuple[Any, ...] = tuple(getattr(reason.value, "args", ()))
        return bool(args) and "Duplicate connection" in str(args[0])
    return False


def _describeFailure(failure: Failure) -> str:
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


@implementer(ISideTLSTransport)
class SideTLSProtocol(ProtocolWrapper):
    """
    The transport Foolscap sees: before the switch a pass-through, after it
    the front of a TLS session whose side is the connection's role.

    @ivar _app: The application protocol (Foolscap's C{Negotiation}); kept
        apart from C{wrappedProtocol}, which L{ProtocolWrapper} clears on
        disconnect, because wrapping endpoints hand it back to their caller.
    @ivar _tls: The spliced-in TLS layer, or L{None} before C{startTLS}.
    @ivar _tail: The last few plaintext bytes delivered, so an end-of-block
        marker split across two reads is still found.
    @ivar _peerPrefix: The first bytes the peer sent after the switch, kept
        only until the handshake is done, to explain a failure.
    @ivar _arrived: When the factory built this connection (its clock's
        seconds), for C{max_negotiating}.
    """

    factory: "SideTLSFactory"
    # Whatever moves the bytes: typed loosely because the point is that any
    # ITransport will do, with or without the optional methods we probe for.
    transport: Any
    tlsSide: Optional[str] = None
    _tls: Optional[TLSMemoryBIOProtocol] = None
    _producer: Optional[tuple[Any, bool]] = None
    _handshakeTimer: Any = None
    _handshakeDone = False
    _diagnosis: Optional[Exception] = None
    _appSide: Optional[_TLSApplicationSide] = None
    _negotiationTimer: Any = None
    #: Negotiation is over (the application took the connection): no more
    #: negotiation timeout, no more counting against max_negotiating.
    _negotiated = False
    _arrived = 0.0
    _closeTimer: Any = None
    #: Seconds after which the close timer aborted the connection, if it did.
    _closeAborted: Optional[float] = None
    #: This end (its application, or one of our limits) closed or aborted
    #: the connection: nothing more reaches the application.
    _closing = False
    #: Plaintext bytes arrived from the peer.
    _received = False
    _lost = False

    def __init__(self, factory: "SideTLSFactory", wrappedProtocol: IProtocol) -> None:
        ProtocolWrapper.__init__(self, factory, wrappedProtocol)
        self._app = wrappedProtocol
        self._tail = b""
        self._peerPrefix = b""

    @property
    def role(self) -> str:
        return DIALER if self.factory.isClient else LISTENER

    def __repr__(self) -> str:
        return "<SideTLSProtocol %s tls=%s over %r>" % (
            self.role,
            self.tlsSide,
            self.transport,
        )

    # -- ITLSTransport -----------------------------------------------------

    def startTLS(self, contextFactory: Any, normal: bool = True) -> None:
        """
        Splice a TLS layer in, on the side the role dictates.

        C{normal} keeps its Twisted meaning relative to our notion of the
        "normal" side: C{True} (Foolscap's only use) means the dialer is the
        TLS client; C{False} swaps them.
        """
        if self._lost:
            # Twisted's TCP transport refuses too (it has dropped its
            # protocol by then).  Starting would arm a handshake timer that
            # nothing cancels any more, and a TLS layer that could tell the
            # application of the loss a second time.  Foolscap gets here
            # through its debug timers, which its connectionLost fires.
            raise RuntimeError(
                "startTLS called after the connection was lost; there is no "
                "connection left to secure (%r)" % (self,)
            )
        if self._tls is not None:
            raise RuntimeError(
                "startTLS called twice on one connection; foolscap-sidetls "
                "starts exactly one TLS session per connection (stack another "
                "by wrapping this connection's endpoint, not by calling "
                "startTLS again)"
            )
        isClient = self.factory.isClient if normal else not self.factory.isClient
        tlsFactory = TLSMemoryBIOFactory(
            contextFactory, isClient, None, clock=self.factory.clock  # type: ignore[arg-type]
        )
        self._appSide = _TLSApplicationSide(self)
        tls = tlsFactory.protocol(tlsFactory, self._appSide, False)
        lower: Any = self.transport
        if getattr(lower, "abortConnection", None) is None:
            lower = _AbortByClosing(lower)

        producer = self._producer
        if producer is not None:
            # The TLS layer must stand between a producer and the bytes it
            # makes, or a paused socket would not pause it through TLS.
            self._producer = None
            self.transport.unregisterProducer()

        self._tls = tls
        self.tlsSide = "client" if isClient else "server"
        # What makeConnection declared, plus ISSLTransport.  (alsoProvides
        # costs ~20x more: it rebuilds the declaration and zope's cache
        # misses, which showed in the connections/s benchmark.)
        directlyProvides(self, providedBy(self.transport), ISSLTransport)
        # From now on application writes go straight into the TLS layer:
        # Banana writes several times per message.
        self.write = tls.write  # type: ignore[method-assign]
        self.writeSequence = tls.writeSequence  # type: ignore[method-assign]
        timeout = self.factory.handshakeTimeout
        if timeout:
            self._handshakeTimer = self.factory.clock.callLater(
                timeout, self._handshakeTimedOut, timeout
            )
        tls.makeConnection(lower)
        if producer is not None:
            tls.registerProducer(*producer)

    def getHandle(self) -> Any:
        if self._tls is not None:
            return self._tls.getHandle()
        return self.transport.getHandle()

    def getPeerCertificate(self) -> Any:
        if self._tls is not None:
            return self._tls.getPeerCertificate()
        return self.transport.getPeerCertificate()

    # -- ITransport / IConsumer --------------------------------------------

    def write(self, data: bytes) -> None:
        if self._tls is not None:
            self._tls.write(data)
        else:
            self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        if self._tls is not None:
            self._tls.writeSequence(data)
        else:
            self.transport.writeSequence(data)

    def _stopDelivering(self) -> None:
        """
        This end closed the connection: like a TCP transport, which stops
        reading once closed, let nothing more reach the application, in
        any phase, while the close completes.

        Foolscap's C{Negotiation} does not stop by itself: handed another
        header block after it closed, it rejects that one too -- another
        logged Failure, another C{500} line written -- so a peer that sends
        thousands of empty blocks in one read would get thousands of
        answers.  It would also report the last block's error instead of
        the one it closed the connection for.

        Done here, at close time, rather than by a test on every delivery:
        the plaintext loop stops on L{_closing}, and the TLS layer, which
        after negotiation hands plaintext straight to the application, is
        pointed back at L{_TLSApplicationSide}, which drops it.  (The TLS
        layer itself still reads: the peer's close_notify ends the close.)
        """
        self.disconnecting = True
        self._closing = True
        tls = self._tls
        if tls is not None:
            tls.wrappedProtocol = self._appSide  # type: ignore[assignment]

    def loseConnection(self) -> None:
        self._stopDelivering()
        timeout = self.factory.closeTimeout
        if timeout and self._closeTimer is None and not self._lost:
            self._closeTimer = self.factory.clock.callLater(
                timeout, self._closeTimedOut, timeout
            )
        tls = self._tls
        if tls is not None:
            tls.loseConnection()
        else:
            self.transport.loseConnection()

    def abortConnection(self) -> None:
        self._stopDelivering()
        if self.transport is None or self._lost:
            return
        if self._tls is not None:
            self._tls.abortConnection()
        elif getattr(self.transport, "abortConnection", None) is not None:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self._tls is not None:
            self._tls.registerProducer(producer, streaming)
        else:
            self.transport.registerProducer(producer, streaming)
            self._producer = (producer, streaming)

    def unregisterProducer(self) -> None:
        if self._tls is not None:
            self._tls.unregisterProducer()
        else:
            self._producer = None
            self.transport.unregisterProducer()

    # -- ITCPTransport options ----------------------------------------------
    #
    # ITLSTransport extends ITCPTransport, so Banana (which checks for it)
    # sets TCP_NODELAY on us.  Pass the options to a transport that has
    # them; over pipes or memory there is no such thing, and saying "off"
    # is the truth.

    def setTcpNoDelay(self, enabled: bool) -> None:
        setter = getattr(self.transport, "setTcpNoDelay", None)
        if setter is not None:
            setter(enabled)

    def getTcpNoDelay(self) -> bool:
        getter = getattr(self.transport, "getTcpNoDelay", None)
        return bool(getter()) if getter is not None else False

    def setTcpKeepAlive(self, enabled: bool) -> None:
        setter = getattr(self.transport, "setTcpKeepAlive", None)
        if setter is not None:
            setter(enabled)

    def getTcpKeepAlive(self) -> bool:
        getter = getattr(self.transport, "getTcpKeepAlive", None)
        return bool(getter()) if getter is not None else False

    # -- IProtocol (from the transport below) ------------------------------

    def connectionMade(self) -> None:
        timeout = self.factory.negotiationTimeout
        if timeout:
            self._negotiationTimer = self.factory.clock.callLater(
                timeout, self._negotiationTimedOut, timeout
            )

    def dataReceived(self, data: bytes) -> None:
        tls = self._tls
        if tls is not None:
            if not self._handshakeDone and len(self._peerPrefix) < PREFIX_LENGTH:
                self._peerPrefix += data[: PREFIX_LENGTH - len(self._peerPrefix)]
            tls.dataReceived(data)
            return
        # Plaintext phase: hand Foolscap one header block at a time, so that
        # when a block makes it call startTLS, whatever follows the block in
        # this same read goes to the TLS layer and not to Foolscap's header
        # parser.
        if data and not self._received:
            self._received = True
            self.factory._spoke(self)
        if self._closing:
            return
        while data:
            scan = self._tail + data
            found = scan.find(_END_OF_BLOCK)
            if found == -1:
                self._tail = scan[-(len(_END_OF_BLOCK) - 1) :]
                self._app.dataReceived(data)
                return
            cut = found + len(_END_OF_BLOCK) - len(self._tail)
            block, data = data[:cut], data[cut:]
            self._tail = b""
            self._app.dataReceived(block)
            if self._closing:
                # The application closed on that block: the rest of this
                # read is not for it (see _stopDelivering).
                return
            if self._tls is not None:
                if data:
                    self.dataReceived(data)
                return

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._cancelHandshakeTimer()
        for name in ("_negotiationTimer", "_closeTimer"):
            timer = getattr(self, name)
            if timer is not None:
                if timer.active():
                    timer.cancel()
                setattr(self, name, None)
        self.factory._forget(self)
        tls = self._tls
        if tls is None:
            self.factory.unregisterProtocol(self)
            self._tellApplication(reason)
            return
        # Writes after the connection is gone are dropped, as Twisted's own
        # transports drop them, instead of reaching a torn-down TLS layer.
        self.write = self.writeSequence = _discard  # type: ignore[method-assign]
        self.factory.unregisterProtocol(self)
        # The TLS layer tells the application through _tlsConnectionLost, so
        # that a failure can be explained and reported; after the handshake
        # its application is Foolscap's directly, for speed, so point it back
        # at us for this one last call.
        tls.wrappedProtocol = self._appSide  # type: ignore[assignment]
        tls.connectionLost(reason)
        self.wrappedProtocol = None  # type: ignore[assignment]

    # -- from the TLS layer ------------------------------------------------

    def _handshakeCompleted(self) -> None:
        self._handshakeDone = True
        self._peerPrefix = b""
        self._cancelHandshakeTimer()
        # Nothing left to explain: let ciphertext go straight to the TLS
        # layer and plaintext straight to the application, one call each
        # instead of two (bulk transfers make thousands of these).  The TLS
        # layer then reports loss to the application itself.
        tls = self._tls
        assert tls is not None
        self.dataReceived = tls.dataReceived  # type: ignore[method-assign]
        # Foolscap still exchanges encrypted hellos: plaintext goes on
        # through _TLSApplicationSide, which notices the switch to Banana.
        if not _foolscapNegotiating(self._app):
            self._negotiationFinished()

    def _negotiationFinished(self) -> None:
        """
        The application has the connection: stop the negotiation timer (a
        live connection should hold no delayed call), leave the
        C{max_negotiating} count, and let plaintext go straight to the
        application from now on.
        """
        self._negotiated = True
        timer = self._negotiationTimer
        if timer is not None:
            if timer.active():
                timer.cancel()
            self._negotiationTimer = None
        self.factory._forget(self)
        tls = self._tls
        if tls is not None and not self._closing:
            tls.wrappedProtocol = self._app

    def _negotiationTimedOut(self, timeout: float) -> None:
        self._negotiationTimer = None
        if self._lost or not self._stillNegotiating():
            return
        self._diagnosis = NegotiationTimeout(
            "negotiation failed %s: it did not complete within %g s (negotiation_timeout)"
            % (self._phase(), timeout)
        )
        self.abortConnection()

    def _closeTimedOut(self, timeout: float) -> None:
        """
        This end closed the connection and the peer has not finished the
        close (it neither answered TLS's close_notify nor closed, or it
        stopped reading what we still had to send): abort.
        """
        self._closeTimer = None
        if self._lost:
            return
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:  # else (some pipes) closing is all there is
            self._closeAborted = timeout
            abort()

    def _evict(self, limit: int, silent: bool, grace: float) -> None:
        """Drop this still-negotiating connection to admit a newer one."""
        if self._lost:
            return
        if silent:
            why = "it had sent nothing for %g s or more, and was the oldest such" % (grace,)
        else:
            why = "it was the oldest (none had been silent for %g s)" % (grace,)
        self._diagnosis = TooManyNegotiating(
            "negotiation failed %s: dropped to admit a new connection: %d connections "
            "were negotiating (max_negotiating=%d) and %s" % (self._phase(), limit, limit, why)
        )
        self.abortConnection()

    def _stillNegotiating(self) -> bool:
        if self._negotiated:
            return False
        if not self._handshakeDone:
            return True
        return _foolscapNegotiating(self._app)

    def _phase(self) -> str:
        if self._tls is None:
            if not self._received:
                return "before the peer sent anything"
            return "in the plaintext header exchange"
        if not self._handshakeDone:
            return "in the TLS handshake"
        if _foolscapNegotiating(self._app):
            return "in Foolscap's negotiation after the TLS handshake"
        return "after negotiation"

    def _peerText(self) -> str:
        try:
            peer = self.transport.getPeer()
        except Exception:
            return "an unknown peer"
        host = getattr(peer, "host", None)
        port = getattr(peer, "port", None)
        if host is not None and port is not None:
            return "%s:%s" % (host, port)
        return str(peer)

    def _report(self, reason: Failure) -> None:
        """
        Log one line for a connection that failed: while negotiating (for
        any reason but this end dropping a connection it no longer wanted,
        such as a losing hint), after negotiation when it did not end
        cleanly, or when the close had to be forced.

        A peer that hangs up cleanly while negotiating, or that Foolscap
        turns away as a duplicate, gets its line at debug level: that is
        also what an honest dialer does with the hints that lost the race
        (Foolscap itself logs these at its NOISY level).  The rest are info.
        """
        if self._closeAborted is not None:
            self._log(
                LogLevel.info,
                "{where}: closed by aborting it, the peer did not complete the "
                "close within {seconds} s (it neither answered nor read)",
                seconds="%g" % (self._closeAborted,),
            )
            return
        explained = self._diagnosis is not None
        foolscapReason = getattr(self._app, "failureReason", None)
        if not explained and isinstance(foolscapReason, Failure):
            # Foolscap's own reason (an unknown TubID, a TubID mismatch, its
            # negotiation timeout): what it closed the connection for.
            reason = foolscapReason
            explained = True
        if self._stillNegotiating():
            if not explained and self._closing and reason.check(ConnectionDone):
                return
            quiet = _benign(reason) or (not explained and reason.check(ConnectionDone))
            if isinstance(self._diagnosis, (NegotiationTimeout, TooManyNegotiating)):
                # Ours, and it already says where negotiation stopped.
                self._log(
                    LogLevel.debug if quiet else LogLevel.info,
                    "{where}: {why}",
                    phase=self._phase(),
                    why=_describeFailure(reason),
                )
                return
            self._log(
                LogLevel.debug if quiet else LogLevel.info,
                "{where}: negotiation failed {phase}: {why}",
                phase=self._phase(),
                why=_describeFailure(reason),
            )
        elif not reason.check(ConnectionDone):
            self._log(LogLevel.info, "{where}: connection lost: {why}", why=_describeFailure(reason))

    def _log(self, level: LogLevel, format: str, **fields: Any) -> None:
        """Emit one line, saying which connection (and with the role and peer as fields)."""
        peer = self._peerText()
        where = "sidetls %s, connection %s %s" % (
            self.role,
            "to" if self.factory.isClient else "from",
            peer,
        )
        log.emit(level, format, where=where, role=self.role, peer=peer, **fields)

    def _handshakeTimedOut(self, timeout: float) -> None:
        self._handshakeTimer = None
        self._diagnosis = explainTimeout(
            self.tlsSide == "client", self._peerPrefix, timeout
        )
        self.abortConnection()

    def _cancelHandshakeTimer(self) -> None:
        if self._handshakeTimer is not None:
            if self._handshakeTimer.active():
                self._handshakeTimer.cancel()
            self._handshakeTimer = None

    def _tlsConnectionLost(self, reason: Failure) -> None:
        self._tellApplication(reason)

    def _tellApplication(self, reason: Failure) -> None:
        """The connection is gone: explain why if we can, log it, tell the application."""
        if self._diagnosis is not None:
            reason = Failure(self._diagnosis)
        elif self._tls is not None and not self._handshakeDone and reason.check(SSLError):
            explained = explainFailure(self.tlsSide == "client", self._peerPrefix)
            if explained is not None:
                reason = Failure(explained)
        self._report(reason)
        app = self._app
        self.wrappedProtocol = None  # type: ignore[assignment]
        app.connectionLost(reason)


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


class SideTLSFactory(WrappingFactory):
    """
    Builds L{SideTLSProtocol}s for one role around another factory's
    protocols.

    @ivar isClient: L{True} for dialers (TLS client), L{False} for listeners.
    @ivar clock: Schedules the timeouts and TLS write batching; tests pass a
        L{twisted.internet.task.Clock}.
    @ivar negotiationTimeout: Seconds a connection may take from its start
        to the end of Foolscap's negotiation, or L{None} (Foolscap's own
        limits then apply: 120 s for a listener, C{Negotiation.SERVER_TIMEOUT};
        120 s for a dialer's whole attempt, C{TubConnector.CONNECTION_TIMEOUT}).
    @ivar closeTimeout: Seconds the peer gets to finish a close this end
        started before the connection is aborted, or L{None}.
    @ivar maxNegotiating: At most this many connections still negotiating;
        see L{_makeRoom} for which one a new connection beyond it drops.
        L{None}: no limit.
    @ivar silentGrace: Seconds after which a connection that has sent
        nothing is dropped before any other (L{SILENT_GRACE}).
    @ivar negotiating: The connections still negotiating, oldest first,
        when C{maxNegotiating} is set (else L{None}).
    @ivar _silent: Those of them that have sent nothing yet, oldest first.
    """

    protocol = SideTLSProtocol
    noisy = False
    silentGrace = SILENT_GRACE

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        isClient: bool,
        clock: Optional[IReactorTime] = None,
        handshakeTimeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
        negotiationTimeout: Optional[float] = None,
        closeTimeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
        maxNegotiating: Optional[int] = None,
    ) -> None:
        WrappingFactory.__init__(self, wrappedFactory)  # type: ignore[arg-type]
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.isClient = isClient
        self.clock: IReactorTime = clock
        self.handshakeTimeout = handshakeTimeout
        self.negotiationTimeout = negotiationTimeout
        self.closeTimeout = closeTimeout
        self.maxNegotiating = maxNegotiating
        # Insertion-ordered dicts: oldest first, O(1) removal of any entry.
        self.negotiating: Optional[dict[SideTLSProtocol, None]] = (
            {} if maxNegotiating is not None else None
        )
        self._silent: dict[SideTLSProtocol, None] = {}

    def buildProtocol(self, addr: Any) -> Any:
        if not (hasattr(addr, "host") and hasattr(addr, "port")):
            addr = _HostPortAddress(addr)
        app = self.wrappedFactory.buildProtocol(addr)
        if app is None:
            return None
        protocol = self.protocol(self, app)
        registry = self.negotiating
        if registry is not None:
            self._makeRoom(registry)
            protocol._arrived = self.clock.seconds()
            registry[protocol] = None
            self._silent[protocol] = None
        return protocol

    def _spoke(self, protocol: SideTLSProtocol) -> None:
        """C{protocol}'s peer sent its first bytes."""
        self._silent.pop(protocol, None)

    def _forget(self, protocol: SideTLSProtocol) -> None:
        """C{protocol} is no longer negotiating (it finished, failed or was dropped)."""
        registry = self.negotiating
        if registry is not None:
            registry.pop(protocol, None)
            self._silent.pop(protocol, None)

    def _makeRoom(self, registry: "dict[SideTLSProtocol, None]") -> None:
        """
        Keep fewer than C{maxNegotiating} connections negotiating, by
        dropping the oldest connection that has sent nothing for
        C{silentGrace} seconds or more, or, when there is none, the oldest
        connection of all.

        What that guarantees: while some connection has been silent that
        long, no other is dropped; and a connection that has not been is
        dropped only when C{maxNegotiating - 1} connections newer than it
        are still negotiating.  An honest peer that finishes negotiating in
        T seconds therefore gets in unless C{maxNegotiating - 1} others
        arrived within those T seconds and were still at it -- whatever
        those others sent (nothing, a valid plaintext request for the
        public TubID, a TLS handshake) before stalling.  How far a
        connection got is deliberately not a rank: an attacker can get as
        far as an honest peer mid-negotiation (up to the encrypted hello,
        which needs only a self-made certificate), and would then outrank
        every honest peer still behind it.

        Amortized O(1): both registries are ordered dicts; connections that
        finished are removed as they finish (or here, when found).
        """
        limit = self.maxNegotiating
        assert limit is not None
        silent = self._silent
        while len(registry) >= limit:
            victim = None
            wasSilent = False
            if silent:
                oldest = next(iter(silent))
                if self.clock.seconds() - oldest._arrived >= self.silentGrace:
                    victim, wasSilent = oldest, True
            if victim is None:
                victim = next(iter(registry))
            self._forget(victim)
            if victim._stillNegotiating():
                victim._evict(limit, wasSilent, self.silentGrace)
