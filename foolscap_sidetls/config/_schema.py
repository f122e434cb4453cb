"""
What a configuration file may say: its sections and keys (with what each
means, for C{check}'s "did you mean" hints), the defaults and file names a
node uses, and L{_Reader}, which turns one key's text into a checked value
or a L{ConfigError} naming the key and what it accepts.

One table of keys, read by the check for unknown keys and by the hints,
so that a key cannot be accepted by one and unknown to the other.
"""

from __future__ import annotations

import configparser
import difflib
import os
import re
import shutil
from typing import Iterable, Optional, Sequence

from ._descriptions import _ascii_digits, _endpoint_problem
from ._errors import ConfigError

#: What ``[connections] tcp`` may name (Tahoe-LAFS's values).
HANDLER_NAMES: tuple[str, ...] = ("tcp", "tor", "i2p", "disabled")
#: Where a node without ``tub.port`` keeps the port chosen at its first
#: start, relative to the config file's directory (Tahoe-LAFS client nodes
#: use the same file name).
PORTNUM_FILE = "client.port"
#: The Tub's certificate (its TubID), made at the first start.  Not
#: Tahoe's ``private/node.pem``: pointing this at a Tahoe node directory
#: must not borrow that node's identity.
CERT_FILE = os.path.join("private", "sidetls-tub.pem")
#: Data directories of a launched tor / i2pd (Tahoe keeps tor's there too).
TOR_STATEDIR = os.path.join("private", "tor-statedir")
I2P_STATEDIR = os.path.join("private", "i2p-statedir")

#: What C{check} and C{ping} say when tor: hints cannot be dialed for want of txtorcon.
TOR_UNAVAILABLE = "[tor] unavailable: txtorcon is not installed (pip install 'foolscap-sidetls[tor]')"

_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off")
_BOOL = "true or false (or yes/no, on/off, 1/0)"
_PORT = "a port number from 1 to 65535"
_SECONDS = "a whole number of seconds, e.g. 600"

#: The keys this module reads, per section, with their one-line meaning.
_KEYS: dict[str, dict[str, str]] = {
    "node": {
        "tub.port": "server endpoints to listen on (or listen:tor, listen:i2p, disabled)",
        "tub.location": "hints announced in FURLs (AUTO: this machine's addresses; disabled)",
        "reveal-ip-address": "false refuses anything that would reveal this machine's IP address",
        "timeout.keepalive": "seconds of silence before a keepalive is sent",
        "timeout.disconnect": "seconds of silence before a connection is dropped",
    },
    "connections": {
        "tcp": "which handler dials tcp: hints (tcp, tor, i2p, disabled)",
    },
    "tor": {
        "enabled": "dial tor: hints",
        "launch": "start a tor of our own",
        "tor.executable": "the tor to launch",
        "control.port": "client endpoint of a running tor's control port",
        "socks.port": "client endpoint of a running tor's SOCKS port",
        "bootstrap.timeout": "seconds tor may go without bootstrap progress (0 or none: keep waiting)",
        "onion": "publish an onion service for this Tub",
        "onion.local_port": "the 127.0.0.1 port the onion service forwards to",
        "onion.external_port": "the onion service's port",
        "onion.private_key_file": "the onion service's key",
    },
    "i2p": {
        "enabled": "dial i2p: hints",
        "sam.port": "client endpoint of a running router's SAM bridge",
        "launch": "start an i2pd of our own",
        "i2p.executable": "the i2pd to launch",
        "i2p.configdir": "an i2pd's configuration directory",
        "reseed.timeout": "seconds a launched i2pd that cannot reseed may take to open a session (0 or none: keep waiting)",
        "dest": "listen on an I2P destination (with tub.port = listen:i2p)",
        "dest.port": "the I2P port announced in the hint",
        "dest.private_key_file": "the destination's private key",
        "i2cp.options": "I2CP options for the SAM sessions (NAME=VALUE, ...)",
    },
}

#: Tahoe-LAFS 1.20 ``[node]`` keys that are about the rest of a Tahoe node.
_TAHOE_NODE_KEYS = ("log_gatherer.furl", "nickname", "tempdir", "web.port", "web.static")
#: Tahoe-LAFS 1.20 sections about the rest of a Tahoe node: accepted, ignored.
_TAHOE_SECTIONS = (
    "client",
    "storage",
    "helper",
    "sftpd",
    "ftpd",
    "magic_folder",
    "grid_managers",
    "grid_manager_certificates",
)
_TAHOE_PLUGIN_SECTIONS = ("storageclient.plugins.", "storageserver.plugins.")

#: The Foolscap Tub option each [node] timeout sets (as Tahoe-LAFS sets them).
_TUB_OPTIONS = {"timeout.keepalive": "keepaliveTimeout", "timeout.disconnect": "disconnectTimeout"}
_LISTEN_TOR = "listen:tor"
_LISTEN_I2P = "listen:i2p"
_TOR_HINT = re.compile(r"^tor:([A-Za-z0-9.\-]+):(\d{1,5})$")
_I2P_OPTION_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")
_I2P_OPTION_VALUE = re.compile(r'^[^\s"=,]*$')
_I2P_RESERVED = (
    "STYLE", "ID", "DESTINATION", "SIGNATURE_TYPE", "SILENT", "FROM_PORT", "TO_PORT", "PORT",
    "HOST", "PROTOCOL", "HEADER",
)


