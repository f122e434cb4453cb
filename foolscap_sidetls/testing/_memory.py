"""
The in-memory network: transports whose TLS side comes from a simulated
socket direction, the way Twisted's TCP transports choose theirs, and the
endpoints and hint handler that connect Tubs through them.

See L{foolscap_sidetls.testing} for how to use it.

One piece, though over 500 lines: the transports, the network that
delivers between them on its clock, and the endpoints and hint handler
(thin views of the network) share one delivery queue; split, each part
would reach into the others' private state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, cast

from zope.interface import implementer
from twisted.internet import defer, error
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ITLSTransport,
    ITransport,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from foolscap.ipb import IConnectionHintHandler, InvalidHintError

from .._endpoints import listener as _sidetls_listener

#: Socket directions.  An outbound socket is one this end connected; an
#: inbound one was accepted.  Twisted takes the TLS side from this.
OUTBOUND = "outbound"
INBOUND = "inbound"
_DIRECTIONS = (OUTBOUND, INBOUND)

#: Unread bytes at which a writer's registered producer is paused, and the
#: level at which it is resumed (the same order as a socket buffer).
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024

_HINT_RE = re.compile(r"^memory:([A-Za-z0-9._\-]+)\Z")


def _checkDirection(socket: str) -> str:
    if socket not in _DIRECTIONS:
        raise ValueError(
            "socket direction must be %r or %r, got %r" % (OUTBOUND, INBOUND, socket)
        )
    return socket


@implementer(IAddress)
class MemoryAddress:
    """
    The address of one end of an in-memory connection.  C{host} is the
    listener's name, C{port} a per-connection serial number.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def __repr__(self) -> str:
        return "MemoryAddress(%r, %d)" % (self.host, self.port)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryAddress):
            return NotImplemented
        return (self.host, self.port) == (other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.host, self.port))


@implementer(IConsumer)
class _RawPipe:
    """
    The byte-level face of a L{MemoryTransport}: what a TLS layer started
    with L{MemoryTransport.startTLS} writes its records to, like Twisted's
    C{_BypassTLS}.
    """

    def __init__(self, transport: "MemoryTransport") -> None:
        self._t = transport

    def write(self, data: bytes) -> None:
        self._t._send(data)

    def writeSequence(self, seq: Any) -> None:
        self._t._send(b"".join(seq))

    def loseConnection(self) -> None:
        self._t._close()

    def abortConnection(self) -> None:
        self._t._abort()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._t._registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._t._unregisterProducer()

    def getPeer(self) -> MemoryAddress:
        return self._t.getPeer()

    def getHost(self) -> MemoryAddress:
        return self._t.getHost()


