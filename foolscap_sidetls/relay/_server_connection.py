"""
One connection to the relay's port, from its first byte to whichever kind
it turns out to be (see L{_wire} for the bytes): a dialer, parked and then
spliced; a control connection, which becomes a TLS server session; or a
stream, which claims a parked dialer.

Once spliced, each end's transport is the other's producer, so a slow
reader pauses the writer at the far end instead of filling the relay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from . import _wire as wire
from ._plumbing import CloseTimer, cancel_call, hand_over, tls_layer
from ._server_sources import _source_of

if TYPE_CHECKING:
    from ._server import RelayServer, _Pending

_HEADER, _WAITING, _CONTROL, _SPLICED, _CLOSING = (
    "header",
    "waiting",
    "control",
    "spliced",
    "closing",
)


class _RelayConnection(Protocol):
    """
    One connection to the relay's port, from its first byte to whichever
    kind it turns out to be.

    @ivar kind: C{"dialer"}, C{"control"}, C{"stream"}, or L{None} until the
        first header block has been read.
    @ivar peer: The other end of a splice.
    """

    # A stream transport that is also a push producer and a consumer: TCP,
    # or anything else an IStreamServerEndpoint hands out.
    transport: Any
    kind: Optional[str] = None
    tubid: Optional[str] = None
    peer: Optional["_RelayConnection"] = None
    pending: Optional[_Pending] = None
    _tls: Optional[TLSMemoryBIOProtocol] = None
    _timer: Optional[IDelayedCall] = None
    _read_paused = False
    _counted = False
    #: Counted against C{source}'s connections (a stream stops being once
    #: it claims its dialer).
    _source_counted = False
    #: Bytes read after this end had closed, and so not passed on.
    discarded = 0

    def __init__(self, server: "RelayServer", addr: Optional[IAddress]) -> None:
        self._server = server
        self.addr = addr
        self.source = _source_of(addr)
        self.state = _HEADER
        self._buffer = b""
        self._closer = CloseTimer()

    def __repr__(self) -> str:
        return "<relay connection %s %s from %r>" % (self.kind, self.state, self.addr)

    def connectionMade(self) -> None:
        self._server._connection_made(self)
        if self.state == _HEADER:
            self._timer = self._server._clock.callLater(
                self._server.limits.header_timeout, self._header_timed_out
            )

    def dataReceived(self, data: bytes) -> None:
        if self.state == _HEADER:
            self._header_data(data)
        elif self.state == _WAITING:
            # A dialer talking before the hidden Tub answered.  Foolscap
            # sends nothing more until it hears "101"; keep what comes, but
            # stop reading once it is more than a header's worth.
            self._buffer += data
            if len(self._buffer) > wire.MAX_HEADER and not self._read_paused:
                self._read_paused = True
                self.transport.pauseProducing()

    def _header_data(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(wire.END_OF_BLOCK)
        if end == -1:
            if len(self._buffer) > wire.MAX_HEADER:
                self.refuse(
                    400,
                    "no end of header block within %d bytes; %s"
                    % (wire.MAX_HEADER, wire.ACCEPTED),
                )
            return
        end += len(wire.END_OF_BLOCK)
        if end > wire.MAX_HEADER:
            self.refuse(
                400,
                "header block of %d bytes is longer than %d; %s"
                % (end, wire.MAX_HEADER, wire.ACCEPTED),
            )
            return
        self._cancel_timer()
        self._server._header_done(self)
        try:
            kind, value = wire.parse_request(self._buffer[:end])
        except wire.BadRequest as e:
            self.refuse(400, "%s; %s" % (e, wire.ACCEPTED))
            return
        self.kind = kind
        if kind == "dialer":
            # The dialer's request goes to the hidden Tub as it is.
            self._server._dialer_arrived(self, value)
        else:
            # Its own request is for the relay alone; what follows is not.
            self._buffer = self._buffer[end:]
            if kind == "control":
                self._server._control_arrived(self)
            else:
                self._server._stream_arrived(self, value)

    def take_buffer(self) -> bytes:
        data, self._buffer = self._buffer, b""
        return data

    def refuse(self, status: int, text: str) -> None:
        """Answer with an error status line and close."""
        if self.state == _CLOSING:
            return
        self._cancel_timer()
        self.state = _CLOSING
        self._buffer = b""
        self.transport.write(wire.http_error(status, text))
        self.close()

    def close(self) -> None:
        """
        Close after what was written is delivered, and abort if the peer
        has not let that happen within the close timeout: a peer that
        stops reading must not hold the connection for ever.
        """
        self._stop_relaying()
        # Through the TLS layer when there is one: it flushes, says
        # close_notify, and then waits for the peer's.
        (self._tls or self.transport).loseConnection()
        self._closer.start(self._server._clock, self._server.limits.close_timeout, self.transport)

    def abort(self) -> None:
        """Drop the connection now; nothing it still reads goes anywhere."""
        self._cancel_timer()
        self._stop_relaying()
        self.transport.abortConnection()

    def evict(self) -> None:
        """Drop this connection, still in its header stage, for a newer one."""
        self.abort()

    def _stop_relaying(self) -> None:
        """
        This end is closing: whatever the transport still delivers -- a
        transport may hand over bytes it had already read, and a graceful
        close keeps reading until the peer's close -- is dropped here, not
        passed to a splice's other end or parsed as a header.  A control
        connection's TLS layer must keep reading to see the hidden Tub's
        close_notify; its lines protocol ignores what comes after the close.
        """
        self.state = _CLOSING
        self._buffer = b""
        pending, self.pending = self.pending, None
        if pending is not None:
            # A stream arriving for it now is told no dialer is waiting,
            # rather than spliced to a connection that is going away.
            self._server._drop_pending(pending)
        if self._tls is None:
            self.dataReceived = self._discard  # type: ignore[method-assign]

    def _discard(self, data: bytes) -> None:
        self.discarded += len(data)

    def _header_timed_out(self) -> None:
        self._timer = None
        self.refuse(
            408,
            "no complete header block within %s s; %s"
            % (self._server.limits.header_timeout, wire.ACCEPTED),
        )

    def _cancel_timer(self) -> None:
        cancel_call(self._timer)
        self._timer = None

    def start_tls_server(self, factory: Factory) -> None:
        """
        Put a TLS server session, with C{factory}'s protocol on top, on this
        connection from here on; what is left of the buffer is its first
        bytes.  The side is ours to choose, not the socket's: the relay is
        the listener, and may itself be reached over a connection it dialed.
        """
        self.state = _CONTROL
        tls = tls_layer(self._server._tls_options, False, factory, self._server._clock, self.addr)
        self._tls = tls
        hand_over(self, tls, self.take_buffer())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        self._closer.cancel()
        self.state = _CLOSING
        tls, self._tls = self._tls, None
        if tls is not None:
            tls.connectionLost(reason)
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            _unsplice(peer.transport)
            # Its reads were going to this end's dead transport; close()
            # drops them from here on.
            peer.close()
        self._server._connection_lost(self)


def _join_transports(a: Any, b: Any) -> None:
    """
    Make each of two spliced transports the other's producer, so that a
    slow reader at one end pauses the writer at the other instead of
    letting the relay buffer without bound.
    """
    a.registerProducer(b, True)
    b.registerProducer(a, True)


def _unsplice(survivor: Any) -> None:
    """
    The other end of C{survivor}'s splice is gone.  Its dead transport is
    C{survivor}'s registered producer, and a consumer whose producer is
    paused never finishes closing: unregister it before the close.
    """
    survivor.unregisterProducer()


class _RelayFactory(Factory):
    noisy = False

    def __init__(self, server: "RelayServer") -> None:
        self._server = server

    def buildProtocol(self, addr: Optional[IAddress]) -> Optional[Protocol]:
        return _RelayConnection(self._server, addr)
