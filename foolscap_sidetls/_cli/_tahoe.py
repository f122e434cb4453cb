"""
C{foolscap-sidetls tahoe ARGS...}: Tahoe-LAFS's own command line with
every Tub role-based (L{foolscap_sidetls.tahoe}).

Everything after C{tahoe} belongs to Tahoe, C{--help} and options that
look like ours included, so L{main} hands it over before this program's
own parser sees it; the sub-parser only lists the command in C{--help}.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn, Sequence

__all__ = ["NAME", "add_to", "main"]

NAME = "tahoe"


def add_to(commands: Any) -> None:
    command = commands.add_parser(
        NAME,
        help="run Tahoe-LAFS's own command line (tahoe run NODEDIR, tahoe create-node ...) with every Tub "
        "role-based and [tor]/[i2p] served by foolscap-sidetls",
        description="Everything after 'tahoe' is passed to Tahoe-LAFS verbatim.",
    )
    command.add_argument("arguments", nargs=argparse.REMAINDER, help="tahoe's arguments")


def main(arguments: Sequence[str]) -> NoReturn:
    from ..tahoe import main as tahoe_main

    tahoe_main(list(arguments))
