"""
The two errors a configuration raises: one for a file that cannot be used
(found when it is read, before anything starts), one for a valid file that
could not be started.  Every module of the package raises them, so they
live apart from all of them.
"""

from __future__ import annotations

from typing import Optional

class ConfigError(ValueError):
    """
    The configuration cannot be used.  The message names the file, the
    section, the key, the value and what would be accepted, e.g.
    C{'node.cfg' [connections] tcp = 'toor': unknown handler; expected one
    of tcp, tor, i2p, disabled}.

    @ivar source: the file's name as given (or C{<string>}).
    @ivar section: the section, or L{None} for the file as a whole.
    @ivar key: the key, or L{None}.
    @ivar value: the value as written, or L{None} if it is not set.
    @ivar problem: what is wrong, and what would be accepted.
    """

    def __init__(
        self,
        source: str,
        section: Optional[str],
        key: Optional[str],
        value: Optional[str],
        problem: str,
        unset: str = "",
    ) -> None:
        where = "%r" % (source,)
        if section is not None:
            where += " [%s]" % (section,)
        if key is not None:
            where += " " + key
            if value is not None:
                where += " = %r" % (value,)
            elif unset:
                where += " " + unset
        ValueError.__init__(self, "%s: %s" % (where, problem))
        self.source = source
        self.section = section
        self.key = key
        self.value = value
        self.problem = problem


class StartError(Exception):
    """
    A valid configuration could not be started (a port in use, tor or the
    I2P router unreachable, ...); the message names the setting involved.
    """


def _why(e: BaseException) -> str:
    return (str(e).strip() or type(e).__name__).rstrip(".")
