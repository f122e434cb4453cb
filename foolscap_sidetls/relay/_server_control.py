"""
The relay's end of a hidden Tub's control channel, above its TLS session:
registration (the TubID of the certificate the hidden Tub presented, and
no other), keepalive, and the C{CONNECT} requests it carries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.internet.protocol import connectionDone

from . import _wire as wire
from ._plumbing import cancel_call

if TYPE_CHECKING:
    from ._server import RelayServer, _Registration
    from ._server_connection import _RelayConnection


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
        self._reset_timer(self._server.limits.header_timeout)

    def _reset_timer(self, seconds: float) -> None:
        cancel_call(self._timer)
        self._timer = self._server._clock.callLater(seconds, self._timed_out)

    def _timed_out(self) -> None:
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
            self._server._control_lost(self)
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
        self._server._control_lost(self)
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
            self._reset_timer(self._server.limits.control_idle_timeout)
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
        cert_id = wire.certificate_id(certificate)
        if cert_id != tubid:
            self.fail(
                "cannot register TubID %s: this connection's certificate is "
                "that of TubID %s, and a Tub may register only the TubID of its "
                "own certificate" % (tubid, cert_id)
            )
            return
        error = self._server._register(self, tubid)
        if error is not None:
            self.fail(error)
            return
        self._reset_timer(self._server.limits.control_idle_timeout)
        self.sendLine(b"OK REGISTER " + tubid.encode("ascii"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = True
        cancel_call(self._timer)
        self._timer = None
        self._server._control_lost(self)
