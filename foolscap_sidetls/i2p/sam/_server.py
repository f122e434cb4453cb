"""
Listening on a session's destination: L{SAMServerEndpoint} and its
L{SAMListeningPort}, which keeps a few C{STREAM ACCEPT}s open, hands each
incoming stream to the factory, and reopens a lost session -- every failure
a step of one bounded backoff (Twisted's C{backoffPolicy}).
"""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer
from twisted.application.internet import backoffPolicy
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.python.failure import Failure

from ._destination import I2PAddress, b32
from ._errors import SAMRefused
from ._session import SAMSession
from ._util import Waiters, log
from ._wire import HELLO_TIMEOUT, SAMConnection, parse_reply

#: STREAM ACCEPTs kept open per listening session (SAM >= 3.1 on i2pd and
#: SAM 3.2 on Java I2P allow several; one is used where they do not).
PENDING_ACCEPTS = 2
#: A listener's retries (a STREAM ACCEPT, or reopening its lost session)
#: wait RETRY_FIRST s after a first failure, twice as long after each
#: further one, at most RETRY_MAX s.  The wait starts over after an
#: accepted, well-formed peer, or when RETRY_RESET s passed since the last
#: retry without a failure.
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
RETRY_RESET = 60.0


@implementer(IListeningPort)
class SAMListeningPort:
    """
    A listening session's accepting sockets: keeps a few C{STREAM ACCEPT}s
    open, hands each incoming stream to the factory, and reopens the
    session (same key, same address) if the router drops it.

    Every failure -- a STREAM ACCEPT refused, closed before a peer came, or
    answered with a bad peer line; a bridge that does not answer HELLO; the
    session lost, or not reopened -- is a step of one backoff: one retry
    pending at a time, one warning per step, the wait doubling up to
    L{RETRY_MAX}.  So a bridge that fails every socket costs a few sockets
    per step rather than a tight reconnect loop, and a failure repeated on
    each of the pending accepts is logged once.
    """

    def __init__(self, session: SAMSession, factory: IProtocolFactory, port: Optional[int]) -> None:
        self._session = session
        self._factory = factory
        self._port = port
        self._accepts: set[SAMConnection] = set()
        self._opening = 0
        self._target = PENDING_ACCEPTS
        self._stopped = False
        self._tasks: set[Deferred] = set()
        self._backoff = backoffPolicy(RETRY_FIRST, RETRY_MAX, 2.0, jitter=lambda: 0.0)
        #: The pending retry, if any: while it is, nothing else is tried.
        self._retry: Optional[IDelayedCall] = None
        #: Backoff steps since the last real success.
        self.failures = 0
        self._lastRetry: Optional[float] = None
        session.on_lost(self._sessionLost)

    def __repr__(self) -> str:
        return "<I2P listening port %s (%s)>" % (self.getHost(), self._session.nickname)

    @property
    def _reactor(self) -> Any:
        return self._session.bridge.reactor

    def start(self) -> Deferred:
        """Fire with this port once the session is open and an accept is waiting."""
        d = self._session.ready()

        def opened(_: Any) -> Deferred:
            return Deferred.fromCoroutine(self._accept(first=True))

        return d.addCallback(opened).addCallback(lambda _: self)

    def startListening(self) -> None:
        pass

    def getHost(self) -> I2PAddress:
        address = self._session.address
        host = address.host if address is not None else "(not open)"
        return I2PAddress(host, self._port)

    def stopListening(self) -> Deferred:
        self._stopped = True
        self._cancelRetry()
        for job in list(self._tasks):
            job.cancel()
        steps = [c.close() for c in list(self._accepts)]
        steps.append(self._session.close())
        return defer.gatherResults(steps, consumeErrors=True).addBoth(lambda _: None)

    def _track(self, job: Deferred) -> None:
        """Keep C{job} until it is done, so L{stopListening} can cancel it."""
        def done(result: Any) -> None:
            self._tasks.discard(job)
            if isinstance(result, Failure) and not result.check(CancelledError):
                log.warn("I2P listener {host}: {why}", host=self.getHost().host, why=str(result.value))

        self._tasks.add(job)
        job.addBoth(done)

    def _fill(self) -> None:
        """Open STREAM ACCEPTs up to the target, unless a retry is pending (it will)."""
        while (
            not self._stopped
            and self._retry is None
            and self._session.alive
            and len(self._accepts) + self._opening < self._target
        ):
            self._track(Deferred.fromCoroutine(self._accept()))

    async def _accept(self, first: bool = False) -> None:
        self._opening += 1
        connection: Optional[SAMConnection] = None
        try:
            connection = await self._session.bridge.connect()
            await connection.request(
                "STREAM ACCEPT ID=%s SILENT=false" % (self._session.nickname,),
                "STREAM ACCEPT", "STREAM STATUS", HELLO_TIMEOUT,
                # A stream already waiting comes in the same read as the
                # status: its peer line stays buffered for next_line().
                raw_after=True,
            )
        except CancelledError:
            if connection is not None:
                connection.abort()
            self._opening -= 1
            return
        except Exception as e:
            self._opening -= 1
            if connection is not None:
                connection.abort()
            if first:
                raise
            self._acceptFailed(e)
            return
        self._opening -= 1
        self._accepts.add(connection)
        # Not yet a success: the bridge may still close this socket or send
        # a bad peer line, so the backoff is left as it is.
        if first:
            self._fill()
            self._track(Deferred.fromCoroutine(self._wait(connection)))
            return
        await self._wait(connection)

    async def _wait(self, connection: SAMConnection) -> None:
        try:
            line = await connection.next_line()
        except CancelledError:
            self._accepts.discard(connection)
            connection.abort()
            return
        except Exception as e:
            # The accepting socket closed: the session went (its loss
            # reopens it), we stopped, or the bridge dropped this accept.
            self._accepts.discard(connection)
            if not self._stopped and self._session.alive:
                self._retryLater(str(e))
            return
        self._accepts.discard(connection)
        destination, _, rest = line.partition(" ")
        try:
            host = b32(destination)
        except ValueError as e:
            connection.abort()
            self._retryLater(
                "the SAM bridge at %s sent a bad peer line %r (%s; expected an I2P destination in "
                "base64, then FROM_PORT=... TO_PORT=...)" % (connection.where, line[:100], e)
            )
            return
        # An accepted, well-formed peer: the bridge works again.
        self._succeeded()
        fields = parse_reply("PEER LINE " + rest)[1]
        from_port = fields.get("FROM_PORT")
        peer = I2PAddress(host, int(from_port) if from_port and from_port.isdigit() and int(from_port) else None, destination)
        protocol = self._factory.buildProtocol(peer)
        if protocol is None:
            connection.abort()
            return
        assert self._session.address is not None
        connection.attach(protocol, self.getHost(), peer)

    def _acceptFailed(self, e: Exception) -> None:
        if self._stopped:
            return
        if isinstance(e, SAMRefused) and e.result == "INVALID_ID":
            # The bridge forgot the session: drop it; the retry reopens it.
            self._session.invalidate()
            self._retryLater("the SAM bridge no longer knows the session (%s); reopening it" % (e,))
            return
        if isinstance(e, SAMRefused) and self._accepts and self._target > 1:
            # This bridge allows one pending STREAM ACCEPT per session.
            self._target = 1
            log.info("I2P listener {host}: the SAM bridge allows one pending STREAM ACCEPT ({e})",
                     host=self.getHost().host, e=str(e))
            return
        self._retryLater("could not open a STREAM ACCEPT: %s" % (e,))

    def _retryLater(self, why: str) -> None:
        """
        One failure: start a backoff step, or -- when one is pending --
        fold it into that step, so a bridge failing all our sockets at once
        is logged (and retried) once.
        """
        if self._stopped:
            return
        if self._retry is not None:
            log.debug("I2P listener {host}: {why} (retry already scheduled)", host=self.getHost().host, why=why)
            return
        if self._lastRetry is not None and self._reactor.seconds() - self._lastRetry >= RETRY_RESET:
            # The last retry worked for a good while: this is a new failure.
            self.failures = 0
        delay = self._backoff(self.failures)
        self.failures += 1
        log.warn(
            "I2P listener {host}: {why}; retrying in {delay} s",
            host=self.getHost().host, why=why, delay="%g" % (delay,), failures=self.failures,
        )
        self._retry = self._reactor.callLater(delay, self._retryNow)

    def _retryNow(self) -> None:
        self._retry = None
        self._lastRetry = self._reactor.seconds()
        if self._stopped:
            return
        if self._session.alive:
            self._fill()
        else:
            self._recover()

    def _cancelRetry(self) -> None:
        if self._retry is not None:
            if self._retry.active():
                self._retry.cancel()
            self._retry = None

    def _succeeded(self) -> None:
        self.failures = 0
        if self._session.alive:
            # Refill now rather than when a pending retry fires.
            self._cancelRetry()
        self._fill()

    def _sessionLost(self) -> None:
        if self._stopped:
            return
        for connection in list(self._accepts):
            connection.abort()
        self._accepts.clear()
        self._retryLater("the SAM session was lost; reopening it")

    def _recover(self) -> None:
        if self._stopped or self._session.closed:
            return
        d = self._session.ready()

        def reopened(_: Any) -> None:
            log.info("I2P listener {host}: SAM session reopened", host=self.getHost().host)
            self._fill()

        def failed(f: Failure) -> None:
            if f.check(CancelledError) or self._stopped:
                return
            self._retryLater("reopening the SAM session failed: %s" % (f.value,))

        self._track(d.addCallbacks(reopened, failed))


@implementer(IStreamServerEndpoint)
class SAMServerEndpoint:
    """Listens on one listening session's destination."""

    def __init__(self, session: SAMSession, port: Optional[int]) -> None:
        self._session = session
        self._port = port
        self._started: Waiters[None] = Waiters()
        self.port: Optional[SAMListeningPort] = None
        self.failure: Optional[Failure] = None

    def __repr__(self) -> str:
        address = self._session.address
        return "<I2P server endpoint %s via SAM at %s>" % (
            address.host if address else self._session.nickname, self._session.bridge.where,
        )

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred:
        port = SAMListeningPort(self._session, protocolFactory, self._port)
        d = port.start()

        def started(result: Any) -> Any:
            if isinstance(result, Failure):
                # Foolscap's Listener adds no errback to listen(); report
                # the failure through when_listening() (and the log)
                # instead of leaving it unhandled there.
                self.failure = result
                log.warn("I2P listener via {where} failed: {why}", where=self._session.bridge.where, why=str(result.value))
                result = None
            else:
                self.port = result
            self._started.fire(None)
            return result

        return d.addBoth(started)

    def when_listening(self) -> Deferred:
        """Fires (with None) once a L{listen} has succeeded or failed."""
        return self._started.wait()
