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
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from OpenSSL.SSL import Error as SSLError

from ._diagnosis import PREFIX_LENGTH, explainFailure, explainTimeout
from ._interfaces import ISideTLSTransport

#: How long a TLS handshake may take before the connection is dropped with a
#: diagnosis.  Foolscap's own limits are 60 s (listener negotiation) and
#: 120 s (dialer); a handshake is one or two round trips, so even over Tor
#: or I2P 60 s means the handshake is not going to happen.
DEFAULT_HANDSHAKE_TIMEOUT = 60.0

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
    once negotiation is done.
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
        self._wrapper._app.dataReceived(data)

    def handshakeCompleted(self) -> None:
        self._wrapper._handshakeCompleted()

    def connectionLost(self, reason: Failure) -> None:
        self._wrapper._tlsConnectionLost(reason)


def _discard(data: Any) -> None:
    pass


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
        tls = tlsFactory.protocol(tlsFactory, _TLSApplicationSide(self), False)
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

    def loseConnection(self) -> None:
        self.disconnecting = True
        if self._tls is not None:
            self._tls.loseConnection()
        else:
            self.transport.loseConnection()

    def abortConnection(self) -> None:
        self.disconnecting = True
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
            if self._tls is not None:
                if data:
                    self.dataReceived(data)
                return

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelHandshakeTimer()
        tls = self._tls
        if tls is None:
            ProtocolWrapper.connectionLost(self, reason)
            return
        # Writes after the connection is gone are dropped, as Twisted's own
        # transports drop them, instead of reaching a torn-down TLS layer.
        self.write = self.writeSequence = _discard  # type: ignore[method-assign]
        self.factory.unregisterProtocol(self)
        # The TLS layer tells the application: through _tlsConnectionLost
        # (to explain a failed handshake) or, after the handshake, directly.
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
        tls.wrappedProtocol = self._app

    def _handshakeTimedOut(self, timeout: float) -> None:
        self._handshakeTimer = None
        self._diagnosis = explainTimeout(
            self.tlsSide == "client", self._peerPrefix, timeout
        )
        assert self._tls is not None
        self._tls.abortConnection()

    def _cancelHandshakeTimer(self) -> None:
        if self._handshakeTimer is not None:
            if self._handshakeTimer.active():
                self._handshakeTimer.cancel()
            self._handshakeTimer = None

    def _tlsConnectionLost(self, reason: Failure) -> None:
        if self._diagnosis is not None:
            reason = Failure(self._diagnosis)
        elif not self._handshakeDone and reason.check(SSLError):
            explained = explainFailure(self.tlsSide == "client", self._peerPrefix)
            if explained is not None:
                reason = Failure(explained)
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
    @ivar clock: Schedules the handshake wait and TLS write batching;
        tests pass a L{twisted.internet.task.Clock}.
    """

    protocol = SideTLSProtocol
    noisy = False

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        isClient: bool,
        clock: Optional[IReactorTime] = None,
        handshakeTimeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        WrappingFactory.__init__(self, wrappedFactory)  # type: ignore[arg-type]
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.isClient = isClient
        self.clock: IReactorTime = clock
        self.handshakeTimeout = handshakeTimeout

    def buildProtocol(self, addr: Any) -> Any:
        if not (hasattr(addr, "host") and hasattr(addr, "port")):
            addr = _HostPortAddress(addr)
        app = self.wrappedFactory.buildProtocol(addr)
        if app is None:
            return None
        return self.protocol(self, app)
