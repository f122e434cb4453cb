"""
The hidden Tub's side of a relay: a server endpoint that listens by
dialing out.

C{listen} registers with the relay over a control channel (TLS, this end
the client, presenting the Tub's own certificate: that is how it proves its
TubID), keeps the registration alive -- pinging, and re-registering with
exponential backoff whenever the channel drops -- and, for each C{CONNECT}
the relay sends, dials a fresh stream to the relay and hands it to the
Tub's listening factory as a I{listener}-role connection: the hidden Tub is
the TLS server of every connection it accepts, although every socket it has
is one it dialed.

The layers below, one module each: L{_client_port} (the registration
loop), L{_client_backoff} (its policy), L{_client_control} (the control
channel), L{_client_stream} (one relayed stream), L{_client_hints}
(dialing the relay's hints through the Tub's handlers).
"""

from __future__ import annotations

import random as _random
from typing import Any, Callable, Optional, TypedDict, Union, cast

from typing_extensions import Unpack

from zope.interface import implementer
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.ssl import PrivateCertificate
from twisted.python.failure import Failure

from .._endpoints import listener as sidetls_listener
from .._limits import DEFAULT_CLOSE_TIMEOUT, UNSET, Limits, Seconds, check_count, check_seconds, resolve
from . import _url as url
from . import _wire as wire
from ._client_backoff import Backoff
from ._client_hints import _hints_endpoint
from ._client_port import _RelayedPort
from ._client_states import STOPPED


