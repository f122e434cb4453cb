"""
A loopback splice relay: the shape of an I2P SAM C{STREAM ACCEPT} session
or a reverse tunnel, on 127.0.0.1 TCP, for the example and the tests.

The listening side never accepts a socket.  It dials I{out} to the relay's
back port and leaves each such connection parked there.  When a dialer
connects to the relay's front port, the relay splices it byte-for-byte to
one parked connection and tells that connection, with one line, that it is
live.  From then on the listener's protocol runs over a TCP I{client}
socket -- which is exactly why Twisted's C{startTLS} makes a stock Foolscap
listener send a ClientHello there, as it does over I2P.

Wire format of the liveness signal, sent by the relay on the parked
connection and consumed by L{ReverseServerEndpoint} before the listener's
protocol sees a byte (everything after it is the dialer's stream,
untouched)::

    LIVE <dialer host> <dialer port>\\n

SAM does the same: C{STREAM ACCEPT} reports the peer's destination on one
line, then the stream begins.  This relay has no authentication and binds
to 127.0.0.1 only; it is a model, not a service.  It is one piece (a little
under 600 lines) because the relay's two ports and the reverse endpoint
are the two halves of one line protocol, read together as a model.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Optional

from zope.interface import implementer
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["LIVE", "ReverseServerEndpoint", "SpliceRelay"]

#: The relay's liveness signal starts with this; see the module docstring.
LIVE = b"LIVE "

#: The only interface the relay binds to.
LOOPBACK = "127.0.0.1"

#: Bytes a not-yet-spliced end may send before the relay stops reading it.
#: A Foolscap dialer sends one header block (well under 1 KiB) and waits.
_MAX_PENDING = 64 * 1024

#: Longest liveness line accepted, newline included.
_MAX_LINE = 256

_log = Logger()


def _discard(data: bytes) -> None:
    """What a closed connection's protocol does with bytes that still arrive."""


def _closing(transport: Any) -> bool:
    """
    Whether C{transport} was closed or aborted at this end.  Twisted's TCP
    transports record an abort only privately (C{_aborting}), and stop
    reading at once.
    """
    return bool(
        getattr(transport, "disconnecting", False)
        or getattr(transport, "disconnected", False)
        or getattr(transport, "_aborting", False)
    )


# -- the relay ---------------------------------------------------------------


