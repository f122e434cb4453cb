"""
Helpers for the tests that run on the real reactor (loopback sockets, real
daemons): C{async def} tests under trial, and bounded waits.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Optional

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred


def coroutine(f: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Deferred]:
    """Let a trial test be an C{async def} (trial runs what it returns as a Deferred)."""

    def test(self: Any) -> Deferred:
        return Deferred.fromCoroutine(f(self))

    test.__name__ = f.__name__
    test.__doc__ = f.__doc__
    return test


async def until(
    case: Any,
    check: Callable[[], Any],
    timeout: float,
    what: str,
    state: Optional[Callable[[], Any]] = None,
    interval: float = 0.05,
) -> Any:
    """
    What C{check()} returns once it is true, polled every C{interval}
    seconds; C{case} fails the test after C{timeout} seconds (a bound on
    waiting, not a measurement), saying C{what} it waited for and, with
    C{state}, what things looked like then.
    """
    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]
    while True:
        result = check()
        if result:
            return result
        if reactor.seconds() > deadline:  # type: ignore[attr-defined]
            detail = "" if state is None else "; %r" % (state(),)
            case.fail("timed out after %s s waiting for %s%s" % (timeout, what, detail))
        await task.deferLater(reactor, interval, lambda: None)
