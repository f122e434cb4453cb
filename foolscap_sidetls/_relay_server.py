"""
The relay: a registry of hidden Tubs, and the connections it splices.

Every connection to the relay's port starts as a L{_RelayConnection} that
reads one header block and becomes one of three things (see
L{foolscap_sidetls._relay_wire} for the bytes):

  - a I{dialer}: parked while the hidden Tub registered for the TubID it
    asked for is told (C{CONNECT}) to open a stream, then spliced to that
    stream;
  - a I{control} connection: a TLS server session over which a hidden Tub
    proves its TubID with its certificate and registers;
  - a I{stream}: claims a parked dialer by its one-time token.

Once spliced, each end's transport is the other's producer, so a slow
reader pauses the writer at the far end instead of filling the relay: what
the relay holds per direction is bounded by its transports' own buffers.
It never decrypts anything: after the dialer's plaintext request line (the
TubID, which Foolscap sends in the clear anyway) every byte is the two
Tubs' own TLS session.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Optional, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import PrivateCertificate
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from foolscap import crypto

from . import _relay_wire as wire
from ._files import write_private
from ._protocol import DEFAULT_CLOSE_TIMEOUT

_log = Logger()

#: A dialer source's default share of a hidden Tub's waiting dialers and
#: relayed connections: an eighth.  Foolscap keeps one connection per pair
#: of Tubs, so an honest address needs one per Tub behind it.
_SHARE_DIVISOR = 8


@dataclass(frozen=True)
class RelayLimits:
    """
    What one relay will hold, so that no client -- dialer or hidden Tub --
    can exhaust it.  Every refusal names the limit it hit.

    @ivar max_connections: Connections open at the relay in any state
        (dialers, streams, control).  Each relayed Foolscap connection
        costs two.  When a new one arrives at the limit, the oldest
        connection that has not yet sent its header block is dropped to
        admit it (an honest peer sends its header at once, so a flood of
        silent connections cannot keep it out); when every connection is
        past that stage the new one is answered 503 and closed.
    @ivar max_connections_per_source: Connections from one source address
        (an IPv4 address, or an IPv6 /64, which one host usually holds
        whole), so that one client cannot take the whole of
        C{max_connections}; beyond it that source's new connections are
        answered 503.  A hidden Tub's stream is not counted against its own
        address once it has claimed its dialer: the dialer it serves is
        counted against the dialer's, and the stream is bounded by
        C{max_streams_per_registration} -- otherwise dialers from anywhere
        could use up the hidden Tub's address's allowance and cut it off.
    @ivar max_registrations: Hidden Tubs registered at once.  A control
        connection registers at most one TubID, that of its certificate.
    @ivar max_registrations_per_source: Hidden Tubs registered from one
        source address.  A fresh key costs nothing, so without this one
        client could take every registration.
    @ivar max_pending_per_registration: Dialers of one hidden Tub waiting
        for it to open their stream.
    @ivar max_streams_per_registration: Relayed connections of one hidden
        Tub, open or waiting.
    @ivar max_pending_per_dialer_source: Of those waiting dialers, how many
        may come from one source address; by default an eighth of
        C{max_pending_per_registration} (at least 1).
    @ivar max_streams_per_dialer_source: Of a hidden Tub's relayed
        connections, open or waiting, how many may come from one source
        address; by default an eighth of C{max_streams_per_registration}
        (at least 1).  The relay cannot see whether a relayed connection
        is doing anything useful -- its bytes are the two Tubs' TLS -- so
        this share is what keeps one address, holding connections that
        say C{GET /id/<tubid>} and then nothing, from taking every one a
        hidden Tub is allowed and cutting it off from everyone else.  Set
        explicitly, each share must be below its per-registration limit.
    @ivar header_timeout: Seconds a new connection has to send its first
        header block, and a control connection to register.
    @ivar stream_timeout: Seconds the hidden Tub has to open a dialer's
        stream; the dialer is then answered 504.
    @ivar control_idle_timeout: Seconds a registered control connection may
        stay silent (hidden Tubs ping every 60 s by default) before the
        relay drops it and the registration.
    @ivar close_timeout: Seconds a peer gets to finish a close the relay
        started (read the error it was sent, answer TLS's close_notify)
        before the connection is aborted; L{None} waits forever.
    """

    max_connections: int = 4096
    max_connections_per_source: int = 512
    max_registrations: int = 1024
    max_registrations_per_source: int = 16
    max_pending_per_registration: int = 32
    max_streams_per_registration: int = 512
    header_timeout: float = 30.0
    stream_timeout: float = 30.0
    control_idle_timeout: float = 180.0
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT
    # Optional here only so that the default can follow the limit it is a
    # share of; after construction each is an int.
    max_pending_per_dialer_source: Optional[int] = None
    max_streams_per_dialer_source: Optional[int] = None

    def __post_init__(self) -> None:
        for name in (
            "max_connections",
            "max_connections_per_source",
            "max_registrations",
            "max_registrations_per_source",
            "max_pending_per_registration",
            "max_streams_per_registration",
        ):
            wire.check_count(getattr(self, name), name, "RelayLimits")
        for name in ("header_timeout", "stream_timeout", "control_idle_timeout"):
            wire.check_seconds(getattr(self, name), name, "RelayLimits")
        wire.check_seconds(self.close_timeout, "close_timeout", "RelayLimits", optional=True)
        self._share("max_pending_per_dialer_source", "max_pending_per_registration")
        self._share("max_streams_per_dialer_source", "max_streams_per_registration")

    def _share(self, name: str, of: str) -> None:
        """
        Check, or default, the share C{name} of the per-registration limit
        C{of} that one dialer source may hold: a share equal to the whole
        would let one address cut a hidden Tub off again.
        """
        whole = getattr(self, of)
        value = getattr(self, name)
        if value is None:
            object.__setattr__(self, name, max(1, whole // _SHARE_DIVISOR))
            return
        wire.check_count(value, name, "RelayLimits")
        if value >= whole and whole > 1:
            raise ValueError(
                "RelayLimits: %s must be less than %s (%d), got %d: otherwise one "
                "dialer address can take them all and cut the hidden Tub off from "
                "every other dialer; leave it out for an eighth (%d)"
                % (name, of, whole, value, max(1, whole // _SHARE_DIVISOR))
            )
        if value > whole:
            raise ValueError(
                "RelayLimits: %s must be at most %s (%d), got %d"
                % (name, of, whole, value)
            )


class _Pending:
    """A dialer waiting for its hidden Tub to open the stream for C{token}."""

    def __init__(
        self,
        token: str,
        registration: "_Registration",
        dialer: "_RelayConnection",
        timer: IDelayedCall,
    ) -> None:
        self.token = token
        self.registration = registration
        self.dialer = dialer
        self.timer = timer


class _Registration:
    """One hidden Tub's registration: its control channel and waiting dialers."""

    def __init__(self, tubid: str, control: "_ControlChannel", source: str) -> None:
        self.tubid = tubid
        self.control = control
        self.source = source
        self.pending: dict[str, _Pending] = {}


# -- connections to the relay's port -------------------------------------------

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
    _readPaused = False
    _counted = False
    #: Counted against C{source}'s connections (a stream stops being once
    #: it claims its dialer).
    _sourceCounted = False
    #: Bytes read after this end had closed, and so not passed on.
    discarded = 0

    def __init__(self, server: "RelayServer", addr: Optional[IAddress]) -> None:
        self._server = server
        self.addr = addr
        self.source = _sourceOf(addr)
        self.state = _HEADER
        self._buffer = b""
        self._closer = wire.CloseTimer()

    def __repr__(self) -> str:
        return "<relay connection %s %s from %r>" % (self.kind, self.state, self.addr)

    def connectionMade(self) -> None:
        self._server._connectionMade(self)
        if self.state == _HEADER:
            self._timer = self._server._clock.callLater(
                self._server.limits.header_timeout, self._headerTimedOut
            )

    def dataReceived(self, data: bytes) -> None:
        if self.state == _HEADER:
            self._headerData(data)
        elif self.state == _WAITING:
            # A dialer talking before the hidden Tub answered.  Foolscap
            # sends nothing more until it hears "101"; keep what comes, but
            # stop reading once it is more than a header's worth.
            self._buffer += data
            if len(self._buffer) > wire.MAX_HEADER and not self._readPaused:
                self._readPaused = True
                self.transport.pauseProducing()

    def _headerData(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(wire.END_OF_BLOCK)
        if end == -1:
            if len(self._buffer) > wire.MAX_HEADER:
                self.refuse(
                    400,
                    "Bad Request",
                    "no end of header block within %d bytes; %s"
                    % (wire.MAX_HEADER, wire.ACCEPTED),
                )
            return
        end += len(wire.END_OF_BLOCK)
        if end > wire.MAX_HEADER:
            self.refuse(
                400,
                "Bad Request",
                "header block of %d bytes is longer than %d; %s"
                % (end, wire.MAX_HEADER, wire.ACCEPTED),
            )
            return
        self._cancelTimer()
        self._server._headerDone(self)
        try:
            kind, value = wire.parse_request(self._buffer[:end])
        except wire.BadRequest as e:
            self.refuse(400, "Bad Request", "%s; %s" % (e, wire.ACCEPTED))
            return
        self.kind = kind
        if kind == "dialer":
            # The dialer's request goes to the hidden Tub as it is.
            self._server._dialerArrived(self, value)
        else:
            # Its own request is for the relay alone; what follows is not.
            self._buffer = self._buffer[end:]
            if kind == "control":
                self._server._controlArrived(self)
            else:
                self._server._streamArrived(self, value)

    def takeBuffer(self) -> bytes:
        data, self._buffer = self._buffer, b""
        return data

    def refuse(self, status: int, reason: str, text: str) -> None:
        """Answer with an error status line and close."""
        if self.state == _CLOSING:
            return
        self._cancelTimer()
        self.state = _CLOSING
        self._buffer = b""
        self.transport.write(wire.http_error(status, reason, text))
        self.close()

    def close(self) -> None:
        """
        Close after what was written is delivered, and abort if the peer
        has not let that happen within the close timeout: a peer that
        stops reading must not hold the connection for ever.
        """
        self._stopRelaying()
        # Through the TLS layer when there is one: it flushes, says
        # close_notify, and then waits for the peer's.
        (self._tls or self.transport).loseConnection()
        self._closer.start(self._server._clock, self._server.limits.close_timeout, self.transport)

    def abort(self) -> None:
        """Drop the connection now; nothing it still reads goes anywhere."""
        self._cancelTimer()
        self._stopRelaying()
        self.transport.abortConnection()

    def evict(self) -> None:
        """Drop this connection, still in its header stage, for a newer one."""
        self.abort()

    def _stopRelaying(self) -> None:
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
            self._server._dropPending(pending)
        if self._tls is None:
            self.dataReceived = self._discard  # type: ignore[method-assign]

    def _discard(self, data: bytes) -> None:
        self.discarded += len(data)

    def _headerTimedOut(self) -> None:
        self._timer = None
        self.refuse(
            408,
            "Request Timeout",
            "no complete header block within %s s; %s"
            % (self._server.limits.header_timeout, wire.ACCEPTED),
        )

    def _cancelTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def startTLSServer(self, factory: Factory) -> None:
        """
        Put a TLS server session, with C{factory}'s protocol on top, on this
        connection from here on; what is left of the buffer is its first
        bytes.  The side is ours to choose, not the socket's: the relay is
        the listener, and may itself be reached over a connection it dialed.
        """
        self.state = _CONTROL
        tlsFactory = TLSMemoryBIOFactory(
            self._server._tlsOptions, False, factory, clock=self._server._clock
        )
        tls = cast(TLSMemoryBIOProtocol, tlsFactory.buildProtocol(self.addr))
        self._tls = tls
        tls.makeConnection(self.transport)
        self.dataReceived = tls.dataReceived  # type: ignore[method-assign]
        rest = self.takeBuffer()
        if rest:
            tls.dataReceived(rest)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelTimer()
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
        self._server._connectionLost(self)


class _RelayFactory(Factory):
    noisy = False

    def __init__(self, server: "RelayServer") -> None:
        self._server = server

    def buildProtocol(self, addr: Optional[IAddress]) -> Optional[Protocol]:
        return _RelayConnection(self._server, addr)


# -- the control channel ------------------------------------------------------


class _ControlChannel(wire.ControlLines):
    """
    The relay's end of a hidden Tub's control channel, above the TLS
    session: registration, keepalive, and the C{CONNECT} requests.
    """

    registration: Optional[_Registration] = None
    _timer: Optional[IDelayedCall] = None
    _closing = False

    def __init__(self, server: "RelayServer", connection: _RelayConnection) -> None:
        self._server = server
        self._connection = connection

    def __repr__(self) -> str:
        tubid = self.registration.tubid if self.registration else None
        return "<relay control channel %s from %r>" % (tubid, self._connection.addr)

    def connectionMade(self) -> None:
        wire.ControlLines.connectionMade(self)
        self._resetTimer(self._server.limits.header_timeout)

    def _resetTimer(self, seconds: float) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._server._clock.callLater(seconds, self._timedOut)

    def _timedOut(self) -> None:
        self._timer = None
        if self.registration is None:
            self.fail(
                "no REGISTER within %s s; %s"
                % (self._server.limits.header_timeout, wire.CONTROL_COMMANDS)
            )
        else:
            # Silent too long: the hidden Tub (or the path to it) is gone.
            # Nothing useful can be said to a peer that does not answer.
            self._closing = True
            self._server._controlLost(self)
            self.transport.abortConnection()

    def sendLine(self, line: bytes) -> None:
        if not self._closing:
            wire.ControlLines.sendLine(self, line)

    def fail(self, text: str) -> None:
        """Say C{ERROR <text>} and close."""
        if self._closing:
            return
        self.sendLine(b"ERROR " + " ".join(text.split()).encode("ascii", "replace"))
        self._closing = True
        # The registration ends with the channel that carried it, now: a
        # dialer arriving while the close finishes is told at once that
        # the Tub is not registered, rather than waiting for a CONNECT
        # that this closing channel would never send.
        self._server._controlLost(self)
        # The TLS layer closes only once its producer is gone, and then
        # waits for the hidden Tub's close_notify: bounded by the
        # connection's close timeout.
        self.transport.unregisterProducer()
        self._connection.close()

    def lineLengthExceeded(self, line: bytes) -> None:
        self.fail("line longer than %d bytes; %s" % (self.MAX_LENGTH, wire.CONTROL_COMMANDS))

    def lineReceived(self, line: bytes) -> None:
        if self._closing:
            return
        if self.registration is not None:
            self._resetTimer(self._server.limits.control_idle_timeout)
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            self.fail("line is not ASCII; %s" % (wire.CONTROL_COMMANDS,))
            return
        command, _, rest = text.partition(" ")
        if command == "REGISTER":
            self._register(rest)
        elif command == "PING" and wire.is_number(rest):
            self.sendLine(b"PONG " + rest.encode("ascii"))
        elif command == "REFUSED" and self.registration is not None:
            token, _, reason = rest.partition(" ")
            self._server._refused(self.registration, token, reason)
        elif command in ("PING", "REFUSED"):
            self.fail(
                "malformed or out-of-order %s line %r; %s"
                % (command, text[:80], wire.CONTROL_COMMANDS)
            )
        else:
            self.fail("unknown command %r; %s" % (command[:40], wire.CONTROL_COMMANDS))

    def _register(self, tubid: str) -> None:
        if not wire.is_id(tubid):
            self.fail(
                "malformed REGISTER: %r is not a TubID (32 characters of a-z and "
                "2-7); send 'REGISTER <tubid>'" % (tubid[:80],)
            )
            return
        certificate = self.transport.getPeerCertificate()
        if certificate is None:
            self.fail(
                "cannot register TubID %s: no client certificate; a hidden Tub "
                "registers by presenting its own Tub certificate in this control "
                "connection's TLS handshake" % (tubid,)
            )
            return
        certID = wire.certificate_id(certificate)
        if certID != tubid:
            self.fail(
                "cannot register TubID %s: this connection's certificate is "
                "that of TubID %s, and a Tub may register only the TubID of its "
                "own certificate" % (tubid, certID)
            )
            return
        error = self._server._register(self, tubid)
        if error is not None:
            self.fail(error)
            return
        self._resetTimer(self._server.limits.control_idle_timeout)
        self.sendLine(b"OK REGISTER " + tubid.encode("ascii"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._server._controlLost(self)


class _ControlFactory(Factory):
    noisy = False

    def __init__(self, server: "RelayServer", connection: _RelayConnection) -> None:
        self._server = server
        self._connection = connection

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        return _ControlChannel(self._server, self._connection)


# -- the relay ------------------------------------------------------------------


class RelayServer:
    """
    A relay for Tubs that cannot be dialed: hidden Tubs register over a
    control channel they dial out to, and any Foolscap dialer -- stock
    included -- reaches them by dialing the relay with an ordinary hint.
    The relay routes on the TubID in the dialer's plaintext request and
    then only copies the two Tubs' TLS session, which it cannot read or
    alter undetected.

    Hidden Tubs prove their TubID with their own certificate, as TLS
    clients of the control channel; the relay identifies itself the same
    way ("relay ID"), so hidden Tubs can pin it with a relay URL.

    @ivar relay_id: The Foolscap digest of the relay's certificate.
    @ivar certificate: That certificate (keep it to keep the relay URL).
    @ivar limits: The L{RelayLimits} in force.
    @ivar relayed: How many dialers have been spliced to a hidden Tub.
    """

    def __init__(
        self,
        certificate: Optional[PrivateCertificate] = None,
        *,
        cert_file: Optional[str] = None,
        limits: Optional[RelayLimits] = None,
        allow: Optional[Callable[[str], bool]] = None,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        """
        @param certificate: The relay's identity.  Without one (and without
            C{cert_file}) a new one is made, and the relay URL changes on
            every start; keep it to keep the URL.
        @param cert_file: Load the certificate from this PEM file, creating
            it on first use (as C{Tub(certFile=...)} does).
        @param allow: Called with each TubID that proves itself; registration
            is refused unless it returns true.  Default: any Tub may
            register its own TubID.
        @param clock: For the timeouts; tests pass a
            L{twisted.internet.task.Clock}.
        """
        if certificate is not None and cert_file is not None:
            raise TypeError("RelayServer takes certificate= or cert_file=, not both")
        if allow is not None and not callable(allow):
            raise TypeError(
                "RelayServer(allow=...) expects a callable taking a TubID and returning "
                "true to let it register, got %r" % (allow,)
            )
        if cert_file is not None:
            certificate = _loadOrCreate(cert_file)
        elif certificate is None:
            certificate = crypto.createCertificate()
        if not isinstance(certificate, PrivateCertificate):
            raise TypeError(
                "RelayServer(certificate=...) expects a "
                "twisted.internet.ssl.PrivateCertificate (such as "
                "foolscap.crypto.createCertificate() or tub.myCertificate), got %r"
                % (certificate,)
            )
        if limits is None:
            limits = RelayLimits()
        if not isinstance(limits, RelayLimits):
            raise TypeError("limits must be a RelayLimits, got %r" % (limits,))
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.certificate = certificate
        self.relay_id = wire.certificate_id(certificate)
        self.limits = limits
        self._allow = allow
        self._clock = clock
        self._tlsOptions = wire.tls_options(certificate)
        #: Every connection not yet lost, counted or not (refused ones close
        #: after their error is delivered).
        self._open: set[_RelayConnection] = set()
        self._connections: set[_RelayConnection] = set()
        #: Counted connections still in their header stage, oldest first.
        self._inHeader: dict[_RelayConnection, None] = {}
        self._perSource: dict[str, int] = {}
        self._registrations: dict[str, _Registration] = {}
        self._registrationsPerSource: dict[str, int] = {}
        self._pending: dict[str, _Pending] = {}
        self._streams: dict[str, int] = {}
        #: Spliced connections by (TubID, dialer source).
        self._streamsBySource: dict[tuple[str, str], int] = {}
        self._ports: list[IListeningPort] = []
        self._emptyWaiters: list["Deferred[None]"] = []
        self.relayed = 0

    def __repr__(self) -> str:
        return "<RelayServer %s: %d registered, %d connections>" % (
            self.relay_id,
            len(self._registrations),
            len(self._connections),
        )

    # -- public --------------------------------------------------------------

    def factory(self) -> Factory:
        """
        The protocol factory for the relay's port, for any server endpoint
        (L{listen} is the usual way in).
        """
        return _RelayFactory(self)

    def listen(self, endpoint: IStreamServerEndpoint) -> "Deferred[IListeningPort]":
        """
        Listen on C{endpoint}; L{stop} stops it.  Hidden Tubs' control and
        stream connections and their dialers all arrive here.
        """
        if not IStreamServerEndpoint.providedBy(endpoint):
            raise TypeError(
                "RelayServer.listen() expects an IStreamServerEndpoint, such as "
                "serverFromString(reactor, 'tcp:7000'), got %r" % (endpoint,)
            )

        def listening(port: IListeningPort) -> IListeningPort:
            self._ports.append(port)
            return port

        return endpoint.listen(self.factory()).addCallback(listening)

    def url(self, *hints: str) -> str:
        """
        The relay URL hidden Tubs register with:
        C{relay://<relay_id>@<hint>,...}, where the hints say how to reach
        the port L{listen} listens on (C{"tcp:relay.example.org:7000"}).
        The same hints are what hidden Tubs put in their own location.
        """
        return wire.relay_url(self.relay_id, list(hints))

    @property
    def registered(self) -> frozenset[str]:
        """The TubIDs registered right now."""
        return frozenset(self._registrations)

    @property
    def connections(self) -> int:
        """Connections open at the relay, in any state."""
        return len(self._connections)

    def streams(self, tubid: str, source: Optional[str] = None) -> int:
        """
        Relayed connections open for C{tubid}, spliced or waiting; with
        C{source}, only those whose dialer came from that source (as the
        per-source limits count it: an IPv4 address or an IPv6 /64).
        """
        registration = self._registrations.get(tubid)
        pending = list(registration.pending.values()) if registration else []
        if source is None:
            return self._streams.get(tubid, 0) + len(pending)
        waiting = sum(1 for p in pending if p.dialer.source == source)
        return self._streamsBySource.get((tubid, source), 0) + waiting

    def stop(self) -> "Deferred[None]":
        """
        Stop listening and drop every connection; fires once the ports are
        closed and every connection is gone.  Hidden Tubs then re-register
        with backoff, so a restarted relay with the same certificate and
        address is back in service without anyone's help.
        """
        ports, self._ports = self._ports, []
        waits: list["Deferred[Any]"] = [defer.maybeDeferred(p.stopListening) for p in ports]
        if self._open:
            empty: "Deferred[None]" = Deferred()
            self._emptyWaiters.append(empty)
            waits.append(empty)
            for connection in list(self._open):
                connection.abort()
        return defer.gatherResults(waits).addCallback(lambda _: None)

    # -- from connections ------------------------------------------------------

    def _connectionMade(self, connection: _RelayConnection) -> None:
        self._open.add(connection)
        limits = self.limits
        source = connection.source
        if self._perSource.get(source, 0) >= limits.max_connections_per_source:
            connection.refuse(
                503,
                "Service Unavailable",
                "the relay is holding %d connections from %s, its limit per source "
                "address; try later" % (limits.max_connections_per_source, source),
            )
            return
        if len(self._connections) >= limits.max_connections:
            if not self._inHeader:
                connection.refuse(
                    503,
                    "Service Unavailable",
                    "the relay is holding %d connections, its limit; try later"
                    % (limits.max_connections,),
                )
                return
            oldest = next(iter(self._inHeader))
            _log.info(
                "relay: dropping {victim}, which has not sent its header block, to "
                "admit a new connection ({limit} connections, the limit)",
                victim=repr(oldest),
                limit=limits.max_connections,
            )
            self._forget(oldest)
            oldest.evict()
        connection._counted = True
        self._connections.add(connection)
        self._countSource(connection)
        self._inHeader[connection] = None

    def _headerDone(self, connection: _RelayConnection) -> None:
        self._inHeader.pop(connection, None)

    def _forget(self, connection: _RelayConnection) -> None:
        """Stop counting C{connection} against the limits."""
        if not connection._counted:
            return
        connection._counted = False
        self._connections.discard(connection)
        self._inHeader.pop(connection, None)
        self._uncountSource(connection)

    def _countSource(self, connection: _RelayConnection) -> None:
        connection._sourceCounted = True
        _increment(self._perSource, connection.source)

    def _uncountSource(self, connection: _RelayConnection) -> None:
        if connection._sourceCounted:
            connection._sourceCounted = False
            _decrement(self._perSource, connection.source)

    def _connectionLost(self, connection: _RelayConnection) -> None:
        pending, connection.pending = connection.pending, None
        if pending is not None:
            self._dropPending(pending)
        if connection.kind == "dialer" and connection.tubid is not None:
            _decrement(self._streams, connection.tubid)
            _decrement(self._streamsBySource, (connection.tubid, connection.source))
            connection.tubid = None
        self._forget(connection)
        self._open.discard(connection)
        if not self._open:
            waiters, self._emptyWaiters = self._emptyWaiters, []
            for d in waiters:
                d.callback(None)

    def _dialerArrived(self, dialer: _RelayConnection, tubid: str) -> None:
        registration = self._registrations.get(tubid)
        if registration is None:
            dialer.refuse(
                404,
                "Not Found",
                "no Tub with TubID %s is registered at this relay (relay ID %s); "
                "the hidden Tub is offline, has not re-registered yet, or uses "
                "another relay" % (tubid, self.relay_id),
            )
            return
        limits = self.limits
        source = dialer.source
        # The dialer's own address first: past its share it is the one to
        # be told, and it must not use up what other addresses may have.
        waiting = sum(1 for p in registration.pending.values() if p.dialer.source == source)
        if waiting >= cast(int, limits.max_pending_per_dialer_source):
            dialer.refuse(
                503,
                "Service Unavailable",
                "%d connections from %s to TubID %s are already waiting for the "
                "hidden Tub to answer, the relay's limit per source address; try later"
                % (waiting, source, tubid),
            )
            return
        held = waiting + self._streamsBySource.get((tubid, source), 0)
        if held >= cast(int, limits.max_streams_per_dialer_source):
            dialer.refuse(
                503,
                "Service Unavailable",
                "%s already has %d relayed connections to TubID %s, the relay's "
                "limit per source address and hidden Tub; try later"
                % (source, held, tubid),
            )
            return
        if len(registration.pending) >= limits.max_pending_per_registration:
            dialer.refuse(
                503,
                "Service Unavailable",
                "%d connections to TubID %s are already waiting for the hidden "
                "Tub to answer, the relay's limit; try later"
                % (limits.max_pending_per_registration, tubid),
            )
            return
        if self.streams(tubid) >= limits.max_streams_per_registration:
            dialer.refuse(
                503,
                "Service Unavailable",
                "TubID %s already has %d relayed connections, the relay's limit "
                "per hidden Tub; try later"
                % (tubid, limits.max_streams_per_registration),
            )
            return
        token = wire.new_token()
        timer = self._clock.callLater(limits.stream_timeout, self._streamTimedOut, token)
        pending = _Pending(token, registration, dialer, timer)
        registration.pending[token] = pending
        self._pending[token] = pending
        dialer.pending = pending
        dialer.state = _WAITING
        host, port = _hostAndPort(dialer.addr)
        registration.control.sendLine(
            ("CONNECT %s %s %d" % (token, host, port)).encode("ascii", "replace")
        )

    def _streamArrived(self, stream: _RelayConnection, token: str) -> None:
        pending = self._pending.get(token)
        if pending is None:
            stream.refuse(
                404,
                "Not Found",
                "no dialer is waiting for stream token %s: it was already used, "
                "timed out after %s s, its dialer hung up, or it was never issued"
                % (token, self.limits.stream_timeout),
            )
            return
        self._dropPending(pending)
        dialer = pending.dialer
        dialer.pending = None
        tubid = pending.registration.tubid
        dialer.tubid = tubid
        _increment(self._streams, tubid)
        _increment(self._streamsBySource, (tubid, dialer.source))
        # The stream serves a dialer that is counted against its own source
        # (and against this registration's limits): counting the stream
        # against the hidden Tub's address too would let dialers from
        # anywhere use up that address's allowance and cut the Tub off.
        self._uncountSource(stream)
        self.relayed += 1
        self._splice(dialer, stream)

    def _splice(self, dialer: _RelayConnection, stream: _RelayConnection) -> None:
        dialer.state = stream.state = _SPLICED
        dialer.peer, stream.peer = stream, dialer
        stream.transport.write(wire.STREAM_ACCEPTED + dialer.takeBuffer())
        early = stream.takeBuffer()
        if early:
            dialer.transport.write(early)
        # From here on each read goes straight to the other transport.
        dialer.dataReceived = stream.transport.write  # type: ignore[method-assign]
        stream.dataReceived = dialer.transport.write  # type: ignore[method-assign]
        if dialer._readPaused:
            dialer._readPaused = False
            dialer.transport.resumeProducing()
        _joinTransports(dialer.transport, stream.transport)

    def _dropPending(self, pending: _Pending) -> None:
        self._pending.pop(pending.token, None)
        pending.registration.pending.pop(pending.token, None)
        if pending.timer.active():
            pending.timer.cancel()

    def _streamTimedOut(self, token: str) -> None:
        pending = self._pending.get(token)
        if pending is None:
            return
        self._dropPending(pending)
        pending.dialer.pending = None
        pending.dialer.refuse(
            504,
            "Gateway Timeout",
            "the hidden Tub %s did not open this connection's stream within %s s"
            % (pending.registration.tubid, self.limits.stream_timeout),
        )

    def _refused(self, registration: _Registration, token: str, reason: str) -> None:
        pending = registration.pending.get(token)
        if pending is None:
            return  # it timed out or its dialer left meanwhile
        self._dropPending(pending)
        pending.dialer.pending = None
        pending.dialer.refuse(
            503,
            "Service Unavailable",
            "the hidden Tub %s could not take this connection: %s"
            % (registration.tubid, reason[:200] or "no reason given"),
        )

    # -- from control channels -------------------------------------------------

    def _controlArrived(self, connection: _RelayConnection) -> None:
        connection.transport.write(wire.CONTROL_ACCEPTED)
        connection.startTLSServer(_ControlFactory(self, connection))

    def _register(self, control: _ControlChannel, tubid: str) -> Optional[str]:
        """Register C{tubid} (already proven) on C{control}, or say why not."""
        existing = self._registrations.get(tubid)
        if existing is not None and existing.control is control:
            return None
        if self._allow is not None and not self._allow(tubid):
            return "TubID %s is not allowed to register at this relay" % (tubid,)
        if existing is None and len(self._registrations) >= self.limits.max_registrations:
            return (
                "the relay has %d registrations, its limit; try later"
                % (self.limits.max_registrations,)
            )
        source = control._connection.source
        limit = self.limits.max_registrations_per_source
        replacing = existing is not None and existing.source == source
        if not replacing and self._registrationsPerSource.get(source, 0) >= limit:
            return (
                "the relay has %d registrations from %s, its limit per source "
                "address; try later" % (limit, source)
            )
        if existing is not None:
            # Only the holder of the key can get here, so this is that Tub
            # again (restarted, or reconnecting before the relay noticed its
            # old connection had died): the newest connection wins.
            existing.control.fail(
                "replaced: TubID %s registered again over a newer control "
                "connection" % (tubid,)
            )
            self._unregister(existing)
        registration = _Registration(tubid, control, source)
        control.registration = registration
        self._registrations[tubid] = registration
        self._registrationsPerSource[source] = self._registrationsPerSource.get(source, 0) + 1
        _log.info("relay: {tubid} registered", tubid=tubid)
        return None

    def _controlLost(self, control: _ControlChannel) -> None:
        registration = control.registration
        if registration is not None:
            self._unregister(registration)

    def _unregister(self, registration: _Registration) -> None:
        registration.control.registration = None
        if self._registrations.get(registration.tubid) is registration:
            del self._registrations[registration.tubid]
            count = self._registrationsPerSource.get(registration.source, 0) - 1
            if count > 0:
                self._registrationsPerSource[registration.source] = count
            else:
                self._registrationsPerSource.pop(registration.source, None)
            _log.info("relay: {tubid} unregistered", tubid=registration.tubid)
        for pending in list(registration.pending.values()):
            self._dropPending(pending)
            pending.dialer.pending = None
            pending.dialer.refuse(
                503,
                "Service Unavailable",
                "the hidden Tub %s's registration ended before it opened this "
                "connection's stream" % (registration.tubid,),
            )


def _hostAndPort(addr: Any) -> tuple[str, int]:
    host = str(getattr(addr, "host", None) or getattr(addr, "name", None) or "unknown")
    host = "".join(host.split()) or "unknown"
    port = getattr(addr, "port", 0)
    return host, port if isinstance(port, int) else 0


def _sourceOf(addr: Any) -> str:
    """
    What the per-source limits count by: the peer's IPv4 address, or the
    /64 of its IPv6 address -- one host is usually given a whole /64 and
    may use any address in it, so counting by address would give it as
    many allowances as it likes.  Anything else (a name) as it is.
    """
    host = _hostAndPort(addr)[0]
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return host


def _increment(counts: dict[Any, int], key: Any) -> None:
    counts[key] = counts.get(key, 0) + 1


def _decrement(counts: dict[Any, int], key: Any) -> None:
    count = counts.get(key, 0) - 1
    if count > 0:
        counts[key] = count
    else:
        counts.pop(key, None)


def _joinTransports(a: Any, b: Any) -> None:
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


def _loadOrCreate(path: str) -> PrivateCertificate:
    """
    The relay's certificate from C{path}, made and written there first if
    the file does not exist.  The file holds the private key: it is
    created with mode 0600 and appears whole or not at all (written to a
    temporary file and linked into place), and a relay started twice at
    once uses whichever key was written first.

    @raise wire.RelayError: naming the file, if it cannot be read or does
        not hold a certificate and key.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return _create(path)
    except OSError as e:
        raise wire.RelayError(
            "cannot read the relay's certificate file %r: %s" % (path, e.strerror or e)
        ) from None
    return _parseCertificate(path, data)


def _parseCertificate(path: str, data: bytes) -> PrivateCertificate:
    try:
        return PrivateCertificate.loadPEM(data)
    except Exception as e:
        raise wire.RelayError(
            "the relay's certificate file %r does not hold a PEM certificate and "
            "private key, as RelayServer(cert_file=...) writes it (%s: %s); restore "
            "it, or move it away to make a new relay identity (which changes the "
            "relay URL)" % (path, type(e).__name__, e)
        ) from None


def _create(path: str) -> PrivateCertificate:
    certificate = cast(PrivateCertificate, crypto.createCertificate())
    try:
        # Never replaces a file another process wrote meanwhile: both
        # starts then use that one identity.
        written = write_private(path, certificate.dumpPEM(), replace=False)
    except OSError as e:
        raise wire.RelayError(
            "cannot create the relay's certificate file %r: %s" % (path, e.strerror or e)
        ) from None
    if not written:
        with open(path, "rb") as f:
            return _parseCertificate(path, f.read())
    return certificate