class _RelayEnd(Protocol):
    """
    One connection at the relay, front (a dialer) or back (a parked
    listener connection).  Until spliced it buffers what it receives; once
    spliced it copies to its peer, and each transport is the other's
    producer so a slow reader pauses the fast writer instead of letting the
    relay buffer without bound.
    """

    #: A TCP connection: a transport, a push producer and a consumer.
    transport: Any

    def __init__(self, relay: "SpliceRelay", side: str) -> None:
        self._relay = relay
        self.side = side
        self.peer: Optional[_RelayEnd] = None
        self._pending: list[bytes] = []
        self._pendingSize = 0
        self._readPaused = False

    def connectionMade(self) -> None:
        self._relay._arrived(self)

    def dataReceived(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.transport.write(data)
            return
        self._pending.append(data)
        self._pendingSize += len(data)
        if self._pendingSize > _MAX_PENDING and not self._readPaused:
            self._readPaused = True
            self.transport.pauseProducing()

    def close(self, abort: bool = False) -> None:
        """
        Close this end: it forwards nothing it still receives (a socket
        stops reading once closed; this holds for any transport).
        """
        self.dataReceived = _discard  # type: ignore[method-assign]
        self._pending, self._pendingSize = [], 0
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def _takePending(self) -> bytes:
        data, self._pending, self._pendingSize = b"".join(self._pending), [], 0
        return data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            # Our dead transport is the peer's registered producer; a
            # consumer with a paused producer never finishes closing, so
            # unregister before asking it to close (after flushing).
            peer.transport.unregisterProducer()
            peer.close()
        self._relay._departed(self)


class _RelayEndFactory(Factory):
    noisy = False

    def __init__(self, relay: "SpliceRelay", side: str) -> None:
        self._relay = relay
        self._side = side

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        return _RelayEnd(self._relay, self._side)


class SpliceRelay:
    """
    A relay with a front port (dialers connect here) and a back port
    (reverse listeners dial out to here and wait), both on 127.0.0.1.

    Each front connection is spliced to the oldest parked back connection;
    a front connection that arrives when none is parked waits for one.

    @ivar front_port: The front TCP port, once started.
    @ivar back_port: The back TCP port, once started.
    @ivar spliced: How many front/back pairs have been spliced so far.
    """

    front_port: Optional[int] = None
    back_port: Optional[int] = None

    def __init__(self, reactor: Optional[IReactorTCP] = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self._ports: list[IListeningPort] = []
        self._parked: deque[_RelayEnd] = deque()
        self._waiting: deque[_RelayEnd] = deque()
        self._ends: set[_RelayEnd] = set()
        self._emptyWaiters: list["Deferred[None]"] = []
        self.spliced = 0

    def __repr__(self) -> str:
        return "<SpliceRelay front=%s back=%s parked=%d>" % (
            self.front_port,
            self.back_port,
            len(self._parked),
        )

    @property
    def parked(self) -> int:
        """How many back connections are parked, waiting for a dialer."""
        return len(self._parked)

    @property
    def connections(self) -> int:
        """How many connections the relay holds, in any state."""
        return len(self._ends)

    @defer.inlineCallbacks
    def start(self) -> Any:
        """
        Listen on two fresh loopback ports.

        @return: a Deferred firing with C{(front_port, back_port)}.
        """
        if self._ports:
            raise RuntimeError("SpliceRelay.start() called twice")
        front = yield TCP4ServerEndpoint(
            self._reactor, 0, interface=LOOPBACK
        ).listen(_RelayEndFactory(self, "front"))
        self._ports.append(front)
        try:
            back = yield TCP4ServerEndpoint(
                self._reactor, 0, interface=LOOPBACK
            ).listen(_RelayEndFactory(self, "back"))
        except BaseException:
            self._ports = []
            yield front.stopListening()
            raise
        self._ports.append(back)
        self.front_port = front.getHost().port
        self.back_port = back.getHost().port
        return (self.front_port, self.back_port)

    def stop(self) -> "Deferred[None]":
        """
        Stop listening and drop every connection, parked, waiting or
        spliced; fires when the ports are closed and every connection has
        been lost.
        """
        ports, self._ports = self._ports, []
        stopped: list["Deferred[Any]"] = [
            defer.maybeDeferred(p.stopListening) for p in ports
        ]
        if self._ends:
            empty: "Deferred[Any]" = Deferred()
            self._emptyWaiters.append(empty)
            stopped.append(empty)
            for end in list(self._ends):
                end.close(abort=True)
        return defer.gatherResults(stopped).addCallback(lambda _: None)

    def back_endpoint(self) -> IStreamClientEndpoint:
        """A client endpoint for the back port: what a reverse listener dials."""
        if self.back_port is None:
            raise RuntimeError("SpliceRelay is not started")
        return TCP4ClientEndpoint(self._reactor, LOOPBACK, self.back_port)

    def front_hint(self) -> str:
        """The Foolscap connection hint that reaches the front port."""
        if self.front_port is None:
            raise RuntimeError("SpliceRelay is not started")
        return "tcp:%s:%d" % (LOOPBACK, self.front_port)

    # -- matching ----------------------------------------------------------

    def _arrived(self, end: _RelayEnd) -> None:
        self._ends.add(end)
        if end.side == "front":
            if self._parked:
                self._splice(end, self._parked.popleft())
            else:
                self._waiting.append(end)
        else:
            if self._waiting:
                self._splice(self._waiting.popleft(), end)
            else:
                self._parked.append(end)

    def _departed(self, end: _RelayEnd) -> None:
        self._ends.discard(end)
        for queue in (self._parked, self._waiting):
            if end in queue:
                queue.remove(end)
        if not self._ends:
            waiters, self._emptyWaiters = self._emptyWaiters, []
            for d in waiters:
                d.callback(None)

    def _splice(self, front: _RelayEnd, back: _RelayEnd) -> None:
        self.spliced += 1
        front.peer, back.peer = back, front
        dialer: Any = front.transport.getPeer()
        back.transport.write(b"%s%s %d\n" % (LIVE, dialer.host.encode("ascii"), dialer.port))
        for end in (front, back):
            data = end._takePending()
            if data and end.peer is not None:
                end.peer.transport.write(data)
            if end._readPaused:
                end._readPaused = False
                end.transport.resumeProducing()
        front.transport.registerProducer(back.transport, True)
        back.transport.registerProducer(front.transport, True)


# -- the reverse listener ----------------------------------------------------


class _ParkedProtocol(Protocol):
    """
    A connection from a L{ReverseServerEndpoint} to the relay's back port.

    While parked it only reads the relay's liveness line.  Once live it is
    a pass-through to the protocol the listening factory built, which is
    connected to the TCP transport itself: the listener's protocol sees a
    client socket, as it would over I2P.
    """

    _app: Optional[IProtocol] = None
    #: A TCP client connection.
    transport: Any

    def __init__(self, port: "_ReversePort") -> None:
        self._port = port
        self._buffer = b""

    def connectionMade(self) -> None:
        self._port._parkedMade(self)

    def dataReceived(self, data: bytes) -> None:
        if self._app is not None:
            self._app.dataReceived(data)
            return
        self._buffer += data
        line, newline, rest = self._buffer.partition(b"\n")
        if not newline:
            if len(self._buffer) >= _MAX_LINE:
                self._refuse("no liveness line in %d bytes" % len(self._buffer))
            return
        self._buffer = b""
        address = _parseLive(line)
        if address is None:
            self._refuse("bad liveness line %r" % (line[:_MAX_LINE],))
            return
        app = self._port._wentLive(self, address)
        if app is None:
            self._close()
            return
        self._app = app
        app.makeConnection(self.transport)
        # The application may have closed the connection already (in
        # connectionMade): then the rest of this read is not for it.
        if rest and self._app is not None and not _closing(self.transport):
            self._app.dataReceived(rest)

    def _refuse(self, why: str) -> None:
        _log.warn("reverse listener: {why}; dropping connection", why=why)
        self._close(abort=True)

    def _close(self, abort: bool = False) -> None:
        """Close a connection still parked: nothing it receives after counts, not even a liveness line."""
        self.dataReceived = _discard  # type: ignore[method-assign]
        self._buffer = b""
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        app, self._app = self._app, None
        if app is not None:
            app.connectionLost(reason)
        else:
            self._port._parkedLost(self)


def _parseLive(line: bytes) -> Optional[IPv4Address]:
    if not line.startswith(LIVE):
        return None
    try:
        host, port = line[len(LIVE) :].decode("ascii").split(" ")
        return IPv4Address("TCP", host, int(port))
    except ValueError:
        return None


class _ParkedFactory(Factory):
    noisy = False

    def __init__(self, port: "_ReversePort") -> None:
        self._port = port

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        return _ParkedProtocol(self._port)


@implementer(IListeningPort)
class _ReversePort:
    """
    What L{ReverseServerEndpoint.listen} returns: keeps C{pool} connections
    parked at the relay until C{stopListening}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        relay: IStreamClientEndpoint,
        factory: IProtocolFactory,
        pool: int,
        retryDelay: float,
    ) -> None:
        self._clock = clock
        self._relay = relay
        self._factory = factory
        self._pool = pool
        self._retryDelay = retryDelay
        self._listening = True
        self._parked: set[_ParkedProtocol] = set()
        self._dialing: set[Deferred[Any]] = set()
        self._retries: set[IDelayedCall] = set()
        self._ready: Optional["Deferred[Any]"] = None
        self._initialLeft = pool
        self._stopWaiters: list["Deferred[None]"] = []
        self._relayAddress: Optional[IAddress] = None

    def __repr__(self) -> str:
        return "<reverse listener via %r, %d parked>" % (self._relay, len(self._parked))

    @property
    def parked(self) -> int:
        """How many connections are parked at the relay right now."""
        return len(self._parked)

    def _start(self) -> "Deferred[Any]":
        ready: "Deferred[Any]" = Deferred()
        self._ready = ready
        for _ in range(self._pool):
            self._dial(initial=True)
        return ready

    # -- IListeningPort ----------------------------------------------------

    def startListening(self) -> None:
        """Listening starts in C{listen}; nothing to do."""

    def stopListening(self) -> "Deferred[None]":
        """
        Close the parked connections and abandon dials in flight; fires
        once they are all gone.  Live (spliced) connections stay up, as
        accepted sockets do when a TCP port stops listening.
        """
        self._listening = False
        for call in list(self._retries):
            call.cancel()
        self._retries.clear()
        for d in list(self._dialing):
            d.cancel()
        for parked in list(self._parked):
            parked._close()
        done: Deferred[None] = Deferred()
        self._stopWaiters.append(done)
        self._maybeStopped()
        return done

    def getHost(self) -> IAddress:
        """
        The relay's back address: a reverse listener has no local port of
        its own, and this is where it can be reached from.
        """
        if self._relayAddress is None:
            raise RuntimeError("not connected to the relay yet")
        return self._relayAddress

    # -- dialing the relay ---------------------------------------------------

    def _dial(self, initial: bool = False) -> None:
        d = self._relay.connect(_ParkedFactory(self))
        self._dialing.add(d)

        def done(result: Any) -> Any:
            self._dialing.discard(d)
            return result

        d.addBoth(done)
        d.addCallbacks(
            self._dialed, self._dialFailed, callbackArgs=(initial,), errbackArgs=(initial,)
        )

    def _dialed(self, proto: _ParkedProtocol, initial: bool) -> None:
        if initial:
            self._initialLeft -= 1
            if self._initialLeft == 0 and self._ready is not None:
                ready, self._ready = self._ready, None
                ready.callback(self)
        self._maybeStopped()

    def _dialFailed(self, reason: Failure, initial: bool) -> None:
        if not self._listening:
            self._maybeStopped()
            return
        if initial and self._ready is not None:
            # The relay is not there: fail listen() as a port that cannot
            # bind would, and leave nothing behind.
            ready, self._ready = self._ready, None
            self.stopListening().addCallback(lambda _: ready.errback(reason))
            return
        _log.info(
            "reverse listener: dialing the relay failed ({why}); retrying",
            why=reason.getErrorMessage(),
        )
        self._retryLater()

    def _retryLater(self) -> None:
        def retry() -> None:
            self._retries.discard(call)
            if self._listening:
                self._dial()

        call = self._clock.callLater(self._retryDelay, retry)
        self._retries.add(call)

    # -- from parked connections -------------------------------------------

    def _parkedMade(self, proto: _ParkedProtocol) -> None:
        self._parked.add(proto)
        if self._relayAddress is None:
            self._relayAddress = proto.transport.getPeer()
        if not self._listening:
            proto._close()

    def _wentLive(self, proto: _ParkedProtocol, address: IPv4Address) -> Optional[IProtocol]:
        if not self._listening:
            # Stopping: it stays counted until its connection is lost.
            return None
        self._parked.discard(proto)
        self._dial()  # keep the pool full
        return self._factory.buildProtocol(address)

    def _parkedLost(self, proto: _ParkedProtocol) -> None:
        if proto not in self._parked:
            return
        self._parked.discard(proto)
        if self._listening:
            # The relay dropped a connection before using it; replace it,
            # after a pause so a relay that is going away is not hammered.
            self._retryLater()
        self._maybeStopped()

    def _maybeStopped(self) -> None:
        if self._listening or self._parked or self._dialing:
            return
        waiters, self._stopWaiters = self._stopWaiters, []
        for d in waiters:
            d.callback(None)


@implementer(IStreamServerEndpoint)
class ReverseServerEndpoint:
    """
    A server endpoint that listens by dialing out: it keeps C{pool}
    connections parked at a L{SpliceRelay}'s back port and hands each one to
    the listening factory's protocol when the relay says a dialer was
    spliced to it (re-dialing so the pool stays full).

    Its connections are TCP client sockets, so stock Foolscap listening on
    it takes the TLS client side -- the I2P SAM shape.  Wrap it with
    L{foolscap_sidetls.listener} to make it the TLS server.

    C{listen} fires once the first C{pool} connections are made, and fails
    if the relay cannot be reached.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        relay_back_endpoint: IStreamClientEndpoint,
        pool: int = 2,
        retry_delay: float = 0.5,
    ) -> None:
        if pool < 1:
            raise ValueError("pool must be at least 1, got %r" % (pool,))
        self._reactor = reactor
        self._relay = relay_back_endpoint
        self._pool = pool
        self._retryDelay = retry_delay

    def __repr__(self) -> str:
        return "<ReverseServerEndpoint via %r pool=%d>" % (self._relay, self._pool)

    def listen(self, protocolFactory: IProtocolFactory) -> "Deferred[IListeningPort]":
        """
        Park C{pool} connections at the relay; fires with the listening
        port once they are all made, or fails if the relay is unreachable.
        """
        return _ReversePort(
            self._reactor, self._relay, protocolFactory, self._pool, self._retryDelay
        )._start()