@implementer(ITransport, ITLSTransport, IConsumer, IPushProducer)
class MemoryTransport:
    """
    One end of an in-memory stream connection.

    It behaves like a Twisted TCP transport where that matters to Foolscap:
    writes arrive at the peer on a later turn, C{loseConnection} delivers
    what was written before closing, a registered producer is paused while
    the peer has more than L{HIGH_WATER} unread bytes, and L{startTLS}
    chooses the TLS side from the socket direction.

    @ivar socket: L{OUTBOUND} or L{INBOUND}.
    @ivar sent: Every byte this end put on the wire, in order, when the
        network records traffic (for asserting what an observer would see).
    """

    disconnecting = False
    disconnected = False

    def __init__(
        self,
        network: "MemoryNetwork",
        socket: str,
        host: MemoryAddress,
        peer: MemoryAddress,
    ) -> None:
        self._network = network
        self.socket = _checkDirection(socket)
        self._host = host
        self._peerAddress = peer
        self.protocol: Optional[IProtocol] = None
        self.peer: Optional["MemoryTransport"] = None
        self._inbound: list[bytes] = []
        self._inboundSize = 0
        self._deliveryScheduled = False
        self._readPaused = False
        self._producer: Any = None
        self._streaming = True
        self._producerPaused = False
        self._closeRequested = False
        #: Closed or aborted at this end: received bytes are dropped.
        self._readingStopped = False
        self._tls: Any = None
        self._raw = _RawPipe(self)
        self.sent: list[bytes] = []

    def __repr__(self) -> str:
        return "<MemoryTransport %s %r->%r>" % (self.socket, self._host, self._peerAddress)

    @property
    def unread(self) -> int:
        """How many bytes the peer wrote to this end that it has not read yet."""
        return self._inboundSize

    @property
    def producer(self) -> Any:
        """The producer registered on this end's raw byte stream, or L{None}."""
        return self._producer

    # -- ITransport --------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._tls is not None:
            self._tls.write(data)
        else:
            self._send(data)

    def writeSequence(self, seq: Any) -> None:
        self.write(b"".join(seq))

    def loseConnection(self) -> None:
        if self._tls is not None:
            self._closeApplication()
            self._tls.loseConnection()
        else:
            self._close()

    def abortConnection(self) -> None:
        if self._tls is not None:
            self._closeApplication()
            self._tls.abortConnection()
        else:
            self._abort()

    def _closeApplication(self) -> None:
        """
        The application closed a TLS connection: the TLS layer goes on
        reading (the peer's close_notify completes the close), but, as over
        a socket that stops reading, no byte of it reaches the application.
        """
        self.disconnecting = True
        tls = self._tls
        if not isinstance(tls.wrappedProtocol, _ClosedApplication):
            tls.wrappedProtocol = _ClosedApplication(tls.wrappedProtocol)

    # ITCPTransport (which ITLSTransport extends) promises IP addresses;
    # these are memory addresses, which is the point of the adapter in
    # foolscap_sidetls._protocol.
    def getPeer(self) -> MemoryAddress:  # type: ignore[override]
        return self._peerAddress

    def getHost(self) -> MemoryAddress:  # type: ignore[override]
        return self._host

    # -- ITCPTransport (which ITLSTransport extends): options are kept, and
    # mean nothing in memory.

    _noDelay = False
    _keepAlive = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self._noDelay = bool(enabled)

    def getTcpNoDelay(self) -> bool:
        return self._noDelay

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self._keepAlive = bool(enabled)

    def getTcpKeepAlive(self) -> bool:
        return self._keepAlive

    def loseWriteConnection(self) -> None:
        self.loseConnection()

    # -- ITLSTransport: the side from the socket, as Twisted does ----------

    def startTLS(self, contextFactory: Any, normal: bool = True) -> None:
        """
        Start TLS the way Twisted's socket transports do: an outbound socket
        is the TLS client.  This is the behaviour foolscap-sidetls exists to
        replace; it is here so stock Foolscap fails in memory exactly as it
        does over I2P.
        """
        isClient = (self.socket == OUTBOUND) == bool(normal)
        factory = TLSMemoryBIOFactory(
            contextFactory, isClient, None, clock=self._network.clock  # type: ignore[arg-type]
        )
        tls = factory.protocol(factory, self.protocol, False)
        self._tls = tls
        self.protocol = tls
        tls.makeConnection(self._raw)

    def getHandle(self) -> Any:
        if self._tls is None:
            raise AttributeError("getHandle: TLS has not been started")
        return self._tls.getHandle()

    def getPeerCertificate(self) -> Any:
        if self._tls is None:
            raise AttributeError("getPeerCertificate: TLS has not been started")
        return self._tls.getPeerCertificate()

    # -- IConsumer ---------------------------------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self._tls is not None:
            self._tls.registerProducer(producer, streaming)
        else:
            self._registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self._tls is not None:
            self._tls.unregisterProducer()
        else:
            self._unregisterProducer()

    # -- IPushProducer: a slow reader pauses us ----------------------------

    def pauseProducing(self) -> None:
        """Stop delivering received bytes, as a socket does when paused."""
        self._readPaused = True

    def resumeProducing(self) -> None:
        self._readPaused = False
        self._scheduleDelivery()

    def stopProducing(self) -> None:
        self._close()

    # -- the wire ----------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self.disconnected or self._closeRequested or not data:
            return
        peer = self.peer
        assert peer is not None
        if self._network.record:
            self.sent.append(data)
        peer._inbound.append(data)
        peer._inboundSize += len(data)
        peer._scheduleDelivery()
        if (
            self._producer is not None
            and self._streaming
            and not self._producerPaused
            and peer._inboundSize > HIGH_WATER
        ):
            self._producerPaused = True
            self._producer.pauseProducing()

    def _scheduleDelivery(self) -> None:
        if not self._deliveryScheduled and self._inbound and not self._readPaused:
            self._deliveryScheduled = True
            self._network.clock.callLater(0, self._deliver)

    def _deliver(self) -> None:
        self._deliveryScheduled = False
        if self.disconnected or self._readPaused or not self._inbound:
            return
        data = b"".join(self._inbound)
        self._inbound = []
        self._inboundSize = 0
        for chunk in self._network.splitter(data):
            if self.disconnected or self.protocol is None:
                return
            if self._readingStopped:
                # Closed or aborted (by its protocol, or by a TLS layer
                # above that has finished): like a socket, it reads no more.
                break
            self.protocol.dataReceived(chunk)
        peer = self.peer
        if peer is not None:
            peer._drained()
            if peer._closeRequested:
                peer._finishClose()

    def _drained(self) -> None:
        producer = self._producer
        if producer is None or self.disconnected:
            return
        if self._streaming:
            if self._producerPaused:
                self._producerPaused = False
                producer.resumeProducing()
        else:
            self._network.clock.callLater(0, self._pull)

    def _pull(self) -> None:
        if self._producer is not None and not self._streaming and not self.disconnected:
            self._producer.resumeProducing()

    def _registerProducer(self, producer: Any, streaming: bool) -> None:
        if self._producer is not None:
            raise RuntimeError(
                "Cannot register producer %s, because producer %s was never "
                "unregistered." % (producer, self._producer)
            )
        if self.disconnected:
            producer.stopProducing()
            return
        self._producer = producer
        self._streaming = streaming
        self._producerPaused = False
        if not streaming:
            self._network.clock.callLater(0, self._pull)

    def _unregisterProducer(self) -> None:
        self._producer = None
        self._producerPaused = False

    def _close(self) -> None:
        if self.disconnected or self._closeRequested:
            return
        self._closeRequested = True
        self._readingStopped = True
        self.disconnecting = True
        self._finishClose()

    def _finishClose(self) -> None:
        peer = self.peer
        if self.disconnected:
            return
        if peer is not None and peer._inbound:
            # Written bytes reach the peer before the close does; the peer's
            # delivery calls back here once it has read them.
            peer._scheduleDelivery()
            return
        self._network.clock.callLater(0, self._lost, error.ConnectionDone())

    def _abort(self) -> None:
        if self.disconnected:
            return
        self.disconnecting = True
        self._readingStopped = True
        self._inbound = []
        if self.peer is not None:
            self.peer._inbound = []
        self._network.clock.callLater(0, self._lost, error.ConnectionAborted())

    def _lost(self, why: Exception) -> None:
        """Tear both ends down: this one with C{why}, the peer with a
        clean or an unclean loss to match."""
        if self.disconnected:
            return
        peer = self.peer
        self._disconnect(why)
        if peer is not None and not peer.disconnected:
            if isinstance(why, error.ConnectionDone):
                peer._disconnect(error.ConnectionDone())
            else:
                peer._disconnect(error.ConnectionLost())

    def _disconnect(self, why: Exception) -> None:
        self.disconnected = True
        self.disconnecting = True
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connectionLost(Failure(why))


