"""
One socket to a SAM bridge: HELLO, one command at a time, each reply
parsed and bounded, and -- for a stream -- the bytes after the reply handed
to an application through L{I2PStreamTransport}.
"""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer
from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IPushProducer, IReactorTime, ITransport
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

from ._destination import I2PAddress
from ._errors import I2PError, SAMConnectionLost, SAMRefused, SAMTimeout
from ._util import Waiters, log, printable, reason

#: How long a SAM bridge may take to answer HELLO (it answers at once).
HELLO_TIMEOUT = 30.0
#: The longest SAM reply line accepted (a destination is ~520 bytes).
MAX_LINE = 65536


def parse_reply(line: str) -> tuple[str, dict[str, str]]:
    """
    Split a SAM reply into its topic (C{"SESSION STATUS"}) and its
    C{KEY=VALUE} fields; values may be quoted (C{MESSAGE="..."}).
    """
    words: list[str] = []
    fields: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        start = i
        while i < n and line[i] not in " =":
            i += 1
        key = line[start:i]
        if i < n and line[i] == "=":
            i += 1
            if i < n and line[i] == '"':
                i += 1
                value = []
                while i < n and line[i] != '"':
                    if line[i] == "\\" and i + 1 < n:
                        i += 1
                    value.append(line[i])
                    i += 1
                i += 1
                fields[key.upper()] = "".join(value)
            else:
                start = i
                while i < n and line[i] != " ":
                    i += 1
                fields[key.upper()] = line[start:i]
        elif not fields:
            words.append(key)
    return " ".join(words[:2]), fields


# -- one connection to the SAM bridge ----------------------------------------------


@implementer(ITransport, IPushProducer)
class I2PStreamTransport:
    """
    What the protocol on an I2P stream sees: the SAM socket's bytes, with
    I2P addresses.  Deliberately no C{startTLS}: the TLS side is chosen by
    the L{foolscap_sidetls.listener}/L{foolscap_sidetls.dialer} above us.
    """

    def __init__(self, sam: "SAMConnection", host: I2PAddress, peer: I2PAddress) -> None:
        self._sam = sam
        self._host = host
        self._peer = peer

    def __repr__(self) -> str:
        return "<I2P stream %r -> %r>" % (self._host, self._peer)

    @property
    def _t(self) -> Any:
        return self._sam.transport

    @property
    def disconnecting(self) -> bool:
        return bool(getattr(self._t, "disconnecting", False))

    @property
    def connected(self) -> bool:
        return not self._sam.lost

    def write(self, data: bytes) -> None:
        self._t.write(data)

    def writeSequence(self, data: Any) -> None:
        self._t.writeSequence(data)

    def loseConnection(self) -> None:
        # Bytes the bridge sends after this are dropped, not delivered: the
        # application is done with this stream.
        self._sam.app_closed = True
        self._t.loseConnection()

    def abortConnection(self) -> None:
        self._sam.app_closed = True
        self._t.abortConnection()

    def getPeer(self) -> I2PAddress:
        return self._peer

    def getHost(self) -> I2PAddress:
        return self._host

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._t.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._t.unregisterProducer()

    def pauseProducing(self) -> None:
        self._t.pauseProducing()

    def resumeProducing(self) -> None:
        self._t.resumeProducing()

    def stopProducing(self) -> None:
        self._t.stopProducing()

    def setTcpNoDelay(self, enabled: bool) -> None:
        setter = getattr(self._t, "setTcpNoDelay", None)
        if setter is not None:
            setter(enabled)

    def getTcpNoDelay(self) -> bool:
        getter = getattr(self._t, "getTcpNoDelay", None)
        return bool(getter()) if getter is not None else False

    def setTcpKeepAlive(self, enabled: bool) -> None:
        setter = getattr(self._t, "setTcpKeepAlive", None)
        if setter is not None:
            setter(enabled)

    def getTcpKeepAlive(self) -> bool:
        getter = getattr(self._t, "getTcpKeepAlive", None)
        return bool(getter()) if getter is not None else False


