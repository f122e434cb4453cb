"""
A SAM bridge (L{SAMBridge}: how to reach it, and the router launcher behind
it, if any) and a SAM session on it (L{SAMSession}: one destination, kept
alive by its control socket, opened on first use and reopened after the
bridge dropped it).

While a C{SESSION CREATE} waits (tunnels take ~20 s on i2pd, forever on a
router without peers), L{_CreateWatch} reports why: what a launched
router's launcher knows (L{IRouterLauncher.no_peers}), else how long SAM
has been silent and what it last said.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Mapping, Optional

from zope.interface import Attribute, Interface
from twisted.internet import defer, error, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from ._destination import SIGNATURE_TYPE, I2PAddress, b32
from ._errors import I2PError, SAMConnectionLost, SAMRefused, SAMTimeout, SAMUnreachable
from ._util import Waiters, global_reactor, ignore_status, kind, log, reason
from ._wire import HELLO_TIMEOUT, ConnectionFactory, SAMConnection

#: How long SESSION CREATE (and a STREAM CONNECT) may take: i2pd answers
#: after ~20 s when its tunnels are ready; Java I2P on a real network can
#: take longer.
SESSION_TIMEOUT = 300.0
#: How often a SESSION CREATE wait is checked, and how often an attached
#: router's silence is reported.
_WATCH_EVERY = 1.0
_SESSION_NOTE = 30.0

OPENING_SESSION = "opening SAM session (can take ~20 s)"

#: SAM words a session option must not override.
_RESERVED_OPTIONS = frozenset(
    ["STYLE", "ID", "DESTINATION", "SIGNATURE_TYPE", "SILENT", "FROM_PORT", "TO_PORT", "PORT", "HOST", "PROTOCOL", "HEADER"]
)
#: What a session option's name (and a session ID) may be made of.
OPTION_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")
_OPTION_VALUE = re.compile(r'^[^\s"=]*$')

Report = Callable[[str], None]


class IRouterLauncher(Interface):
    """
    What starts (and knows about) the router behind a L{SAMBridge}, when
    this program launched it: L{foolscap_sidetls.i2p.launch}'s i2pd.
    """

    name = Attribute("How messages name the router: C{'the launched i2pd'}.")
    give_up_after = Attribute(
        "Seconds a SESSION CREATE may wait once no_peers() says why, or None to keep waiting."
    )

    def ensure_running(report: Report) -> Awaitable[None]:
        """Start the router unless it runs; done once its SAM bridge answers."""

    def describe() -> str:
        """The router and its SAM address, for a handler's description."""

    def no_peers() -> Optional[str]:
        """Why the router cannot build tunnels (from its log), in words; None if it does not say."""

    def give_up(why: str, elapsed: Optional[float]) -> Exception:
        """The error a session fails with because of C{why}, after C{elapsed} s of waiting."""

    def log_note() -> Optional[str]:
        """Where the router's log is, as words to append to a message; None if unknown."""

    def stop_process() -> Deferred:
        """Stop the router, leaving the launcher able to start it again."""


