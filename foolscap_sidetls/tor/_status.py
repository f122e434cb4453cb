"""
Reading tor's C{STATUS_CLIENT} bootstrap events, which come from a control
port as untrusted as any peer: parsed as the control protocol defines them,
bounded, and turned into the words Foolscap's status and
L{TorBootstrapError} show.
"""

from __future__ import annotations

import re
from typing import Optional


#: The most of one status event that is read: tor's are a few hundred
#: characters; anything past this is not looked at.
_EVENT_MAX = 4096
#: The most of one value (a SUMMARY, a WARNING, ...) that is shown.
_VALUE_MAX = 160
#: The most KEY=VALUE arguments kept from one event.
_FIELDS_MAX = 32
_ARGUMENT = re.compile(r'[ \t]*([A-Za-z0-9_]{1,64})(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?(?=\s|$)')
_REASON_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")

#: Tor's reasons (its REASON= codes, of OR connections) for a bootstrap
#: problem, in words: what happened to its connection to a relay.
_REASONS: dict[str, str] = {
    "DONE": "was closed, by the relay or by a firewall or proxy in between",
    "CONNECTREFUSED": "was refused",
    "CONNECTRESET": "was reset, by the relay or by a firewall or proxy in between",
    "TIMEOUT": "timed out",
    "NOROUTE": "could not be made: no route to the relay, is the network up?",
    "IOERROR": "failed with a read or write error",
    "TLS_ERROR": "failed during the TLS handshake: something in between interfered, or it is not a tor relay",
    "IDENTITY": "reached a relay with another identity than expected",
    "RESOURCELIMIT": "failed: tor ran out of resources, sockets or memory",
    "PT_MISSING": "could not be made: its pluggable transport is missing, see ClientTransportPlugin",
    "CLOCK_SKEW": "showed that this machine's clock is wrong: check the date, time and time zone",
    "MISC": "failed",
}


def _shown(value: str) -> str:
    """A value from tor made safe to show: printable characters only, bounded."""
    text = "".join(c if c.isprintable() else "?" for c in value)
    return text if len(text) <= _VALUE_MAX else text[:_VALUE_MAX] + "..."


def _status_event(text: str) -> tuple[list[str], dict[str, str]]:
    """
    The words (severity, action) and C{KEY=VALUE} arguments of a tor
    status event (C{NOTICE BOOTSTRAP PROGRESS=5 ... SUMMARY="..."}), read
    as the control protocol defines them -- quoted values with backslash
    escapes -- rather than searched for, so that a value cannot pass for
    another argument.  A tor control port is as untrusted as any peer until
    parsed: only the first L{_EVENT_MAX} characters are read, reading stops
    at the first malformed argument, the first of a repeated key wins, and
    values are left raw (see L{_shown}).
    """
    text = text[:_EVENT_MAX].split("\n", 1)[0]
    words: list[str] = []
    fields: dict[str, str] = {}
    position = 0
    while position < len(text) and len(fields) < _FIELDS_MAX:
        found = _ARGUMENT.match(text, position)
        if found is None or found.end() == position:
            break
        position = found.end()
        key, value = found.group(1), found.group(2)
        if value is None:
            if not fields:
                words.append(key)
            continue
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields.setdefault(key.upper(), value)
    return words, fields


def _percent(fields: dict[str, str]) -> Optional[int]:
    """PROGRESS as a number from 0 to 100, or L{None} if it is not one."""
    value = fields.get("PROGRESS", "")
    if not (value.isascii() and value.isdigit() and len(value) <= 3) or int(value) > 100:
        return None
    return int(value)


class _Bootstrap:
    """
    What tor has said about its bootstrap: the highest progress, its
    summary, and its last warning.
    """

    def __init__(self) -> None:
        self.percent = -1
        self.summary = ""
        #: The arguments of the last BOOTSTRAP event with a WARNING.
        self.problem: Optional[dict[str, str]] = None

    def seen(self, text: str) -> bool:
        """Take one STATUS_CLIENT event; L{True} if the progress rose."""
        words, fields = _status_event(text)
        if "BOOTSTRAP" not in words[:2]:
            return False
        percent = _percent(fields)
        if percent is None:
            return False
        if "WARNING" in fields:
            self.problem = fields
        if percent <= self.percent:
            return False
        self.percent = percent
        self.summary = _shown(fields.get("SUMMARY", ""))
        return True

    def status(self) -> str:
        described = self.summary
        if self.problem is not None:
            described += "; last problem: " + self._short_problem(self.problem)
        return "waiting for tor bootstrap (%d%%: %s)" % (max(self.percent, 0), described)

    @staticmethod
    def _short_problem(problem: dict[str, str]) -> str:
        warning, reason = problem.get("WARNING", ""), problem.get("REASON", "")
        if reason in _REASONS and warning.strip().upper() in ("", reason):
            # Tor's WARNING is often its reason code itself ("DONE").
            return "the connection to a relay %s (%s)" % (_REASONS[reason], reason)
        if warning.strip():
            return _shown(warning)
        return "reason " + _shown(reason) if reason else "unknown"

    def warning(self) -> str:
        """Tor's last warning, in words: which relay, what happened, why."""
        problem = self.problem
        if problem is None:
            return (
                "tor reported no problem: its connections may be silently dropped "
                "(a firewall that drops packets, a network that is down)"
            )
        reason = problem.get("REASON", "")
        warning = problem.get("WARNING", "").strip()
        relay = "the relay at %s" % (_shown(problem["HOSTADDR"]),) if problem.get("HOSTADDR") else "a relay"
        if reason in _REASONS:
            text = "the connection to %s %s" % (relay, _REASONS[reason])
        else:
            text = "the connection to %s failed" % (relay,)
        detail = []
        if warning and warning.upper() != reason:
            detail.append('tor says "%s"' % (_shown(warning),))
        if reason:
            detail.append("reason %s" % (reason if _REASON_CODE.match(reason) else _shown(reason),))
        count = problem.get("COUNT", "")
        if count.isascii() and count.isdigit() and len(count) <= 9 and int(count) > 1:
            detail.append("%d times" % (int(count),))
        return text + (" (%s)" % (", ".join(detail),) if detail else "")
