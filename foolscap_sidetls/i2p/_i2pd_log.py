"""
Reading a launched i2pd's log for why it has no peers (reseeding failed),
which SAM never says: L{I2PDLog}.
"""

from __future__ import annotations

import os
from typing import Optional

from .sam._util import printable

#: How much of the log one poll reads at most, and the longest line kept.
_LOG_READ = 65536
_LOG_LINE = 1000


class I2PDLog:
    """
    What a launched i2pd's log says about its peers, read incrementally.

    Why: an i2pd that cannot reseed has no peers and SAM just leaves
    SESSION CREATE unanswered; only the log says why.  The log is treated
    as hostile: at most L{_LOG_READ} bytes per L{poll}, lines cut at
    L{_LOG_LINE} characters, reasons shown printable and short.  Lines
    written before C{start_at} (an earlier run in the same data directory)
    are not read.
    """

    def __init__(self, path: str, start_at: int = 0) -> None:
        self.path = path
        self._offset = start_at
        self._partial = b""
        self._skipping = False
        #: Reseed attempts that failed, and the last failure's words.
        self.reseed_errors = 0
        self.reseed_reason: Optional[str] = None
        #: i2pd gave up reseeding ("Failed to reseed from servers").
        self.reseed_failed = False
        #: i2pd said it has no peers to build tunnels with.
        self.no_peers = False

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self._offset:
                    # Truncated or replaced: read it from the start.
                    self._offset = 0
                    self._partial = b""
                    self._skipping = False
                f.seek(self._offset)
                data = f.read(_LOG_READ)
        except OSError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            if self._skipping:
                # The end of an over-long line: already counted.
                self._skipping = False
                continue
            self.line(raw[:_LOG_LINE].decode("utf-8", "replace"))
        if len(self._partial) > _LOG_LINE:
            # An over-long line: its start is read, the rest skipped.
            if not self._skipping:
                self.line(self._partial[:_LOG_LINE].decode("utf-8", "replace"))
            self._partial = b""
            self._skipping = True

    def line(self, line: str) -> None:
        """One log line (C{HH:MM:SS@NNN/level - Component: text})."""
        _, sep, text = line.partition(" - ")
        if not sep:
            return
        text = text.strip()
        if text.startswith("Reseed: "):
            what = text[len("Reseed: "):]
            if what.startswith("Failed to reseed from servers"):
                self.reseed_failed = True
            elif what.startswith(("Couldn't connect to ", "No reseed servers specified")) or "failed" in what.lower():
                if not what.startswith("SU3 download failed"):
                    self.reseed_errors += 1
                    self.reseed_reason = printable(what, 200)
        elif "no peers available" in text or text.startswith("Tunnel: Can't find any router"):
            self.no_peers = True

    def diagnosis(self) -> Optional[str]:
        """Why i2pd has no peers, when its log says it could not reseed; else None."""
        if not self.reseed_failed:
            return None
        reason = self.reseed_reason or "no reseed server answered"
        if self.reseed_errors > 1:
            reason = "%d attempts; the last: %s" % (self.reseed_errors, reason)
        return reason
