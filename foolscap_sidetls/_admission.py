"""
The C{max_negotiating} policy: which still-negotiating connection a
listener drops when one more arrives than it admits.

Kept apart from the wrapper because it is a policy over many connections,
with its own guarantee (see L{Admission._makeRoom}); the wrapper only
tells it when a connection arrives, first speaks, and stops negotiating.
"""

from __future__ import annotations

from typing import Optional, Protocol

from twisted.internet.interfaces import IReactorTime

#: With C{max_negotiating}, a connection that has sent nothing for this long
#: is dropped before any other.  An honest dialer speaks as soon as it is
#: connected, but its first bytes reach us a round trip after we accepted
#: (over Tor or I2P a circuit's round trip, often a second or more); until
#: then a new connection is not suspect, only old.
SILENT_GRACE = 5.0


class Candidate(Protocol):
    """What the policy needs of a connection it may drop."""

    def _stillNegotiating(self) -> bool: ...

    def _evict(self, explanation: str) -> None: ...


class Admission:
    """
    The connections of one listener that are still negotiating, and the
    cap on them.

    @ivar limit: At most this many negotiating at once; L{None}: no limit
        (then nothing is tracked and every method returns at once).
    @ivar negotiating: The connections still negotiating, oldest first, each
        with the clock's seconds when it arrived; L{None} without a limit.
    @ivar _silent: Those of them that have sent nothing yet, oldest first.
    """

    silentGrace = SILENT_GRACE

    def __init__(self, limit: Optional[int], clock: IReactorTime) -> None:
        self.limit = limit
        self._clock = clock
        # Insertion-ordered dicts: oldest first, O(1) removal of any entry.
        self.negotiating: Optional[dict[Candidate, float]] = {} if limit is not None else None
        self._silent: dict[Candidate, None] = {}

    def admit(self, connection: Candidate) -> None:
        """C{connection} arrived: make room for it, then count it."""
        registry = self.negotiating
        if registry is None:
            return
        self._makeRoom(registry)
        registry[connection] = self._clock.seconds()
        self._silent[connection] = None

    def spoke(self, connection: Candidate) -> None:
        """C{connection}'s peer sent its first bytes."""
        self._silent.pop(connection, None)

    def forget(self, connection: Candidate) -> None:
        """
        C{connection} is no longer negotiating: it finished, failed or was
        dropped, or its application took it over (then it is no Foolscap
        negotiation at all, and the cap is not for it).
        """
        registry = self.negotiating
        if registry is not None:
            registry.pop(connection, None)
            self._silent.pop(connection, None)

    def _makeRoom(self, registry: dict[Candidate, float]) -> None:
        """
        Keep fewer than C{limit} connections negotiating, by dropping the
        oldest connection that has sent nothing for C{silentGrace} seconds
        or more, or, when there is none, the oldest connection of all.

        What that guarantees: while some connection has been silent that
        long, no other is dropped; and a connection that has not been is
        dropped only when C{limit - 1} connections newer than it are still
        negotiating.  An honest peer that finishes negotiating in T seconds
        therefore gets in unless C{limit - 1} others arrived within those T
        seconds and were still at it -- whatever those others sent
        (nothing, a valid plaintext request for the public TubID, a TLS
        handshake) before stalling.  How far a connection got is
        deliberately not a rank: an attacker can get as far as an honest
        peer mid-negotiation (up to the encrypted hello, which needs only a
        self-made certificate), and would then outrank every honest peer
        still behind it.

        Amortized O(1): both registries are ordered dicts; connections that
        finished are removed as they finish (or here, when found).
        """
        limit = self.limit
        assert limit is not None
        silent = self._silent
        grace = self.silentGrace
        while len(registry) >= limit:
            victim = None
            if silent:
                oldest = next(iter(silent))
                if self._clock.seconds() - registry[oldest] >= grace:
                    victim = oldest
                    why = "it had sent nothing for %g s or more, and was the oldest such" % (grace,)
            if victim is None:
                victim = next(iter(registry))
                why = "it was the oldest (none had been silent for %g s)" % (grace,)
            self.forget(victim)
            if victim._stillNegotiating():
                victim._evict(
                    "dropped to admit a new connection: %d connections were negotiating "
                    "(max_negotiating=%d) and %s" % (limit, limit, why)
                )