@implementer(IStreamServerEndpoint)
class RelayListenerEndpoint:
    """
    A server endpoint that listens at a relay: every connection it yields
    was dialed by this end, and every one is the TLS server (the
    listener role).  For C{tub.listenOn(...)}; see L{listener}.
    """

    _port: Optional[_RelayedPort] = None

    def __init__(
        self,
        relay: IStreamClientEndpoint,
        certificate: PrivateCertificate,
        *,
        tubid: Optional[str] = None,
        relay_id: Optional[str] = None,
        description: Optional[str] = None,
        clock: Optional[IReactorTime] = None,
        limits: Optional[Limits] = None,
        handshake_timeout: Seconds = UNSET,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        keepalive: Optional[float] = 60.0,
        answer_timeout: float = 30.0,
        max_pending_streams: int = 32,
        close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
        jitter: float = 0.25,
        random: Optional[Callable[[], float]] = None,
    ) -> None:
        """
        @param relay: How to reach the relay's port; used for the control
            channel and for every stream.
        @param certificate: The Tub's certificate (C{tub.myCertificate}):
            presented to the relay to prove C{tubid}.
        @param tubid: The TubID to register; by default that of
            C{certificate}, which is the only one the relay accepts.
        @param relay_id: Pin the relay: refuse to register with a relay
            whose certificate digest differs.
        @param limits: What bounds each relayed connection, as for
            L{foolscap_sidetls.listener} (C{max_negotiating} included);
            or give only C{handshake_timeout}, the others keeping
            L{Limits}' defaults -- not both.  Not C{close_timeout}: that
            keyword is the relay channel's own (below).
        @param retry_initial: Seconds before the first re-registration
            attempt after the channel drops; doubles per failure up to
            C{retry_max}, back to C{retry_initial} after a success.  Every
            way an attempt can fail counts -- the relay unreachable, a
            malformed answer, a refusal, a timeout -- and so does a
            registration lost within twice C{retry_max} seconds when the
            attempt before it ended the same way: a relay that accepts and drops at
            once is retried ever more slowly, not every C{retry_initial}.
            A failure is logged once per backoff step; at C{retry_max} one
            that repeats is not logged again.  A failure only the relay's
            operator can fix (a relay that is not the pinned one, a TubID
            the relay does not allow, another process registering this
            TubID) is logged once at error level and retried every
            C{retry_max}.
        @param jitter: Each wait is the backoff times a random factor in
            C{[1 - jitter, 1 + jitter)}, so that Tubs which lost the same
            relay at once do not all come back at once.  0 for none.
        @param random: Where the factor's randomness comes from: a callable
            returning a float in C{[0, 1)} (C{random.random} by default;
            tests pass a fixed one).
        @param keepalive: Ping the relay this often (seconds); a ping not
            answered by the next one drops the channel, and registration
            starts again.  L{None} does not ping (the relay then drops a
            silent channel after its C{control_idle_timeout}).
        @param answer_timeout: Seconds the relay has to complete the control
            handshake and accept the registration, and to answer a stream.
        @param max_pending_streams: Streams being opened at once; beyond
            it the relay is told C{REFUSED}, so a relay cannot make this
            Tub open sockets without bound.
        @param close_timeout: Seconds the relay gets to finish a close this
            end started (C{stopListening}) before the connection is
            aborted; L{None} waits forever.
        @raise TypeError: for an argument of the wrong type.
        @raise ValueError: for a value out of range; both name the argument.
        """
        what = "RelayListenerEndpoint"
        if not IStreamClientEndpoint.providedBy(relay):
            raise TypeError(
                "RelayListenerEndpoint expects an IStreamClientEndpoint to reach the "
                "relay, got %r" % (relay,)
            )
        if not isinstance(certificate, PrivateCertificate):
            raise TypeError(
                "RelayListenerEndpoint expects the Tub's PrivateCertificate "
                "(tub.myCertificate), got %r" % (certificate,)
            )
        if tubid is None:
            tubid = wire.certificate_id(certificate)
        if not wire.is_id(tubid):
            raise ValueError("%r is not a TubID (32 characters of a-z and 2-7)" % (tubid,))
        if relay_id is not None and not wire.is_id(relay_id):
            raise ValueError("%r is not a relay ID (32 characters of a-z and 2-7)" % (relay_id,))
        backoff = Backoff.checked(
            what,
            retry_initial,
            retry_max,
            jitter,
            random if random is not None else _random.random,
        )
        check_seconds(keepalive, "keepalive", what)
        check_seconds(answer_timeout, "answer_timeout", what, optional=False)
        # The relayed connections' own limits, as the sidetls wrapper takes
        # them; close_timeout is the relay channel's, not theirs.
        chosen = resolve(what, limits, handshake_timeout=handshake_timeout)
        check_seconds(close_timeout, "close_timeout", what)
        check_count(max_pending_streams, "max_pending_streams", what, optional=False, unit=None)
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self._relay = relay
        self._tubid = tubid
        self._relay_id = relay_id
        self._description = description or repr(relay)
        self._clock = clock
        self._limits = chosen
        self._keepalive = keepalive
        self._answer_timeout = answer_timeout
        self._max_pending_streams = max_pending_streams
        self._close_timeout = close_timeout
        self._backoff = backoff
        self._tls_options = wire.tls_options(certificate)

    def __repr__(self) -> str:
        return "<relay listener for %s via %s>" % (self._tubid, self._description)

    @property
    def limits(self) -> Limits:
        """What bounds each relayed connection (read-only)."""
        return self._limits

    def listen(self, protocolFactory: IProtocolFactory) -> "Deferred[IListeningPort]":
        """
        Start registering; fires at once with the listening port, because
        the relay may be down for now and registration is retried until
        C{stopListening}.  (Foolscap's C{Listener} ignores a C{listen} that
        fails and cannot stop one that never fires.)  L{when_registered}
        says when dialers can get through.
        """
        if self._port is not None and self._port.state != STOPPED:
            return defer.fail(
                RuntimeError(
                    "%r is already listening; a relay listener endpoint holds one "
                    "registration (make another endpoint for another Tub)" % (self,)
                )
            )
        # The public wrapper makes every connection the listener role (TLS
        # server); what it wraps yields the relayed streams.
        return sidetls_listener(_RelayedStreams(self), clock=self._clock, limits=self._limits).listen(
            protocolFactory
        )

    def _listen(self, factory: IProtocolFactory) -> "Deferred[IListeningPort]":
        port = _RelayedPort(self, factory)
        self._port = port
        port._start()
        return defer.succeed(port)

    @property
    def port(self) -> Optional[_RelayedPort]:
        """The port of the current (or last) C{listen}."""
        return self._port

    @property
    def tubid(self) -> str:
        return self._tubid

    @property
    def state(self) -> str:
        """C{"connecting"}, C{"registered"}, C{"waiting"} or C{"stopped"}."""
        return self._port.state if self._port is not None else STOPPED

    @property
    def last_error(self) -> Optional[Failure]:
        """Why the last registration attempt failed or ended, if one did."""
        return self._port.last_error if self._port is not None else None

    def when_registered(self) -> "Deferred[None]":
        """
        Fires once this endpoint's port is registered at the relay (at once
        if it is now).  Fails if the endpoint is not listening.
        """
        if self._port is None or self._port.state == STOPPED:
            return defer.fail(RuntimeError("%r is not listening" % (self,)))
        return self._port.when_registered()


