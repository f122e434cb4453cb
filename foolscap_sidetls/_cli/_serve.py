"""C{foolscap-sidetls serve}: run a Tub with the ping service until interrupted."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from twisted.internet import defer
from twisted.internet.defer import Deferred

from .. import config as _config
from .._version import __version__
from ._errors import EXIT_OK, Failed, Usage
from ._logging import add_logging_options
from ._nodefile import load
from ._output import PROG, Progress, say
from ._service import PingService

#: Where serve keeps the ping service's FURL (so it is the same every run).
PING_FURL_FILE = os.path.join("private", "ping.furl")


def add_to(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run a Tub with a ping/echo service until interrupted",
        usage="%(prog)s [-h] CONFIG [-v] [--log-file PATH]",
        description="Start the Tub CONFIG describes, register a small ping/echo service, print its "
        "FURL and serve until Ctrl-C (or SIGTERM). Slow steps (launching tor, bootstrap, publishing "
        "the onion service, opening the SAM session) are reported as they happen. The FURL is kept in "
        "DIR/%s, so it stays the same across runs." % (PING_FURL_FILE,),
    )
    serve.add_argument("config", metavar="CONFIG",
                       help="a configuration file, or a node directory holding one (as made by create-node)")
    add_logging_options(serve)


async def run(reactor: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from foolscap.pb import WrongTubIdError

    node = load(args.config)
    if not node.listening:
        raise Usage("%r [node] tub.port = 'disabled': this Tub only dials, so there is nothing to serve; "
                    "set tub.port and tub.location (or use 'create-node')" % (node.source,))
    say(out, "%s %s serving %r (pid %d)" % (PROG, __version__, node.source, os.getpid()))
    for warning in node.warnings:
        say(out, "warning: " + warning)
    progress = Progress(reactor, out)
    progress.start()
    try:
        starting = _config.create_tub(node, reactor, update_status=progress)
    except _config.ConfigError as e:  # a key file changed since it was loaded
        progress.stop()
        raise Usage(str(e)) from None
    started: list[Any] = []

    def shutdown() -> Deferred:
        # Ctrl-C or SIGTERM: stop the Tub, or the start still under way
        # (which then stops everything it had started), before exiting.
        progress.stop()
        say(out, "stopping...")
        if started:
            d = started[0].stopService() if started[0].running else defer.succeed(None)
        else:
            starting.cancel()
            d = starting
        return d.addErrback(lambda _: None).addCallback(lambda _: say(out, "stopped"))

    trigger = reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    try:
        tub = await starting
    except defer.CancelledError:
        return EXIT_OK
    except _config.StartError as e:
        reactor.removeSystemEventTrigger(trigger)
        raise Failed(str(e)) from None
    finally:
        progress.stop()
    started.append(tub)
    furl_file = os.path.join(node.basedir, PING_FURL_FILE)
    service = PingService()
    try:
        furl = tub.registerReference(service, furlFile=furl_file)
    except WrongTubIdError:
        os.remove(furl_file)  # the Tub's certificate was replaced: a new FURL
        furl = tub.registerReference(service, furlFile=furl_file)
    for line in node.describe_listeners():
        say(out, "listening: " + line)
    say(out, "location: " + ",".join(tub.locationHints))
    say(out, "furl: " + furl)
    say(out, "ready after %.1f s; try '%s ping %s'; Ctrl-C stops" % (progress.elapsed(), PROG, furl))
    await Deferred()  # until the reactor stops (SIGINT, SIGTERM)
    return EXIT_OK  # pragma: no cover
