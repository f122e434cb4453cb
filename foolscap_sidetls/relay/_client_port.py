"""
A relayed listening port: one registration at the relay, kept alive until
C{stopListening} -- re-registering after every failure as
L{_client_backoff.Backoff} says, logging a repeated failure once per
backoff step, and dialing a stream for each C{CONNECT} the relay sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from zope.interface import implementer
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IProtocol, IProtocolFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire as wire
from ._addresses import RelayAddress, RelayedAddress
from ._client_control import _ControlClient
from ._client_states import CONNECTING, REGISTERED, STOPPED, WAITING
from ._client_stream import _StreamClient
from ._plumbing import Waiters, cancel_call, quiet_factory

if TYPE_CHECKING:
    from ._client import RelayListenerEndpoint

#: One namespace for the hidden Tub's side, whichever module logs.
_log = Logger(namespace="foolscap_sidetls.relay.client")


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
    _registered_at = 0.0
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
        self._registered_waiters = Waiters()
        self._stop_waiters = Waiters()

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
            cancel_call(self._retry)
            self._retry = None
            for d in list(self._dialing):
                d.cancel()
            for stream in list(self._streams):
                stream.close()
            if self._control is not None:
                self._control.close()
            self._registered_waiters.fire(wire.RelayError("stopped listening before registering"))
        done = self._stop_waiters.wait()
        self._maybe_stopped()
        return done

    def getHost(self) -> RelayAddress:
        return RelayAddress(self._endpoint._description, self._endpoint._tubid)

    # -- public ----------------------------------------------------------------

    def when_registered(self) -> "Deferred[None]":
        """Fires when this port is registered (at once if it is now)."""
        if self.state == REGISTERED:
            return defer.succeed(None)
        return self._registered_waiters.wait()

    # -- registering -------------------------------------------------------------

    def _start(self) -> None:
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        if not self._listening:
            return
        self.state = CONNECTING
        d = self._endpoint._relay.connect(quiet_factory(_ControlClient, self))
        self._dialing.add(d)

        def dialed(result: Any) -> Any:
            self._dialing.discard(d)
            self._maybe_stopped()
            return result

        d.addBoth(dialed)
        d.addErrback(self._dial_failed)

    def _dial_failed(self, reason: Failure) -> None:
        if not self._listening:
            return
        self._flapping = False
        self._failed(reason)

    def _failed(self, reason: Failure) -> None:
        """
        Every way an attempt ends without a registration that lasted comes
        here, and waits as L{Backoff<_client_backoff.Backoff>} says.
        """
        self.last_error = reason
        self.failures += 1
        endpoint = self._endpoint
        why = reason.getErrorMessage()
        advice = _operator_advice(reason)
        base = endpoint._backoff.base(self.failures, slowest=advice is not None)
        delay = endpoint._backoff.jittered(base)
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
                    delay=endpoint._backoff.maximum,
                )
        else:
            self._reported = None
        if self._first_time("failed", why, base):
            _log.info(
                "relay {relay}: {why}; retrying in {delay} s{more}",
                relay=endpoint._description,
                why=why,
                delay="%.3g" % (delay,),
                more=(
                    " (the longest wait: this is not logged again while it repeats)"
                    if base >= endpoint._backoff.maximum
                    else ""
                ),
            )
        self.state = WAITING
        self._retry = self._clock.callLater(delay, self._connect)

    def _first_time(self, kind: str, text: str, base: float) -> bool:
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

    def _control_connected(self, client: _ControlClient) -> None:
        if not self._listening:
            client.close()
            return
        self._control = client

    def _registered(self, client: _ControlClient) -> None:
        if not self._listening or client is not self._control:
            return
        self.state = REGISTERED
        self.registrations += 1
        self._registered_at = self._clock.seconds()
        if not self._flapping:
            # A registration after anything else -- a first one, or the
            # relay back after failures -- starts the backoff over.  After
            # one that was lost at once the count goes on, so a relay that
            # accepts and drops at once is retried ever more slowly.
            self.failures = 0
            self._logged.clear()
            self._reported = None
        if self._first_time("registered", "", self._endpoint._backoff.base(self.failures)):
            _log.info(
                "relay {relay}: registered {tubid}",
                relay=self._endpoint._description,
                tubid=self._endpoint._tubid,
            )
        self._registered_waiters.fire()

    def _control_lost(self, client: _ControlClient, reason: Failure | Exception) -> None:
        if self._control is client:
            self._control = None
        if not isinstance(reason, Failure):
            reason = Failure(reason)
        was_registered = self.state == REGISTERED
        if self._listening:
            if was_registered:
                self.state = CONNECTING
                lasted = self._clock.seconds() - self._registered_at
                self._flapping = lasted < self._endpoint._backoff.stable_after
                if not self._flapping:
                    # It held: this loss is the first failure of a new run.
                    self.failures = 0
                    self._logged.clear()
                    self._reported = None
            else:
                self._flapping = False
            self._failed(reason)
        self._maybe_stopped()

    # -- streams ---------------------------------------------------------------------

    def _connect_requested(
        self, client: _ControlClient, token: str, host: str, port: int
    ) -> None:
        limit = self._endpoint._max_pending_streams
        if len(self._streams) + len(self._dialing) >= limit:
            client.sendLine(
                b"REFUSED %s %d streams are already being opened, this hidden Tub's limit"
                % (token.encode("ascii"), limit)
            )
            return
        address = RelayedAddress(host, port, self._endpoint._description)
        d = self._endpoint._relay.connect(quiet_factory(_StreamClient, self, token, address))
        self._dialing.add(d)

        def dialed(result: Any) -> Any:
            self._dialing.discard(d)
            self._maybe_stopped()
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

    def _stream_connected(self, stream: _StreamClient) -> None:
        self._streams.add(stream)
        if not self._listening:
            stream.close()

    def _stream_spliced(self, stream: _StreamClient) -> Optional[IProtocol]:
        self._streams.discard(stream)
        if not self._listening:
            return None
        app = self._factory.buildProtocol(stream.address)
        self._maybe_stopped()
        return app

    def _stream_gone(self, stream: _StreamClient) -> None:
        self._streams.discard(stream)
        self._maybe_stopped()

    def _maybe_stopped(self) -> None:
        if self._listening or self._control is not None or self._dialing or self._streams:
            return
        self._stop_waiters.fire()


_CONFIGURATION = "fix the relay's configuration or this Tub's relay URL"


def _operator_advice(reason: Failure) -> Optional[str]:
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
