"""
Small Foolscap-free helpers of the SAM client: describing values and
endpoints in messages, and one list of waiters for a one-time event.
"""

from __future__ import annotations

import os
from typing import Any, Generic, TypeVar

from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

_T = TypeVar("_T")

#: The one logger of I2P (the SAM client and the Foolscap layers): one
#: namespace, so a program or test observes all of it in one place.
log = Logger(namespace="foolscap_sidetls.i2p")


def kind(value: object) -> str:
    """C{value} and its type, for a message saying what was wrong with it."""
    return "%r (%s)" % (value, type(value).__name__)


def printable(text: str, limit: int) -> str:
    """C{text} safe to show: control characters replaced, cut at C{limit}."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def reason(f: Failure) -> str:
    """Why a connection attempt or a connection failed, in a few words."""
    if isinstance(f.value, error.ConnectionRefusedError):
        return "connection refused"
    return str(f.value) or type(f.value).__name__


def ignore_status(status: str) -> None:
    """The default of every C{report}/C{update_status}: nobody listens."""


def global_reactor() -> Any:
    """The global reactor, imported only when nobody gave us one."""
    from twisted.internet import reactor

    return reactor


def where(endpoint: object) -> str:
    """A human name for a SAM client endpoint: C{tcp:127.0.0.1:7656}, C{unix:/path}."""
    path = getattr(endpoint, "_path", None)
    host = getattr(endpoint, "_host", None) or getattr(endpoint, "_hostText", None)
    port = getattr(endpoint, "_port", None)
    if isinstance(path, (str, bytes)):
        return "unix:" + os.fsdecode(path)
    return repr(endpoint) if host is None or port is None else "tcp:%s:%s" % (host, port)


class Waiters(Generic[_T]):
    """
    Everyone waiting for one event (a socket closing, a session opening, a
    listener starting): each gets a Deferred of their own, so cancelling
    one wait leaves the event and the other waits alone.

    Not Foolscap's C{OneShotObserverList}: this library imports nothing of
    Foolscap, and C{OneShotObserverList} fires a turn later through
    C{eventually} on the global reactor, which tests driven by a
    C{MemoryReactorClock} never turn -- tried for the i2pd launcher's start
    (L{foolscap_sidetls.i2p._launch}), C{test_own_process_group} in
    tests/i2p/test_launch_offline.py then failed.  Every waiter here fires
    in the turn the event happens.  Unlike it, one fired with
    C{keep=False} waits again for the next event (a session that is
    reopened, an i2pd started again).
    """

    def __init__(self) -> None:
        self._waiting: list[Deferred] = []
        self._result: Any = None
        self.fired = False

    def wait(self) -> "Deferred[_T]":
        """A Deferred with the event's result: at once if it happened."""
        if self.fired:
            if isinstance(self._result, Failure):
                return defer.fail(self._result)
            return defer.succeed(self._result)

        def cancel(d: Deferred) -> None:
            if d in self._waiting:
                self._waiting.remove(d)

        d: Deferred = Deferred(cancel)
        self._waiting.append(d)
        return d

    def fire(self, result: Any, *, keep: bool = True) -> None:
        """
        Hand C{result} (a value or a L{Failure}) to every waiter; with
        C{keep}, later waits get it too.
        """
        self.fired, self._result = keep, result if keep else None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
