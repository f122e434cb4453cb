"""
Foolscap over Tor, role-based: dial onion (and TCP) hints through a tor's
SOCKS port as the TLS client, and listen on an onion service as the TLS
server.

Dialing -- the same functions, arguments and hint syntax (C{tor:HOST:PORT},
and C{tcp:HOST:PORT} when registered for C{"tcp"}) as
C{foolscap.connections.tor}, each returning a connection-hint handler whose
endpoints are L{foolscap_sidetls.dialer}s::

    from foolscap_sidetls import tor
    tub.addConnectionHintHandler("tor", tor.control_endpoint(
        clientFromString(reactor, "tcp:127.0.0.1:9051")))

L{control_endpoint}, L{control_endpoint_maker} and L{launch} handlers make
one control connection (and L{launch} one tor process) per handler, shared
by every dial and by L{listen}; Foolscap's connection status shows what it
is waiting for (C{"launching tor"}, C{"connecting to tor control port
..."}, C{"waiting for tor bootstrap (NN%: ...)"}).  A tor whose bootstrap
makes no progress for C{bootstrap_timeout} seconds (L{BOOTSTRAP_TIMEOUT}
unless told otherwise) fails them with L{TorBootstrapError}, saying what
tor reported, where its log is and what to check.

Listening::

    d = tor.listen(tub, handler_or_control_endpoint)
    d.addCallback(tub.setLocation)       # "tor:<56 chars>.onion:3457"

publishes an onion service (C{ADD_ONION} over the control connection) that
forwards to a Tub listener on 127.0.0.1, and removes it when the Tub stops.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from base64 import b64decode
from binascii import Error as BinasciiError
from collections import deque
from typing import Any, Awaitable, Callable, Optional, Union

from zope.interface import implementer
from twisted.application import service
from twisted.internet import defer, error, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from foolscap.ipb import IConnectionHintHandler, InvalidHintError

try:
    import txtorcon
    from txtorcon.socks import SocksError
    from foolscap.connections import tor as _foolscap_tor
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "foolscap_sidetls.tor needs txtorcon (%s): pip install 'foolscap-sidetls[tor]'" % (e,)
    ) from e

from . import _hints
from ._endpoints import _checkLimits, dialer, listener
from ._files import write_private
from ._protocol import DEFAULT_CLOSE_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT

__all__ = [
    "BOOTSTRAP_TIMEOUT",
    "DEFAULT_ONION_PORT",
    "RETRY_INITIAL",
    "RETRY_MAX",
    "TorBootstrapError",
    "TorControlError",
    "TorError",
    "TorHandler",
    "TorNotFound",
    "control_endpoint",
    "control_endpoint_maker",
    "default_socks",
    "launch",
    "listen",
    "socks_endpoint",
]

log = Logger()

#: The onion port L{listen} publishes when not told otherwise (Tahoe-LAFS's).
DEFAULT_ONION_PORT = 3457
#: How long a control port may take to accept and authenticate us.
CONTROL_TIMEOUT = 30.0
#: How long a launched tor may take to open its control port.
LAUNCH_TIMEOUT = 60.0
#: A launched tor's log is moved aside (to C{.old}) at a launch once it is
#: bigger than this, so a tor relaunched after each failure does not fill
#: the disk.
LOG_MAX = 1024 * 1024
#: How long L{listen} may take, bootstrap and descriptor upload included.
LISTEN_TIMEOUT = 300.0
#: How long tor may go without bootstrap progress (its percentage not
#: rising) before dials and L{listen} fail with L{TorBootstrapError}: a tor
#: that cannot reach the network otherwise keeps everyone waiting, silently.
BOOTSTRAP_TIMEOUT = 60.0
#: Opening tor's control connection (or launching tor) again after it
#: failed: the first retry may start at once; after each further failure in
#: a row, nothing is tried for RETRY_INITIAL seconds, doubling up to
#: RETRY_MAX, and callers meanwhile get the last failure at once.
RETRY_INITIAL = 1.0
RETRY_MAX = 60.0
#: A control connection lost sooner than this after it opened counts as a
#: failure in a row (a tor that exits right after bootstrapping is not
#: relaunched at every dial); one that lasted longer starts afresh.
STABLE_AFTER = 30.0
#: Where tor lives when it is not on PATH (Debian/Ubuntu put it in /usr/sbin,
#: which is not on an ordinary user's PATH).
TOR_SEARCH_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")

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

#: Tor's SOCKS5 extended error codes (SocksPort flag ExtendedErrors).
_ONION_SOCKS_ERRORS = {
    0xF0: "tor found no descriptor for this onion service (is the service running and published?)",
    0xF1: "the onion service's descriptor is invalid",
    0xF2: "introduction to the onion service failed",
    0xF3: "the rendezvous with the onion service failed",
    0xF4: "the onion service requires client authorization",
    0xF5: "tor's client authorization for this onion service was rejected",
    0xF6: "this is not a valid onion address",
    0xF7: "introduction to the onion service timed out",
}

#: torrc options launch() sets itself.
_RESERVED_OPTIONS = (
    "DataDirectory",
    "ControlPort",
    "ControlPortWriteToFile",
    "ControlSocket",
    "CookieAuthentication",
    "CookieAuthFile",
    "HashedControlPassword",
    "__OwningControllerProcess",
    "RunAsDaemon",
)
_OPTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_TYPE = "ED25519-V3"


class TorError(Exception):
    """Tor could not be used; the message says why and what to do."""


class TorNotFound(TorError):
    """No tor executable: install tor or pass C{tor_binary=}."""


class TorControlError(TorError):
    """Tor's control port refused us, did not answer, or rejected our authentication."""


class TorBootstrapError(TorError):
    """
    Tor made no bootstrap progress for C{bootstrap_timeout} seconds.  The
    message says what tor reported, where its log is and what to check;
    the attributes are for programs that want to say it their own way.

    @ivar percent: tor's bootstrap progress when it was given up on.
    @ivar problem: the arguments of tor's last bootstrap warning (C{WARNING},
        C{REASON}, C{HOSTADDR}, C{COUNT}, ... as tor sent them, unchecked),
        or L{None} if it reported none.
    """

    def __init__(
        self, message: str, percent: Optional[int] = None, problem: Optional[dict[str, str]] = None
    ) -> None:
        super().__init__(message)
        self.percent = percent
        self.problem = problem


# -- small helpers ------------------------------------------------------------


def _kind(value: object) -> str:
    return "%r (%s)" % (value, type(value).__name__)


def _where(endpoint: object) -> str:
    """A human name for a client endpoint: C{127.0.0.1:9051}, C{unix:/path}."""
    path = getattr(endpoint, "_path", None)
    if isinstance(path, (str, bytes)):
        return "unix:%s" % (os.fsdecode(path),)
    host = getattr(endpoint, "_host", None) or getattr(endpoint, "_hostText", None)
    port = getattr(endpoint, "_port", None)
    if host is not None and port is not None:
        return "%s:%s" % (host, port)
    return repr(endpoint)


def _observe(d: Deferred) -> Deferred:
    """
    A new Deferred with C{d}'s result, so that cancelling or timing out the
    wait does not cancel C{d} itself.  C{d}'s failure is handed over, not
    left unhandled.
    """
    out: Deferred = Deferred()

    def copy(result: Any) -> None:
        if not out.called:
            if isinstance(result, Failure):
                out.errback(result)
            else:
                out.callback(result)
        return None

    d.addBoth(copy)
    return out


