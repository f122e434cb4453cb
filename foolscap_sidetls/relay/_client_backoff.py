"""
The hidden Tub's re-registration policy: how long to wait after each
failure, with jitter, and when a registration has lasted long enough for
its loss to start the backoff over.

Why a loop of its own and not Twisted's C{ClientService}: measured with
Twisted 26.10 (a probe driving C{ClientService(endpoint, factory,
retryPolicy=..., prepareConnection=...)} on a L{Clock}, the relay's
"success" being the registration, not the TCP connect):

  - a control connection lost before its registration is accepted -- the
    relay refused, timed out, or was not the pinned one: the common
    failure -- raises C{automat.NoTransition} ("no transition for
    _clientDisconnected in ... 'Waiting'") inside the protocol's
    C{connectionLost}, because C{ClientService} expects no loss while
    C{prepareConnection} is pending;
  - it logs "Scheduling retry" once per attempt (21 lines over 21
    attempts at one backoff step), where this project logs a repeated
    failure once per backoff step;
  - its C{retryPolicy(failedAttempts)} sees only a count it resets at
    every success, while this policy also needs why the attempt failed
    (a failure only an operator can fix waits C{retry_max} at once) and
    keeps counting across registrations that do not hold (a relay that
    accepts and drops at once is retried ever more slowly);
  - stopping while connected calls the raw transport's
    C{loseConnection}, skipping the TLS close_notify and the close
    timeout of L{_client_control._ControlClient.close}.

The retry itself is one C{callLater} in L{_client_port._RelayedPort};
this module is the whole of the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .._limits import check_fraction, check_seconds


@dataclass(frozen=True)
class Backoff:
    """
    The wait before the next attempt after C{failures} failed attempts in a
    row: C{initial} doubled per failure after the first, up to C{maximum},
    times a random factor in C{[1 - jitter, 1 + jitter)} so that Tubs
    which lost one relay at once do not all come back at once.

    @ivar random: A callable returning a float in C{[0, 1)}.
    """

    initial: float
    maximum: float
    jitter: float
    random: Callable[[], float]

    @classmethod
    def checked(
        cls,
        what: str,
        initial: object,
        maximum: object,
        jitter: object,
        random: object,
    ) -> "Backoff":
        """
        A policy from C{RelayListenerEndpoint}'s C{retry_initial},
        C{retry_max}, C{jitter} and C{random} arguments, each checked.

        @raise TypeError: for an argument of the wrong type.
        @raise ValueError: for a value out of range; both name the argument.
        """
        check_seconds(initial, "retry_initial", what, optional=False)
        check_seconds(maximum, "retry_max", what, optional=False)
        if not initial <= maximum:  # type: ignore[operator]
            raise ValueError(
                "%s: need retry_initial <= retry_max, got %r and %r" % (what, initial, maximum)
            )
        check_fraction(jitter, "jitter", what)
        if not callable(random):
            raise TypeError(
                "%s: random must be a callable returning a float in [0, 1), got %r"
                % (what, random)
            )
        return cls(initial, maximum, float(jitter), random)  # type: ignore[arg-type]

    @property
    def stable_after(self) -> float:
        """
        How long a registration must last for its loss to start the
        backoff over: longer than the longest wait, jitter included, so
        that two processes taking one registration from each other (each
        holding it for the other's wait) do not count as successes.
        """
        return 2 * self.maximum

    def base(self, failures: int, slowest: bool = False) -> float:
        """
        The wait before L{jittered}: C{maximum} at once when C{slowest} (a
        failure only an operator can fix).  No failures: 0.
        """
        if failures < 1:
            return 0.0
        if slowest:
            return self.maximum
        base = self.initial
        for _ in range(failures - 1):
            if base >= self.maximum:
                break
            base *= 2
        return min(base, self.maximum)

    def jittered(self, base: float) -> float:
        """C{base} times a random factor in C{[1 - jitter, 1 + jitter)}."""
        return base * (1 + self.jitter * (2 * self.random() - 1))
