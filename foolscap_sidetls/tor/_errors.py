"""
The errors of L{foolscap_sidetls.tor}: each says what went wrong and what to do.
"""

from __future__ import annotations

from typing import Optional


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
