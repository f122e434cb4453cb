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
"""

from __future__ import annotations

import random as _random
from typing import Any, Callable, Optional, Union, cast

from zope.interface import implementer
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import PrivateCertificate
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from . import _relay_wire as wire
from ._handler import SideTLSHandler, tubHandlers
from ._endpoints import DialerEndpoint, listener as sidetls_listener
from ._protocol import DEFAULT_CLOSE_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT

_log = Logger()

#: States of a relayed listening port.
CONNECTING = "connecting"
REGISTERED = "registered"
WAITING = "waiting"
STOPPED = "stopped"


@implementer(IAddress)
class RelayedAddress:
    """
    The dialer of a relayed connection, as the relay saw it: what the
    hidden Tub's listening factory is built with.  (The connection's
    C{getPeer()} is the relay: that is the socket's other end.)
    """

    def __init__(self, host: str, port: int, relay: str) -> None:
        self.host = host
        self.port = port
        self.relay = relay

    def __repr__(self) -> str:
        return "RelayedAddress(%r, %d, via %r)" % (self.host, self.port, self.relay)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RelayedAddress):
            return NotImplemented
        return (self.host, self.port, self.relay) == (other.host, other.port, other.relay)

    def __hash__(self) -> int:
        return hash((self.host, self.port, self.relay))


@implementer(IAddress)
class RelayAddress:
    """
    What a relayed listening port reports as its host: it has no local
    address, only a relay at which it can be reached.
    """

    def __init__(self, relay: str, tubid: str) -> None:
        self.relay = relay
        self.tubid = tubid
        # Foolscap's Listener logs host and port.
        self.host = relay
        self.port = None

    def __repr__(self) -> str:
        return "RelayAddress(%r, %r)" % (self.relay, self.tubid)

    def __str__(self) -> str:
        return "relay %s for TubID %s" % (self.relay, self.tubid)


# -- the control channel, plaintext part ---------------------------------------


class _ControlClient(Protocol):
    """
    The hidden Tub's control connection: asks for the control channel in
    plaintext, then runs the TLS client session that carries it.

    @ivar failure: Why this end is closing the connection, if it is.
    """

    transport: Any
    failure: Optional[Exception] = None
    #: This end has started to close (L{fail} or L{close}): nothing the
    #: relay sends from then on is acted on.
    closing = False
    _tls: Optional[TLSMemoryBIOProtocol] = None
    _lines: Optional["_ControlLines"] = None
    _timer: Optional[IDelayedCall] = None
    _tlsReason: Optional[Failure] = None

    def __init__(self, port: "_RelayedPort") -> None:
        self.port = port
        self._buffer = b""
        self._closer = wire.CloseTimer()

    def connectionMade(self) -> None:
        self.transport.write(wire.CONTROL_REQUEST)
        self.setTimer(
            self.port._endpoint._answerTimeout,
            "the relay did not complete the control handshake and answer "
            "REGISTER within %s s",
        )
        self.port._controlConnected(self)

    def setTimer(self, seconds: float, why: str) -> None:
        self.cancelTimer()
        self._timer = self.port._clock.callLater(seconds, self._timedOut, why % (seconds,))

    def cancelTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _timedOut(self, why: str) -> None:
        self._timer = None
        self.fail(wire.RelayTimeoutError(why))

    def fail(self, error: Exception) -> None:
        """Close the control connection, recording C{error} as the reason."""
        if self.failure is None:
            self.failure = error
        self.closing = True
        self.cancelTimer()
        (self._tls or self.transport).abortConnection()

    def close(self) -> None:
        """
        Close cleanly -- a TLS close_notify, when TLS is up -- but abort if
        the relay has not finished the close within the close timeout: a
        wedged relay must not hold C{stopListening} (and so
        C{tub.stopService()}) for ever.
        """
        self.closing = True
        self.cancelTimer()
        lines, tls = self._lines, self._tls
        if lines is not None and tls is not None:
            # The TLS layer closes only once its producer is gone.
            tls.unregisterProducer()
            tls.loseConnection()
        else:
            self.transport.loseConnection()
        self._closer.start(self.port._clock, self.port._endpoint._closeTimeout, self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            # Not parsed: after a refusal, a "101" behind it must not start
            # a TLS session on a connection this end is closing.
            return
        self._buffer += data
        end = self._buffer.find(wire.END_OF_BLOCK)
        if end == -1:
            if len(self._buffer) > wire.MAX_HEADER:
                self.fail(
                    wire.RelayError(
                        "the relay's answer to the control request has no end of "
                        "header within %d bytes; is this a foolscap-sidetls relay?"
                        % (wire.MAX_HEADER,)
                    )
                )
            return
        end += len(wire.END_OF_BLOCK)
        block, rest = self._buffer[:end], self._buffer[end:]
        self._buffer = b""
        code, line = wire.status_line(block)
        if code != 101:
            self.fail(
                wire.RelayRefusedError(
                    "the relay refused the control connection: %r" % (line[:300],)
                )
            )
            return
        endpoint = self.port._endpoint
        tlsFactory = TLSMemoryBIOFactory(
            endpoint._tlsOptions, True, _ControlLinesFactory(self), clock=self.port._clock
        )
        tls = cast(TLSMemoryBIOProtocol, tlsFactory.buildProtocol(self.transport.getPeer()))
        self._tls = tls
        tls.makeConnection(self.transport)
        self.dataReceived = tls.dataReceived  # type: ignore[method-assign]
        if rest:
            tls.dataReceived(rest)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.cancelTimer()
        self._closer.cancel()
        tls, self._tls = self._tls, None
        if tls is not None:
            # The TLS layer tells the lines protocol first, with its own
            # reason (a failed handshake says so there).
            tls.connectionLost(reason)
            if self._tlsReason is not None:
                reason = self._tlsReason
        lines, self._lines = self._lines, None
        if lines is not None:
            lines.stopKeepalive()
        self.port._controlLost(self, self.failure if self.failure is not None else reason)

    # -- from the lines protocol ------------------------------------------------

    def sendLine(self, line: bytes) -> None:
        if self._lines is not None and not self.closing:
            self._lines.sendLine(line)


@implementer(IHandshakeListener)
class _ControlLines(wire.ControlLines):
    """
    The hidden Tub's end of the control channel, inside the TLS session.
    """

    _pingTimer: Optional[IDelayedCall] = None
    _pingSerial = 0
    _awaiting: Optional[int] = None

    def __init__(self, client: _ControlClient) -> None:
        self.client = client
        self.port = client.port

    def connectionMade(self) -> None:
        self.client._lines = self
        wire.ControlLines.connectionMade(self)

    def handshakeCompleted(self) -> None:
        if self.client.closing:
            return
        certificate = self.transport.getPeerCertificate()
        expected = self.port._endpoint._relayID
        if expected is not None:
            actual = wire.certificate_id(certificate) if certificate is not None else None
            if actual != expected:
                self.client.fail(
                    wire.RelayIdentityError(
                        "the relay at %s presented the certificate of %s, not relay "
                        "ID %s from its relay URL; not registering there"
                        % (self.transport.getPeer(), actual, expected)
                    )
                )
                return
        self.sendLine(b"REGISTER " + self.port._endpoint._tubid.encode("ascii"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.client.fail(
            wire.RelayError("the relay sent a control line longer than %d bytes" % self.MAX_LENGTH)
        )

    def lineReceived(self, line: bytes) -> None:
        if self.client.closing:
            # A graceful close keeps the TLS layer reading until the relay's
            # close_notify; what comes with it -- an OK, a CONNECT -- is for
            # a registration this end has already given up.
            return
        text = line.decode("ascii", "replace")
        command, _, rest = text.partition(" ")
        if command == "CONNECT":
            fields = rest.split(" ")
            if (
                len(fields) == 3
                and wire.is_id(fields[0])
                and wire.is_number(fields[2])
                and self.port.state == REGISTERED
            ):
                self.port._connectRequested(self.client, fields[0], fields[1], int(fields[2]))
                return
        elif command == "PONG":
            if self._awaiting is not None and rest == str(self._awaiting):
                self._awaiting = None
                return
        elif command == "OK":
            if rest == "REGISTER " + self.port._endpoint._tubid:
                self.client.cancelTimer()
                self.port._registered(self.client)
                self._schedulePing()
                return
        elif command == "ERROR":
            self.client.fail(wire.RelayRefusedError("the relay said: %s" % (rest[:300],)))
            return
        self.client.fail(
            wire.RelayError("the relay sent an unexpected control line %r" % (text[:100],))
        )

    def _schedulePing(self) -> None:
        interval = self.port._endpoint._keepalive
        if interval:
            self._pingTimer = self.port._clock.callLater(interval, self._ping)

    def _ping(self) -> None:
        self._pingTimer = None
        if self._awaiting is not None:
            self.client.fail(
                wire.RelayTimeoutError(
                    "the relay did not answer PING within %s s"
                    % (self.port._endpoint._keepalive,)
                )
            )
            return
        self._pingSerial += 1
        self._awaiting = self._pingSerial
        self.sendLine(b"PING %d" % (self._pingSerial,))
        self._schedulePing()

    def stopKeepalive(self) -> None:
        if self._pingTimer is not None and self._pingTimer.active():
            self._pingTimer.cancel()
        self._pingTimer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.stopKeepalive()
        self.client._tlsReason = reason


class _ControlLinesFactory(Factory):
    noisy = False

    def __init__(self, client: _ControlClient) -> None:
        self._client = client

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        return _ControlLines(self._client)


class _ControlClientFactory(Factory):
    noisy = False

    def __init__(self, port: "_RelayedPort") -> None:
        self._port = port

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        return _ControlClient(self._port)


# -- streams --------------------------------------------------------------------


class _StreamClient(Protocol):
    """
    A stream the hidden Tub dialed to the relay for one dialer: claims the
    dialer with its token, then carries the Tub's listener-side protocol.
    """

    transport: Any
    _app: Optional[IProtocol] = None
    _timer: Optional[IDelayedCall] = None
    #: This end has closed the stream before handing it to the Tub.
    _closing = False

    def __init__(self, port: "_RelayedPort", token: str, address: RelayedAddress) -> None:
        self.port = port
        self.token = token
        self.address = address
        self._buffer = b""
        self._closer = wire.CloseTimer()

    def close(self) -> None:
        """Close, and abort if the relay has not let the close finish in time."""
        self._closing = True
        self.transport.loseConnection()
        self._closer.start(self.port._clock, self.port._endpoint._closeTimeout, self.transport)

    def _abort(self) -> None:
        self._closing = True
        self.transport.abortConnection()

    def connectionMade(self) -> None:
        self.port._streamConnected(self)
        self.transport.write(
            b"GET " + (wire.STREAM_PREFIX + self.token).encode("ascii") + b" HTTP/1.1\r\n\r\n"
        )
        self._timer = self.port._clock.callLater(
            self.port._endpoint._answerTimeout, self._timedOut
        )

    def _timedOut(self) -> None:
        self._timer = None
        _log.warn(
            "relay stream {token}: the relay did not answer within {seconds} s",
            token=self.token,
            seconds=self.port._endpoint._answerTimeout,
        )
        self._abort()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            # Refused, timed out or stopped: a "200" behind the refusal must
            # not hand the Tub a connection this end is closing.
            return
        self._buffer += data
        end = self._buffer.find(wire.END_OF_BLOCK)
        if end == -1:
            if len(self._buffer) > wire.MAX_HEADER:
                self._abort()
            return
        end += len(wire.END_OF_BLOCK)
        block, rest = self._buffer[:end], self._buffer[end:]
        self._buffer = b""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        code, line = wire.status_line(block)
        if code != 200:
            _log.warn("relay stream {token} refused: {line}", token=self.token, line=line)
            self.close()
            return
        app = self.port._streamSpliced(self)
        if app is None:
            self.close()
            return
        self._app = app
        app.makeConnection(self.transport)
        # From here on the Tub's protocol reads the stream directly.
        self.dataReceived = app.dataReceived  # type: ignore[method-assign]
        if rest:
            app.dataReceived(rest)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._closer.cancel()
        app, self._app = self._app, None
        if app is not None:
            app.connectionLost(reason)
        else:
            self.port._streamGone(self)


class _StreamFactory(Factory):
    noisy = False

    def __init__(self, port: "_RelayedPort", token: str, address: RelayedAddress) -> None:
        self._port = port
        self._token = token
        self._address = address

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        return _StreamClient(self._port, self._token, self._address)


# -- the listening port -----------------------------------------------------------


@implementer(IListeningPort)
class _RelayedPort:
    """
    What L{RelayListenerEndpoint.listen} returns: one registration, kept
    alive until C{stopListening}.

    @ivar state: L{CONNECTING}, L{REGISTERED}, L{WAITING} (to retry) or
        L{STOPPED}.
    @ivar last_error: Why the last attempt to register failed or the last
        registration ended, or L{None}.
    """

    state = CONNECTING
    last_error: Optional[Failure] = None
    registrations = 0
    #: Attempts in a row that failed, a registration lost soon after it was
    #: made included: what the backoff grows with.
    failures = 0
    _control: Optional[_ControlClient] = None
    _retry: Optional[IDelayedCall] = None
    #: The message of the operator-fixable failure last logged loudly.
    _reported: Optional[str] = None
    #: When the current registration was made.
    _registeredAt = 0.0
    #: The last attempt registered and lost it within the stable time.
    _flapping = False

    def __init__(self, endpoint: "RelayListenerEndpoint", factory: IProtocolFactory) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._clock = endpoint._clock
        self._listening = True
        #: What was logged in this run of failures, by (kind, text, wait):
        #: a repeat is not logged again until the backoff steps or the
        #: reason changes.
        self._logged: set[tuple[str, str, float]] = set()
        self._dialing: set["Deferred[Any]"] = set()
        self._streams: set[_StreamClient] = set()
        self._registeredWaiters: list["Deferred[None]"] = []
        self._stopWaiters: list["Deferred[None]"] = []

    def __repr__(self) -> str:
        return "<relayed listening port for %s via %s: %s>" % (
            self._endpoint._tubid,
            self._endpoint._description,
            self.state,
        )

    # -- IListeningPort --------------------------------------------------------

    def startListening(self) -> None:
        """Listening starts in C{listen}; nothing to do."""

    def stopListening(self) -> "Deferred[None]":
        """
        Stop re-registering and close the control channel, which ends the
        registration at the relay; fires once it is closed and no stream
        dial is left.  Relayed connections already handed to the Tub stay
        up, as accepted sockets do when a TCP port stops listening.
        """
        if self._listening:
            self._listening = False
            self.state = STOPPED
            if self._retry is not None and self._retry.active():
                self._retry.cancel()
            self._retry = None
            for d in list(self._dialing):
                d.cancel()
            for stream in list(self._streams):
                stream.close()
            if self._control is not None:
                self._control.close()
            waiters, self._registeredWaiters = self._registeredWaiters, []
            for d in waiters:
                d.errback(wire.RelayError("stopped listening before registering"))
        done: Deferred[None] = Deferred()
        self._stopWaiters.append(done)
        self._maybeStopped()
        return done

    def getHost(self) -> RelayAddress:
        return RelayAddress(self._endpoint._description, self._endpoint._tubid)

    # -- public ----------------------------------------------------------------

    def when_registered(self) -> "Deferred[None]":
        """Fires when this port is registered (at once if it is now)."""
        if self.state == REGISTERED:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._registeredWaiters.append(d)
        return d

    # -- registering -------------------------------------------------------------

    def _start(self) -> None:
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        if not self._listening:
            return
        self.state = CONNECTING
        d = self._endpoint._relay.connect(_ControlClientFactory(self))
        self._dialing.add(d)

        def dialed(result: Any) -> Any:
            self._dialing.discard(d)
            self._maybeStopped()
            return result

        d.addBoth(dialed)
        d.addErrback(self._dialFailed)

    def _dialFailed(self, reason: Failure) -> None:
        if not self._listening:
            return
        self._flapping = False
        self._failed(reason)

    def _failed(self, reason: Failure) -> None:
        """
        Every way an attempt ends without a registration that lasted comes
        here, and waits as L{RelayListenerEndpoint._backoff} says.
        """
        self.last_error = reason
        self.failures += 1
        endpoint = self._endpoint
        why = reason.getErrorMessage()
        advice = _operatorAdvice(reason)
        base = endpoint._backoff(self.failures, slowest=advice is not None)
        delay = endpoint._jittered(base)
        if advice is not None:
            # Retrying cannot fix this one by itself, but the relay's
            # operator can (allow the TubID, restore the relay's key)
            # without anyone restarting this Tub, so keep trying -- at the
            # slowest rate -- and say so once, loudly, not on every retry.
            if why != self._reported:
                self._reported = why
                _log.error(
                    "relay {relay}: {why}; this will not clear up by itself ({advice}); "
                    "still retrying every {delay} s",
                    relay=endpoint._description,
                    why=why,
                    advice=advice,
                    delay=endpoint._retryMax,
                )
        else:
            self._reported = None
        if self._firstTime("failed", why, base):
            _log.info(
                "relay {relay}: {why}; retrying in {delay} s{more}",
                relay=endpoint._description,
                why=why,
                delay="%.3g" % (delay,),
                more=(
                    " (the longest wait: this is not logged again while it repeats)"
                    if base >= endpoint._retryMax
                    else ""
                ),
            )
        self.state = WAITING
        self._retry = self._clock.callLater(delay, self._connect)

    def _firstTime(self, kind: str, text: str, base: float) -> bool:
        """
        Is this line new in the current run of failures?  Each backoff
        step logs once; at the longest wait a failure that repeats is not
        logged again, however long it goes on.
        """
        key = (kind, text, base)
        if key in self._logged:
            return False
        self._logged.add(key)
        return True

    def _controlConnected(self, client: _ControlClient) -> None:
        if not self._listening:
            client.close()
            return
        self._control = client

    def _registered(self, client: _ControlClient) -> None:
        if not self._listening or client is not self._control:
            return
        self.state = REGISTERED
        self.registrations += 1
        self._registeredAt = self._clock.seconds()
        if not self._flapping:
            # A registration after anything else -- a first one, or the
            # relay back after failures -- starts the backoff over.  After
            # one that was lost at once the count goes on, so a relay that
            # accepts and drops at once is retried ever more slowly.
            self.failures = 0
            self._logged.clear()
            self._reported = None
        if self._firstTime("registered", "", self._endpoint._backoff(self.failures)):
            _log.info(
                "relay {relay}: registered {tubid}",
                relay=self._endpoint._description,
                tubid=self._endpoint._tubid,
            )
        waiters, self._registeredWaiters = self._registeredWaiters, []
        for d in waiters:
            d.callback(None)

    def _controlLost(self, client: _ControlClient, reason: Failure | Exception) -> None:
        if self._control is client:
            self._control = None
        if not isinstance(reason, Failure):
            reason = Failure(reason)
        wasRegistered = self.state == REGISTERED
        if self._listening:
            if wasRegistered:
                self.state = CONNECTING
                lasted = self._clock.seconds() - self._registeredAt
                self._flapping = lasted < self._endpoint._stableAfter
                if not self._flapping:
                    # It held: this loss is the first failure of a new run.
                    self.failures = 0
                    self._logged.clear()
                    self._reported = None
            else:
                self._flapping = False
            self._failed(reason)
        self._maybeStopped()

    # -- streams ---------------------------------------------------------------------

    def _connectRequested(
        self, client: _ControlClient, token: str, host: str, port: int
    ) -> None:
        limit = self._endpoint._maxPendingStreams
        if len(self._streams) + len(self._dialing) >= limit:
            client.sendLine(
                b"REFUSED %s %d streams are already being opened, this hidden Tub's limit"
                % (token.encode("ascii"), limit)
            )
            return
        address = RelayedAddress(host, port, self._endpoint._description)
        d = self._endpoint._relay.connect(_StreamFactory(self, token, address))
        self._dialing.add(d)

        def dialed(result: Any) -> Any:
            self._dialing.discard(d)
            self._maybeStopped()
            return result

        def failed(reason: Failure) -> None:
            if self._listening:
                client.sendLine(
                    b"REFUSED %s could not open a stream to the relay: %s"
                    % (
                        token.encode("ascii"),
                        " ".join(reason.getErrorMessage().split())[:200].encode(
                            "ascii", "replace"
                        ),
                    )
                )

        d.addBoth(dialed)
        d.addErrback(failed)

    def _streamConnected(self, stream: _StreamClient) -> None:
        self._streams.add(stream)
        if not self._listening:
            stream.close()

    def _streamSpliced(self, stream: _StreamClient) -> Optional[IProtocol]:
        self._streams.discard(stream)
        if not self._listening:
            return None
        app = self._factory.buildProtocol(stream.address)
        self._maybeStopped()
        return app

    def _streamGone(self, stream: _StreamClient) -> None:
        self._streams.discard(stream)
        self._maybeStopped()

    def _maybeStopped(self) -> None:
        if self._listening or self._control is not None or self._dialing or self._streams:
            return
        waiters, self._stopWaiters = self._stopWaiters, []
        for d in waiters:
            d.callback(None)


_CONFIGURATION = "fix the relay's configuration or this Tub's relay URL"


def _operatorAdvice(reason: Failure) -> Optional[str]:
    """
    What an operator must do, if this is a failure that retrying cannot
    fix by itself: the relay is not the one the relay URL pins, it refuses
    this TubID for good (not allowed, or not the TubID of our
    certificate), or another process holding this Tub's key registered it
    over this end's live registration (the two would otherwise take it
    from each other for ever).  L{None} for the rest -- limits, timeouts,
    lost connections -- which clear up by themselves.
    """
    if reason.check(wire.RelayIdentityError):
        return _CONFIGURATION
    if reason.check(wire.RelayRefusedError):
        text = reason.getErrorMessage()
        if "replaced: TubID " in text:
            return "another process with this Tub's key registered it at the relay: stop one of them"
        if any(
            marker in text
            for marker in (
                "is not allowed to register",
                "this connection's certificate is that of TubID",
                "no client certificate",
            )
        ):
            return _CONFIGURATION
    return None


# -- the endpoint ---------------------------------------------------------------------


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
        handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
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
        wire.check_seconds(retry_initial, "retry_initial", what)
        wire.check_seconds(retry_max, "retry_max", what)
        if not retry_initial <= retry_max:
            raise ValueError(
                "%s: need retry_initial <= retry_max, got %r and %r"
                % (what, retry_initial, retry_max)
            )
        wire.check_seconds(keepalive, "keepalive", what, optional=True)
        wire.check_seconds(answer_timeout, "answer_timeout", what)
        wire.check_seconds(handshake_timeout, "handshake_timeout", what, optional=True)
        wire.check_seconds(close_timeout, "close_timeout", what, optional=True)
        wire.check_count(max_pending_streams, "max_pending_streams", what)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            raise TypeError(
                "%s: jitter must be a number from 0 to 1, got %r (%s)"
                % (what, jitter, type(jitter).__name__)
            )
        if not 0 <= jitter < 1:
            raise ValueError("%s: jitter must be from 0 up to (not including) 1, got %r" % (what, jitter))
        if random is not None and not callable(random):
            raise TypeError(
                "%s: random must be a callable returning a float in [0, 1), got %r"
                % (what, random)
            )
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self._relay = relay
        self._tubid = tubid
        self._relayID = relay_id
        self._description = description or repr(relay)
        self._clock = clock
        self._handshakeTimeout = handshake_timeout
        self._retryInitial = retry_initial
        self._retryMax = retry_max
        self._keepalive = keepalive
        self._answerTimeout = answer_timeout
        self._maxPendingStreams = max_pending_streams
        self._closeTimeout = close_timeout
        self._jitter = float(jitter)
        self._random: Callable[[], float] = random or _random.random
        self._tlsOptions = wire.tls_options(certificate)

    def __repr__(self) -> str:
        return "<relay listener for %s via %s>" % (self._tubid, self._description)

    @property
    def _stableAfter(self) -> float:
        """
        How long a registration must last for its loss to start the
        backoff over: longer than the longest wait, jitter included, so
        that two processes taking one registration from each other (each
        holding it for the other's wait) do not count as successes.
        """
        return 2 * self._retryMax

    def _backoff(self, failures: int, slowest: bool = False) -> float:
        """
        The backoff policy, all of it: the wait before the next attempt
        after C{failures} failed attempts in a row is C{retry_initial}
        doubled per failure after the first, up to C{retry_max} --
        C{retry_max} at once when C{slowest} (a failure only an operator
        can fix) -- before L{_jittered}.  No failures: 0.
        """
        if failures < 1:
            return 0.0
        if slowest:
            return self._retryMax
        base = self._retryInitial
        for _ in range(failures - 1):
            if base >= self._retryMax:
                break
            base *= 2
        return min(base, self._retryMax)

    def _jittered(self, base: float) -> float:
        """
        C{base} times a random factor in C{[1 - jitter, 1 + jitter)}, so that
        Tubs which lost one relay at once do not all come back at once.
        """
        return base * (1 + self._jitter * (2 * self._random() - 1))

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
        return sidetls_listener(
            _RelayedStreams(self), clock=self._clock, handshake_timeout=self._handshakeTimeout
        ).listen(protocolFactory)

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


# -- reaching the relay by its hints --------------------------------------------------


@implementer(IStreamClientEndpoint)
class _HintsEndpoint:
    """
    Connects to the first of a relay's connection hints that answers, each
    through its hint handler, as Foolscap's connector would.
    """

    def __init__(self, hints: list[tuple[str, Any]], reactor: Any) -> None:
        self._hints = hints
        self._reactor = reactor

    def __repr__(self) -> str:
        return ",".join(hint for hint, _ in self._hints)

    def connect(self, protocolFactory: IProtocolFactory) -> "Deferred[IProtocol]":
        remaining = list(self._hints)
        errors: list[str] = []
        current: list[Optional["Deferred[Any]"]] = [None]

        def cancel(result: "Deferred[IProtocol]") -> None:
            remaining.clear()
            attempt = current[0]
            if attempt is not None:
                attempt.cancel()

        result: Deferred[IProtocol] = Deferred(cancel)

        def tryNext() -> None:
            if result.called:
                return
            if not remaining:
                result.errback(
                    wire.RelayError(
                        "could not reach the relay at any of its hints: %s"
                        % ("; ".join(errors),)
                    )
                )
                return
            hint, handler = remaining.pop(0)
            d = defer.maybeDeferred(
                handler.hint_to_endpoint, hint, self._reactor, lambda status: None
            )
            d.addCallback(lambda found: _unwrapDialer(found[0]).connect(protocolFactory))
            current[0] = d

            def connected(protocol: IProtocol) -> None:
                current[0] = None
                if not result.called:
                    result.callback(protocol)

            def failed(reason: Failure) -> None:
                current[0] = None
                errors.append("%s: %s" % (hint, reason.getErrorMessage()))
                tryNext()

            d.addCallbacks(connected, failed)

        tryNext()
        return result


def _unwrapDialer(endpoint: IStreamClientEndpoint) -> IStreamClientEndpoint:
    """
    The endpoint below a sidetls dialer wrapper (as tor handlers return):
    the control channel runs its own TLS session and the streams are
    made listener-role above, so a dialer role in between would only add
    a layer that scans every byte for header blocks.
    """
    while isinstance(endpoint, DialerEndpoint):
        endpoint = endpoint._endpoint
    return endpoint


def _hintsEndpoint(hints: list[str], tub: Any, reactor: Any) -> _HintsEndpoint:
    """
    Dial the relay's hints as C{tub} dials any hint: with its own handler
    for each hint type, C{tcp} included -- a Tub whose tcp hints go through
    Tor must reach its relay through Tor too, or the relay learns its
    address, and a Tub without a tcp handler must not dial tcp at all.
    """
    handlers = tubHandlers(tub) or {}
    resolved: list[tuple[str, Any]] = []
    for hint in hints:
        if wire.is_tcp_hint(hint):
            hint = wire.tcp_hint(hint)  # a bad one fails now, not at each retry
        hintType = hint.split(":", 1)[0]
        handler = handlers.get(hintType)
        # Its role wrapper does not apply (see _unwrapDialer).
        while isinstance(handler, SideTLSHandler):
            handler = handler.inner
        if handler is None:
            raise ValueError(
                "no connection-hint handler for %r hints on %r, so the relay hint "
                "%r cannot be dialed (the Tub would not dial such a hint either); "
                "add one with tub.addConnectionHintHandler(%r, ...), give the relay "
                "a hint of a type the Tub has a handler for (it has: %s), or pass "
                "an IStreamClientEndpoint for the relay"
                % (hintType, tub, hint, hintType, ", ".join(sorted(handlers)) or "none")
            )
        resolved.append((hint, handler))
    return _HintsEndpoint(resolved, reactor)


def listener(
    relay: Union[str, IStreamClientEndpoint],
    tub: Any,
    *,
    relay_id: Optional[str] = None,
    clock: Optional[IReactorTime] = None,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    retry_initial: float = 1.0,
    retry_max: float = 60.0,
    keepalive: Optional[float] = 60.0,
    max_pending_streams: int = 32,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    jitter: float = 0.25,
    random: Optional[Callable[[], float]] = None,
    reactor: Any = None,
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
    @param close_timeout: as for L{RelayListenerEndpoint}, like the other
        keyword arguments.
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
        urlID, hints = wire.parse_relay_url(relay)
        if relay_id is not None and urlID is not None and relay_id != urlID:
            raise ValueError(
                "relay_id=%r contradicts the relay URL's %r" % (relay_id, urlID)
            )
        relay_id = relay_id or urlID
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        endpoint = _hintsEndpoint(hints, tub, reactor)
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
        handshake_timeout=handshake_timeout,
        retry_initial=retry_initial,
        retry_max=retry_max,
        keepalive=keepalive,
        max_pending_streams=max_pending_streams,
        close_timeout=close_timeout,
        jitter=jitter,
        random=random,
    )


def location_hints(relay: str) -> list[str]:
    """
    The connection hints to put in a hidden Tub's location
    (C{tub.setLocation(*location_hints(relay_url))}): the relay's own.
    Dialers reach the relay with them and the relay routes on the TubID.
    """
    return wire.parse_relay_url(relay)[1]
