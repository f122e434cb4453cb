"""
The C{foolscap-sidetls} command: check a Tahoe-LAFS-style configuration,
create one, serve a small ping/echo object with it, and ping a FURL saying
what happened to each of its hints.

Each command is a module of this package (L{_check}, L{_create},
L{_serve}, L{_ping}) with the same two names: C{add_to}, which adds its
sub-parser, and C{run}, which runs it.

Exit status: 0 on success, 1 when a connection (or a start) failed, 2 for
usage and configuration errors -- so scripts can tell "fix the file" from
"the network is down".
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, Optional, Sequence, TextIO

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore

from .._version import __version__
from . import _check, _create, _ping, _serve, _tahoe
from ._errors import EXIT_FAILED, EXIT_USAGE, Failed, Usage, cli_words
from ._logging import start_logging
from ._nodefile import config_of
from ._output import PROG, say

__all__ = ["main", "parser", "run"]

#: The commands, in the order --help lists them.
_COMMANDS = {"check": _check, "create-node": _create, "serve": _serve, "ping": _ping}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Role-based Foolscap (listener = TLS server, dialer = TLS client) from a "
        "Tahoe-LAFS-style configuration file: check it, create one, serve with it, ping a FURL.",
        epilog="Exit status: 0 success, 1 connection or start failure, 2 usage or configuration error.",
    )
    top.add_argument("--version", action="version", version=_version_line(),
                     help="show the version (and Foolscap's, Twisted's and Python's) and exit")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS.values():
        command.add_to(commands)
    _tahoe.add_to(commands)  # listed only: main() hands its arguments to Tahoe untouched
    return top


def _version_line() -> str:
    import platform

    import foolscap
    import twisted

    return "%s %s (Foolscap %s, Twisted %s, Python %s)" % (
        PROG, __version__, foolscap.__version__, twisted.__version__, platform.python_version())


async def run(reactor: Any, argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run one command; its exit status.  Usage errors raise SystemExit(2) from argparse."""
    args = parser().parse_args(list(argv))
    try:
        if args.command in ("serve", "ping"):
            start_logging(args, err)
        return int(await _COMMANDS[args.command].run(reactor, args, out, err))
    except Usage as e:
        say(err, "%s %s: error: %s" % (PROG, args.command, cli_words(str(e), config_of(args))))
        return EXIT_USAGE
    except Failed as e:
        say(err, "%s %s: %s" % (PROG, args.command, cli_words(str(e), config_of(args))))
        return EXIT_FAILED


def main(argv: Optional[Sequence[str]] = None, *, reactor: Optional[IReactorCore] = None) -> NoReturn:
    """
    The console script: C{foolscap-sidetls COMMAND ...}; exits with the
    command's status.

    @param reactor: the reactor to run instead of the global one, so that
        tests run the real entry point on an in-memory reactor.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == [_tahoe.NAME]:
        _tahoe.main(arguments[1:])  # Tahoe's own command line and reactor
    parser().parse_args(arguments)  # usage errors and --help before the reactor starts

    async def entry(reactor: Any) -> None:
        # Start once the reactor runs: only then has it installed its
        # SIGINT/SIGTERM handlers, so a Ctrl-C right after serve prints its
        # FURL stops the Tub cleanly instead of raising KeyboardInterrupt.
        running: Deferred = Deferred()
        reactor.callWhenRunning(running.callback, None)
        await running
        code = await run(reactor, arguments, sys.stdout, sys.stderr)
        raise SystemExit(code)

    task.react(lambda reactor: Deferred.fromCoroutine(entry(reactor)), (), reactor)
