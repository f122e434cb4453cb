"""
The hidden Tub's control channel: the plaintext request for it, the TLS
client session that carries it (this end presenting the Tub's own
certificate, which is how it proves its TubID), and the lines inside --
REGISTER, the keepalive PINGs, and the relay's CONNECT requests, which it
hands to its L{_RelayedPort}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from zope.interface import implementer
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from . import _wire as wire
from ._client_states import REGISTERED
from ._plumbing import CloseTimer, cancel_call, hand_over, quiet_factory, tls_layer

if TYPE_CHECKING:
    from ._client_port import _RelayedPort


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
    _tls_reason: Optional[Failure] = None

    def __init__(self, port: "_RelayedPort") -> None:
        self.port = port
        self._answer = wire.Answer()
        self._closer = CloseTimer()

    def connectionMade(self) -> None:
        self.transport.write(wire.CONTROL_REQUEST)
        self.set_timer(
            self.port._endpoint._answer_timeout,
            "the relay did not complete the control handshake and answer "
            "REGISTER within %s s",
        )
        self.port._control_connected(self)

    def set_timer(self, seconds: float, why: str) -> None:
        self.cancel_timer()
        self._timer = self.port._clock.callLater(seconds, self._timed_out, why % (seconds,))

    def cancel_timer(self) -> None:
        cancel_call(self._timer)
        self._timer = None

    def _timed_out(self, why: str) -> None:
        self._timer = None
        self.fail(wire.RelayTimeoutError(why))

    def fail(self, error: Exception) -> None:
        """Close the control connection, recording C{error} as the reason."""
        if self.failure is None:
            self.failure = error
        self.closing = True
        self.cancel_timer()
        (self._tls or self.transport).abortConnection()

    def close(self) -> None:
        """
        Close cleanly -- a TLS close_notify, when TLS is up -- but abort if
        the relay has not finished the close within the close timeout: a
        wedged relay must not hold C{stopListening} (and so
        C{tub.stopService()}) for ever.
        """
        self.closing = True
        self.cancel_timer()
        lines, tls = self._lines, self._tls
        if lines is not None and tls is not None:
            # The TLS layer closes only once its producer is gone.
            tls.unregisterProducer()
            tls.loseConnection()
        else:
            self.transport.loseConnection()
        self._closer.start(self.port._clock, self.port._endpoint._close_timeout, self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            # Not parsed: after a refusal, a "101" behind it must not start
            # a TLS session on a connection this end is closing.
            return
        try:
            answer = self._answer.feed(data)
        except wire.AnswerTooLong as e:
            self.fail(
                wire.RelayError(
                    "the relay's answer to the control request has %s; is this a "
                    "foolscap-sidetls relay?" % (e,)
                )
            )
            return
        if answer is None:
            return
        code, line, rest = answer
        if code != 101:
            self.fail(
                wire.RelayRefusedError(
                    "the relay refused the control connection: %r" % (line[:300],)
                )
            )
            return
        tls = tls_layer(
            self.port._endpoint._tls_options,
            True,
            quiet_factory(_ControlLines, self),
            self.port._clock,
            self.transport.getPeer(),
        )
        self._tls = tls
        hand_over(self, tls, rest)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.cancel_timer()
        self._closer.cancel()
        tls, self._tls = self._tls, None
        if tls is not None:
            # The TLS layer tells the lines protocol first, with its own
            # reason (a failed handshake says so there).
            tls.connectionLost(reason)
            if self._tls_reason is not None:
                reason = self._tls_reason
        lines, self._lines = self._lines, None
        if lines is not None:
            lines.stop_keepalive()
        self.port._control_lost(self, self.failure if self.failure is not None else reason)

    # -- from the lines protocol ------------------------------------------------

    def sendLine(self, line: bytes) -> None:
        if self._lines is not None and not self.closing:
            self._lines.sendLine(line)


@implementer(IHandshakeListener)
class _ControlLines(wire.ControlLines):
    """
    The hidden Tub's end of the control channel, inside the TLS session.
    """

    _ping_timer: Optional[IDelayedCall] = None
    _ping_serial = 0
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
        expected = self.port._endpoint._relay_id
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
                self.port._connect_requested(self.client, fields[0], fields[1], int(fields[2]))
                return
        elif command == "PONG":
            if self._awaiting is not None and rest == str(self._awaiting):
                self._awaiting = None
                return
        elif command == "OK":
            if rest == "REGISTER " + self.port._endpoint._tubid:
                self.client.cancel_timer()
                self.port._registered(self.client)
                self._schedule_ping()
                return
        elif command == "ERROR":
            self.client.fail(wire.RelayRefusedError("the relay said: %s" % (rest[:300],)))
            return
        self.client.fail(
            wire.RelayError("the relay sent an unexpected control line %r" % (text[:100],))
        )

    def _schedule_ping(self) -> None:
        interval = self.port._endpoint._keepalive
        if interval:
            self._ping_timer = self.port._clock.callLater(interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        if self._awaiting is not None:
            self.client.fail(
                wire.RelayTimeoutError(
                    "the relay did not answer PING within %s s"
                    % (self.port._endpoint._keepalive,)
                )
            )
            return
        self._ping_serial += 1
        self._awaiting = self._ping_serial
        self.sendLine(b"PING %d" % (self._ping_serial,))
        self._schedule_ping()

    def stop_keepalive(self) -> None:
        cancel_call(self._ping_timer)
        self._ping_timer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.stop_keepalive()
        self.client._tls_reason = reason