@dataclass(frozen=True)
class MemoryConnection:
    """
    One connection a L{MemoryNetwork} made, as it was made: which listener
    it reached, its two transports, and the protocols first connected to
    them (for a connection through C{foolscap_sidetls.listener} or
    C{dialer}, the sidetls wrapper at that end, whose C{phase},
    C{wrappedProtocol} and C{factory} a test can then look at; a
    transport forgets its protocol once the connection is lost).
    """

    name: str
    dialer: "MemoryTransport"
    listener: "MemoryTransport"
    dialerProtocol: IProtocol
    listenerProtocol: IProtocol


@implementer(IProtocol)
class _ClosedApplication:
    """
    What a TLS layer started by L{MemoryTransport.startTLS} delivers to
    once its application closed the connection: nothing more, except the
    news of the loss.
    """

    def __init__(self, application: Any) -> None:
        self._application = application

    def makeConnection(self, transport: Any) -> None:
        pass

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self._application.connectionLost(reason)


@implementer(IListeningPort)
class _MemoryPort:
    def __init__(self, network: "MemoryNetwork", name: str) -> None:
        self._network = network
        self._name = name

    def startListening(self) -> None:
        pass

    def stopListening(self) -> "defer.Deferred[None]":
        self._network._listeners.pop(self._name, None)
        return defer.succeed(None)

    def getHost(self) -> MemoryAddress:
        return MemoryAddress(self._name, 0)


