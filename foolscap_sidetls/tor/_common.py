"""
Small helpers shared by the layers of L{foolscap_sidetls.tor}: describing
values and endpoints in error messages, watching a Deferred without owning
it, and the one L{Logger} every layer logs to (one namespace, so a program
or test observes the whole of tor's logging in one place).
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional

from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._errors import TorControlError

log = Logger(namespace="foolscap_sidetls.tor")


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


def _timed_out(result: object, timeout: float) -> None:
    """
    C{onTimeoutCancel} for L{Deferred.addTimeout}: whatever a Deferred
    cancelled by its timeout fails with, it timed out.  The default
    converts only L{defer.CancelledError}, but a cancelled TCP connect
    fails with L{error.ConnectingCancelledError}.
    """
    raise defer.TimeoutError(timeout, "Deferred")


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


def _reason(e: BaseException) -> str:
    if isinstance(e, error.ConnectionRefusedError):
        return "connection refused"
    text = str(e).strip()
    return text.rstrip(".") or type(e).__name__


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