def check_options(options: object, what: str) -> dict[str, str]:
    """I2CP/SAM session options, checked (the errors naming C{what}); as strings."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(
            "%s expects options to be a dict of I2CP/SAM session options such as "
            "{'inbound.length': '1'}, got %s" % (what, kind(options))
        )
    checked = {}
    for key, value in options.items():
        if not isinstance(key, str) or not OPTION_KEY.match(key):
            raise ValueError(
                "%s: session option name %r must be letters, digits, '.', '_' or '-' "
                "(e.g. 'inbound.length')" % (what, key)
            )
        if key.upper() in _RESERVED_OPTIONS:
            raise ValueError("%s: session option %r is set by foolscap_sidetls.i2p itself" % (what, key))
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, str)):
            text = str(value)
        else:
            raise TypeError("%s: session option %r must be a str, int or bool, got %s" % (what, key, kind(value)))
        if not _OPTION_VALUE.match(text):
            raise ValueError("%s: session option %r=%r must not contain spaces, quotes or '='" % (what, key, text))
        checked[key] = text
    return checked


def check_nickname(nickname: object, what: str) -> None:
    """A SAM session ID given by the caller: letters, digits, '.', '_' or '-'."""
    if nickname is not None and (not isinstance(nickname, str) or not OPTION_KEY.match(nickname)):
        raise ValueError(
            "%s: nickname (the SAM session ID) must be letters, digits, '.', '_' or '-', got %s"
            % (what, kind(nickname))
        )


class SAMBridge:
    """
    How to reach one SAM bridge (and the launcher of the router behind it,
    when this program launched it).  Counts the sessions it creates, for
    the curious and the tests.
    """

    def __init__(
        self,
        endpoint: Optional[IStreamClientEndpoint],
        where: str,
        reactor: Any = None,
        launcher: Optional[IRouterLauncher] = None,
    ) -> None:
        self.endpoint = endpoint
        self.where = where
        self._reactor = reactor
        self.launcher = launcher
        self.sessions_created = 0

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            self._reactor = global_reactor()
        return self._reactor

    async def connect(self, report: Report = ignore_status) -> SAMConnection:
        """A new SAM socket, past HELLO."""
        if self.launcher is not None:
            await self.launcher.ensure_running(report)
        assert self.endpoint is not None
        connection = SAMConnection(self.where, self.reactor)
        try:
            await self.endpoint.connect(ConnectionFactory(connection))
        except (CancelledError, error.ConnectingCancelledError):
            raise
        except Exception as e:
            raise SAMUnreachable(self.where, reason(Failure(e))) from None
        try:
            await connection.hello
        except SAMConnectionLost:
            raise SAMUnreachable(
                self.where, "it closed the connection without answering HELLO; is it a SAM bridge?"
            ) from None
        except SAMTimeout:
            raise SAMUnreachable(
                self.where, "it did not answer HELLO within %d s; is it a SAM bridge?" % (HELLO_TIMEOUT,)
            ) from None
        except BaseException:
            connection.abort()
            raise
        return connection

    async def generate_key(self, report: Report = ignore_status) -> str:
        """A new destination's private key (C{DEST GENERATE}), in I2P base64."""
        connection = await self.connect(report)
        try:
            fields = await connection.request(
                "DEST GENERATE SIGNATURE_TYPE=%s" % (SIGNATURE_TYPE,), "DEST GENERATE", "DEST REPLY", HELLO_TIMEOUT
            )
        finally:
            connection.abort()
        key = fields.get("PRIV")
        if not key:
            raise I2PError("the SAM bridge at %s sent DEST REPLY without PRIV" % (self.where,))
        return key

    async def lookup(self, connection: SAMConnection, name: str) -> str:
        """The destination of C{name} (C{NAMING LOOKUP}), over C{connection}."""
        try:
            fields = await connection.request(
                "NAMING LOOKUP NAME=%s" % (name,), "NAMING LOOKUP", "NAMING REPLY", SESSION_TIMEOUT
            )
        except SAMRefused as e:
            raise e.advised(
                "NAMING LOOKUP of %s" % (name,),
                "I2P found no such destination: is the Tub at that address running and listening on I2P?",
            ) from None
        return fields.get("VALUE", "")


