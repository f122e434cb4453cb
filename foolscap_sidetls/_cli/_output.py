"""
What a command prints as it goes: its report, one flushed line at a time
(so a script or a terminal sees each step when it happens), and the slow
steps it is waiting on.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TextIO

from twisted.internet import task

PROG = "foolscap-sidetls"
#: How often a command says it is still waiting on a slow step.
STILL_WAITING = 15.0


def say(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")
    out.flush()


class Progress:
    """
    Prints each slow step once, and how long the current one has taken.

    @param poll: for a caller that cannot be told of each step (ping, which
        only sees Foolscap's per-hint statuses): asked for the current step
        (L{None} when nothing is under way) every L{STILL_WAITING} seconds,
        so at most one line is printed per period and a quick success none.
    """

    def __init__(self, reactor: Any, out: TextIO, poll: Optional[Callable[[], Optional[str]]] = None) -> None:
        self._reactor = reactor
        self._out = out
        self._poll = poll
        self._started = reactor.seconds()
        self._last: Optional[str] = None
        self._since = self._started
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor

    def start(self) -> None:
        self._ticker.start(STILL_WAITING, now=False)

    def stop(self) -> None:
        if self._ticker.running:
            self._ticker.stop()

    def elapsed(self) -> float:
        return float(self._reactor.seconds() - self._started)

    def __call__(self, status: str) -> None:
        if status == self._last:
            return
        self._last = status
        self._since = self._reactor.seconds()
        say(self._out, "  [%5.1f s] %s" % (self.elapsed(), status))

    def _tick(self) -> None:
        if self._poll is not None:
            status = self._poll()
            if status is None:
                return
            if status != self._last:
                self(status)
                return
            still = status
        elif self._last is None:
            return
        else:
            still = self._last.split(": ", 1)[-1]
        say(self._out, "  [%5.1f s] ... still %s" % (self.elapsed(), still))
