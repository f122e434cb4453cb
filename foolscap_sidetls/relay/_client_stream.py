"""
One stream the hidden Tub dials to the relay for one dialer: it claims the
dialer with its one-time token and, once the relay answers, carries the
Tub's listener-side protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.interfaces import IDelayedCall, IProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire as wire
from ._addresses import RelayedAddress
from ._plumbing import CloseTimer, cancel_call, hand_over

if TYPE_CHECKING:
    from ._client_port import _RelayedPort

#: One namespace for the hidden Tub's side, whichever module logs.
_log = Logger(namespace="foolscap_sidetls.relay.client")


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
        self._answer = wire.Answer()
        self._closer = CloseTimer()

    def close(self) -> None:
        """Close, and abort if the relay has not let the close finish in time."""
        self._closing = True
        self.transport.loseConnection()
        self._closer.start(self.port._clock, self.port._endpoint._close_timeout, self.transport)

    def _abort(self) -> None:
        self._closing = True
        self.transport.abortConnection()

    def connectionMade(self) -> None:
        self.port._stream_connected(self)
        self.transport.write(
            b"GET " + (wire.STREAM_PREFIX + self.token).encode("ascii") + b" HTTP/1.1\r\n\r\n"
        )
        self._timer = self.port._clock.callLater(
            self.port._endpoint._answer_timeout, self._timed_out
        )

    def _timed_out(self) -> None:
        self._timer = None
        _log.warn(
            "relay stream {token}: the relay did not answer within {seconds} s",
            token=self.token,
            seconds=self.port._endpoint._answer_timeout,
        )
        self._abort()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            # Refused, timed out or stopped: a "200" behind the refusal must
            # not hand the Tub a connection this end is closing.
            return
        try:
            answer = self._answer.feed(data)
        except wire.AnswerTooLong:
            self._abort()
            return
        if answer is None:
            return
        cancel_call(self._timer)
        self._timer = None
        code, line, rest = answer
        if code != 200:
            _log.warn("relay stream {token} refused: {line}", token=self.token, line=line)
            self.close()
            return
        app = self.port._stream_spliced(self)
        if app is None:
            self.close()
            return
        self._app = app
        # From here on the Tub's protocol reads the stream directly.
        hand_over(self, app, rest)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        cancel_call(self._timer)
        self._timer = None
        self._closer.cancel()
        app, self._app = self._app, None
        if app is not None:
            app.connectionLost(reason)
        else:
            self.port._stream_gone(self)