class SAMSession:
    """
    One SAM session: one I2P destination, kept alive by its control socket,
    shared by every stream of one purpose (dialing, or one listener).

    Opened on first use.  When its control socket closes (the router
    stopped), the next use opens it again; listeners learn of the loss
    through L{on_lost}.
    """

    def __init__(
        self,
        bridge: SAMBridge,
        purpose: str,
        nickname: str,
        key: Optional[str],
        options: dict[str, str],
    ) -> None:
        self.bridge = bridge
        self.purpose = purpose
        self.nickname = nickname
        self.key = key
        self.options = options
        self.address: Optional[I2PAddress] = None
        self.created = 0
        self._connection: Optional[SAMConnection] = None
        self._opening: Optional[Deferred] = None
        self._ready: Waiters[SAMSession] = Waiters()
        self._reporters: list[Report] = []
        self._status: Optional[str] = None
        self._lostCallbacks: list[Callable[[], None]] = []
        self._closeCallbacks: list[Callable[[], None]] = []
        self.closed = False

    def __repr__(self) -> str:
        return "<SAM session %s (%s) at %s%s>" % (
            self.nickname, self.purpose, self.bridge.where, "" if self.alive else ", not open",
        )

    @property
    def alive(self) -> bool:
        return self._connection is not None and not self._connection.lost

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call C{callback} when the bridge drops this (open) session."""
        self._lostCallbacks.append(callback)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call C{callback} once, when L{close} is called."""
        self._closeCallbacks.append(callback)

    def ready(self, report: Report = ignore_status) -> Deferred:
        """Fire with this session once it is open, opening it if needed."""
        if self.closed:
            return defer.fail(I2PError("this I2P session (%s) was closed" % (self.nickname,)))
        if self.alive:
            return defer.succeed(self)
        d = self._ready.wait()
        self._reporters.append(report)
        if self._opening is None:
            self._opening = Deferred.fromCoroutine(self._open())
            self._opening.addBoth(self._opened)
        elif self._status is not None:
            report(self._status)
        return d

    def _report(self, status: str) -> None:
        if status == self._status:
            return
        self._status = status
        for report in list(self._reporters):
            report(status)

    def _create_line(self) -> str:
        line = "SESSION CREATE STYLE=STREAM ID=%s DESTINATION=%s" % (self.nickname, self.key or "TRANSIENT")
        if self.key is None:
            line += " SIGNATURE_TYPE=%s" % (SIGNATURE_TYPE,)
        for name, value in self.options.items():
            line += " %s=%s" % (name, value)
        return line

    async def _open(self) -> "SAMSession":
        connection = await self.bridge.connect(self._report)
        try:
            self._report(OPENING_SESSION)
            self.bridge.sessions_created += 1
            self.created += 1
            request = connection.request(self._create_line(), "SESSION CREATE", "SESSION STATUS", SESSION_TIMEOUT)
            watch = _CreateWatch(self.bridge, connection, request, self._report, _needs_peers(self.options))
            try:
                fields = await request
            except CancelledError:
                if watch.failure is not None:
                    raise watch.failure from None
                raise
            except SAMTimeout:
                raise watch.timed_out() from None
            except SAMConnectionLost:
                # A launched router stopped for want of peers (by another
                # session's watch): say that rather than "did it stop?".
                why = watch.no_peers()
                if why is None or self.bridge.launcher is None:
                    raise
                raise self.bridge.launcher.give_up(why, None) from None
            finally:
                watch.stop()
            destination = fields.get("DESTINATION") or self.key
            if not destination:
                raise I2PError("the SAM bridge at %s sent SESSION STATUS without DESTINATION" % (self.bridge.where,))
            address = I2PAddress(b32(destination))
        except SAMRefused as e:
            connection.abort()
            raise e.advised(e.command, _session_advice(e.result)) from None
        except BaseException:
            connection.abort()
            raise
        if self.closed:
            connection.abort()
            raise I2PError("this I2P session (%s) was closed" % (self.nickname,))
        self.address = address
        self._connection = connection
        connection.when_lost().addCallback(self._lost, connection)
        log.info("SAM session {nick} open: {address}", nick=self.nickname, address=address.host)
        return self

    def _opened(self, result: Any) -> None:
        self._opening = None
        self._status = None
        self._reporters = []
        self._ready.fire(result, keep=False)
        return None

    def _lost(self, _: Any, connection: SAMConnection) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        if self.closed:
            return
        log.info("SAM session {nick} at {where} was closed by the bridge", nick=self.nickname, where=self.bridge.where)
        for callback in list(self._lostCallbacks):
            callback()

    def invalidate(self) -> None:
        """The bridge no longer knows this session (RESULT=INVALID_ID): drop it."""
        if self._connection is not None:
            self._connection.abort()

    def close(self) -> Deferred:
        """Close the session; fires once its socket is gone."""
        if not self.closed:
            self.closed = True
            callbacks, self._closeCallbacks = self._closeCallbacks, []
            for callback in callbacks:
                callback()
        steps = []
        if self._opening is not None:
            self._opening.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            steps.append(connection.close())
        return defer.gatherResults(steps).addCallback(lambda _: None)