async def _within(reactor: IReactorTime, seconds: float, d: Deferred) -> Any:
    """C{await d}, cancelling it and raising L{defer.TimeoutError} after C{seconds}."""
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        d.cancel()

    timer = reactor.callLater(seconds, expire)
    try:
        return await d
    except BaseException:
        if expired:
            raise defer.TimeoutError() from None
        raise
    finally:
        if timer.active():
            timer.cancel()


def _check_bootstrap_timeout(what: str, value: object) -> Optional[float]:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            "%s expects bootstrap_timeout to be a number of seconds more than 0 (how long tor "
            "may go without bootstrap progress), or None to wait as long as it takes; got %s"
            % (what, _kind(value))
        )
    return float(value)


def _require_endpoint(value: object, what: str) -> None:
    if not IStreamClientEndpoint.providedBy(value):
        raise TypeError(
            "%s expects an IStreamClientEndpoint, such as "
            "clientFromString(reactor, %r), got %s"
            % (
                what,
                "tcp:127.0.0.1:9051" if "control" in what else "tcp:127.0.0.1:9050",
                _kind(value),
            )
        )


def _quietly(d: Deferred) -> None:
    """A control command whose answer we do not need (the connection may be closing)."""
    d.addErrback(lambda f: log.debug("tor control command failed: {why}", why=f.getErrorMessage()))


def _close(protocol: Any) -> None:
    transport = getattr(protocol, "transport", None)
    if transport is not None:
        transport.loseConnection()


# -- one tor, shared ----------------------------------------------------------


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
        """Seconds to wait before the next attempt, after L{failures} in a row."""
        if self.failures <= 1:
            return 0.0
        return float(min(RETRY_MAX, RETRY_INITIAL * 2 ** (self.failures - 2)))

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


# -- control connections ------------------------------------------------------


def _socks_from_listeners(reactor: Any, value: str) -> tuple[Optional[IStreamClientEndpoint], str]:
    """Pick a SOCKS endpoint from C{GETINFO net/listeners/socks}."""
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


#: The most of one status event that is read: tor's are a few hundred
#: characters; anything past this is not looked at.
_EVENT_MAX = 4096
#: The most of one value (a SUMMARY, a WARNING, ...) that is shown.
_VALUE_MAX = 160
#: The most KEY=VALUE arguments kept from one event.
_FIELDS_MAX = 32
_ARGUMENT = re.compile(r'[ \t]*([A-Za-z0-9_]{1,64})(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?(?=\s|$)')
_REASON_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")

#: Tor's reasons (its REASON= codes, of OR connections) for a bootstrap
#: problem, in words: what happened to its connection to a relay.
_REASONS: dict[str, str] = {
    "DONE": "was closed, by the relay or by a firewall or proxy in between",
    "CONNECTREFUSED": "was refused",
    "CONNECTRESET": "was reset, by the relay or by a firewall or proxy in between",
    "TIMEOUT": "timed out",
    "NOROUTE": "could not be made: no route to the relay, is the network up?",
    "IOERROR": "failed with a read or write error",
    "TLS_ERROR": "failed during the TLS handshake: something in between interfered, or it is not a tor relay",
    "IDENTITY": "reached a relay with another identity than expected",
    "RESOURCELIMIT": "failed: tor ran out of resources, sockets or memory",
    "PT_MISSING": "could not be made: its pluggable transport is missing, see ClientTransportPlugin",
    "CLOCK_SKEW": "showed that this machine's clock is wrong: check the date, time and time zone",
    "MISC": "failed",
}


def _shown(value: str) -> str:
    """A value from tor made safe to show: printable characters only, bounded."""
    text = "".join(c if c.isprintable() else "?" for c in value)
    return text if len(text) <= _VALUE_MAX else text[:_VALUE_MAX] + "..."


def _status_event(text: str) -> tuple[list[str], dict[str, str]]:
    """
    The words (severity, action) and C{KEY=VALUE} arguments of a tor
    status event (C{NOTICE BOOTSTRAP PROGRESS=5 ... SUMMARY="..."}), read
    as the control protocol defines them -- quoted values with backslash
    escapes -- rather than searched for, so that a value cannot pass for
    another argument.  A tor control port is as untrusted as any peer until
    parsed: only the first L{_EVENT_MAX} characters are read, reading stops
    at the first malformed argument, the first of a repeated key wins, and
    values are left raw (see L{_shown}).
    """
    text = text[:_EVENT_MAX].split("\n", 1)[0]
    words: list[str] = []
    fields: dict[str, str] = {}
    position = 0
    while position < len(text) and len(fields) < _FIELDS_MAX:
        found = _ARGUMENT.match(text, position)
        if found is None or found.end() == position:
            break
        position = found.end()
        key, value = found.group(1), found.group(2)
        if value is None:
            if not fields:
                words.append(key)
            continue
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields.setdefault(key.upper(), value)
    return words, fields


def _percent(fields: dict[str, str]) -> Optional[int]:
    """PROGRESS as a number from 0 to 100, or L{None} if it is not one."""
    value = fields.get("PROGRESS", "")
    if not (value.isascii() and value.isdigit() and len(value) <= 3) or int(value) > 100:
        return None
    return int(value)


class _Bootstrap:
    """
    What tor has said about its bootstrap: the highest progress, its
    summary, and its last warning.
    """

    def __init__(self) -> None:
        self.percent = -1
        self.summary = ""
        #: The arguments of the last BOOTSTRAP event with a WARNING.
        self.problem: Optional[dict[str, str]] = None

    def seen(self, text: str) -> bool:
        """Take one STATUS_CLIENT event; L{True} if the progress rose."""
        words, fields = _status_event(text)
        if "BOOTSTRAP" not in words[:2]:
            return False
        percent = _percent(fields)
        if percent is None:
            return False
        if "WARNING" in fields:
            self.problem = fields
        if percent <= self.percent:
            return False
        self.percent = percent
        self.summary = _shown(fields.get("SUMMARY", ""))
        return True

    def status(self) -> str:
        described = self.summary
        if self.problem is not None:
            described += "; last problem: " + self._short_problem(self.problem)
        return "waiting for tor bootstrap (%d%%: %s)" % (max(self.percent, 0), described)

    @staticmethod
    def _short_problem(problem: dict[str, str]) -> str:
        warning, reason = problem.get("WARNING", ""), problem.get("REASON", "")
        if reason in _REASONS and warning.strip().upper() in ("", reason):
            # Tor's WARNING is often its reason code itself ("DONE").
            return "the connection to a relay %s (%s)" % (_REASONS[reason], reason)
        if warning.strip():
            return _shown(warning)
        return "reason " + _shown(reason) if reason else "unknown"

    def warning(self) -> str:
        """Tor's last warning, in words: which relay, what happened, why."""
        problem = self.problem
        if problem is None:
            return (
                "tor reported no problem: its connections may be silently dropped "
                "(a firewall that drops packets, a network that is down)"
            )
        reason = problem.get("REASON", "")
        warning = problem.get("WARNING", "").strip()
        relay = "the relay at %s" % (_shown(problem["HOSTADDR"]),) if problem.get("HOSTADDR") else "a relay"
        if reason in _REASONS:
            text = "the connection to %s %s" % (relay, _REASONS[reason])
        else:
            text = "the connection to %s failed" % (relay,)
        detail = []
        if warning and warning.upper() != reason:
            detail.append('tor says "%s"' % (_shown(warning),))
        if reason:
            detail.append("reason %s" % (reason if _REASON_CODE.match(reason) else _shown(reason),))
        count = problem.get("COUNT", "")
        if count.isascii() and count.isdigit() and len(count) <= 9 and int(count) > 1:
            detail.append("%d times" % (int(count),))
        return text + (" (%s)" % (", ".join(detail),) if detail else "")


