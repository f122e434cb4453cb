"""
The -v/--log-file options of the commands that run a Tub: where Twisted's
log goes, and whether Foolscap's own log (where each hint's attempt is
told) joins it.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from ._errors import Usage


def add_logging_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("-v", "--verbose", action="store_true",
                         help="log in detail, Foolscap's own log included (to stderr, or to --log-file)")
    command.add_argument("--log-file", metavar="PATH",
                         help="append Twisted's log (warnings, errors and what the reactor does; with -v, "
                         "Foolscap's connection log too) to PATH")


def start_logging(args: argparse.Namespace, err: TextIO) -> None:
    """
    Send Twisted's log where -v/--log-file say (nowhere without them), and
    with -v bridge Foolscap's own log into it: Foolscap keeps its log to
    itself otherwise, and that log is where each hint's attempt is told.
    """
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    if not (args.verbose or args.log_file):
        return
    target: TextIO
    if args.log_file:
        try:
            target = open(args.log_file, "a", encoding="utf-8")
        except OSError as e:
            raise Usage("--log-file=%s: cannot open it for appending (%s); expected the path of a file in "
                        "an existing, writable directory" % (args.log_file, e.strerror or e)) from None
    else:
        target = err
    level = LogLevel.debug if args.verbose else LogLevel.info
    observer = FilteringLogObserver(textFileLogObserver(target),
                                    [LogLevelFilterPredicate(defaultLogLevel=level)])
    # stdout and stderr stay the command's own: its report and its errors.
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    if args.verbose:
        from foolscap.logging import log as flog

        flog.bridgeLogsToTwisted(filter=lambda event: event["level"] >= flog.OPERATIONAL)