class _CreateWatch:
    """
    Watches one SESSION CREATE while the router builds tunnels, so a wait
    that will not end says why: for a launched router, what its launcher
    knows (no peers because reseeding failed: fail after its
    C{give_up_after}, unless the session's tunnels need no peers); for an
    attached router, how long SAM has been silent and what it last said.
    """

    def __init__(
        self, bridge: SAMBridge, connection: SAMConnection, request: Deferred, report: Report, needs_peers: bool
    ) -> None:
        self._bridge = bridge
        self._needs_peers = needs_peers
        self._connection = connection
        self._request = request
        self._report = report
        self._clock = bridge.reactor
        self._started = self._clock.seconds()
        self._noted = 0.0
        #: Why the session failed, when this watch made it fail.
        self.failure: Optional[Exception] = None
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(_WATCH_EVERY, now=False).addErrback(
            lambda f: log.failure("watching SESSION CREATE at {where}", f, where=bridge.where)
        )

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _elapsed(self) -> float:
        return self._clock.seconds() - self._started

    def _tick(self) -> None:
        if self._request.called:
            self.stop()
            return
        launcher = self._bridge.launcher
        elapsed = self._elapsed()
        text = self.no_peers() if self._needs_peers else None
        if launcher is not None and text is not None:
            timeout = launcher.give_up_after
            if timeout is not None and elapsed >= timeout:
                self.failure = launcher.give_up(text, elapsed)
                self.stop()
                self._request.cancel()
                # Of no use without peers: stopped now (a later use
                # launches it again) rather than left running.
                launcher.stop_process()
            elif timeout is None:
                self._report("opening SAM session: %s; still waiting" % (text,))
            else:
                self._report("opening SAM session: %s; giving up in %d s" % (text, max(timeout - elapsed, 0)))
            return
        if elapsed - self._noted >= _SESSION_NOTE:
            self._noted = elapsed
            self._report("%s: %s" % (OPENING_SESSION, self._silence()))

    def no_peers(self) -> Optional[str]:
        """Why a launched router has no peers, from its launcher; None if it does not say."""
        launcher = self._bridge.launcher
        return launcher.no_peers() if launcher is not None else None

    def _silence(self) -> str:
        said = self._connection.last_line
        return "no answer to SESSION CREATE from %s for %d s (the last thing SAM said: %s)" % (
            self._where(), self._elapsed(), repr(said) if said else "nothing",
        )

    def _where(self) -> str:
        launcher = self._bridge.launcher
        if launcher is not None:
            return "%s's SAM bridge (%s)" % (launcher.name, self._bridge.where)
        return "the SAM bridge at %s" % (self._bridge.where,)

    def timed_out(self) -> I2PError:
        """The error for a SESSION CREATE that got no answer in time."""
        said = self._connection.last_line
        text = (
            "the SAM session did not open: %s did not answer SESSION CREATE within %d s (the last thing "
            "SAM said: %s), so the router has built no tunnels -- is it connected to the I2P network?"
            % (self._where(), self._elapsed(), repr(said) if said else "nothing")
        )
        launcher = self._bridge.launcher
        note = launcher.log_note() if launcher is not None else None
        if note is not None:
            return SAMTimeout("%s %s" % (text, note))
        return SAMTimeout(text + " Its log or web console says why")


def _needs_peers(options: Mapping[str, str]) -> bool:
    """
    Whether a session with these options needs other routers: not when its
    tunnels have no hops (C{inbound.length} and C{outbound.length} 0, as a
    private test network's), which a router without peers still builds.
    """
    return not (options.get("inbound.length") == "0" and options.get("outbound.length") == "0")


def _session_advice(result: str) -> str:
    return {
        "DUPLICATED_ID": "another session already uses this nickname on that router; pick another",
        "DUPLICATED_DEST": "this destination (key) is already in use on that router",
        "INVALID_KEY": "the router does not accept this private key",
        "I2P_ERROR": "check the session options and the router's log",
    }.get(result, "")
