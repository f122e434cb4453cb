"""
The relay: a registry of hidden Tubs, and the connections it splices.

Every connection to the relay's port starts as a L{_RelayConnection} that
reads one header block and becomes one of three things (see
L{_wire} for the bytes):

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

This module is one piece, a little over 500 lines, because L{RelayServer}
is the relay's bookkeeping: every event (a connection made or lost, a
registration, a dialer parked, a stream spliced) updates several of its
counters at once, and each refusal is checked against them together.
Its parts live beside it: the connections (L{_server_connection}), the
control channel (L{_server_control}), the limits (L{_server_limits}), the
source counting (L{_server_sources}) and the certificate file
(L{_server_certfile}).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.ssl import PrivateCertificate
from twisted.logger import Logger
from foolscap import crypto

from . import _url as url
from . import _wire as wire
from ._plumbing import Waiters, cancel_call, quiet_factory
from ._server_certfile import _load_or_create
from ._server_connection import _SPLICED, _WAITING, _RelayConnection, _RelayFactory, _join_transports
from ._server_control import _ControlChannel
from ._server_limits import RelayLimits
from ._server_sources import _decrement, _host_and_port, _increment

_log = Logger(namespace="foolscap_sidetls.relay.server")


#: Why a dialer or a stream names what the relay does not know (404).
_NO_SUCH_TUB = (
    "no Tub with TubID %s is registered at this relay (relay ID %s); the hidden Tub is "
    "offline, has not re-registered yet, or uses another relay"
)
_NO_SUCH_STREAM = (
    "no dialer is waiting for stream token %s: it was already used, timed out after %s s, "
    "its dialer hung up, or it was never issued"
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
            certificate = _load_or_create(cert_file)
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
        self._tls_options = wire.tls_options(certificate)
        #: Every connection not yet lost, counted or not (refused ones close
        #: after their error is delivered).
        self._open: set[_RelayConnection] = set()
        self._connections: set[_RelayConnection] = set()
        #: Counted connections still in their header stage, oldest first.
        self._in_header: dict[_RelayConnection, None] = {}
        self._per_source: dict[str, int] = {}
        self._registrations: dict[str, _Registration] = {}
        self._registrations_per_source: dict[str, int] = {}
        self._pending: dict[str, _Pending] = {}
        self._streams: dict[str, int] = {}
        #: Spliced connections by (TubID, dialer source).
        self._streams_by_source: dict[tuple[str, str], int] = {}
        self._ports: list[IListeningPort] = []
        self._empty_waiters = Waiters()
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
        return url.relay_url(self.relay_id, list(hints))

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
        return self._streams_by_source.get((tubid, source), 0) + waiting

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
            waits.append(self._empty_waiters.wait())
            for connection in list(self._open):
                connection.abort()
        return defer.gatherResults(waits).addCallback(lambda _: None)

    # -- from connections ------------------------------------------------------

    def _connection_made(self, connection: _RelayConnection) -> None:
        self._open.add(connection)
        limits = self.limits
        source = connection.source
        if self._per_source.get(source, 0) >= limits.max_connections_per_source:
            connection.refuse(
                503,
                "the relay is holding %d connections from %s, its limit per source "
                "address; try later" % (limits.max_connections_per_source, source),
            )
            return
        if len(self._connections) >= limits.max_connections:
            if not self._in_header:
                connection.refuse(
                    503,
                    "the relay is holding %d connections, its limit; try later"
                    % (limits.max_connections,),
                )
                return
            oldest = next(iter(self._in_header))
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
        self._count_source(connection)
        self._in_header[connection] = None

    def _header_done(self, connection: _RelayConnection) -> None:
        self._in_header.pop(connection, None)

    def _forget(self, connection: _RelayConnection) -> None:
        """Stop counting C{connection} against the limits."""
        if not connection._counted:
            return
        connection._counted = False
        self._connections.discard(connection)
        self._in_header.pop(connection, None)
        self._uncount_source(connection)

    def _count_source(self, connection: _RelayConnection) -> None:
        connection._source_counted = True
        _increment(self._per_source, connection.source)

    def _uncount_source(self, connection: _RelayConnection) -> None:
        if connection._source_counted:
            connection._source_counted = False
            _decrement(self._per_source, connection.source)

    def _connection_lost(self, connection: _RelayConnection) -> None:
        pending, connection.pending = connection.pending, None
        if pending is not None:
            self._drop_pending(pending)
        if connection.kind == "dialer" and connection.tubid is not None:
            _decrement(self._streams, connection.tubid)
            _decrement(self._streams_by_source, (connection.tubid, connection.source))
            connection.tubid = None
        self._forget(connection)
        self._open.discard(connection)
        if not self._open:
            self._empty_waiters.fire()

    def _dialer_arrived(self, dialer: _RelayConnection, tubid: str) -> None:
        registration = self._registrations.get(tubid)
        if registration is None:
            dialer.refuse(404, _NO_SUCH_TUB % (tubid, self.relay_id))
            return
        why = self._over_limit(registration, dialer.source)
        if why is not None:
            dialer.refuse(503, why)
            return
        limits = self.limits
        token = wire.new_token()
        timer = self._clock.callLater(limits.stream_timeout, self._stream_timed_out, token)
        pending = _Pending(token, registration, dialer, timer)
        registration.pending[token] = pending
        self._pending[token] = pending
        dialer.pending = pending
        dialer.state = _WAITING
        host, port = _host_and_port(dialer.addr)
        registration.control.sendLine(
            ("CONNECT %s %s %d" % (token, host, port)).encode("ascii", "replace")
        )

    def _over_limit(self, registration: _Registration, source: str) -> Optional[str]:
        """
        Which of the relay's limits a new dialer of C{registration}'s Tub
        from C{source} would pass, in words (it is answered 503); L{None}
        if none.  The dialer's own address first: past its share it is the
        one to be told, and it must not use up what other addresses may
        have.
        """
        limits = self.limits
        tubid = registration.tubid
        waiting = sum(1 for p in registration.pending.values() if p.dialer.source == source)
        if waiting >= cast(int, limits.max_pending_per_dialer_source):
            return (
                "%d connections from %s to TubID %s are already waiting for the hidden Tub to "
                "answer, the relay's limit per source address; try later" % (waiting, source, tubid)
            )
        held = waiting + self._streams_by_source.get((tubid, source), 0)
        if held >= cast(int, limits.max_streams_per_dialer_source):
            return (
                "%s already has %d relayed connections to TubID %s, the relay's limit per source "
                "address and hidden Tub; try later" % (source, held, tubid)
            )
        if len(registration.pending) >= limits.max_pending_per_registration:
            return (
                "%d connections to TubID %s are already waiting for the hidden Tub to answer, "
                "the relay's limit; try later" % (limits.max_pending_per_registration, tubid)
            )
        if self.streams(tubid) >= limits.max_streams_per_registration:
            return (
                "TubID %s already has %d relayed connections, the relay's limit per hidden Tub; "
                "try later" % (tubid, limits.max_streams_per_registration)
            )
        return None

    def _stream_arrived(self, stream: _RelayConnection, token: str) -> None:
        pending = self._pending.get(token)
        if pending is None:
            stream.refuse(404, _NO_SUCH_STREAM % (token, self.limits.stream_timeout))
            return
        self._drop_pending(pending)
        dialer = pending.dialer
        dialer.pending = None
        tubid = pending.registration.tubid
        dialer.tubid = tubid
        _increment(self._streams, tubid)
        _increment(self._streams_by_source, (tubid, dialer.source))
        # The stream serves a dialer that is counted against its own source
        # (and against this registration's limits): counting the stream
        # against the hidden Tub's address too would let dialers from
        # anywhere use up that address's allowance and cut the Tub off.
        self._uncount_source(stream)
        self.relayed += 1
        self._splice(dialer, stream)

    def _splice(self, dialer: _RelayConnection, stream: _RelayConnection) -> None:
        dialer.state = stream.state = _SPLICED
        dialer.peer, stream.peer = stream, dialer
        stream.transport.write(wire.STREAM_ACCEPTED + dialer.take_buffer())
        early = stream.take_buffer()
        if early:
            dialer.transport.write(early)
        # From here on each read goes straight to the other transport.
        dialer.dataReceived = stream.transport.write  # type: ignore[method-assign]
        stream.dataReceived = dialer.transport.write  # type: ignore[method-assign]
        if dialer._read_paused:
            dialer._read_paused = False
            dialer.transport.resumeProducing()
        _join_transports(dialer.transport, stream.transport)

    def _drop_pending(self, pending: _Pending) -> None:
        self._pending.pop(pending.token, None)
        pending.registration.pending.pop(pending.token, None)
        cancel_call(pending.timer)

    def _stream_timed_out(self, token: str) -> None:
        pending = self._pending.get(token)
        if pending is None:
            return
        self._refuse_pending(
            pending,
            504,
            "the hidden Tub %s did not open this connection's stream within %s s"
            % (pending.registration.tubid, self.limits.stream_timeout),
        )

    def _refused(self, registration: _Registration, token: str, reason: str) -> None:
        pending = registration.pending.get(token)
        if pending is None:
            return  # it timed out or its dialer left meanwhile
        self._refuse_pending(
            pending,
            503,
            "the hidden Tub %s could not take this connection: %s"
            % (registration.tubid, reason[:200] or "no reason given"),
        )

    def _refuse_pending(self, pending: _Pending, status: int, text: str) -> None:
        """Answer a waiting dialer with an error, no longer waiting for its stream."""
        self._drop_pending(pending)
        pending.dialer.pending = None
        pending.dialer.refuse(status, text)

    # -- from control channels -------------------------------------------------

    def _control_arrived(self, connection: _RelayConnection) -> None:
        connection.transport.write(wire.CONTROL_ACCEPTED)
        connection.start_tls_server(quiet_factory(_ControlChannel, self, connection))

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
        if not replacing and self._registrations_per_source.get(source, 0) >= limit:
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
        self._registrations_per_source[source] = self._registrations_per_source.get(source, 0) + 1
        _log.info("relay: {tubid} registered", tubid=tubid)
        return None

    def _control_lost(self, control: _ControlChannel) -> None:
        registration = control.registration
        if registration is not None:
            self._unregister(registration)

    def _unregister(self, registration: _Registration) -> None:
        registration.control.registration = None
        if self._registrations.get(registration.tubid) is registration:
            del self._registrations[registration.tubid]
            count = self._registrations_per_source.get(registration.source, 0) - 1
            if count > 0:
                self._registrations_per_source[registration.source] = count
            else:
                self._registrations_per_source.pop(registration.source, None)
            _log.info("relay: {tubid} unregistered", tubid=registration.tubid)
        for pending in list(registration.pending.values()):
            self._refuse_pending(
                pending,
                503,
                "the hidden Tub %s's registration ended before it opened this "
                "connection's stream" % (registration.tubid,),
            )
