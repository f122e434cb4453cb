"""C{foolscap-sidetls check}: validate a configuration and say what it would do, starting nothing."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from ._errors import EXIT_OK
from ._nodefile import load
from ._output import say


def add_to(commands: Any) -> None:
    check = commands.add_parser(
        "check", help="validate a configuration and say what it would do",
        description="Validate CONFIG (a node.cfg/tahoe.cfg, or a directory holding one) and print "
        "the handler for each hint type, the listeners and the location FURLs would announce. "
        "Nothing is started, listened on or written.",
    )
    check.add_argument("config", metavar="CONFIG",
                       help="a configuration file (node.cfg, or a Tahoe-LAFS tahoe.cfg), or a node directory "
                       "holding one")


async def run(reactor: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    node = load(args.config)
    say(out, "%r is valid." % (node.source,))
    for line in node.describe():
        say(out, line)
    return EXIT_OK