def _stalled(seconds: float, state: _Bootstrap, log_hint: str, launched: bool) -> str:
    """What L{TorBootstrapError} says: what tor reports, its log, what to check."""
    if launched:
        bridges = "in launch()'s extra_config"
        other = (
            "or try this machine's own tor instead of launching one ([tor] launch = false "
            "and [tor] control.port, or control_endpoint())"
        )
    else:
        bridges = "in that tor's torrc"
        other = "or compare with a tor launched here ([tor] launch = true, or launch())"
    if state.percent < 0:
        progress = "it reported none at all"
    else:
        progress = "it is at %d%% (%s)" % (state.percent, state.summary or "no summary")
    return (
        "tor made no bootstrap progress for %g s: %s. Its last warning: %s. %s. "
        "Check that this machine can reach the internet (is the network up?) and that no "
        "firewall or proxy blocks tor's outgoing connections (relays listen on ports such as "
        "443 and 9001); where tor is blocked, it needs bridges (UseBridges 1 and Bridge lines, "
        "%s); %s. To keep waiting instead, set bootstrap_timeout=None (in a node's configuration: "
        "[tor] bootstrap.timeout = none)"
        % (seconds, progress, state.warning(), log_hint, bridges, other)
    )


async def _wait_for_bootstrap(
    reactor: IReactorTime,
    protocol: Any,
    report: Callable[[str], None],
    where: str,
    timeout: Optional[float] = None,
    log_hint: str = "",
    launched: bool = False,
) -> None:
    """
    Until tor has bootstrapped, reporting its progress; fails with
    L{TorBootstrapError} once the progress has not risen for C{timeout}
    seconds (L{None}: waits as long as it takes).
    """
    waiting = _UntilClosed(
        protocol,
        "the control connection to %s closed while waiting for tor to bootstrap "
        "(did tor exit?)" % (where,),
    )
    done = waiting.result
    state = _Bootstrap()
    reported: list[str] = []

    def stalled() -> None:
        if not done.called:
            done.errback(
                TorBootstrapError(
                    _stalled(timeout or 0.0, state, log_hint or where, launched),
                    percent=max(state.percent, 0),
                    problem=state.problem,
                )
            )

    timer = reactor.callLater(timeout, stalled) if timeout is not None else None

    def seen(text: str) -> None:
        if done.called:
            return
        rose = state.seen(text)
        if state.percent >= 100:
            done.callback(None)
            return
        if rose and timer is not None and timeout is not None and timer.active():
            timer.reset(timeout)  # progress: the clock starts again
        status = state.status()
        if state.percent >= 0 and status not in reported[-1:]:
            reported.append(status)
            report(status)

    def phase(answer: dict[str, str]) -> None:
        seen(answer.get("status/bootstrap-phase", ""))

    def failed(f: Failure) -> None:
        if not done.called:
            done.errback(f)

    def ask(_: Any) -> None:
        protocol.get_info("status/bootstrap-phase").addCallbacks(phase, failed)

    try:
        # Only C{done} is awaited: a tor that never answers is bounded by
        # the timer too.
        protocol.add_event_listener("STATUS_CLIENT", seen).addCallbacks(ask, failed)
        await done
    finally:
        if timer is not None and timer.active():
            timer.cancel()
        if waiting.finish():
            _quietly(protocol.remove_event_listener("STATUS_CLIENT", seen))


class _UntilClosed:
    """
    A Deferred (C{result}) for something tor will tell us, failed with
    C{message} if the control connection closes first -- but not after
    L{finish}: then nobody is waiting any more.
    """

    def __init__(self, protocol: Any, message: str) -> None:
        self.result: Deferred = Deferred()
        self.closed = False
        self._finished = False
        self._message = message
        protocol.when_disconnected().addBoth(self._closed)

    def _closed(self, _: Any) -> None:
        self.closed = True
        if not self._finished and not self.result.called:
            self.result.errback(TorControlError(self._message))

    def finish(self) -> bool:
        """Stop waiting; L{True} if the connection is still open."""
        self._finished = True
        return not self.closed


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
        protocol = await _within(reactor, CONTROL_TIMEOUT, connecting)
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
            await _within(reactor, CONTROL_TIMEOUT, _observe(protocol.post_bootstrap))
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


def _reason(e: BaseException) -> str:
    if isinstance(e, error.ConnectionRefusedError):
        return "connection refused"
    text = str(e).strip()
    return text.rstrip(".") or type(e).__name__


# -- launching a tor ----------------------------------------------------------


