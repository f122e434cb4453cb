"""
The node's configuration file as the commands see it: where a command's
CONFIG argument points, loading it (a refusal is a usage error), and
writing one -- with C{configparser}, in the dialect the reader parses.
"""

from __future__ import annotations

import argparse
import configparser
import io
import os
from typing import Mapping, Optional, Sequence

from .. import config as _config
from ._errors import Usage

#: The config file create-node writes, and what a directory argument means.
CONFIG_NAME = "node.cfg"

#: A section's keys and values, in the order they are written.
Entries = Sequence[tuple[str, str]]

#: A configuration that only dials: checking one option (or pinging
#: without a file) must not read ./client.port or look up this machine's
#: addresses, as a listening node's would.
DIALING_ONLY: Mapping[str, Entries] = {"node": [("tub.port", "disabled"), ("tub.location", "disabled")]}


def config_path(argument: str) -> str:
    """A config file, or a node directory holding node.cfg (or a Tahoe tahoe.cfg)."""
    if os.path.isdir(argument):
        for name in (CONFIG_NAME, "tahoe.cfg"):
            candidate = os.path.join(argument, name)
            if os.path.exists(candidate):
                return candidate
        return os.path.join(argument, CONFIG_NAME)
    return argument


def load(argument: str) -> _config.NodeConfig:
    try:
        return _config.load(config_path(argument))
    except _config.ConfigError as e:
        raise Usage(str(e)) from None


def config_of(args: argparse.Namespace) -> Optional[str]:
    """Where the command's configuration is, as L{cli_words} wants it: see its C{config}."""
    if args.command == "create-node":
        return None
    argument = getattr(args, "config", None)
    return config_path(argument) if argument else ""


def _section(name: str, entries: Entries) -> str:
    # Tahoe-LAFS's reading: no %-interpolation; keys keep their case
    # (reveal-IP-address), as a person would write them.
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_dict({name: dict(entries)})
    text = io.StringIO()
    parser.write(text)
    return text.getvalue()[:-1]  # configparser ends each section with a blank line


def render(
    sections: Mapping[str, Entries],
    comments: Sequence[str] = (),
    placeholders: Optional[Mapping[str, Sequence[str]]] = None,
) -> str:
    """
    The text of a configuration file: C{sections} (an empty one left out)
    written by C{configparser}, one blank line between them.

    configparser drops comments, so the ones a person reading the file
    needs are added around what it writes.

    @param comments: lines of a header block (each written as C{# LINE}),
        followed by a blank line.
    @param placeholders: for a section, commented-out keys written at its
        end (C{#timeout.keepalive =}): settings the reader knows, shown
        unset.
    """
    placeholders = placeholders or {}
    header = "".join("# %s\n" % (line,) for line in comments) + ("\n" if comments else "")
    blocks = [_section(name, entries) + "".join("#%s =\n" % (key,) for key in placeholders.get(name, ()))
              for name, entries in sections.items() if entries]
    return header + "\n".join(blocks)