@implementer(IStreamServerEndpoint)
class _MemoryServerEndpoint:
    def __init__(self, network: "MemoryNetwork", name: str, socket: str) -> None:
        self._network = network
        self._name = name
        self._socket = _checkDirection(socket)

    def __repr__(self) -> str:
        return "<memory listener %r (%s sockets)>" % (self._name, self._socket)

    def listen(self, factory: IProtocolFactory) -> "defer.Deferred[IListeningPort]":
        if self._name in self._network._listeners:
            return defer.fail(error.CannotListenError(self._name, 0, "name in use"))
        self._network._listeners[self._name] = (factory, self._socket)
        return defer.succeed(_MemoryPort(self._network, self._name))


@implementer(IStreamClientEndpoint)
class _MemoryClientEndpoint:
    def __init__(self, network: "MemoryNetwork", name: str, socket: str) -> None:
        self._network = network
        self._name = name
        self._socket = _checkDirection(socket)

    def __repr__(self) -> str:
        return "<memory dialer to %r (%s socket)>" % (self._name, self._socket)

    def connect(self, factory: IProtocolFactory) -> "defer.Deferred[IProtocol]":
        network = self._network
        state: dict[str, Optional[IDelayedCall]] = {"call": None}

        def cancel(d: "defer.Deferred[IProtocol]") -> None:
            call = state["call"]
            if call is not None and call.active():
                call.cancel()
            d.errback(error.ConnectingCancelledError(MemoryAddress(self._name, 0)))

        d: "defer.Deferred[IProtocol]" = defer.Deferred(cancel)

        def complete() -> None:
            state["call"] = None
            entry = network._listeners.get(self._name)
            if entry is None:
                d.errback(error.ConnectionRefusedError("no memory listener %r" % self._name))
                return
            try:
                protocols = network._connect(self._name, entry, factory, self._socket)
            except Exception:
                d.errback()
            else:
                if protocols is None:
                    d.errback(error.ConnectionRefusedError("listener refused"))
                else:
                    d.callback(protocols)

        state["call"] = network.clock.callLater(0, complete)
        return d


@implementer(IConnectionHintHandler)
class MemoryHintHandler:
    """
    A stock (socket-sided) Foolscap handler for C{memory:NAME} hints; wrap
    it with L{foolscap_sidetls.handler} to make it role-based.
    """

    def __init__(self, network: "MemoryNetwork", socket: str) -> None:
        self._network = network
        self._socket = _checkDirection(socket)

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> tuple[Any, str]:
        mo = _HINT_RE.search(hint)
        if not mo:
            raise InvalidHintError(
                "unrecognized memory hint %r; expected memory:NAME" % (hint,)
            )
        return self._network.client_endpoint(mo.group(1), socket=self._socket), mo.group(1)

    def describe(self) -> str:
        return "memory"


