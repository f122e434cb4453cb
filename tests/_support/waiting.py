"""
The one home of bounded waiting in the tests: a condition polled until it
holds, for at most a given time.

Three forms of one loop:
  - L{until}, on the running reactor (an C{async def} test, see
    L{coroutine}): fails the test when the time is up;
  - L{settle}, on the running reactor: the same wait when running out of
    time is an answer, not a failure (how many a flood got in before it
    stopped getting answers);
  - L{blocking_until}, with no reactor running (a test driving a separate
    process): blocks the thread between polls.

Each bound is a bound on waiting, not a measurement.  What looks like a
wait elsewhere and is not one of these is different in kind and says why:
pumping a fake clock or memory reactor to quiescence
(tests/relay/_helpers.py, tests/cli/_support.py) waits for no time at all.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Coroutine, Optional

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

#: How often a condition is polled unless told otherwise (seconds).
INTERVAL = 0.05


def coroutine(f: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Deferred]:
    """Let a trial test be an C{async def} (trial runs what it returns as a Deferred)."""

    def test(self: Any) -> Deferred:
        return Deferred.fromCoroutine(f(self))

    test.__name__ = f.__name__
    test.__doc__ = f.__doc__
    return test


def _timed_out(timeout: float, what: str, state: Optional[Callable[[], Any]]) -> str:
    detail = "" if state is None else "; %r" % (state(),)
    return "timed out after %s s waiting for %s%s" % (timeout, what, detail)


async def settle(check: Callable[[], Any], timeout: float, interval: float = INTERVAL) -> Any:
    """
    What C{check()} returns once it is true, polled every C{interval}
    seconds on the reactor; after C{timeout} seconds, what it returns then.
    """
    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]
    while True:
        result = check()
        if result or reactor.seconds() > deadline:  # type: ignore[attr-defined]
            return result
        await task.deferLater(reactor, interval, lambda: None)


async def until(
    case: Any,
    check: Callable[[], Any],
    timeout: float,
    what: str,
    state: Optional[Callable[[], Any]] = None,
    interval: float = INTERVAL,
) -> Any:
    """
    What C{check()} returns once it is true, polled every C{interval}
    seconds; C{case} fails the test after C{timeout} seconds, saying
    C{what} it waited for and, with C{state}, what things looked like then.
    """
    result = await settle(check, timeout, interval)
    if not result:
        case.fail(_timed_out(timeout, what, state))
    return result


def blocking_until(check: Callable[[], Any], timeout: float, what: str, *, interval: float = INTERVAL) -> Any:
    """
    L{until} for a test with no reactor running: sleeps between polls, and
    raises C{AssertionError} (which fails the test) after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(timeout, what, None))
        time.sleep(interval)
