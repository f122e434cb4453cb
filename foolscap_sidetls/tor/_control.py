"""
The control connection to one tor: opening and authenticating it, finding
the SOCKS port, waiting for bootstrap (L{_open_control}), and sharing the
resulting L{_Session} between every dial and L{listen} of a handler, with a
bounded backoff while tor is down (L{_SharedTor}).
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Optional, Union

import txtorcon
from twisted.application.internet import backoffPolicy
from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure

from ._bootstrap import BOOTSTRAP_TIMEOUT, _wait_for_bootstrap
from ._common import _close, _observe, _reason, _timed_out, _where, log
from ._errors import TorControlError, TorError

#: How long a control port may take to accept and authenticate us.
CONTROL_TIMEOUT = 30.0
#: Opening tor's control connection (or launching tor) again after it
#: failed: the first retry may start at once; after each further failure in
#: a row, nothing is tried for RETRY_INITIAL seconds, doubling up to
#: RETRY_MAX, and callers meanwhile get the last failure at once.
RETRY_INITIAL = 1.0
RETRY_MAX = 60.0
_RETRY_POLICY = backoffPolicy(RETRY_INITIAL, RETRY_MAX, 2.0, jitter=lambda: 0.0)
#: A control connection lost sooner than this after it opened counts as a
#: failure in a row (a tor that exits right after bootstrapping is not
#: relaunched at every dial); one that lasted longer starts afresh.
STABLE_AFTER = 30.0

_ENABLE_CONTROL = (
    "Is tor running with a control port? Put 'ControlPort 9051' and "
    "'CookieAuthentication 1' in /etc/tor/torrc and restart tor, or let "
    "foolscap_sidetls.tor.launch() start a tor of its own"
)
_COOKIE_HINT = (
    "foolscap-sidetls authenticates with tor's cookie: set "
    "'CookieAuthentication 1' in torrc and let this user read the cookie file "
    "(on Debian/Ubuntu: add the user to the group 'debian-tor', then log in again)"
)


class _Session:
    """
    An authenticated, bootstrapped control connection to one tor, and what
    dialing through that tor needs.

    @ivar socks: the tor's SOCKS endpoint, or L{None} if it has none.
    @ivar socks_where: where that is, or why there is none.
    """

    def __init__(
        self,
        protocol: Any,
        where: str,
        socks: Optional[IStreamClientEndpoint],
        socks_where: str,
    ) -> None:
        self.protocol = protocol
        self.where = where
        self.socks = socks
        self.socks_where = socks_where
        self.connected = True
        self._lost: list[Callable[[], None]] = []
        protocol.when_disconnected().addBoth(self._disconnected)

    def _disconnected(self, _: Any) -> None:
        self.connected = False
        for notify in self._lost:
            notify()

    def on_lost(self, notify: Callable[[], None]) -> None:
        if not self.connected:
            notify()
        else:
            self._lost.append(notify)

    def command(self, text: str) -> Deferred:
        if not self.connected:
            return defer.fail(
                TorControlError("the control connection to %s is closed" % (self.where,))
            )
        return self.protocol.queue_command(text)

    def close(self, reactor: IReactorTime) -> Deferred:
        """Close the control connection; fires once it is closed (or after 10 s)."""
        if not self.connected:
            return defer.succeed(None)
        gone = _observe(self.protocol.when_disconnected())
        gone.addErrback(lambda _: None)
        _close(self.protocol)
        gone.addTimeout(10, reactor, onTimeoutCancel=lambda *_: None)
        return gone


_Opener = Callable[[Any, Callable[[str], None]], Awaitable[_Session]]


class _SharedTor:
    """
    Opens one L{_Session} on first use and hands it to every caller until
    its control connection is lost; then the next caller opens a new one.

    While it opens, each waiting caller's C{update_status} hears every step.
    A caller giving up (Foolscap cancels a connection attempt after its
    timeout) does not stop the opening for the others.

    Every dial asks for the session, so while tor is down each dial would
    open a control connection (or launch a tor) again: after failures in a
    row it backs off instead (L{RETRY_INITIAL}, doubling, at most
    L{RETRY_MAX}), failing callers at once with the last reason meanwhile,
    and logs each failed attempt once -- one line per backoff step, not
    one per dial.
    """

    def __init__(self, opener: _Opener, description: str) -> None:
        self._opener = opener
        self.description = description
        self.session: Optional[_Session] = None
        self._opening: Optional[Deferred] = None
        # Not Foolscap's OneShotObserverList: each waiter has its own
        # update_status to hear every step, a cancelled one is skipped, and
        # the result is handed over in the same turn (OneShotObserverList
        # fires a turn later on the global reactor, which the in-memory
        # tests' MemoryReactorClock never runs).
        self._waiters: list[tuple[Deferred, Callable[[str], None]]] = []
        self.status: Optional[str] = None
        self._stopped = False
        self._reactor: Any = None
        #: Failures in a row (failed opens, and sessions lost before
        #: STABLE_AFTER); the last one's reason; when to try again.
        self.failures = 0
        self._last_failure: Optional[Failure] = None
        self._retry_at: Optional[float] = None
        self._opened_at = 0.0

    def retry_delay(self) -> float:
        """
        Seconds to wait before the next attempt, after L{failures} in a row:
        none after the first (a control connection lost once is reopened at
        once), then Twisted's C{backoffPolicy} without jitter (one waiting
        dial per handler, so there is no herd to spread).
        """
        if self.failures <= 1:
            return 0.0
        return float(_RETRY_POLICY(self.failures - 2))

    def _backing_off(self, now: float) -> Optional[Exception]:
        """The error for a caller arriving while it backs off; None if it may try."""
        if self._retry_at is None or now >= self._retry_at or self._last_failure is None:
            return None
        last = self._last_failure.value
        text = "%s: not trying again for another %.1f s after %d failures in a row; the last: %s" % (
            self.description, self._retry_at - now, self.failures, str(last).strip() or repr(last),
        )
        # The same kind of error as the attempt's, so callers can tell a
        # refused control port from a tor that cannot be found.
        if isinstance(last, TorError):
            try:
                return type(last)(text)
            except TypeError:  # pragma: no cover - a subclass with other arguments
                pass
        return TorError(text)

    def _failed(self, why: str) -> None:
        """Count a failure in a row, set when to try again, log it once."""
        self.failures += 1
        delay = self.retry_delay()
        now = self._reactor.seconds() if self._reactor is not None else 0.0
        self._retry_at = now + delay
        if delay:
            log.warn(
                "{description}: {why} ({failures} failures in a row; not trying again for {delay:.0f} s)",
                description=self.description, why=why, failures=self.failures, delay=delay,
            )
        else:
            log.warn(
                "{description}: {why} (trying again at the next use)", description=self.description, why=why
            )

    def get(self, reactor: Any, update_status: Callable[[str], None]) -> Deferred:
        if self._stopped:
            return defer.fail(TorError("%s was stopped" % (self.description,)))
        if self.session is not None and self.session.connected:
            return defer.succeed(self.session)
        self._reactor = reactor
        if self._opening is None:
            waiting = self._backing_off(reactor.seconds())
            if waiting is not None:
                return defer.fail(waiting)
        waiter: Deferred = Deferred()
        self._waiters.append((waiter, update_status))
        if self.status is not None:
            update_status(self.status)
        if self._opening is None:
            self._opening = Deferred.fromCoroutine(self._open(reactor))
            self._opening.addBoth(self._opened)
        return waiter

    async def _open(self, reactor: Any) -> _Session:
        return await self._opener(reactor, self._report)

    def _report(self, status: str) -> None:
        self.status = status
        for waiter, update_status in list(self._waiters):
            if not waiter.called:
                update_status(status)

    def _opened(self, result: Union[_Session, Failure]) -> None:
        self._opening = None
        self.status = None
        waiters, self._waiters = self._waiters, []
        if isinstance(result, Failure):
            if not self._stopped:
                self._last_failure = result
                self._failed(str(result.value).strip() or repr(result.value))
            for waiter, _ in waiters:
                if not waiter.called:
                    waiter.errback(result)
            return None
        session = result
        if self._stopped:  # stopped while it opened: do not keep it
            from twisted.internet import reactor

            session.close(reactor)
            for waiter, _ in waiters:
                if not waiter.called:
                    waiter.errback(TorError("%s was stopped" % (self.description,)))
            return None
        self.session = session
        self._retry_at = None
        self._opened_at = self._reactor.seconds() if self._reactor is not None else 0.0
        session.on_lost(lambda: self._lost(session))
        for waiter, _ in waiters:
            if not waiter.called:
                waiter.callback(session)
        return None

    def _lost(self, session: _Session) -> None:
        if self.session is not session:
            return
        self.session = None
        if self._stopped:
            return
        lasted = (self._reactor.seconds() if self._reactor is not None else 0.0) - self._opened_at
        if lasted >= STABLE_AFTER:
            self.failures = 0
            self._retry_at = None
            log.info("{description}: the control connection closed after {lasted:.0f} s; reopened at the "
                     "next use", description=self.description, lasted=lasted)
            return
        why = "the control connection to %s closed %.1f s after it opened" % (session.where, lasted)
        self._last_failure = Failure(TorControlError(why))
        self._failed(why)

    def stop(self, reactor: IReactorTime) -> Deferred:
        """Stop opening, close the session; idempotent."""
        self._stopped = True
        if self._opening is not None:
            self._opening.cancel()
        if self.session is None:
            return defer.succeed(None)
        session, self.session = self.session, None
        return session.close(reactor)


def _socks_from_listeners(reactor: Any, value: str) -> tuple[Optional[IStreamClientEndpoint], str]:
    """
    Pick a SOCKS endpoint from C{GETINFO net/listeners/socks}: the port tor
    really listens on.  Not Foolscap's reading of the C{SocksPort} option,
    which misses C{auto} ports and flags such as C{ExtendedErrors} (as a
    launched tor's C{"127.0.0.1:auto ExtendedErrors"}).
    """
    found = re.findall(r'"((?:[^"\\]|\\.)*)"', value) or value.split()
    tcp = [a for a in found if not a.startswith("unix:")]
    for address in tcp:
        m6 = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$", address)
        m4 = re.match(r"^([^:\[\]]+):(\d+)$", address)
        if m4:
            return TCP4ClientEndpoint(reactor, m4.group(1), int(m4.group(2))), address
        if m6:
            return TCP6ClientEndpoint(reactor, m6.group(1), int(m6.group(2))), address
    for address in found:
        if address.startswith("unix:"):
            return UNIXClientEndpoint(reactor, address[len("unix:") :]), address
    return None, "no SOCKS port (its SocksPort is 0)"


async def _open_control(
    reactor: Any,
    endpoint: IStreamClientEndpoint,
    report: Callable[[str], None],
    where: Optional[str] = None,
    after_auth: Optional[Callable[[Any], Awaitable[None]]] = None,
    bootstrap_timeout: Optional[float] = BOOTSTRAP_TIMEOUT,
    log_hint: Optional[str] = None,
    launched: bool = False,
) -> _Session:
    """
    Connect, authenticate, find the SOCKS port, wait for bootstrap (see
    L{_wait_for_bootstrap}; C{log_hint} says where tor's log is).
    """
    where = where or "tor's control port at %s" % (_where(endpoint),)
    report("connecting to tor control port %s" % (_where(endpoint),))
    # No password_function: txtorcon then says plainly that cookie
    # authentication was not possible, instead of "No password available".
    connecting = endpoint.connect(txtorcon.TorProtocolFactory(password_function=None))
    try:
        protocol: Any = await connecting.addTimeout(CONTROL_TIMEOUT, reactor, onTimeoutCancel=_timed_out)
    except defer.TimeoutError:
        raise TorControlError(
            "could not connect to %s within %d s. %s" % (where, CONTROL_TIMEOUT, _ENABLE_CONTROL)
        ) from None
    except error.ConnectError as e:
        raise TorControlError(
            "could not connect to %s (%s). %s" % (where, _reason(e), _ENABLE_CONTROL)
        ) from None
    try:
        try:
            await _observe(protocol.post_bootstrap).addTimeout(
                CONTROL_TIMEOUT, reactor, onTimeoutCancel=_timed_out
            )
        except defer.TimeoutError:
            raise TorControlError(
                "%s accepted the connection but did not answer within %d s; is it "
                "really a tor control port (not the SOCKS port or something else)?"
                % (where, CONTROL_TIMEOUT)
            ) from None
        except CancelledError:
            raise
        except Exception as e:
            raise TorControlError(
                "could not authenticate to %s (%s). %s"
                % (where, str(e).strip() or repr(e), _COOKIE_HINT)
            ) from None
        if after_auth is not None:
            await after_auth(protocol)
        listeners = await protocol.get_info("net/listeners/socks")
        socks, socks_where = _socks_from_listeners(
            reactor, listeners.get("net/listeners/socks", "")
        )
        if log_hint is None:
            log_hint = (
                "Tor's log is that tor's own, the one behind %s (Debian/Ubuntu's system tor: "
                "journalctl -u tor@default)" % (where,)
            )
        await _wait_for_bootstrap(
            reactor, protocol, report, where, bootstrap_timeout, log_hint, launched
        )
    except BaseException:
        _close(protocol)
        raise
    return _Session(protocol, where, socks, socks_where)