@implementer(IStreamServerEndpoint)
class _RelayedStreams:
    """The relayed streams of one L{RelayListenerEndpoint}, unwrapped."""

    def __init__(self, endpoint: RelayListenerEndpoint) -> None:
        self._endpoint = endpoint

    def __repr__(self) -> str:
        return repr(self._endpoint)

    def listen(self, protocolFactory: IProtocolFactory) -> "Deferred[IListeningPort]":
        return self._endpoint._listen(protocolFactory)


class RelayListenerOptions(TypedDict, total=False):
    """
    The keywords L{listener} hands to L{RelayListenerEndpoint} as they
    are (PEP 692): listed once, here, and documented there.
    """

    limits: Optional[Limits]
    handshake_timeout: Optional[float]
    retry_initial: float
    retry_max: float
    keepalive: Optional[float]
    max_pending_streams: int
    close_timeout: Optional[float]
    jitter: float
    random: Optional[Callable[[], float]]


def listener(
    relay: Union[str, IStreamClientEndpoint],
    tub: Any,
    *,
    relay_id: Optional[str] = None,
    clock: Optional[IReactorTime] = None,
    reactor: Any = None,
    **options: Unpack[RelayListenerOptions],
) -> RelayListenerEndpoint:
    """
    A server endpoint for C{tub.listenOn(...)} that listens at a relay:
    C{tub} never listens on a socket, registers with the relay, and accepts
    every relayed connection as its TLS server.  Put the relay's hints in
    the Tub's location (L{location_hints}) and any Foolscap dialer reaches
    it through the relay.

    @param relay: A relay URL, C{"relay://<relay-id>@tcp:host:port"} (as
        C{RelayServer.url()} prints it; the relay's certificate is then
        pinned), bare hints C{"tcp:host:port"} (not pinned: the relay still
        cannot read or alter the Tubs' sessions, but an impostor could
        refuse service), or an C{IStreamClientEndpoint} to the relay's port.
        Every hint is dialed with C{tub}'s own handler for its type, tcp
        included (a Tub whose tcp handler goes through Tor reaches its
        relay through Tor), and without its role wrapper: the control
        channel and the streams pick their TLS sides themselves.
    @param tub: The hidden Tub; its certificate proves its TubID.
    @param reactor: What the hint handlers dial with (the global reactor
        by default); C{clock} defaults to it.
    @param options: C{limits}, C{handshake_timeout}, C{retry_initial},
        C{retry_max}, C{keepalive}, C{max_pending_streams},
        C{close_timeout}, C{jitter} and C{random}: as for
        L{RelayListenerEndpoint} (L{RelayListenerOptions}).
    @raise ValueError: for a malformed relay URL or a hint type C{tub} has
        no handler for.
    """
    certificate = getattr(tub, "myCertificate", None)
    tubid = getattr(tub, "tubID", None)
    if not isinstance(certificate, PrivateCertificate) or not isinstance(tubid, str):
        raise TypeError(
            "foolscap_sidetls.relay.listener() expects a foolscap.api.Tub, got %r (%s)"
            % (tub, type(tub).__name__)
        )
    endpoint: IStreamClientEndpoint
    if isinstance(relay, str):
        url_id, hints = url.parse_relay_url(relay)
        if relay_id is not None and url_id is not None and relay_id != url_id:
            raise ValueError(
                "relay_id=%r contradicts the relay URL's %r" % (relay_id, url_id)
            )
        relay_id = relay_id or url_id
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        endpoint = _hints_endpoint(hints, tub, reactor)
        description = relay
    elif IStreamClientEndpoint.providedBy(relay):
        endpoint = relay
        description = repr(relay)
    else:
        raise TypeError(
            "foolscap_sidetls.relay.listener() expects a relay URL "
            "('relay://<relay-id>@tcp:host:port'), connection hints, or an "
            "IStreamClientEndpoint, got %r" % (relay,)
        )
    if clock is None and reactor is not None:
        clock = cast(IReactorTime, reactor)
    return RelayListenerEndpoint(
        endpoint,
        certificate,
        tubid=tubid,
        relay_id=relay_id,
        description=description,
        clock=clock,
        **options,
    )


def location_hints(relay: str) -> list[str]:
    """
    The connection hints to put in a hidden Tub's location
    (C{tub.setLocation(*location_hints(relay_url))}): the relay's own.
    Dialers reach the relay with them and the relay routes on the TubID.
    """
    return url.parse_relay_url(relay)[1]
