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

An application that stops being a Foolscap negotiation before
C{startTLS} (Tahoe-LAFS's HTTPS storage server on a Tub's port) leaves
the negotiation limits at that moment and its bytes pass through
untouched: L{Phase.PASSTHROUGH}, and L{_foolscap.tookOver} for the rule.

This module is the splice: choosing the side, putting the TLS layer in,
passing writes and producers through.  It stays one piece (about the size
of C{twisted/protocols/tls.py}, which does the same job in one module)
because it is one object seen from three sides: L{SideTLSProtocol} is the
transport Foolscap writes to, the protocol the transport delivers to, and
the producer/consumer between them, and its methods share one
connection's state; the measured hot-path shortcuts sit beside the
methods they replace.  Around it, each in its own module:
the connection's phase (L{_phase}), the C{max_negotiating} policy
(L{_admission}), what a failure is explained and logged as
(L{_reporting}, L{_diagnosis}), and every read of Foolscap's private
state (L{_foolscap}).
"""

from __future__ import annotations

from typing import Any, Optional, cast

from zope.interface import directlyProvides, implementer, providedBy
from twisted.internet.interfaces import (
    IHandshakeListener,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    ISSLTransport,
    ITransport,
)
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from . import _foolscap, _reporting
from ._admission import SILENT_GRACE, Admission
from ._diagnosis import PREFIX_LENGTH, explainTimeout
from ._errors import NegotiationTimeout, TooManyNegotiating
from ._interfaces import ISideTLSTransport
from ._limits import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    UNSET,
    Count,
    Limits,
    Seconds,
    resolve,
)
from ._phase import LIVE, Phase, checkTransition, describe

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DIALER",
    "LISTENER",
    "SILENT_GRACE",
    "Phase",
    "SideTLSFactory",
    "SideTLSProtocol",
]

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
    What the TLS layer sees as its application until negotiation is over:
    hands decrypted bytes up to the wrapper's application and tells the
    wrapper about handshake completion and loss, so failures can be
    explained before Foolscap reads them.

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
        if wrapper._closedHere:
            return
        app = wrapper.wrappedProtocol
        app.dataReceived(data)
        if wrapper._reached is Phase.NEGOTIATING and not _foolscap.negotiating(app):
            wrapper._negotiationFinished()

    def handshakeCompleted(self) -> None:
        self._wrapper._handshakeCompleted()

    def connectionLost(self, reason: Failure) -> None:
        self._wrapper._tellApplication(reason)


def _discard(data: Any) -> None:
    pass


@implementer(ISideTLSTransport)
class SideTLSProtocol(ProtocolWrapper):
    """
    The transport Foolscap sees: before the switch a pass-through, after it
    the front of a TLS session whose side is the connection's role.

    C{wrappedProtocol} is the application (Foolscap's C{Negotiation}) for
    the connection's whole life: unlike L{ProtocolWrapper}, this wrapper
    does not clear it on disconnect, because wrapping endpoints hand it
    back to their caller.

    @ivar _phase: Where the connection stands (see L{phase}).
    @ivar _reached: The last live phase reached: how far negotiation got,
        which goes on counting after this end closes (a handshake can
        complete during the close) and is what a failure is reported as.
    @ivar _closedHere: This end (its application, or one of our limits)
        closed or aborted the connection: nothing more reaches the
        application.
    @ivar _received: Plaintext bytes arrived from the peer.
    @ivar _tls: The spliced-in TLS layer, or L{None} before C{startTLS}.
    @ivar _tail: The last few plaintext bytes delivered, so an end-of-block
        marker split across two reads is still found.
    @ivar _peerPrefix: The first bytes the peer sent after the switch, kept
        only until the handshake is done, to explain a failure.
    @ivar _diagnosis: Our explanation of the connection's end, when one of
        our limits ended it.
    @ivar _closeAborted: Seconds after which the close timer aborted the
        connection, if it did.
    @ivar _built: The application the connection was built with, until it
        leaves the plaintext phase (see L{_foolscap.tookOver}).
    """

    factory: "SideTLSFactory"
    # Whatever moves the bytes: typed loosely because the point is that any
    # ITransport will do, with or without the optional methods we probe for.
    transport: Any
    tlsSide: Optional[str] = None
    _phase = Phase.PLAINTEXT
    _reached = Phase.PLAINTEXT
    _closedHere = False
    _received = False
    _tls: Optional[TLSMemoryBIOProtocol] = None
    _appSide: Optional[_TLSApplicationSide] = None
    _producer: Optional[tuple[Any, bool]] = None
    _handshakeTimer: Any = None
    _negotiationTimer: Any = None
    _closeTimer: Any = None
    _diagnosis: Optional[Exception] = None
    _closeAborted: Optional[float] = None
    _built: Any = None
    _builtType: type = object

    def __init__(self, factory: "SideTLSFactory", wrappedProtocol: IProtocol) -> None:
        ProtocolWrapper.__init__(self, factory, wrappedProtocol)
        self._tail = b""
        self._peerPrefix = b""
        # What the connection was built with: while the application is
        # still this (or a Foolscap Negotiation), it is negotiating.
        self._built = wrappedProtocol
        self._builtType = type(wrappedProtocol)

    @property
    def role(self) -> str:
        return DIALER if self.factory.isClient else LISTENER

    @property
    def phase(self) -> Phase:
        """Where the connection stands: what logs print and tests check."""
        return self._phase

    @property
    def protocol(self) -> IProtocol:
        """
        The application, by the name Twisted's socket transports give it:
        code that hands a connection to another protocol by assigning
        C{transport.protocol} (C{twisted.conch.telnet}, autobahn's WebSocket
        upgrade) does the same over this wrapper as over a socket.
        """
        return self.wrappedProtocol

    @protocol.setter
    def protocol(self, application: IProtocol) -> None:
        self.wrappedProtocol = application
        if self._reached is Phase.PLAINTEXT:
            self._noticeTakeover()
        self._shortcut()

    def __repr__(self) -> str:
        return "<SideTLSProtocol %s %s tls=%s over %r>" % (
            self.role,
            self._phase.value,
            self.tlsSide,
            self.transport,
        )

    # -- the phase ---------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        """Move to C{phase}; L{_phase.NEXT} says which moves there are."""
        checkTransition(self._phase, phase)
        self._phase = phase
        if phase in LIVE:
            self._reached = phase
        self._shortcut()

    def _progress(self, phase: Phase) -> None:
        """Negotiation reached C{phase}: enter it, or after a close only note it."""
        if self._phase in LIVE:
            self._enter(phase)
        else:
            self._reached = phase
            self._shortcut()

    def _shortcut(self) -> None:
        """
        The hot path's shortcuts, all of them, set from the phase: the one
        place that rebinds methods.

        Measured in the bulk and connections/s benchmarks: a bulk transfer
        makes thousands of reads and Banana writes several times per
        message, and a second call per read or write showed.  So, once TLS
        is in:
          - the application's writes go straight to the TLS layer;
          - once the handshake is done (nothing left to explain from the
            peer's first bytes), ciphertext goes straight from the transport
            to the TLS layer;
          - once ESTABLISHED, the TLS layer hands plaintext straight to the
            application; in any other phase it hands it to
            L{_TLSApplicationSide}, which watches for Foolscap's switch to
            its Broker, drops deliveries after this end closed, and routes
            the loss through L{_tellApplication} so it is explained;
          - once LOST, writes are dropped, as Twisted's own transports drop
            them, instead of reaching a torn-down TLS layer.
        Without TLS, in PASSTHROUGH, reads skip the header-block scan and
        writes go straight to the transport (CLOSING restores the reads'
        filter, which drops them).
        """
        tls = self._tls
        if tls is None:
            # Taken over (Tahoe's HTTPS, say): reads go straight to whatever
            # the application now is, and writes straight down, until this
            # end closes.
            if self._phase is Phase.PASSTHROUGH:
                self.dataReceived = self._passThrough  # type: ignore[method-assign]
                self.write = self.transport.write  # type: ignore[method-assign]
                self.writeSequence = self.transport.writeSequence  # type: ignore[method-assign]
            else:
                self.__dict__.pop("dataReceived", None)
            return
        if self._phase is Phase.LOST:
            self.write = self.writeSequence = _discard  # type: ignore[method-assign]
        else:
            self.write = tls.write  # type: ignore[method-assign]
            self.writeSequence = tls.writeSequence  # type: ignore[method-assign]
        if self._reached is not Phase.HANDSHAKING:
            self.dataReceived = tls.dataReceived  # type: ignore[method-assign]
        if self._phase is Phase.ESTABLISHED:
            tls.wrappedProtocol = self.wrappedProtocol
        else:
            tls.wrappedProtocol = self._appSide  # type: ignore[assignment]

    def _stillNegotiating(self) -> bool:
        reached = self._reached
        if reached is Phase.PLAINTEXT:
            # Every limit asks this before it acts: a hand-over made outside
            # a delivery is seen here, before it could be cut.
            return not self._noticeTakeover()
        if reached is Phase.ESTABLISHED or reached is Phase.PASSTHROUGH:
            return False
        if reached is not Phase.NEGOTIATING:
            return True
        return _foolscap.negotiating(self.wrappedProtocol)

    def _noticeTakeover(self) -> bool:
        """
        Whether the application has taken the connection over from
        Foolscap's negotiation (L{_foolscap.tookOver}); the first time it is
        seen, leave the negotiation limits.  Only asked before C{startTLS}.
        """
        if not _foolscap.tookOver(self.wrappedProtocol, self._built, self._builtType):
            return False
        self._built = None
        self._leaveNegotiating(Phase.PASSTHROUGH)
        return True

    def _stage(self) -> str:
        """Where negotiation stood, in words."""
        return describe(self._reached, self._received, self._stillNegotiating())

    # -- ITLSTransport -----------------------------------------------------

    def startTLS(self, contextFactory: Any, normal: bool = True) -> None:
        """
        Splice a TLS layer in, on the side the role dictates.

        C{normal} keeps its Twisted meaning relative to our notion of the
        "normal" side: C{True} (Foolscap's only use) means the dialer is the
        TLS client; C{False} swaps them.
        """
        if self._reached is Phase.PASSTHROUGH:
            raise RuntimeError(
                "startTLS called after the application took the connection over "
                "from Foolscap's negotiation (phase passthrough): foolscap-sidetls "
                "starts TLS only for Foolscap; a protocol that takes the connection "
                "over runs its own TLS above it, as Tahoe-LAFS's HTTPS storage "
                "server does (%r)" % (self,)
            )
        if self._phase is Phase.LOST:
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
        self._progress(Phase.HANDSHAKING)
        timeout = self.factory.limits.handshake_timeout
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
    #
    # Once TLS is in, write and writeSequence are rebound (L{_shortcut});
    # these serve the plaintext phase, and anyone who kept a bound method.

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
        the plaintext loop stops on L{_closedHere}, and entering CLOSING
        points the TLS layer back at L{_TLSApplicationSide}, which drops
        what it is handed.  (The TLS layer itself still reads: the peer's
        close_notify ends the close.)
        """
        self.disconnecting = True
        self._closedHere = True
        if self._phase in LIVE:
            self._enter(Phase.CLOSING)

    def loseConnection(self) -> None:
        self._stopDelivering()
        timeout = self.factory.limits.close_timeout
        if timeout and self._closeTimer is None and self._phase is not Phase.LOST:
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
        if self.transport is None or self._phase is Phase.LOST:
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
        self._setOption("setTcpNoDelay", enabled)

    def getTcpNoDelay(self) -> bool:
        return self._getOption("getTcpNoDelay")

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self._setOption("setTcpKeepAlive", enabled)

    def getTcpKeepAlive(self) -> bool:
        return self._getOption("getTcpKeepAlive")

    def _setOption(self, name: str, enabled: bool) -> None:
        setter = getattr(self.transport, name, None)
        if setter is not None:
            setter(enabled)

    def _getOption(self, name: str) -> bool:
        getter = getattr(self.transport, name, None)
        return bool(getter()) if getter is not None else False

    # -- IProtocol (from the transport below) ------------------------------

    def makeConnection(self, transport: Any) -> None:
        ProtocolWrapper.makeConnection(self, transport)
        # An application may hand the connection over as soon as it has it.
        if self._reached is Phase.PLAINTEXT:
            self._noticeTakeover()

    def connectionMade(self) -> None:
        timeout = self.factory.limits.negotiation_timeout
        if timeout:
            self._negotiationTimer = self.factory.clock.callLater(
                timeout, self._negotiationTimedOut, timeout
            )

    def dataReceived(self, data: bytes) -> None:
        tls = self._tls
        if tls is not None:
            if self._reached is Phase.HANDSHAKING and len(self._peerPrefix) < PREFIX_LENGTH:
                self._peerPrefix += data[: PREFIX_LENGTH - len(self._peerPrefix)]
            tls.dataReceived(data)
            return
        # Plaintext phase: hand Foolscap one header block at a time, so that
        # when a block makes it call startTLS, whatever follows the block in
        # this same read goes to the TLS layer and not to Foolscap's header
        # parser.
        if data and not self._received:
            self._received = True
            self.factory.admission.spoke(self)
        if self._closedHere:
            return
        while data:
            scan = self._tail + data
            found = scan.find(_END_OF_BLOCK)
            if found == -1:
                self._tail = scan[-(len(_END_OF_BLOCK) - 1) :]
                block, data = data, b""
            else:
                cut = found + len(_END_OF_BLOCK) - len(self._tail)
                block, data = data[:cut], data[cut:]
                self._tail = b""
            self.wrappedProtocol.dataReceived(block)
            if self._reached is Phase.PLAINTEXT and self._noticeTakeover():
                # Handed over on that block: the rest goes on untouched (to
                # _passThrough, or to nothing if it also closed).
                if data:
                    self.dataReceived(data)
                return
            if self._closedHere:
                # The application closed on that block: the rest of this
                # read is not for it (see _stopDelivering).
                return
            if self._tls is not None:
                if data:
                    self.dataReceived(data)
                return

    def _passThrough(self, data: bytes) -> None:
        """A read in PASSTHROUGH: to the application as it now is."""
        self.wrappedProtocol.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._phase is Phase.LOST:
            return
        self._enter(Phase.LOST)
        for name in ("_handshakeTimer", "_negotiationTimer", "_closeTimer"):
            self._cancel(name)
        self.factory.admission.forget(self)
        self.factory.unregisterProtocol(self)
        tls = self._tls
        if tls is None:
            self._tellApplication(reason)
        else:
            # The TLS layer tells the application through
            # _TLSApplicationSide (entering LOST pointed it there), so that
            # a failure can be explained and reported.
            tls.connectionLost(reason)

    # -- from the TLS layer ------------------------------------------------

    def _handshakeCompleted(self) -> None:
        self._peerPrefix = b""
        self._cancel("_handshakeTimer")
        self._progress(Phase.NEGOTIATING)
        # Foolscap still exchanges encrypted hellos: plaintext goes on
        # through _TLSApplicationSide, which notices the switch to Banana.
        if not _foolscap.negotiating(self.wrappedProtocol):
            self._negotiationFinished()

    def _negotiationFinished(self) -> None:
        """Foolscap's C{Broker} has the connection."""
        self._leaveNegotiating(Phase.ESTABLISHED)

    def _leaveNegotiating(self, phase: Phase) -> None:
        """
        The application has the connection, in C{phase}: stop the
        negotiation timer (a live connection should hold no delayed call),
        leave the C{max_negotiating} count, and let bytes go straight to
        the application from now on.
        """
        self._cancel("_negotiationTimer")
        self.factory.admission.forget(self)
        self._progress(phase)

    def _tellApplication(self, reason: Failure) -> None:
        """The connection is gone: explain why if we can, log it, tell the application."""
        reason = _reporting.explain(self, reason)
        _reporting.report(self, reason)
        self.wrappedProtocol.connectionLost(reason)

    # -- our limits --------------------------------------------------------

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name)
        if timer is not None:
            if timer.active():
                timer.cancel()
            setattr(self, name, None)

    def _handshakeTimedOut(self, timeout: float) -> None:
        self._handshakeTimer = None
        self._abortBecause(explainTimeout(self.tlsSide == "client", self._peerPrefix, timeout))

    def _negotiationTimedOut(self, timeout: float) -> None:
        self._negotiationTimer = None
        if self._phase is Phase.LOST or not self._stillNegotiating():
            return
        self._abortBecause(
            NegotiationTimeout(
                "negotiation failed %s: it did not complete within %g s (negotiation_timeout)"
                % (self._stage(), timeout)
            )
        )

    def _evict(self, explanation: str) -> None:
        """Drop this still-negotiating connection to admit a newer one (L{Admission})."""
        if self._phase is Phase.LOST:
            return
        self._abortBecause(
            TooManyNegotiating("negotiation failed %s: %s" % (self._stage(), explanation))
        )

    def _abortBecause(self, diagnosis: Exception) -> None:
        self._diagnosis = diagnosis
        self.abortConnection()

    def _closeTimedOut(self, timeout: float) -> None:
        """
        This end closed the connection and the peer has not finished the
        close (it neither answered TLS's close_notify nor closed, or it
        stopped reading what we still had to send): abort.
        """
        self._closeTimer = None
        if self._phase is Phase.LOST:
            return
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:  # else (some pipes) closing is all there is
            self._closeAborted = timeout
            abort()

    def _peerText(self) -> str:
        return _reporting.peerText(self.transport)


class SideTLSFactory(WrappingFactory):
    """
    Builds L{SideTLSProtocol}s for one role around another factory's
    protocols.

    The limits come as one L{Limits} (C{limits=}); the camelCase keywords
    are the older spelling of the same four values, kept working for
    callers that pass them (giving both is a C{TypeError}).

    @ivar isClient: L{True} for dialers (TLS client), L{False} for listeners.
    @ivar clock: Schedules the timeouts and TLS write batching; tests pass a
        L{twisted.internet.task.Clock}.
    @ivar admission: The C{max_negotiating} policy (L{Admission}).
    """

    protocol = SideTLSProtocol
    noisy = False

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        isClient: bool,
        clock: Optional[IReactorTime] = None,
        handshakeTimeout: Seconds = UNSET,
        negotiationTimeout: Seconds = UNSET,
        closeTimeout: Seconds = UNSET,
        maxNegotiating: Count = UNSET,
        *,
        limits: Optional[Limits] = None,
    ) -> None:
        WrappingFactory.__init__(self, wrappedFactory)  # type: ignore[arg-type]
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.isClient = isClient
        self.clock: IReactorTime = clock
        self._limits = resolve(
            "SideTLSFactory",
            limits,
            handshake_timeout=handshakeTimeout,
            negotiation_timeout=negotiationTimeout,
            close_timeout=closeTimeout,
            max_negotiating=maxNegotiating,
        )
        self.admission = Admission(self._limits.max_negotiating, clock)

    @property
    def limits(self) -> Limits:
        """What bounds each connection this factory builds (read-only)."""
        return self._limits

    @property
    def handshakeTimeout(self) -> Optional[float]:
        """C{limits.handshake_timeout}, by its older name."""
        return self._limits.handshake_timeout

    @property
    def negotiationTimeout(self) -> Optional[float]:
        """C{limits.negotiation_timeout}, by its older name."""
        return self._limits.negotiation_timeout

    @property
    def closeTimeout(self) -> Optional[float]:
        """C{limits.close_timeout}, by its older name."""
        return self._limits.close_timeout

    @property
    def maxNegotiating(self) -> Optional[int]:
        """At most this many connections still negotiating; L{None}: no limit."""
        return self.admission.limit

    @property
    def negotiating(self) -> Optional[dict[Any, float]]:
        """The connections still negotiating, oldest first, with C{maxNegotiating} (else L{None})."""
        return self.admission.negotiating

    def buildProtocol(self, addr: Any) -> Any:
        app = self.wrappedFactory.buildProtocol(_foolscap.loggableAddress(addr))
        if app is None:
            return None
        protocol = self.protocol(self, app)
        self.admission.admit(protocol)
        return protocol
