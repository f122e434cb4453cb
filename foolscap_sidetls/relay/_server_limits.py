"""
What one relay will hold: L{RelayLimits}, checked when it is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .._limits import DEFAULT_CLOSE_TIMEOUT, check_count, check_seconds

#: A dialer source's default share of a hidden Tub's waiting dialers and
#: relayed connections: an eighth.  Foolscap keeps one connection per pair
#: of Tubs, so an honest address needs one per Tub behind it.
_SHARE_DIVISOR = 8


@dataclass(frozen=True)
class RelayLimits:
    """
    What one relay will hold, so that no client -- dialer or hidden Tub --
    can exhaust it.  Every refusal names the limit it hit.

    @ivar max_connections: Connections open at the relay in any state
        (dialers, streams, control).  Each relayed Foolscap connection
        costs two.  When a new one arrives at the limit, the oldest
        connection that has not yet sent its header block is dropped to
        admit it (an honest peer sends its header at once, so a flood of
        silent connections cannot keep it out); when every connection is
        past that stage the new one is answered 503 and closed.
    @ivar max_connections_per_source: Connections from one source address
        (an IPv4 address, or an IPv6 /64, which one host usually holds
        whole), so that one client cannot take the whole of
        C{max_connections}; beyond it that source's new connections are
        answered 503.  A hidden Tub's stream is not counted against its own
        address once it has claimed its dialer: the dialer it serves is
        counted against the dialer's, and the stream is bounded by
        C{max_streams_per_registration} -- otherwise dialers from anywhere
        could use up the hidden Tub's address's allowance and cut it off.
    @ivar max_registrations: Hidden Tubs registered at once.  A control
        connection registers at most one TubID, that of its certificate.
    @ivar max_registrations_per_source: Hidden Tubs registered from one
        source address.  A fresh key costs nothing, so without this one
        client could take every registration.
    @ivar max_pending_per_registration: Dialers of one hidden Tub waiting
        for it to open their stream.
    @ivar max_streams_per_registration: Relayed connections of one hidden
        Tub, open or waiting.
    @ivar max_pending_per_dialer_source: Of those waiting dialers, how many
        may come from one source address; by default an eighth of
        C{max_pending_per_registration} (at least 1).
    @ivar max_streams_per_dialer_source: Of a hidden Tub's relayed
        connections, open or waiting, how many may come from one source
        address; by default an eighth of C{max_streams_per_registration}
        (at least 1).  The relay cannot see whether a relayed connection
        is doing anything useful -- its bytes are the two Tubs' TLS -- so
        this share is what keeps one address, holding connections that
        say C{GET /id/<tubid>} and then nothing, from taking every one a
        hidden Tub is allowed and cutting it off from everyone else.  Set
        explicitly, each share must be below its per-registration limit.
    @ivar header_timeout: Seconds a new connection has to send its first
        header block, and a control connection to register.
    @ivar stream_timeout: Seconds the hidden Tub has to open a dialer's
        stream; the dialer is then answered 504.
    @ivar control_idle_timeout: Seconds a registered control connection may
        stay silent (hidden Tubs ping every 60 s by default) before the
        relay drops it and the registration.
    @ivar close_timeout: Seconds a peer gets to finish a close the relay
        started (read the error it was sent, answer TLS's close_notify)
        before the connection is aborted; L{None} waits forever.
    """

    max_connections: int = 4096
    max_connections_per_source: int = 512
    max_registrations: int = 1024
    max_registrations_per_source: int = 16
    max_pending_per_registration: int = 32
    max_streams_per_registration: int = 512
    header_timeout: float = 30.0
    stream_timeout: float = 30.0
    control_idle_timeout: float = 180.0
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT
    # Optional here only so that the default can follow the limit it is a
    # share of; after construction each is an int.
    max_pending_per_dialer_source: Optional[int] = None
    max_streams_per_dialer_source: Optional[int] = None

    def __post_init__(self) -> None:
        for name in (
            "max_connections",
            "max_connections_per_source",
            "max_registrations",
            "max_registrations_per_source",
            "max_pending_per_registration",
            "max_streams_per_registration",
        ):
            check_count(getattr(self, name), name, "RelayLimits", optional=False, unit=None)
        for name in ("header_timeout", "stream_timeout", "control_idle_timeout"):
            check_seconds(getattr(self, name), name, "RelayLimits", optional=False)
        check_seconds(self.close_timeout, "close_timeout", "RelayLimits")
        self._share("max_pending_per_dialer_source", "max_pending_per_registration")
        self._share("max_streams_per_dialer_source", "max_streams_per_registration")

    def _share(self, name: str, of: str) -> None:
        """
        Check, or default, the share C{name} of the per-registration limit
        C{of} that one dialer source may hold: a share equal to the whole
        would let one address cut a hidden Tub off again.
        """
        whole = getattr(self, of)
        value = getattr(self, name)
        if value is None:
            object.__setattr__(self, name, max(1, whole // _SHARE_DIVISOR))
            return
        check_count(value, name, "RelayLimits", optional=False, unit=None)
        if value >= whole and whole > 1:
            raise ValueError(
                "RelayLimits: %s must be less than %s (%d), got %d: otherwise one "
                "dialer address can take them all and cut the hidden Tub off from "
                "every other dialer; leave it out for an eighth (%d)"
                % (name, of, whole, value, max(1, whole // _SHARE_DIVISOR))
            )
        if value > whole:
            raise ValueError(
                "RelayLimits: %s must be at most %s (%d), got %d"
                % (name, of, whole, value)
            )