class MemoryNetwork:
    """
    A namespace of in-memory listeners, and the connections between them.

    @ivar clock: Schedules deliveries; defaults to the global reactor.
    @ivar splitter: Cuts each delivery into the reads the receiving
        protocol sees; the default delivers everything pending in one read.
        Tests replace it to cut the byte stream at arbitrary points.
    @ivar record: When true, every transport keeps what it sent in
        L{MemoryTransport.sent}.
    @ivar transports: Every transport made, in connection order (dialer's
        end, then listener's end).
    @ivar connections: Every connection made, in order (L{MemoryConnection}).
    """

    def __init__(
        self,
        clock: Optional[IReactorTime] = None,
        splitter: Optional[Callable[[bytes], list[bytes]]] = None,
        record: bool = False,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as globalReactor

            clock = cast(IReactorTime, globalReactor)
        self.clock: IReactorTime = clock
        self.splitter = splitter or (lambda data: [data])
        self.record = record
        self.transports: list[MemoryTransport] = []
        self.connections: list[MemoryConnection] = []
        self._listeners: dict[str, tuple[IProtocolFactory, str]] = {}
        self._serial = 0

    def server_endpoint(self, name: str, *, socket: str = INBOUND) -> IStreamServerEndpoint:
        """
        A server endpoint named C{name}; its connections' transports report
        C{socket} as their direction (L{OUTBOUND} is the I2P shape).
        """
        return _MemoryServerEndpoint(self, name, socket)

    def client_endpoint(self, name: str, *, socket: str = OUTBOUND) -> IStreamClientEndpoint:
        """
        A client endpoint connecting to the listener named C{name}.
        """
        return _MemoryClientEndpoint(self, name, socket)

    def hint_handler(self, *, socket: str = OUTBOUND) -> IConnectionHintHandler:
        """
        A stock Foolscap hint handler for C{memory:NAME} hints.
        """
        return MemoryHintHandler(self, socket)

    def listen(
        self,
        tub: Any,
        name: str,
        *,
        socket: str = INBOUND,
        sidetls: bool = True,
        wrap: Optional[Callable[[IStreamServerEndpoint], IStreamServerEndpoint]] = None,
    ) -> str:
        """
        Make C{tub} listen on C{name} and set its location; returns the
        C{memory:NAME} hint.

        @param sidetls: wrap the endpoint with L{foolscap_sidetls.listener}
            (the default), or listen the stock way.
        @param wrap: applied to the memory endpoint first, e.g. to run the
            connection inside an outer TLS session.
        """
        endpoint = self.server_endpoint(name, socket=socket)
        if wrap is not None:
            endpoint = wrap(endpoint)
        if sidetls:
            endpoint = _sidetls_listener(endpoint, clock=self.clock)
        tub.listenOn(endpoint)
        hint = "memory:%s" % (name,)
        tub.setLocation(hint)
        return hint

    def _connect(
        self,
        name: str,
        entry: tuple[IProtocolFactory, str],
        clientFactory: IProtocolFactory,
        clientSocket: str,
    ) -> Optional[IProtocol]:
        serverFactory, serverSocket = entry
        self._serial += 1
        serverAddress = MemoryAddress(name, 0)
        clientAddress = MemoryAddress("dialer-%d" % (self._serial,), self._serial)
        server = serverFactory.buildProtocol(clientAddress)
        if server is None:
            return None
        client = clientFactory.buildProtocol(serverAddress)
        if client is None:
            return None
        clientT = MemoryTransport(self, clientSocket, clientAddress, serverAddress)
        serverT = MemoryTransport(self, serverSocket, serverAddress, clientAddress)
        clientT.peer, serverT.peer = serverT, clientT
        clientT.protocol, serverT.protocol = client, server
        self.transports += [clientT, serverT]
        self.connections.append(MemoryConnection(name, clientT, serverT, client, server))
        server.makeConnection(serverT)
        client.makeConnection(clientT)
        return client