class _TorProcess(ProcessProtocol):
    """A launched tor: keeps the end of its output and tells when it exits."""

    def __init__(self) -> None:
        self._tail: deque[str] = deque(maxlen=30)
        self._partial = b""
        #: A temporary DataDirectory to remove once this tor has exited.
        self.temporary: Optional[str] = None
        #: Where it logs; whether its launch failed (see _Launcher._log_file).
        self.log_file: Optional[str] = None
        self.failed = False
        self.ended: Optional[Failure] = None
        self._waiting: list[Deferred] = []

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._tail.append(line.decode("utf-8", "replace").rstrip("\r"))

    errReceived = outReceived

    def output(self) -> str:
        lines = list(self._tail)
        if self._partial:
            lines.append(self._partial.decode("utf-8", "replace"))
        return "\n".join(lines) or "(no output)"

    def how(self) -> str:
        if self.ended is None:
            return "is running"
        code = getattr(self.ended.value, "exitCode", None)
        sig = getattr(self.ended.value, "signal", None)
        if sig is not None:
            return "was killed by signal %s" % (sig,)
        return "exited with status %s" % (code,)

    def processEnded(self, reason: Failure) -> None:
        self.ended = reason
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def when_ended(self) -> Deferred:
        if self.ended is not None:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def terminate(self, reactor: IReactorTime) -> Deferred:
        """SIGTERM, SIGKILL after 10 s; fires when the process is gone."""
        transport = self.transport
        if self.ended is not None or transport is None:
            return defer.succeed(None)
        ended = self.when_ended()
        try:
            transport.signalProcess("TERM")
        except error.ProcessExitedAlready:
            return ended

        def kill() -> None:
            if self.ended is None:
                try:
                    transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass

        timer = reactor.callLater(10, kill)

        def gone(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return ended.addBoth(gone)

    @property
    def pid(self) -> Any:
        return getattr(self.transport, "pid", None)


def _nonempty(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def _find_tor(tor_binary: Optional[str]) -> str:
    if tor_binary is not None:
        if not os.path.exists(tor_binary):
            raise TorNotFound(
                "tor_binary %r does not exist; install the Debian/Ubuntu package 'tor' "
                "(apt-get install tor) or pass the path of a tor executable" % (tor_binary,)
            )
        if os.path.isdir(tor_binary) or not os.access(tor_binary, os.X_OK):
            raise TorNotFound("tor_binary %r is not an executable file" % (tor_binary,))
        return tor_binary
    search = os.pathsep.join([_search_path()] + list(TOR_SEARCH_DIRS))
    found = shutil.which("tor", path=search)
    if found is None:
        raise TorNotFound(
            "tor executable not found on PATH or in %s; install the Debian/Ubuntu "
            "package 'tor' (apt-get install tor), or pass tor_binary='/path/to/tor'"
            % (", ".join(TOR_SEARCH_DIRS),)
        )
    return found


def _search_path() -> str:
    return os.environ.get("PATH", os.defpath)


def _torrc_lines(options: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in options.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            lines.append("%s %s" % (key, v))
    return lines


def _check_extra_config(extra_config: object) -> dict[str, list[str]]:
    if extra_config is None:
        return {}
    if not isinstance(extra_config, dict):
        raise TypeError(
            "launch() expects extra_config to be a dict of torrc options, such as "
            "{'SocksPort': '9055'}, got %s" % (_kind(extra_config),)
        )
    reserved = {name.lower(): name for name in _RESERVED_OPTIONS}
    checked: dict[str, list[str]] = {}
    for key, value in extra_config.items():
        if not isinstance(key, str) or not _OPTION_NAME.match(key):
            raise ValueError("extra_config key %r is not a torrc option name" % (key,))
        if key.lower() in reserved:
            raise ValueError(
                "extra_config may not set %r: launch() sets it itself (use "
                "data_directory= for the DataDirectory)" % (reserved[key.lower()],)
            )
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise ValueError("extra_config[%r] is an empty list" % (key,))
        texts = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise TypeError(
                    "extra_config[%r] must be a str, an int or a list of those, got %s"
                    % (key, _kind(v))
                )
            text = str(v)
            if "\n" in text or "\r" in text or "\0" in text:
                raise ValueError("extra_config[%r] contains a line break: %r" % (key, text))
            texts.append(text)
        checked[key] = texts
    return checked


class _Launcher:
    """Starts one tor process for a L{launch} handler, and stops it."""

    def __init__(
        self,
        data_directory: Optional[str],
        tor_binary: str,
        extra_config: dict[str, list[str]],
        bootstrap_timeout: Optional[float] = BOOTSTRAP_TIMEOUT,
    ) -> None:
        self.data_directory = data_directory
        self.tor_binary = tor_binary
        self.extra_config = extra_config
        self.bootstrap_timeout = bootstrap_timeout
        self.process: Optional[_TorProcess] = None
        #: Where tor writes its log (sidetls-tor.log in its DataDirectory, or a
        #: temporary file with a temporary DataDirectory), once launched.
        self.log_file: Optional[str] = None
        self._shutdown_trigger: Any = None
        self._reactor: Any = None

    def describe(self) -> str:
        if self.process is not None and self.process.ended is None and self.process.pid is not None:
            return "launched tor, pid %s" % (self.process.pid,)
        return "launched tor"

    def _config(self, datadir: str, portfile: str) -> list[str]:
        options: dict[str, Any] = {
            "DataDirectory": datadir,
            "ControlPort": "127.0.0.1:auto",
            "ControlPortWriteToFile": portfile,
            "CookieAuthentication": "1",
            "__OwningControllerProcess": str(os.getpid()),
            "SocksPort": "127.0.0.1:auto ExtendedErrors",
            "Log": "notice stdout",
        }
        options.update(self.extra_config)
        return _torrc_lines(options)

    async def open(self, reactor: Any, report: Callable[[str], None]) -> _Session:
        report("launching tor")
        self._reactor = reactor
        process = _TorProcess()
        if self.data_directory is None:
            datadir = process.temporary = tempfile.mkdtemp(prefix="sidetls-tor-")
        else:
            datadir = os.path.abspath(self.data_directory)
            os.makedirs(datadir, mode=0o700, exist_ok=True)
        portfile = os.path.join(datadir, "sidetls-control-port")
        torrc = os.path.join(datadir, "sidetls-torrc")
        try:
            if os.path.exists(portfile):
                os.remove(portfile)
            with open(torrc, "w") as f:
                f.write("\n".join(self._config(datadir, portfile)) + "\n")
            log_file = self._log_file(process, datadir)
            try:
                reactor.spawnProcess(
                    process,
                    self.tor_binary,
                    # The log file on the command line, appended ("+Log")
                    # to whatever Log lines the torrc has.
                    [self.tor_binary, "--defaults-torrc", os.devnull, "-f", torrc,
                     "+Log", "notice file " + log_file],
                    env={"HOME": datadir, "PATH": _search_path()},
                    path=datadir,
                )
            except OSError as e:
                raise TorError("could not start %s: %s" % (self.tor_binary, e)) from None
            self.process = process
            if self._shutdown_trigger is None:
                self._shutdown_trigger = reactor.addSystemEventTrigger(
                    "before", "shutdown", self.stop
                )
            host, port = await self._control_address(reactor, portfile, process)
            session = await _open_control(
                reactor,
                TCP4ClientEndpoint(reactor, host, port),
                report,
                where="the control port (%s:%d) of the tor launched here (pid %s)"
                % (host, port, process.pid),
                after_auth=self._take_ownership,
                bootstrap_timeout=self.bootstrap_timeout,
                log_hint="Tor's log: %s" % (log_file,),
                launched=True,
            )
        except BaseException as e:
            # Its log tells why, unless we gave up on it ourselves.
            process.failed = not isinstance(e, CancelledError)
            self._end(process)
            raise
        session.on_lost(lambda: _quietly(self._end(process)))
        return session

    def _log_file(self, process: _TorProcess, datadir: str) -> str:
        """
        Where this launch's tor logs: appended to, so a failed launch's log
        is still there after the next one starts; moved to C{.old} past
        L{LOG_MAX} bytes.  A temporary DataDirectory is removed when tor
        stops, so its log lives beside it and outlives a failed launch.
        """
        if process.temporary is None:
            path = os.path.join(datadir, "sidetls-tor.log")
        elif self.log_file is not None and os.path.exists(self.log_file):
            path = self.log_file  # kept after a failed launch
        else:
            fd, path = tempfile.mkstemp(prefix="sidetls-tor-", suffix=".log")
            os.close(fd)
        try:
            if os.path.exists(path) and os.path.getsize(path) > LOG_MAX:
                os.replace(path, path + ".old")
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        except OSError as e:
            raise TorError("cannot write tor's log file %s: %s" % (path, e.strerror or e)) from None
        self.log_file = process.log_file = path
        return path

    @staticmethod
    async def _take_ownership(protocol: Any) -> None:
        # tor exits when this control connection closes (we exited or
        # stopped it), not only when it notices our pid is gone.
        await protocol.queue_command("TAKEOWNERSHIP")

    async def _control_address(
        self, reactor: Any, portfile: str, process: _TorProcess
    ) -> tuple[str, int]:
        deadline = reactor.seconds() + LAUNCH_TIMEOUT
        while True:
            if process.ended is not None:
                raise TorError(
                    "tor (%s) %s before opening its control port; its output ends:\n%s"
                    % (self.tor_binary, process.how(), process.output())
                )
            try:
                with open(portfile) as f:
                    text = f.read()
            except FileNotFoundError:
                text = ""
            found = re.search(r"PORT=([0-9.]+):(\d+)", text)
            if found:
                return found.group(1), int(found.group(2))
            if reactor.seconds() > deadline:
                raise TorError(
                    "tor (%s) did not open its control port within %d s; its output ends:\n%s"
                    % (self.tor_binary, LAUNCH_TIMEOUT, process.output())
                )
            await task.deferLater(reactor, 0.05, lambda: None)

    def _end(self, process: _TorProcess) -> Deferred:
        """Stop C{process} (if still running) and remove a temporary directory."""
        reactor = self._reactor
        d = process.terminate(reactor) if reactor is not None else defer.succeed(None)

        def cleanup(_: Any) -> None:
            if process.temporary is not None:
                shutil.rmtree(process.temporary, ignore_errors=True)
                process.temporary = None
                # Its log, unless it tells why this launch failed.
                log_file = process.log_file
                if log_file is not None and not (process.failed and _nonempty(log_file)):
                    try:
                        os.remove(log_file)
                    except FileNotFoundError:
                        pass

        return d.addBoth(cleanup)

    def stop(self) -> Deferred:
        if self._shutdown_trigger is not None and self._reactor is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except (ValueError, KeyError):
                pass
            self._shutdown_trigger = None
        if self.process is None:
            return defer.succeed(None)
        return self._end(self.process)


# -- dialing ------------------------------------------------------------------


_HINT_EXPECTED = (
    "'tor:HOST:PORT' or 'tcp:HOST:PORT', HOST being a DNS name such as an "
    ".onion address, or a public IPv4 address"
)


def _parse_hint(hint: str) -> tuple[str, int]:
    """
    C{(host, port)} from a C{tor:}/C{tcp:} hint: Foolscap's syntax and its
    refusal of non-public numeric addresses (no exit could reach them), read
    strictly -- ASCII only, a port from 1 to 65535, no empty DNS labels, an
    onion host a valid v3 address (version and checksum) -- with a message
    that says what is wrong.
    """
    prefix = "unrecognized TCP/Tor hint"
    text = _hints.check_characters(prefix, hint, _HINT_EXPECTED)
    kind, colon, rest = text.partition(":")
    host, colon2, port_text = rest.rpartition(":")
    if not colon or not colon2:
        raise _hints.invalid(prefix, text, "it is not TYPE:HOST:PORT", _HINT_EXPECTED)
    port = _hints.parse_port(prefix, text, port_text, _HINT_EXPECTED)
    _hints.check_dns_name(prefix, text, host, _HINT_EXPECTED)
    if not _foolscap_tor.HINT_RE.search(text):  # never looser than Foolscap
        raise _hints.invalid(prefix, text, "Foolscap's tor handler does not accept it", _HINT_EXPECTED)
    # Tor would refuse a mistyped onion only after the SOCKS request; say so here.
    _hints.check_onion(prefix, text, host, _HINT_EXPECTED)
    if _foolscap_tor.is_non_public_numeric_address(host):
        raise InvalidHintError(
            "ignoring non-Tor-able ipaddr %s in hint %r: no Tor exit can reach a "
            "private, loopback or reserved address" % (host, text)
        )
    return host, port


@implementer(IStreamClientEndpoint)
class _TorClient:
    """
    Connects to HOST:PORT through tor's SOCKS port, getting the handler's
    tor ready first (launch, control connection, bootstrap) and reporting
    each step through Foolscap's C{update_status}.

    Tor trouble is raised from C{connect}, not from C{hint_to_endpoint}:
    Foolscap drops a hint whose handler fails and reports only
    C{NoLocationHintsError}, while a failed connect reaches the
    C{getReference} errback with our explanation.
    """

    def __init__(
        self,
        handler: "TorHandler",
        host: str,
        port: int,
        reactor: Any,
        update_status: Callable[[str], None],
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._reactor = reactor
        self._update_status = update_status
        self._target = "%s:%d" % (host, port)

    def __repr__(self) -> str:
        return "<tor connection to %s via %s>" % (self._target, self._handler._detail())

    def connect(self, factory: IProtocolFactory) -> Deferred:
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: IProtocolFactory) -> Any:
        socks, socks_where = await self._handler._socks_endpoint(self._reactor, self._update_status)
        if self._handler._shared is not None:
            self._update_status(
                "connecting to %s through tor (SOCKS %s)" % (self._target, socks_where)
            )
        candidates: list[IStreamClientEndpoint]
        if socks is None:  # default_socks(): the system tor, else Tor Browser's
            candidates = [TCP4ClientEndpoint(self._reactor, "127.0.0.1", p) for p in (9050, 9150)]
        else:
            candidates = [socks]
        for i, candidate in enumerate(candidates):
            tracked = _Tracked(candidate)
            via = txtorcon.TorClientEndpoint(
                self._host, self._port, socks_endpoint=tracked, reactor=self._reactor
            )
            try:
                return await via.connect(factory)
            except (CancelledError, error.ConnectingCancelledError):
                # Foolscap gave up (timeout, or another hint won): txtorcon
                # would leave the half-done SOCKS connection open.
                tracked.abort()
                raise
            except error.ConnectError as e:
                if i + 1 < len(candidates):
                    continue
                raise TorError(
                    "could not reach tor's SOCKS port at %s (%s); is tor running?"
                    % (socks_where, _reason(e))
                ) from None
            except SocksError as e:
                why = (
                    _ONION_SOCKS_ERRORS.get(getattr(e, "code", None) or 0)
                    or str(e).strip()
                    or repr(e)
                )
                raise TorError("tor could not connect to %s: %s" % (self._target, why)) from None
        raise AssertionError("unreachable")


@implementer(IStreamClientEndpoint)
class _Tracked:
    """Remembers the connections an endpoint made, to abort them."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint
        self._protocols: list[Any] = []

    def connect(self, factory: IProtocolFactory) -> Deferred:
        return self._endpoint.connect(factory).addCallback(self._made)

    def _made(self, protocol: Any) -> Any:
        self._protocols.append(protocol)
        return protocol

    def abort(self) -> None:
        for protocol in self._protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abortConnection()


@implementer(IConnectionHintHandler)
class TorHandler:
    """
    A Foolscap connection-hint handler for C{tor:} (and C{tcp:}) hints whose
    connections go through tor and are TLS clients (sidetls dialers).

    Made by L{socks_endpoint}, L{default_socks}, L{control_endpoint},
    L{control_endpoint_maker} and L{launch}; the last three also serve as
    the C{tor} argument of L{listen}, sharing their one control connection
    (and launched tor).

    C{handshake_timeout}, C{negotiation_timeout} and C{close_timeout} are
    those of L{foolscap_sidetls.dialer}, for every connection it dials.
    """

    #: Its endpoints are dialers already: foolscap_sidetls.handler() and
    #: install() leave it as it is.
    _sidetlsRoleBased = True

    def __init__(
        self,
        description: str,
        socks: Optional[IStreamClientEndpoint] = None,
        shared: Optional[_SharedTor] = None,
        launcher: Optional[_Launcher] = None,
        clock: Optional[IReactorTime] = None,
        handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
        negotiation_timeout: Optional[float] = None,
        close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        self._description = description
        self._socks = socks
        self._shared = shared
        self._launcher = launcher
        self._clock = clock
        self._handshake_timeout = handshake_timeout
        self._negotiation_timeout = negotiation_timeout
        self._close_timeout = close_timeout

    def __repr__(self) -> str:
        return "<foolscap_sidetls.tor handler: %s>" % (self._detail(),)

    def _detail(self) -> str:
        if self._launcher is not None:
            detail = self._launcher.describe()
        else:
            detail = self._description
        session = self._shared.session if self._shared is not None else None
        if session is not None and session.connected and session.socks is not None:
            detail += ", SOCKS %s" % (session.socks_where,)
        return detail

    def describe(self) -> str:
        """C{"sidetls+tor (...)"}: how this handler reaches tor."""
        return "sidetls+tor (%s)" % (self._detail(),)

    @property
    def can_listen(self) -> bool:
        """Whether L{listen} can use this handler (it has a control port)."""
        return self._shared is not None

    def hint_to_endpoint(
        self, hint: str, reactor: Any, update_status: Callable[[str], None]
    ) -> Deferred:
        """
        Parse the hint (as Foolscap does: C{tor:HOST:PORT},
        C{tcp:HOST:PORT}; non-public numeric addresses are refused) and
        return a dialer; tor itself is made ready when it connects.
        """

        try:
            host, port = _parse_hint(hint)
        except InvalidHintError:
            return defer.fail()
        ep = _TorClient(self, host, port, reactor, update_status)
        return defer.succeed(
            (
                dialer(
                    ep,
                    clock=self._clock,
                    handshake_timeout=self._handshake_timeout,
                    negotiation_timeout=self._negotiation_timeout,
                    close_timeout=self._close_timeout,
                ),
                host,
            )
        )

    async def _socks_endpoint(
        self, reactor: Any, update_status: Callable[[str], None]
    ) -> tuple[Optional[IStreamClientEndpoint], str]:
        if self._shared is None:
            if self._socks is None:
                return None, "127.0.0.1:9050 or 127.0.0.1:9150"
            return self._socks, _where(self._socks)
        session = await self._shared.get(reactor, update_status)
        if session.socks is None:
            raise TorError(
                "%s has %s; enable one ('SocksPort 9050' in torrc) to dial through it"
                % (session.where, session.socks_where)
            )
        return session.socks, session.socks_where

    def stop(self) -> Deferred:
        """
        Close this handler's control connection and stop the tor it
        launched (if any); fires when done.  The handler cannot be used
        afterwards.  Stop the Tubs using it first: their onion services
        live on this tor.
        """
        from twisted.internet import reactor

        steps = []
        if self._shared is not None:
            steps.append(self._shared.stop(reactor))
        if self._launcher is not None:
            steps.append(self._launcher.stop())
        return defer.gatherResults(steps, consumeErrors=True).addCallback(lambda _: None)


def socks_endpoint(
    tor_socks_endpoint: IStreamClientEndpoint,
    *,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
) -> TorHandler:
    """
    Dial through the tor SOCKS port at C{tor_socks_endpoint}.  Cannot
    L{listen}: that needs a control port.
    """
    _require_endpoint(tor_socks_endpoint, "foolscap_sidetls.tor.socks_endpoint()")
    _checkLimits(
        "foolscap_sidetls.tor.socks_endpoint()", handshake_timeout, negotiation_timeout, close_timeout
    )
    return TorHandler(
        "SOCKS %s" % (_where(tor_socks_endpoint),),
        socks=tor_socks_endpoint,
        handshake_timeout=handshake_timeout,
        negotiation_timeout=negotiation_timeout,
        close_timeout=close_timeout,
    )


def default_socks(
    *,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
) -> TorHandler:
    """Dial through a tor SOCKS port on 127.0.0.1:9050 (system tor) or :9150 (Tor Browser)."""
    _checkLimits(
        "foolscap_sidetls.tor.default_socks()", handshake_timeout, negotiation_timeout, close_timeout
    )
    return TorHandler(
        "SOCKS 127.0.0.1:9050 or 127.0.0.1:9150",
        handshake_timeout=handshake_timeout,
        negotiation_timeout=negotiation_timeout,
        close_timeout=close_timeout,
    )


def control_endpoint(
    tor_control_endpoint: IStreamClientEndpoint,
    *,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    bootstrap_timeout: Optional[float] = BOOTSTRAP_TIMEOUT,
) -> TorHandler:
    """
    Use the running tor whose control port is C{tor_control_endpoint}: one
    control connection, opened on first use (authenticated with tor's
    cookie), tells where the SOCKS port is and when tor has bootstrapped;
    L{listen} publishes onion services over it.  Reopened on the next use
    if it is lost.

    @param bootstrap_timeout: seconds tor may go without bootstrap progress
        before the dials (and L{listen}) waiting for it fail with
        L{TorBootstrapError}, which says what tor reports; progress starts
        the clock again.  L{None}: wait as long as it takes.
    """
    _require_endpoint(tor_control_endpoint, "foolscap_sidetls.tor.control_endpoint()")
    _checkLimits(
        "foolscap_sidetls.tor.control_endpoint()", handshake_timeout, negotiation_timeout, close_timeout
    )
    stall = _check_bootstrap_timeout("foolscap_sidetls.tor.control_endpoint()", bootstrap_timeout)

    def opener(reactor: Any, report: Callable[[str], None]) -> Awaitable[_Session]:
        return _open_control(reactor, tor_control_endpoint, report, bootstrap_timeout=stall)

    shared = _SharedTor(opener, "tor control port %s" % (_where(tor_control_endpoint),))
    return TorHandler(
        "control port %s" % (_where(tor_control_endpoint),),
        shared=shared,
        handshake_timeout=handshake_timeout,
        negotiation_timeout=negotiation_timeout,
        close_timeout=close_timeout,
    )


def control_endpoint_maker(
    tor_control_endpoint_maker: Callable[..., Any],
    takes_status: bool = False,
    *,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    bootstrap_timeout: Optional[float] = BOOTSTRAP_TIMEOUT,
) -> TorHandler:
    """
    Like L{control_endpoint}, with the endpoint made on first use by
    C{tor_control_endpoint_maker(reactor)} -- or C{(reactor, update_status)}
    with C{takes_status=True} -- which may return a Deferred.  The endpoint
    it gives is kept; the maker runs again only if it failed.
    """
    if not callable(tor_control_endpoint_maker):
        raise TypeError(
            "foolscap_sidetls.tor.control_endpoint_maker() expects a callable "
            "returning an IStreamClientEndpoint (or a Deferred firing with one), "
            "got %s" % (_kind(tor_control_endpoint_maker),)
        )
    _checkLimits(
        "foolscap_sidetls.tor.control_endpoint_maker()",
        handshake_timeout,
        negotiation_timeout,
        close_timeout,
    )
    stall = _check_bootstrap_timeout("foolscap_sidetls.tor.control_endpoint_maker()", bootstrap_timeout)
    made: list[IStreamClientEndpoint] = []

    async def opener(reactor: Any, report: Callable[[str], None]) -> _Session:
        if not made:
            report("making tor control endpoint")
            if takes_status:
                result = tor_control_endpoint_maker(reactor, report)
            else:
                result = tor_control_endpoint_maker(reactor)
            endpoint = await defer.maybeDeferred(lambda: result)
            if not IStreamClientEndpoint.providedBy(endpoint):
                raise TypeError(
                    "the tor control endpoint maker %r returned %s, not an "
                    "IStreamClientEndpoint" % (tor_control_endpoint_maker, _kind(endpoint))
                )
            made.append(endpoint)
        return await _open_control(reactor, made[0], report, bootstrap_timeout=stall)

    name = getattr(tor_control_endpoint_maker, "__name__", repr(tor_control_endpoint_maker))
    shared = _SharedTor(opener, "tor control port from %s()" % (name,))
    return TorHandler(
        "control port from %s()" % (name,),
        shared=shared,
        handshake_timeout=handshake_timeout,
        negotiation_timeout=negotiation_timeout,
        close_timeout=close_timeout,
    )


def launch(
    data_directory: Optional[str] = None,
    tor_binary: Optional[str] = None,
    extra_config: Optional[dict[str, Any]] = None,
    *,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    bootstrap_timeout: Optional[float] = BOOTSTRAP_TIMEOUT,
) -> TorHandler:
    """
    Start a tor of our own on first use (once per handler), wait for it to
    bootstrap, and dial through it; L{listen} can publish onion services on
    it.  It gets a SOCKS and a control port on 127.0.0.1 chosen by tor,
    cookie authentication, and exits when this process does.  Stop it with
    the handler's C{stop()} (it is also stopped when the reactor shuts
    down).

    @param data_directory: tor's DataDirectory (kept; a later launch with
        the same directory starts faster).  L{None}: a temporary directory,
        removed when tor stops.
    @param tor_binary: the tor executable; L{None} searches PATH and
        C{/usr/sbin}.
    @param extra_config: further torrc options, C{{"Option": "value"}} or
        C{{"Option": ["value1", "value2"]}} for repeated lines (for
        example the C{DirAuthority} lines of a private network).
    @param bootstrap_timeout: seconds tor may go without bootstrap progress
        before the dials (and L{listen}) waiting for it fail with
        L{TorBootstrapError} -- saying what tor reports and where its log
        is -- and this tor is stopped (the next use launches another);
        progress starts the clock again.  L{None}: wait as long as it
        takes.  Tor logs to C{sidetls-tor.log} in C{data_directory} (with
        a temporary one: a temporary file, kept if the launch failed).
    @raise TorNotFound: no tor executable.
    @raise TypeError, ValueError: unusable arguments.
    """
    _checkLimits("foolscap_sidetls.tor.launch()", handshake_timeout, negotiation_timeout, close_timeout)
    if data_directory is not None and not isinstance(data_directory, (str, os.PathLike)):
        raise TypeError(
            "launch() expects data_directory to be a path (str) or None, got %s"
            % (_kind(data_directory),)
        )
    if tor_binary is not None and not isinstance(tor_binary, (str, os.PathLike)):
        raise TypeError(
            "launch() expects tor_binary to be a path (str) or None, got %s" % (_kind(tor_binary),)
        )
    config = _check_extra_config(extra_config)
    stall = _check_bootstrap_timeout("foolscap_sidetls.tor.launch()", bootstrap_timeout)
    binary = _find_tor(os.fspath(tor_binary) if tor_binary is not None else None)
    launcher = _Launcher(
        os.fspath(data_directory) if data_directory is not None else None, binary, config, stall
    )
    shared = _SharedTor(launcher.open, "the tor launched by foolscap_sidetls.tor.launch()")
    return TorHandler(
        "launched tor",
        shared=shared,
        launcher=launcher,
        handshake_timeout=handshake_timeout,
        negotiation_timeout=negotiation_timeout,
        close_timeout=close_timeout,
    )


# -- listening ----------------------------------------------------------------


@implementer(IStreamServerEndpoint)
class _LocalPort:
    """
    A server endpoint that tells L{listen} which port the Tub's listener got.

    Foolscap's C{Listener} drops listen errors on the floor; this reports
    them to L{listen} instead (which then removes the listener).
    """

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint
        self.listening: Deferred = Deferred()

    def __repr__(self) -> str:
        return "<onion service target %r>" % (self._endpoint,)

    def listen(self, factory: IProtocolFactory) -> Deferred:
        d = self._endpoint.listen(factory)
        result: Deferred = Deferred()

        def ok(port: IListeningPort) -> IListeningPort:
            if not self.listening.called:
                self.listening.callback(port)
            result.callback(port)
            return port

        def failed(f: Failure) -> None:
            if not self.listening.called:
                self.listening.errback(f)

        d.addCallbacks(ok, failed)
        return result


class _OnionService(service.Service):
    """
    Child service of a Tub: removes its onion service when the Tub stops,
    and closes the control connection if L{listen} opened it.
    """

    def __init__(
        self, session: _Session, service_id: str, reactor: Any, owned: Optional[_SharedTor]
    ) -> None:
        self.session = session
        self.service_id = service_id
        self._reactor = reactor
        self._owned = owned

    def stopService(self) -> Deferred:
        service.Service.stopService(self)
        d = (
            self.session.command("DEL_ONION %s" % (self.service_id,))
            if self.session.connected
            else defer.succeed(None)
        )
        d.addTimeout(10, self._reactor)
        d.addErrback(
            lambda f: log.info(
                "could not remove onion service {id}: {why}",
                id=self.service_id,
                why=f.getErrorMessage(),
            )
        )
        if self._owned is not None:
            owned = self._owned
            d.addBoth(lambda _: owned.stop(self._reactor))
        return d.addBoth(lambda _: None)


def _check_port(name: str, value: object, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "listen() expects %s to be an int port number%s, got %s"
            % (name, " or None" if allow_none else "", _kind(value))
        )
    if not 1 <= value <= 65535:
        raise ValueError("listen() expects %s between 1 and 65535, got %d" % (name, value))


def _read_key(path: str) -> Optional[str]:
    """The key in C{path}, L{None} if there is no such file."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        text = ""
    prefix = _KEY_TYPE + ":"
    blob = text[len(prefix) :] if text.startswith(prefix) else None
    try:
        ok = blob is not None and len(b64decode(blob, validate=True)) == 64
    except (BinasciiError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "private_key_file %r does not hold a tor onion service key (expected "
            "one line 'ED25519-V3:<base64>', as foolscap_sidetls.tor.listen() "
            "writes); move it away to create a new key (and a new .onion address)" % (path,)
        )
    return text


def _reply_fields(reply: str) -> dict[str, str]:
    fields = {}
    for line in reply.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


async def _publish(
    session: _Session,
    external_port: int,
    local_port: int,
    key: Optional[str],
    report: Callable[[str], None],
    added: Callable[[str], None],
) -> tuple[str, Optional[str]]:
    """ADD_ONION, then wait for tor to upload the descriptor once."""
    protocol = session.protocol
    events: list[list[str]] = []
    waiting = _UntilClosed(
        protocol,
        "the control connection to %s closed while publishing the onion service "
        "(did tor exit?)" % (session.where,),
    )
    uploaded = waiting.result
    service_id: list[str] = []

    def check() -> None:
        # Tor starts one upload per responsible HSDir (for the current and
        # the next time period) at once: wait until each has answered and
        # at least one took it, so a client asking any of them finds it.
        if not service_id or uploaded.called:
            return
        pending: dict[str, int] = {}
        stored = 0
        for event in events:
            if len(event) < 4 or event[1] != service_id[0]:
                continue
            action, hsdir = event[0], event[3]
            if action == "UPLOAD":
                pending[hsdir] = pending.get(hsdir, 0) + 1
            elif action in ("UPLOADED", "FAILED"):
                pending[hsdir] = pending.get(hsdir, 0) - 1
                stored += action == "UPLOADED"
        if stored and all(count <= 0 for count in pending.values()):
            uploaded.callback(None)

    def seen(text: str) -> None:
        events.append(text.split())
        check()

    await protocol.add_event_listener("HS_DESC", seen)
    try:
        command = "ADD_ONION %s Port=%d,127.0.0.1:%d" % (
            key or "NEW:" + _KEY_TYPE,
            external_port,
            local_port,
        )
        if key is not None:
            command += " Flags=DiscardPK"
        try:
            reply = await protocol.queue_command(command)
        except txtorcon.TorProtocolError as e:
            hint = ""
            if "collision" in str(e).lower():
                hint = " (is this private_key_file already in use by another listener on the same tor?)"
            raise TorError("tor refused to add the onion service: %s%s" % (e, hint)) from None
        fields = _reply_fields(reply)
        if "ServiceID" not in fields:
            raise TorError("tor's answer to ADD_ONION has no ServiceID: %r" % (reply,))
        service_id.append(fields["ServiceID"])
        added(fields["ServiceID"])
        report("waiting for tor to publish the onion service descriptor")
        check()
        await uploaded
    finally:
        if waiting.finish():
            _quietly(protocol.remove_event_listener("HS_DESC", seen))
    new_key = fields.get("PrivateKey") if key is None else None
    return service_id[0], new_key


def listen(
    tub: Any,
    tor: Union[TorHandler, IStreamClientEndpoint],
    local_port: Optional[int] = None,
    external_port: int = DEFAULT_ONION_PORT,
    private_key_file: Optional[str] = None,
    *,
    reactor: Any = None,
    timeout: Optional[float] = LISTEN_TIMEOUT,
    handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
    negotiation_timeout: Optional[float] = None,
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT,
    max_negotiating: Optional[int] = None,
    update_status: Optional[Callable[[str], None]] = None,
) -> Deferred:
    """
    Make C{tub} reachable as an onion service; fires with its hint,
    C{"tor:<address>.onion:<external_port>"}, for C{tub.setLocation}.

    The Tub listens on C{127.0.0.1:local_port} (a free port if L{None})
    through a L{foolscap_sidetls.listener}, and tor forwards the onion's
    C{external_port} there.  The Deferred fires once the Tub is running
    and listening and tor has uploaded the onion's descriptor.  When the Tub
    stops, the onion service is removed (and the control connection closed
    if C{tor} was an endpoint).  On failure nothing is left behind: no Tub
    listener, no onion service, no control connection of ours.

    @param tor: a handler from L{control_endpoint}, L{control_endpoint_maker}
        or L{launch} (its control connection and tor are shared with its
        dials), or an C{IStreamClientEndpoint} to a tor control port (a
        control connection of its own, kept open while the Tub runs: an
        ephemeral onion service lives only as long as the connection that
        added it).
    @param private_key_file: where the onion's key is kept.  Missing: a new
        key is made and written there (mode 0600); present: it is reused,
        so the address stays the same across restarts.  L{None}: a new
        address every time, and tor forgets the key.
    @param timeout: seconds for the whole setup (L{None}: no limit).
    @param handshake_timeout: as for L{foolscap_sidetls.listener}, as are
        the next three.
    @param negotiation_timeout: seconds an incoming connection may take to
        finish negotiating; onion services are the usual target of floods
        of connections that open and say nothing, which without it are held
        until Foolscap's own 120 s negotiation timeout.
    @param close_timeout: seconds the peer gets to finish a close.
    @param max_negotiating: at most this many incoming connections
        negotiating at once (see L{foolscap_sidetls.listener} for which one
        a new connection beyond that drops).
    @param update_status: called with each step, as Foolscap's status is
        for dials (C{"launching tor"}, C{"waiting for tor bootstrap (NN%:
        ...)"}, C{"waiting for tor to publish the onion service
        descriptor"}, ...).
    """
    from foolscap.api import Tub

    if not isinstance(tub, Tub):
        raise TypeError(
            "foolscap_sidetls.tor.listen() expects a foolscap.api.Tub, got %s" % (_kind(tub),)
        )
    if isinstance(tor, TorHandler):
        if not tor.can_listen:
            raise TypeError(
                "foolscap_sidetls.tor.listen() needs tor's control port to publish an "
                "onion service, but %s only knows a SOCKS port; pass "
                "control_endpoint(...), launch(...) or an endpoint to the control port"
                % (tor.describe(),)
            )
        shared = tor._shared
        owned = None
    elif IStreamClientEndpoint.providedBy(tor):
        handler = control_endpoint(tor)
        shared = owned = handler._shared
    else:
        raise TypeError(
            "foolscap_sidetls.tor.listen() expects tor to be a handler from "
            "control_endpoint(...) or launch(...), or an IStreamClientEndpoint to "
            "tor's control port, got %s" % (_kind(tor),)
        )
    assert shared is not None
    _checkLimits(
        "foolscap_sidetls.tor.listen()",
        handshake_timeout,
        negotiation_timeout,
        close_timeout,
        max_negotiating,
    )
    _check_port("local_port", local_port, allow_none=True)
    _check_port("external_port", external_port, allow_none=False)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise ValueError(
            "listen() expects timeout to be a positive number of seconds or None, got %r"
            % (timeout,)
        )
    key = None
    key_path = None
    if private_key_file is not None:
        if not isinstance(private_key_file, (str, os.PathLike)):
            raise TypeError(
                "listen() expects private_key_file to be a path (str) or None, got %s"
                % (_kind(private_key_file),)
            )
        key_path = os.fspath(private_key_file)
        directory = os.path.dirname(os.path.abspath(key_path))
        if not os.path.isdir(directory):
            raise ValueError(
                "private_key_file %r: directory %r does not exist" % (key_path, directory)
            )
        key = _read_key(key_path)
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor

    state: dict[str, Any] = {
        "status": "connecting to tor",
        "listener": None,
        "service_id": None,
        "session": None,
    }

    def report(status: str) -> None:
        state["status"] = status
        if update_status is not None:
            update_status(status)

    def added(service_id: str) -> None:
        state["service_id"] = service_id

    async def run() -> str:
        session = await shared.get(reactor, report)
        state["session"] = session
        report("waiting for the Tub to listen on 127.0.0.1 (is it running?)")
        local = _LocalPort(TCP4ServerEndpoint(reactor, local_port or 0, interface="127.0.0.1"))
        state["listener"] = tub.listenOn(
            listener(
                local,
                handshake_timeout=handshake_timeout,
                negotiation_timeout=negotiation_timeout,
                close_timeout=close_timeout,
                max_negotiating=max_negotiating,
            )
        )
        try:
            port = await _observe(local.listening)
        except CancelledError:
            raise
        except Exception as e:
            raise TorError(
                "the Tub could not listen on 127.0.0.1:%s: %s" % (local_port or 0, e)
            ) from None
        report("adding the onion service")
        service_id, new_key = await _publish(
            session, external_port, port.getHost().port, key, report, added
        )
        if key_path is not None and new_key is not None:
            write_private(key_path, new_key + "\n")
        if not tub.running:
            raise TorError("the Tub stopped while its onion service was being published")
        _OnionService(session, service_id, reactor, owned).setServiceParent(tub)
        state["done"] = True
        log.info(
            "onion service {id}.onion:{port} -> 127.0.0.1:{local}",
            id=service_id,
            port=external_port,
            local=port.getHost().port,
        )
        return "tor:%s.onion:%d" % (service_id, external_port)

    def undo(f: Failure) -> Failure:
        listening = state["listener"]
        if listening is not None and listening in tub.getListeners():
            tub.stopListeningOn(listening)
        session = state["session"]
        if (
            state["service_id"] is not None
            and session is not None
            and session.connected
            and owned is None
        ):
            session.command("DEL_ONION %s" % (state["service_id"],)).addErrback(lambda _: None)
        if owned is not None:
            owned.stop(reactor)
        if f.check(defer.TimeoutError):
            raise TorError(
                "the onion service was not ready within %s s; it was %s"
                % (timeout, state["status"])
            ) from None
        return f

    d = Deferred.fromCoroutine(run())
    if timeout is not None:
        d.addTimeout(timeout, reactor)
    return d.addErrback(undo)