class SAMConnection(Protocol):
    """
    One socket to the SAM bridge: HELLO, then one command at a time; a
    stream socket then carries an application's bytes.

    Modes: C{"lines"} (SAM replies), C{"hold"} (a stream was opened; bytes
    are kept until L{attach}), C{"data"} (bytes go to the application).
    """

    transport: Any

    def __init__(self, where: str, clock: IReactorTime) -> None:
        self.where = where
        self._clock = clock
        self._buffer = b""
        self._mode = "lines"
        self._pending: Optional[tuple[Deferred, str, str, bool]] = None
        self._app: Optional[IProtocol] = None
        self._gone: Waiters[None] = Waiters()
        self.lost = False
        #: Set once the application closed its stream: no byte reaches it after that.
        self.app_closed = False
        self.version: Optional[str] = None
        #: The last line the bridge sent (printable, at most 200 characters):
        #: what a timeout reports the bridge last said.
        self.last_line: Optional[str] = None
        self.hello: Deferred = Deferred()

    def __repr__(self) -> str:
        return "<SAM connection to %s (%s)>" % (self.where, self._mode)

    def connectionMade(self) -> None:
        d = self.request("HELLO VERSION MIN=3.1 MAX=3.3", "HELLO", "HELLO REPLY", HELLO_TIMEOUT)

        def hello(fields: dict[str, str]) -> "SAMConnection":
            self.version = fields.get("VERSION")
            return self

        def refused(f: Failure) -> Failure:
            value = f.value
            if isinstance(value, SAMRefused) and value.result == "NOVERSION":
                raise SAMRefused(
                    self.where, "HELLO", "NOVERSION", value.message,
                    "foolscap_sidetls.i2p needs SAM 3.1 or newer: i2pd 2.x or Java I2P 0.9.14+",
                )
            return f

        d.addCallbacks(hello, refused).chainDeferred(self.hello)

    # -- commands -------------------------------------------------------------

    def request(
        self, line: str, command: str, topic: str, timeout: Optional[float], raw_after: bool = False
    ) -> Deferred:
        """
        Send one command line; fire with the reply's fields once a reply
        with C{topic} arrives and says RESULT=OK, else fail with
        L{SAMRefused}.  With C{raw_after}, bytes after that reply are held
        for L{attach}.
        """
        assert self._pending is None, "one SAM command at a time"
        if self.lost:
            return defer.fail(SAMConnectionLost(
                "the SAM bridge at %s closed the connection before %s" % (self.where, command)
            ))
        d: Deferred = Deferred(self._cancel)
        self._pending = (d, command, topic, raw_after)
        if timeout is not None:
            # Timing out cancels d: the socket is aborted (a reply may
            # still be on its way, and the next command must not read it).
            def timed_out(result: Any, seconds: float) -> None:
                raise SAMTimeout(
                    "the SAM bridge at %s did not answer %s within %d s" % (self.where, command, seconds)
                )

            d.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)
        self.transport.write(line.encode("utf-8") + b"\n")
        return d

    def next_line(self) -> Deferred:
        """
        Fire with the next line (an accepted stream's peer line); hold what
        follows.  Lines held since a C{raw_after} request are read now: i2pd
        sends a waiting stream's peer line in the same read as the
        C{STREAM STATUS}, before this is called.
        """
        assert self._pending is None
        d: Deferred = Deferred(self._cancel)
        self._pending = (d, "STREAM ACCEPT", "", True)
        if self._mode == "hold":
            self._mode = "lines"
        self._drain()
        if self.lost and self._pending is not None and self._pending[0] is d:
            # The bridge closed the socket right after its STREAM STATUS:
            # no peer line will come.
            self._pending = None
            d.errback(SAMConnectionLost(
                "the SAM bridge at %s closed the STREAM ACCEPT connection before a peer arrived" % (self.where,)
            ))
        return d

    def attach(self, app: IProtocol, host: I2PAddress, peer: I2PAddress) -> None:
        """Hand this socket to C{app}, with the bytes already received."""
        self._mode = "data"
        self._app = app
        app.makeConnection(I2PStreamTransport(self, host, peer))
        held, self._buffer = self._buffer, b""
        if held and not self.lost and not self.app_closed:
            app.dataReceived(held)
        if self.lost and self._app is not None:
            # The bridge closed the stream before it was handed over.
            self._app = None
            app.connectionLost(Failure(error.ConnectionDone()))

    def abort(self) -> None:
        if not self.lost and self.transport is not None:
            self.transport.abortConnection()

    def close(self) -> Deferred:
        """Close; fires once the socket is gone."""
        d = self.when_lost()
        if not self.lost and self.transport is not None:
            self.transport.loseConnection()
        return d

    def when_lost(self) -> Deferred:
        """Fires (with None) once the socket is gone."""
        return self._gone.wait()

    def _cancel(self, d: Deferred) -> None:
        if self._pending is not None and self._pending[0] is d:
            self._pending = None
        self.abort()

    # -- bytes ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._mode == "data":
            if self.app_closed or self._app is None:
                return
            self._app.dataReceived(data)
            return
        self._buffer += data
        self._drain()

    def _drain(self) -> None:
        while self._mode == "lines":
            end = self._buffer.find(b"\n")
            if end == -1:
                if len(self._buffer) > MAX_LINE:
                    # Reported through the pending command (so a listener
                    # logs it once per retry step, not once per socket).
                    self._buffer = b""
                    pending, self._pending = self._pending, None
                    self.abort()
                    if pending is not None:
                        pending[0].errback(I2PError(
                            "the SAM bridge at %s sent a line longer than %d bytes while we waited for the "
                            "answer to %s" % (self.where, MAX_LINE, pending[1])
                        ))
                    else:
                        log.debug("SAM bridge at {where} sent an over-long line; closing", where=self.where)
                return
            line = self._buffer[:end].rstrip(b"\r").decode("utf-8", "replace")
            self._buffer = self._buffer[end + 1 :]
            self._line(line)

    def _line(self, line: str) -> None:
        self.last_line = printable(line, 200)
        if line.startswith("PING"):
            self.transport.write(b"PONG" + line[4:].encode("utf-8") + b"\n")
            return
        if line.startswith("PONG"):
            return
        pending = self._pending
        if pending is None:
            log.info("SAM bridge at {where} sent {line!r} unasked", where=self.where, line=line[:200])
            return
        d, command, topic, raw_after = pending
        if not topic:
            # An accepted stream's peer line: what follows is stream data.
            self._pending = None
            self._mode = "hold"
            d.callback(line)
            return
        found, fields = parse_reply(line)
        if found != topic:
            log.info(
                "SAM bridge at {where} answered {command} with {line!r}; still waiting for {topic}",
                where=self.where, command=command, line=line[:200], topic=topic,
            )
            return
        self._pending = None
        # DEST REPLY has no RESULT when it succeeds.
        result = fields.get("RESULT", "OK")
        if result != "OK":
            d.errback(SAMRefused(self.where, command, result, fields.get("MESSAGE", "")))
            return
        if raw_after:
            self._mode = "hold"
        d.callback(fields)

    def connectionLost(self, why: Optional[Failure] = None) -> None:
        if why is None:
            why = Failure(error.ConnectionDone())
        self.lost = True
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[0].errback(SAMConnectionLost(
                "the SAM bridge at %s closed the connection while we waited for the "
                "answer to %s (%s); did the I2P router stop?" % (self.where, pending[1], reason(why))
            ))
        app, self._app = self._app, None
        if app is not None:
            app.connectionLost(why)
        self._gone.fire(None)


class ConnectionFactory(ClientFactory):
    """Hands the endpoint the one L{SAMConnection} it was made for."""

    noisy = False

    def __init__(self, connection: SAMConnection) -> None:
        self._connection = connection

    def buildProtocol(self, addr: Any) -> SAMConnection:
        return self._connection