def _close_matches(word: str, choices: Iterable[str]) -> str:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return " (did you mean %s?)" % (found[0],) if found else ""


class _Reader:
    """One parsed file and the helpers that turn its values into checked ones."""

    def __init__(self, parser: configparser.ConfigParser, source: str, basedir: str) -> None:
        self.parser = parser
        self.source = source
        self.basedir = basedir
        self.warnings: list[str] = []

    def error(
        self,
        section: Optional[str],
        key: Optional[str],
        problem: str,
        accepted: Optional[str] = None,
        value: Optional[str] = None,
        unset: str = "",
    ) -> ConfigError:
        text = problem + ("; expected " + accepted if accepted else "")
        shown = "reveal-IP-address" if key == "reveal-ip-address" else key
        return ConfigError(self.source, section, shown, value, text, unset)

    def bad(self, section: str, key: str, problem: str, accepted: Optional[str] = None) -> ConfigError:
        return self.error(section, key, problem, accepted, self.get(section, key))

    def get(self, section: str, key: str) -> Optional[str]:
        if not self.parser.has_option(section, key):
            return None
        return self.parser.get(section, key).strip()

    def boolean(self, section: str, key: str, default: bool) -> bool:
        value = self.get(section, key)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise self.bad(section, key, "not a boolean", _BOOL)

    def port(self, section: str, key: str) -> Optional[int]:
        value = self.get(section, key)
        if value is None:
            return None
        if not _ascii_digits(value) or not 1 <= int(value) <= 65535:
            raise self.bad(section, key, "not a port number", _PORT)
        return int(value)

    def seconds(self, section: str, key: str) -> Optional[int]:
        value = self.get(section, key)
        if not value:  # Tahoe: an empty value means "not set"
            return None
        if not _ascii_digits(value):
            raise self.bad(section, key, "not a number of seconds", _SECONDS)
        return int(value)

    def path(self, value: str) -> str:
        # As Tahoe-LAFS's get_config_path(): joined to the node directory
        # first, so a leading ~ is a directory named ~ there, not $HOME.
        return os.path.normpath(os.path.join(self.basedir, value))

    def relative(self, value: str) -> str:
        """Where a relative C{value} starts, for messages about a path that is not there."""
        note = "relative paths start at %s" % (self.basedir,)
        if value.startswith("~"):
            note += "; ~ is not expanded, as in Tahoe-LAFS"
        return note

    def client_endpoint(self, section: str, key: str, example: str) -> Optional[str]:
        value = self.get(section, key)
        if value is None:
            return None
        if not value:
            raise self.bad(section, key, "empty", "a client endpoint description such as %r" % (example,))
        problem = _endpoint_problem(value, server=False)
        if problem is not None:
            raise self.bad(
                section, key, "not a client endpoint description (%s)" % (problem,), "one such as %r" % (example,),
            )
        return value

    def executable(self, section: str, key: str, name: str, search: Sequence[str]) -> Optional[str]:
        value = self.get(section, key)
        path_env = os.pathsep.join([os.environ.get("PATH", os.defpath)] + list(search))
        if value is None:
            if shutil.which(name, path=path_env) is None:
                raise self.error(
                    section, "launch",
                    "no %s executable found on PATH or in %s" % (name, ", ".join(search)),
                    "%s installed (apt-get install %s) or [%s] %s.executable set to its path"
                    % (name, "tor" if name == "tor" else "i2pd", section, section),
                    value="true",
                )
            return None
        if os.sep in value:
            found: Optional[str] = self.path(value)
            assert found is not None
            if not os.path.isfile(found) or not os.access(found, os.X_OK):
                raise self.bad(
                    section, key, "%s is not an executable file" % (found,),
                    "the path of %s %s executable (%s)"
                    % ("an" if name[0] in "aeiou" else "a", name, self.relative(value)),
                )
            return found
        found = shutil.which(value, path=path_env)
        if found is None:
            raise self.bad(
                section, key, "not found on PATH or in %s" % (", ".join(search),),
                "the name or path of %s %s executable" % ("an" if name[0] in "aeiou" else "a", name),
            )
        return found


def _check_sections(reader: _Reader) -> list[str]:
    ignored = []
    known = list(_KEYS) + list(_TAHOE_SECTIONS)
    for section in reader.parser.sections():
        if section in _KEYS:
            allowed = list(_KEYS[section]) + (list(_TAHOE_NODE_KEYS) if section == "node" else [])
            for key in reader.parser.options(section):
                if key not in allowed:
                    raise reader.error(
                        section, key,
                        "unknown key%s" % (_close_matches(key, _KEYS[section]),),
                        "one of " + ", ".join(_KEYS[section]).replace("reveal-ip-address", "reveal-IP-address"),
                        reader.get(section, key),
                    )
        elif section in _TAHOE_SECTIONS or section.startswith(_TAHOE_PLUGIN_SECTIONS):
            ignored.append(section)
        else:
            raise reader.error(
                section, None,
                "unknown section%s" % (_close_matches(section, known),),
                "one of %s (and Tahoe-LAFS's %s, which are ignored)"
                % (", ".join("[%s]" % s for s in _KEYS), ", ".join("[%s]" % s for s in _TAHOE_SECTIONS)),
            )
    return ignored
